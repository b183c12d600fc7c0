"""A risky operation with explicit retry (with backoff) and give-up branches."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from nodes.risky import attempt, give_up, route_after_attempt, succeeded, wait_backoff
from state.context import RunContext
from state.risky import RiskyInput, RiskyOutput, RiskyState

DESCRIPTION = "One risky operation with retry-with-backoff and give-up branches; make it fail to watch each."
VERSION = "1"


def build(max_attempts: int = 3, backoff: float = 0.5, node_timeout: float | None = None) -> StateGraph:
    """`node_timeout` reaches the nodes through the run context (RunContext.node_timeout)."""
    # Attempts are counted in state, not by a RetryPolicy, so each one is checkpointed;
    # the input's max_attempts and backoff (or the run's, from the context) apply.
    graph = StateGraph(RiskyState, context_schema=RunContext, input_schema=RiskyInput, output_schema=RiskyOutput)
    graph.add_node("attempt", attempt)
    graph.add_node("backoff", wait_backoff)
    graph.add_node("succeeded", succeeded)
    graph.add_node("give_up", give_up)
    graph.add_edge(START, "attempt")
    graph.add_conditional_edges("attempt", route_after_attempt, ["succeeded", "backoff", "give_up"])
    graph.add_edge("backoff", "attempt")
    graph.add_edge("succeeded", END)
    graph.add_edge("give_up", END)
    return graph


def validate_input(data: dict[str, Any]) -> dict[str, Any]:
    fail_times = data.get("fail_times", 0)
    if not isinstance(fail_times, int) or isinstance(fail_times, bool) or fail_times < -1:
        raise ValueError('"fail_times" must be a whole number: 0 or more, or -1 for always')
    if data.get("failure", "retryable") not in ("retryable", "fatal"):
        raise ValueError('"failure" must be "retryable" or "fatal"')
    attempts = data.get("max_attempts", 1)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ValueError('"max_attempts" must be a whole number of at least 1')
    duration = data.get("duration", 0)
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0:
        raise ValueError('"duration" must be a number of seconds, 0 or more')
    wait = data.get("backoff", 0.5)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool) or wait < 0:
        raise ValueError('"backoff" must be a number of seconds, 0 or more')
    return data
