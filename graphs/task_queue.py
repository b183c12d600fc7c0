"""A queue of items, each sent through a chat model with a prompt template."""

from __future__ import annotations

import os
from typing import Any

from langgraph.graph import START, StateGraph

from nodes.items import ItemsError, read_items
from nodes.queue import load_items, process_items, route_after_chunk
from state.context import RunContext
from state.task_queue import TaskQueueInput, TaskQueueState

DESCRIPTION = "Items through a chat model with a prompt template, many at a time; failed items are set aside, the rest go on."
VERSION = "2"
DEFAULTS = {"node_timeout": 120.0}
"""Run settings this graph prefers over the base defaults (runtime.policy.settings.BASE_DEFAULTS)."""


def build(max_attempts: int = 3, backoff: float = 0.5, node_timeout: float | None = None) -> StateGraph:
    """Retries and the per-call timeout reach the nodes through the run context (RunContext):
    each item is retried on its own inside `process_items`, so no RetryPolicy re-runs a chunk."""
    graph = StateGraph(TaskQueueState, context_schema=RunContext, input_schema=TaskQueueInput)
    graph.add_node("load_items", load_items)
    graph.add_node("process_items", process_items)
    graph.add_edge(START, "load_items")
    graph.add_conditional_edges("load_items", route_after_chunk, ["process_items", "__end__"])
    graph.add_conditional_edges("process_items", route_after_chunk, ["process_items", "__end__"])
    return graph


def validate_input(data: dict[str, Any]) -> dict[str, Any]:
    """Check the input before anything is written; make `items_file` absolute."""
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or "{item}" not in prompt:
        raise ValueError('the input needs a "prompt" that contains {item}, e.g. "Summarize: {item}"')
    data = dict(data)
    if isinstance(data.get("items_file"), str):
        data["items_file"] = os.path.abspath(os.path.expanduser(data["items_file"]))
    try:
        read_items(data.get("items"), data.get("items_file"), data.get("items_column"))
    except ItemsError as exc:
        raise ValueError(str(exc)) from None
    return data
