"""Nodes of the `risky` graph: an operation that may fail, and its retry and give-up branches.

Every attempt is its own step, so the attempt count and each error are checkpointed: a crash
between attempts neither resets the count nor repeats a completed attempt.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from langgraph.runtime import Runtime

from nodes.errors import OperationError, classify, describe
from state.context import Clock, RunContext
from state.risky import RiskyState

MAX_BACKOFF = 60.0


async def perform_operation(state: RiskyState, attempt: int, clock: Clock) -> str:
    """The simulated operation: takes `duration` seconds, fails as the input asks, then succeeds."""
    if state.get("duration"):
        await clock.sleep(state["duration"])
    fail_times = state.get("fail_times", 0)
    if fail_times < 0 or attempt <= fail_times:
        status = 503 if state.get("failure", "retryable") == "retryable" else 400
        raise OperationError(f"{operation_name(state)} failed on attempt {attempt}", status)
    return f"{operation_name(state)} succeeded on attempt {attempt}"


def operation_name(state: RiskyState) -> str:
    return state.get("operation") or "charge-card"


def max_attempts(state: RiskyState, runtime: Runtime[RunContext]) -> int:
    return state.get("max_attempts") or runtime.context.max_attempts


async def attempt(state: RiskyState, runtime: Runtime[RunContext]) -> dict:
    """Try the operation once; a failure is recorded, not raised, so the router can branch.

    The node timeout is enforced here (not by LangGraph's node timeout) for the same reason:
    a timed-out attempt is a retryable failure the graph branches on, not a failed run.
    """
    number = state.get("attempts", 0) + 1
    limit = runtime.context.node_timeout
    try:
        async with asyncio.timeout(limit):
            result = await perform_operation(state, number, runtime.context.clock)
    except TimeoutError:
        message = f"TimeoutError: attempt {number} took longer than {limit:g}s"
        return {"attempts": number, "errors": [message], "last_failure": "retryable"}
    except Exception as exc:
        return {"attempts": number, "errors": [describe(exc)], "last_failure": _kind(exc)}
    return {"attempts": number, "result": result, "outcome": "succeeded"}


def _kind(exc: Exception) -> Literal["retryable", "fatal"]:
    return "retryable" if classify(exc) == "retryable" else "fatal"


def route_after_attempt(
    state: RiskyState, runtime: Runtime[RunContext]
) -> Literal["succeeded", "backoff", "give_up"]:
    if state.get("outcome") == "succeeded":
        return "succeeded"
    if state.get("last_failure") == "retryable" and state["attempts"] < max_attempts(state, runtime):
        return "backoff"
    return "give_up"


def backoff_delay(state: RiskyState, default: float = 0.5) -> float:
    """Exponential backoff with jitter on the upper half: base * 2^(n-1), capped."""
    base = state.get("backoff", default)
    ceiling = min(MAX_BACKOFF, base * 2 ** (state.get("attempts", 1) - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


async def wait_backoff(state: RiskyState, runtime: Runtime[RunContext]) -> dict:
    await runtime.context.clock.wait(backoff_delay(state, runtime.context.backoff))
    return {}


def succeeded(state: RiskyState) -> dict:
    return {}


def give_up(state: RiskyState, runtime: Runtime[RunContext]) -> dict:
    last = state["errors"][-1] if state.get("errors") else "unknown error"
    if state.get("last_failure") == "fatal":
        reason = f"not retryable: {last}"
    else:
        reason = f"gave up after {state.get('attempts', 0)} of {max_attempts(state, runtime)} attempts: {last}"
    return {"outcome": "gave_up", "give_up_reason": reason}
