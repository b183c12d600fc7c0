"""State of the `risky` graph: one risky operation with retry and give-up branches."""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from typing_extensions import TypedDict


class RiskyInput(TypedDict, total=False):
    """What a user passes to `agent run risky --input ...`."""

    operation: str
    """A name for the operation, shown in results (default "charge-card")."""

    fail_times: int
    """How many attempts fail before one succeeds; -1 makes every attempt fail."""

    failure: Literal["retryable", "fatal"]
    """How the injected failures are classified (default "retryable")."""

    max_attempts: int
    """Attempts before giving up, the first included (default: the run's --max-attempts)."""

    duration: float
    """Seconds each attempt takes (default 0); longer than --node-timeout makes it time out."""

    backoff: float
    """Seconds before the first retry; doubled after each further failure (default: the run's --backoff)."""


class RiskyOutput(TypedDict, total=False):
    """What a run of `risky` answers with (`agent run` prints it)."""

    operation: str
    outcome: Literal["succeeded", "gave_up"]
    result: str
    attempts: int
    give_up_reason: str


class RiskyState(RiskyInput, total=False):
    attempts: int
    """Attempts made so far; checkpointed, so a crash does not reset the count."""

    errors: Annotated[list[str], operator.add]
    """Each failed attempt's error, oldest first."""

    last_failure: Literal["retryable", "fatal"]
    """How the latest failure was classified."""

    outcome: Literal["succeeded", "gave_up"]
    """How the operation ended."""

    result: str
    """What the operation returned when it succeeded."""

    give_up_reason: str
    """Why the graph gave up, when it did."""
