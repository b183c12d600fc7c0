"""A small multi-step graph for the fleet benchmark: a few model steps, one model call each.

Runs as a user graph (`agent submit bench/fleet_graph.py:build --thread T --input '{"topic": "x"}'`);
the model comes from the run context (`runtime.context.model`), so the run settings choose it,
e.g. `--model offline:latency=10` for a step that waits ten seconds like a real endpoint.
Each step is one node run, so one checkpoint: a thread of `steps` steps writes `steps` checkpoints
after its input (step -1) and start (step 0) checkpoints, the last of them numbered `steps`.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from state.context import RunContext

DEFAULT_STEPS = 5


class FleetInput(TypedDict, total=False):
    topic: str
    """What the steps think about; any short text."""

    steps: int
    """How many model steps the thread takes (default 5)."""


class FleetState(FleetInput, total=False):
    done: int
    """Model steps finished so far."""

    last: str
    """The latest step's reply: only the newest is kept, so a checkpoint stays small."""


async def think(state: FleetState, runtime: Runtime[RunContext]) -> dict:
    done = state.get("done", 0)
    prompt = f"Step {done + 1} on {state.get('topic', 'the topic')}; so far: {state.get('last', '(nothing)')}"
    message = await runtime.context.require_model().ainvoke(prompt)
    return {"done": done + 1, "last": str(message.content)}


def route(state: FleetState) -> Literal["think", "__end__"]:
    return "think" if state.get("done", 0) < state.get("steps", DEFAULT_STEPS) else END


def build() -> StateGraph:
    graph = StateGraph(FleetState, context_schema=RunContext, input_schema=FleetInput)
    graph.add_node("think", think)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", route, ["think", END])
    return graph
