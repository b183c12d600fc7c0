"""Five tiny steps in a row, for bench/serve.py: the same graph on `agent serve` and on `langgraph dev`.

Each node appends its name to `steps` and stamps the wall clock into `t_<node>` when it finishes,
so a client streaming `updates` on the same machine can tell how long an update took to reach it.
It imports only LangGraph, so `langgraph dev`'s own environment can load it without this project.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

NODES = ("one", "two", "three", "four", "five")


class ServeInput(TypedDict, total=False):
    n: int
    """The client's number for the run, echoed in the final state to tell runs apart."""


class ServeState(ServeInput, total=False):
    steps: Annotated[list[str], operator.add]
    """The nodes that have run, in order: all five in a finished run."""

    t_one: float
    t_two: float
    t_three: float
    t_four: float
    t_five: float
    """When each node finished (time.time()), for the stream's latency."""


def step(name: str):
    def node(state: ServeState) -> dict:
        return {"steps": [name], f"t_{name}": time.time()}

    node.__name__ = name
    return node


def build() -> StateGraph:
    graph = StateGraph(ServeState, input_schema=ServeInput)
    previous = START
    for name in NODES:
        graph.add_node(name, step(name))
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph


graph = build()
