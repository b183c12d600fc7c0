"""The worker's clock: the one place scheduled work gets the time from, so tests control it.

A `WorkerClock` tells the wall-clock time that schedules fire at and blocks the worker between
its ticks. It is not the clock of a run's nodes (`state.context.Clock`), whose waits are async
and end the moment the run is asked to stop.

`SystemClock` is wall-clock time and real sleeping. `ManualClock` stands still until it is
moved (or slept on, which moves it): the tests drive the worker through days of schedules with
it, and `agent worker --once --now ISO` runs a real process at a chosen instant.
"""

from __future__ import annotations

import time
from typing import Protocol


class WorkerClock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the worker (it does nothing else meanwhile)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; sleeping moves it at once."""

    def __init__(self, start: float) -> None:
        self.current = float(start)

    def now(self) -> float:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.current += seconds

    def set(self, when: float) -> None:
        self.current = float(when)
