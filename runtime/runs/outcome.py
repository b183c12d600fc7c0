"""How a run goes and how it ended: the events shown on the way, the outcome, its exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from nodes.errors import describe
from runtime.redact import redact
from runtime.threads.progress import ProgressSnapshot

EXIT_CODES = {
    "completed": 0,
    "failed": 1,
    "timeout": 1,
    "interrupted": 3,
    "paused": 3,
    "budget_exceeded": 4,
    "cancelled": 5,
    "stopped": 130,
    "taken_over": 1,
}


@dataclass
class RunEvent:
    """Something to show while a run goes: a finished node, a committed step, a notice."""

    kind: str
    step: int | None = None
    node: str | None = None
    seconds: float | None = None
    error: str | None = None
    message: str | None = None
    item: dict[str, Any] | None = None
    """kind `item`: one queue item's final result: `queue_item` (its index), `status`, `previous`
    (its status before a retry round), `error`, `input_tokens`, `output_tokens`."""
    progress: ProgressSnapshot | None = None
    """kind `progress`: a queue's figures, at most every `drive.PROGRESS_EVERY` seconds and at the end."""
    data: Any = None
    """kind `custom`: what the graph wrote to its stream (`get_stream_writer()`) beyond items and progress."""


@dataclass
class RunOutcome:
    thread_id: str
    graph: str
    status: str
    steps: int
    checkpoint_id: str | None
    seconds: float
    error: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    progress: ProgressSnapshot | None = None
    """A queue's figures at the end of the run (or those the graph reported of its own)."""
    output: dict[str, Any] = field(default_factory=dict)
    """The values of the keys the graph outputs (its output schema's; all of its state's when it
    declares none), as the run left them."""
    answer: str | None = None
    """A completed run's result as text for a terminal (runtime/runs/answer.py)."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


EventHandler = Callable[[RunEvent], None]


def explain_failure(exc: BaseException) -> str:
    """One line for why a run failed, with the fix where it is known; never a secret."""
    status = getattr(exc, "status_code", None)
    if status == 401:
        return "the model endpoint rejected the API key (401): OPENAI_API_KEY is missing or wrong"
    if status == 403:
        return "the model endpoint refused access (403): the key lacks permission for this model"
    if status == 404:
        return f"the model endpoint does not know this model or path (404): {redact(describe(exc))}"
    return redact(describe(exc))
