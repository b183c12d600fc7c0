"""Admitting model requests for a whole run: requests a minute, tokens a minute, a 429's pause,
and how many requests are in flight.

One limiter is shared by every model call of a run (the runner puts it into the run context),
so a rate limit holds for the queue as a whole, and a 429 slows every item down, not only the
one that got it: new requests wait until the server's Retry-After has passed, and the requests
allowed in flight are halved, then grow back by one for every window of successes (additive
increase, multiplicative decrease, as TCP does). The rate limits are leaky buckets holding one
second's worth, so requests are spread evenly instead of spent in a burst.

A limit shared with other runs (a model's requests a minute across every process on the
database, runtime/policy/shared_rates.py) comes in as a hook, `shared(model)`: awaited once the run's
own buckets admit a request, as late as possible so that the unit it reserves is used when it
was reserved for, it returns the seconds to wait, and the request waits them.

Every wait is measured on the limiter's clock (monotonic time by default), so a test can drive
it with a clock of its own and check what it admits when, without waiting in real time.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from state.context import Clock

DEFAULT_PAUSE = 1.0
"""Seconds every request waits after a 429 that names no Retry-After."""

DECREASE_EVERY = 1.0
"""429s arriving together (from requests that were in flight at once) halve the limit once."""


LEVEL_TOLERANCE = 1e-9
"""Units a bucket may be over its capacity by rounding, rather than wait a vanishing time."""


class MonotonicClock:
    """Seconds that never go back (`time.monotonic`) and real sleeping: the limiter's default."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LeakyBucket:
    """Holds up to `capacity` units and leaks `per_second` of them; `acquire(amount)` waits
    until the amount fits. Waiters are served in the order they came (a large amount is never
    overtaken by smaller ones)."""

    def __init__(self, capacity: float, per_second: float, clock: Clock) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self._clock = clock
        self._level = 0.0
        self._leaked_at: float | None = None
        self._turn = asyncio.Lock()  # first come, first served

    async def acquire(self, amount: float = 1.0) -> None:
        if not 0 <= amount <= self.capacity:
            raise ValueError(f"cannot acquire {amount} of a bucket holding {self.capacity}")
        async with self._turn:
            while (excess := self._leak() + amount - self.capacity) > LEVEL_TOLERANCE:
                await self._clock.sleep(excess / self.per_second)
            self._level += amount

    def _leak(self) -> float:
        now = self._clock.now()
        if self._leaked_at is not None:
            self._level = max(0.0, self._level - (now - self._leaked_at) * self.per_second)
        self._leaked_at = now
        return self._level


def _bucket(per_minute: int, clock: Clock) -> LeakyBucket:
    """A leaky bucket for `per_minute`, holding about a second's worth (at least one unit)."""
    return LeakyBucket(max(1.0, per_minute / 60), per_minute / 60, clock)


class RequestLimiter:
    """A `state.context.RequestGate`: `async with limiter.request(tokens) as ticket: ...`."""

    def __init__(
        self,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Clock | None = None,
        until_stopped: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
        shared: Callable[[str | None, float], Awaitable[float]] | None = None,
    ) -> None:
        """`until_stopped(awaitable)` bounds every wait for a pause or a rate (the runner's ends
        them when the run is asked to stop: runtime/policy/waits.py). `shared(model, tokens)` admits
        each request to a limit shared with other runs or processes: the seconds it must wait
        (`model` is the spec the request goes to, None for the run's model; `tokens`, what it is
        expected to cost)."""
        self._until_stopped = until_stopped or _awaited
        self._shared = shared
        self.concurrency = max(1, concurrency)
        self.limit = float(self.concurrency)
        """Requests allowed in flight now: `concurrency`, lowered by 429s, growing back."""
        self.in_flight = 0
        self.rate_limits = 0
        """429s seen in this run."""
        self._clock = clock or MonotonicClock()
        self._rpm = _bucket(rpm, self._clock) if rpm else None
        self._tpm = _bucket(tpm, self._clock) if tpm else None
        self._slots = asyncio.Condition()
        self._resume_at = 0.0
        self._last_decrease = float("-inf")
        self._mean_reply = 0.0
        self._replies = 0

    @asynccontextmanager
    async def request(self, estimated_tokens: int, model: str | None = None) -> AsyncIterator["_Ticket"]:
        """Wait until a request may go: no pause in force, a slot free, the rates allow it."""
        await self._wait_pause()
        async with self._slots:
            await self._slots.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1
        try:
            if self._rpm is not None:
                await self._until_stopped(self._rpm.acquire())
            reserved = 0.0
            if self._tpm is not None:
                reserved = min(float(estimated_tokens) + self._mean_reply, self._tpm.capacity)
                await self._until_stopped(self._tpm.acquire(reserved))
            if self._shared is not None:
                await self._until_stopped(self._shared_turn(self._shared, model, float(estimated_tokens) + self._mean_reply))
            await self._wait_pause()  # a 429 may have come in while this one waited
            yield _Ticket(self, estimated_tokens, reserved)
        finally:
            async with self._slots:
                self.in_flight -= 1
                self._slots.notify_all()

    def rate_limited(self, retry_after: float | None) -> None:
        now = self._clock.now()
        self.rate_limits += 1
        pause = DEFAULT_PAUSE if retry_after is None else retry_after
        self._resume_at = max(self._resume_at, now + pause)
        if now - self._last_decrease >= DECREASE_EVERY:
            self._last_decrease = now
            self.limit = max(1.0, self.limit / 2)

    async def _succeeded(self, estimated: int, reserved: float, tokens: int) -> None:
        # Additive increase: about one more slot per `limit` successes.
        before, self.limit = self.limit, min(float(self.concurrency), self.limit + 1 / self.limit)
        if int(self.limit) > int(before):
            async with self._slots:
                self._slots.notify_all()
        self._replies += 1
        self._mean_reply += (max(0, tokens - estimated) - self._mean_reply) / self._replies
        if self._tpm is None:
            return
        owed = tokens - reserved
        while owed > 0:  # the request cost more than was reserved: pay the rest before the next
            part = min(owed, self._tpm.capacity)
            await self._tpm.acquire(part)
            owed -= part

    async def _shared_turn(self, shared: Callable[[str | None, float], Awaitable[float]], model: str | None, tokens: float) -> None:
        delay = await shared(model, tokens)
        if delay > LEVEL_TOLERANCE:
            await self._clock.sleep(delay)

    async def _wait_pause(self) -> None:
        while (delay := self._resume_at - self._clock.now()) > 0:
            await self._until_stopped(self._clock.sleep(delay))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _Ticket:
    def __init__(self, limiter: RequestLimiter, estimated: int, reserved: float) -> None:
        self._limiter = limiter
        self._estimated = estimated
        self._reserved = reserved

    async def settle(self, tokens: int) -> None:
        """The request succeeded and used `tokens` (prompt and reply) in all."""
        await self._limiter._succeeded(self._estimated, self._reserved, tokens)

