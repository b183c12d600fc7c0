"""A user graph for the fleet tests (tests/test_fleet.py), run by workers as `path/fleet_graph.py:build`.

It counts to `n`, one node run per step. Every node run appends one line `THREAD STEP PID` to the
file `log` (outside the state, in one write, so lines of many processes never mix): a node run
twice, or a thread run by two processes, shows there. The node of step `hold_at` logs, then waits
until the file `gate` exists, so a test acts while it knows exactly which nodes are in flight.
`delay` slows every step (a thread that runs until it is paused or cancelled).
"""

from __future__ import annotations

import asyncio
import operator
import os
from typing import Annotated, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class CountState(TypedDict, total=False):
    n: int
    """How many steps to take."""

    log: str
    """The file each node run appends `THREAD STEP PID` to."""

    hold_at: int
    """The step whose node, once it has logged, waits until the file `gate` exists."""

    gate: str

    delay: float
    """Seconds each step waits before it logs."""

    count: int
    """Steps taken so far."""

    steps: Annotated[list[int], operator.add]
    """The step number of every node run applied to the state."""


async def step(state: CountState, config: RunnableConfig) -> dict:
    number = state.get("count", 0)
    if state.get("delay"):
        await asyncio.sleep(state["delay"])
    if state.get("log"):
        line = f"{config['configurable']['thread_id']} {number} {os.getpid()}\n".encode()
        fd = os.open(state["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    if state.get("gate") and number == state.get("hold_at"):
        while not os.path.exists(state["gate"]):
            await asyncio.sleep(0.01)
    return {"count": number + 1, "steps": [number]}


def route(state: CountState) -> str:
    return "step" if state.get("count", 0) < state["n"] else END


def build() -> StateGraph:
    graph = StateGraph(CountState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", route, ["step", END])
    return graph
