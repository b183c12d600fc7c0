"""Calling the chat model from a node: a per-attempt timeout and the server's Retry-After."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

from nodes.errors import classify
from state.context import RunContext

MAX_RETRY_AFTER = 600.0
"""The longest wait a server's Retry-After is allowed to impose, in seconds."""


async def call_model(ctx: RunContext, prompt: Any, *, attempt: int) -> Any:
    """`model.ainvoke(prompt)` bounded by the node timeout.

    A timeout raises `TimeoutError` (retryable). When the endpoint answers 429 with Retry-After
    and another attempt will follow, this waits what the server asked before raising, so the
    retry does not come back early; the RetryPolicy's own backoff is added on top.
    """
    model = ctx.require_model()
    try:
        async with asyncio.timeout(ctx.node_timeout):
            return await model.ainvoke(prompt)
    except TimeoutError:
        raise TimeoutError(f"the model did not answer within {ctx.node_timeout:g}s") from None
    except Exception as exc:
        wait = retry_after(exc)
        if wait and classify(exc) == "retryable" and attempt < ctx.max_attempts:
            await ctx.clock.sleep(wait)
        raise


def retry_after(exc: BaseException) -> float | None:
    """Seconds from the `Retry-After` (or `retry-after-ms`) header of an HTTP error, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return min(MAX_RETRY_AFTER, max(0.0, float(ms) / 1000))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
