"""A class whose construction leaves a mark: the payload of the tampered-checkpoint test."""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Payload:
    path: str

    def __post_init__(self) -> None:
        Path(self.path).write_text("constructed")
