"""A counting loop whose `log` is a LangGraph DeltaChannel (only writes are stored between
snapshots), for the retention tests: pruning must keep what the log is rebuilt from.
`fail_at` in the input makes the node fail once the count reaches it (unless `fail_at` is 0)."""

from __future__ import annotations

import os
from typing import Annotated, Literal, TypedDict

from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph


def _extend(state: list, writes: list) -> list:
    return [*state, *(x for w in writes for x in w)]


class DeltaState(TypedDict, total=False):
    n: int
    limit: int
    log: Annotated[list, DeltaChannel(_extend, snapshot_frequency=7)]


def step(state: DeltaState) -> dict:
    n = state.get("n", 0) + 1
    if n >= int(os.environ.get("DELTA_FAIL_AT", "0") or 0) > 0:
        raise RuntimeError(f"stopped at {n}")
    return {"n": n, "log": [n]}


def route(state: DeltaState) -> Literal["step", "__end__"]:
    return END if state.get("n", 0) >= state.get("limit", 10) else "step"


def build() -> StateGraph:
    graph = StateGraph(DeltaState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", route, ["step", END])
    return graph
