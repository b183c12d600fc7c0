"""Calling the chat model from a node: a per-attempt timeout and the server's Retry-After."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from nodes.errors import classify
from nodes.usage import estimate_tokens, token_usage
from state.context import RunContext

MAX_RETRY_AFTER = 600.0
"""The longest wait a server's Retry-After is allowed to impose, in seconds."""


async def call_model(ctx: RunContext, prompt: Any, *, attempt: int, model: tuple[str | None, Any] | None = None) -> Any:
    """`model.ainvoke(prompt)` bounded by the node timeout, admitted by the run's limiter.

    A timeout raises `TimeoutError` (retryable). The limiter (when the run has one) holds the
    call until the rate limits allow it, and a 429 tells it to pause every call of the run for
    the server's Retry-After; without one, a 429 with Retry-After that another attempt will
    follow waits here before raising, so the retry does not come back early. The retry's own
    backoff is added on top either way.

    `model` is a (spec, model) pair from `ctx.choose_model` (default: the run's model). What the
    call spent reaches the run's meter through LangChain's callbacks, as every model call of a
    run does (runtime/policy/metering.py).
    """
    spec, model = model if model is not None else (ctx.model_spec, ctx.require_model())
    gate = ctx.limiter
    async with gate.request(estimate_tokens(prompt), spec) if gate is not None else _admitted() as ticket:
        try:
            async with asyncio.timeout(ctx.node_timeout):
                message = await model.ainvoke(prompt)
        except TimeoutError:
            raise TimeoutError(f"the model did not answer within {ctx.node_timeout:g}s") from None
        except Exception as exc:
            wait = retry_after(exc)
            if gate is not None and getattr(exc, "status_code", None) == 429:
                gate.rate_limited(wait)
            elif wait and classify(exc) == "retryable" and attempt < ctx.max_attempts:
                await ctx.clock.wait(wait)
            raise
        usage = token_usage(message)
        if ticket is not None:
            await ticket.settle(usage["input_tokens"] + usage["output_tokens"])
        return message


@asynccontextmanager
async def _admitted() -> AsyncIterator[None]:
    yield None


def retry_after(exc: BaseException, now: float | None = None) -> float | None:
    """Seconds from the `Retry-After` (or `retry-after-ms`) header of an HTTP error, if any
    (or from a `retry_after` attribute, as the offline model's simulated 429 carries), at most
    MAX_RETRY_AFTER. Retry-After is seconds or an HTTP-date (`now`: the time it is measured
    from, default the current time). A header that is neither counts as absent: the usual
    backoff applies."""
    if isinstance(getattr(exc, "retry_after", None), (int, float)):
        return _bounded(float(exc.retry_after))
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := _seconds(headers.get("retry-after-ms"))) is not None:
        return _bounded(ms / 1000)
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is None and value:
        seconds = _until_date(value, time.time() if now is None else now)
    return None if seconds is None else _bounded(seconds)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and not math.isnan(seconds) else None


def _until_date(value: str, now: float) -> float | None:
    """Seconds from `now` until an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`), or None."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # `-0000`: a date in UTC whose source zone is unknown
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp() - now


def _bounded(seconds: float) -> float:
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
