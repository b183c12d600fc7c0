"""Nodes of the `task_queue` graph."""

from __future__ import annotations

from typing import Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.store.base import PutOp
from langgraph.types import Send

from nodes.errors import classify, describe
from nodes.items import read_items, render_prompt
from nodes.model_call import call_model
from nodes.storage import item_key, items_namespace, require_store, results_namespace, thread_of
from nodes.usage import text_of, token_usage
from state.context import RunContext
from state.task_queue import ItemTask, TaskQueueState

_PUT_CHUNK = 500


async def load_items(state: TaskQueueState, runtime: Runtime[RunContext], config: RunnableConfig) -> dict:
    """Move the items into the store (idempotent: keyed by index) and empty them from state."""
    items = read_items(state.get("items"), state.get("items_file"), state.get("items_column"))
    store = require_store(runtime.store)
    namespace = items_namespace(thread_of(config))
    for start in range(0, len(items), _PUT_CHUNK):
        chunk = items[start : start + _PUT_CHUNK]
        await store.abatch(
            [PutOp(namespace, item_key(start + i), {"item": item}, index=False) for i, item in enumerate(chunk)]
        )
    return {"items": None, "total": len(items), "cursor": 0, "batch_start": 0}


def dispatch(state: TaskQueueState, runtime: Runtime[RunContext]) -> dict:
    """Choose the next batch: up to `concurrency` items from the cursor."""
    cursor = state.get("cursor", 0)
    end = min(cursor + max(1, runtime.context.concurrency), state.get("total", 0))
    return {"batch_start": cursor, "cursor": end}


def route_batch(state: TaskQueueState) -> list[Send] | Literal["__end__"]:
    """One `process_item` task per item of the batch, or the end when none is left."""
    start, end = state.get("batch_start", 0), state.get("cursor", 0)
    if start >= end:
        return END
    return [Send("process_item", ItemTask(index=i, prompt=state["prompt"])) for i in range(start, end)]


async def process_item(task: ItemTask, runtime: Runtime[RunContext], config: RunnableConfig) -> dict:
    """Send one item through the model and record its result under its index.

    A retryable failure (a timeout included: it is enforced per call rather than by LangGraph's
    node timeout, so that the last one can be given up instead of failing the run) is raised
    while attempts remain, so the node's `RetryPolicy` waits and tries again; after the last
    attempt (or on an error that only this item causes) the item is given up into the results
    with its error. Fatal errors (a wrong key, an unknown model)
    fail the run, which can be resumed once they are fixed.
    """
    ctx = runtime.context
    store = require_store(runtime.store)
    thread_id = thread_of(config)
    key = item_key(task["index"])
    stored = await store.aget(items_namespace(thread_id), key)
    if stored is None:
        raise RuntimeError(f"item {task['index']} is missing from the store")
    item = stored.value["item"]
    attempt = runtime.execution_info.node_attempt if runtime.execution_info else 1
    record = {"index": task["index"], "item": item, "attempts": attempt}
    try:
        message = await call_model(ctx, render_prompt(task["prompt"], item), attempt=attempt)
    except Exception as exc:
        kind = classify(exc)
        if kind == "fatal" or (kind == "retryable" and attempt < ctx.max_attempts):
            raise
        record.update(status="failed", error=describe(exc), output=None)
        await store.aput(results_namespace(thread_id), key, record, index=False)
        return {"failed": 1}
    usage = token_usage(message)
    record.update(status="done", output=text_of(message), error=None, **usage)
    await store.aput(results_namespace(thread_id), key, record, index=False)
    return {"done": 1, **usage}
