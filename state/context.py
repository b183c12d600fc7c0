"""Run settings and services handed to nodes through LangGraph's runtime context.

Nothing here is checkpointed: the context carries what a run needs but a thread must not
store (the model object, the clock), so secrets such as API keys never reach the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


class Clock(Protocol):
    """Where nodes get time from, so tests can control it."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class RunContext:
    """Settings of one run (not of the thread's state)."""

    model: Any = None
    """A LangChain chat model (`BaseChatModel`); built by `runtime.models.make_model`."""

    max_attempts: int = 3
    """Attempts per model call or risky operation, the first included."""

    concurrency: int = 4
    """How many queue items run side by side in one step."""

    backoff: float = 0.5
    """Seconds before the first retry of an explicit retry loop; doubled after each failure."""

    node_timeout: float | None = None
    """Seconds one attempt of a model call or operation may take; past it, a retryable failure."""

    clock: Clock = field(default_factory=SystemClock)
    """Time source for backoff waits and timestamps."""

    def require_model(self) -> Any:
        if self.model is None:
            raise RuntimeError(
                "this graph calls a chat model but the run context has none; "
                "run it through agent (runtime.run_thread) or pass context=RunContext(model=...)"
            )
        return self.model
