"""A trivial counting loop for the checkpointer benchmark: one node, one step per count.

Runs as a user graph: `agent run bench/loop_graph.py:build --thread T --input '{"limit": 1000}'`.
Two switches for the resume benchmark, read from the environment:
- `BENCH_FAIL_AT=N`: the node fails when the count reaches N (the thread can then be resumed);
- `BENCH_MARK=path`: the first time the node runs in this process, it writes the time there.
"""

from __future__ import annotations

import os
import time
from typing import Literal, TypedDict

from langgraph.graph import END, START, StateGraph

_marked = False


class LoopState(TypedDict, total=False):
    n: int
    """The count so far."""

    limit: int
    """Stop when the count reaches this (default 1000)."""


def step(state: LoopState) -> dict:
    global _marked
    mark = os.environ.get("BENCH_MARK")
    if mark and not _marked:
        _marked = True
        with open(mark, "w") as out:
            out.write(repr(time.time()))
    n = state.get("n", 0) + 1
    fail_at = os.environ.get("BENCH_FAIL_AT")
    if fail_at and n >= int(fail_at):
        raise RuntimeError(f"stopped at {n} for the benchmark")
    return {"n": n}


def route(state: LoopState) -> Literal["step", "__end__"]:
    return END if state.get("n", 0) >= state.get("limit", 1000) else "step"


def build() -> StateGraph:
    graph = StateGraph(LoopState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", route, ["step", END])
    return graph
