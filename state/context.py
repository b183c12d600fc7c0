"""Run settings and services handed to nodes through LangGraph's runtime context.

Nothing here is checkpointed: the context carries what a run needs but a thread must not
store (the model object, the clock), so secrets such as API keys never reach the database.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import GetCoreSchemaHandler
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import core_schema

T = TypeVar("T")


class _TakenAsGiven:
    """Pydantic metadata: accept any value and never look at the annotated type, which may be a
    Protocol or a class pydantic cannot describe."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.any_schema()


InProcess = Annotated[T, _TakenAsGiven(), SkipJsonSchema()]
"""A context field that holds an in-process object (a chat model, the clock, the limiter): it has
no JSON form, so the context's JSON Schema (LangGraph's `get_context_jsonschema`, which Studio
shows) leaves it out and describes only the settings. Dataclass construction is unaffected."""


class WaitInterrupted(Exception):
    """A wait (a backoff, a server's Retry-After, a rate limit) cut short because the run was
    asked to stop (Ctrl-C, SIGTERM, its deadline, a pause, its budget). What waited was not
    done: a queue item stays without a result, a node runs again on resume."""


class Clock(Protocol):
    """Where a run's nodes get time from, so tests can control it. Its waits are async and, in
    a run, end when the run is asked to stop (the scheduling worker, which blocks between its
    ticks, has a clock of its own)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None:
        """Time that is part of the work (a simulated operation's duration)."""

    async def wait(self, seconds: float) -> None:
        """A wait before trying again (a backoff, a Retry-After). The runner's clock raises
        `WaitInterrupted` the moment the run is asked to stop, so no wait outlives a run."""


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RequestTicket(Protocol):
    """One admitted model request; told afterwards what it really cost."""

    async def settle(self, tokens: int) -> None: ...


class RequestGate(Protocol):
    """Admits model requests for a whole run: rate limits, a 429's pause, requests in flight.

    `runtime.policy.limits.RequestLimiter` is the implementation the runner puts into the context.
    """

    def request(self, estimated_tokens: int, model: str | None = None) -> AbstractAsyncContextManager[RequestTicket]:
        """Admit one request to `model` (a spec; None: the run's model)."""

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: slow every request of the run down, not only the one that got it."""


class UsageMeter(Protocol):
    """What the run's model calls spent (`runtime.policy.budget.SpendMeter`; every call is counted
    through LangChain's callbacks, runtime/policy/metering.py)."""

    def running_low(self) -> bool:
        """Under a fifth of the budget left: routine and strong steps alike go to the cheap model."""


@dataclass
class RunContext:
    """Settings of one run (not of the thread's state)."""

    model: InProcess[Any] = None
    """A LangChain chat model (`BaseChatModel`); built by `runtime.policy.models.make_model`."""

    max_attempts: int = 3
    """Attempts per model call or risky operation, the first included."""

    concurrency: int = 4
    """How many queue items run side by side in one step."""

    backoff: float = 0.5
    """Seconds before the first retry of an explicit retry loop; doubled after each failure."""

    node_timeout: float | None = None
    """Seconds one attempt of a model call or operation may take; past it, a retryable failure."""

    clock: InProcess[Clock] = field(default_factory=SystemClock)
    """Time source for backoff waits and timestamps."""

    rpm: int | None = None
    """Model requests a minute for the run (None: no limit); enforced by `limiter`."""

    tpm: int | None = None
    """Model tokens a minute for the run (None: no limit); enforced by `limiter`."""

    limiter: InProcess[RequestGate | None] = None
    """Shared by every model call of the run; the runner builds it from concurrency, rpm and tpm.
    Without one (a context built by hand) calls are limited only by `concurrency`."""

    model_spec: str | None = None
    """The spec `model` was built from (`offline`, `openai:gpt-4o`), as shown and priced."""

    cheap_model: InProcess[Any] = None
    """A cheaper chat model for routine steps (`--cheap-model`); None: `model` does everything."""

    cheap_model_spec: str | None = None

    meter: InProcess[UsageMeter | None] = None
    """The run's spend, for choosing the cheap model once the budget runs low; None: never low."""

    background: bool = False
    """Nobody is at the terminal (`--background`)."""

    approved_by: str | None = None
    """Set (to the user) when `--yes` approved the run's sensitive actions up front."""

    spread: InProcess[Any] = None
    """Hands a queue's items out to every worker of a fleet (runtime.fleet.spread.ItemSpread);
    None: the run works through them itself."""

    @classmethod
    def of_settings(cls, settings: Any, model: Any, cheap_model: Any, **services: Any) -> "RunContext":
        """The context of a run (or of a worker's part of a queue) with these resolved settings
        (`runtime.policy.settings.RunSettings`) and models; `services`: the limiter, clock, meter..."""
        return cls(
            model=model,
            max_attempts=settings.max_attempts,
            concurrency=settings.concurrency,
            backoff=settings.backoff,
            node_timeout=settings.node_timeout,
            rpm=settings.rpm,
            tpm=settings.tpm,
            model_spec=settings.model,
            cheap_model=cheap_model,
            cheap_model_spec=settings.cheap_model,
            **services,
        )

    def choose_model(self, routine: bool) -> tuple[str | None, Any]:
        """(spec, model) for a step: the cheap model for routine steps and once the budget runs low."""
        if self.cheap_model is not None and (routine or (self.meter is not None and self.meter.running_low())):
            return self.cheap_model_spec, self.cheap_model
        return self.model_spec, self.require_model()

    def require_model(self) -> Any:
        if self.model is None:
            raise RuntimeError(
                "this graph calls a chat model but the run context has none; "
                "run it through agent (runtime.run_thread) or pass context=RunContext(model=...)"
            )
        return self.model
