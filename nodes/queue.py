"""Nodes of the `task_queue` graph.

`process_items` works through the queue a chunk at a time, with a sliding window: up to
`concurrency` items in flight, the next one started the moment one finishes, so a slow item
holds back only its own slot, never a batch. An item's result is written to the store under
its index as soon as it is final, and that write is what makes it durable: after a crash the
chunk runs again and skips every item that has a result, so only the items that were in
flight are redone. The state keeps the cursor and counters, never results, so a checkpoint is
as small at item 10,000 as at item 1, and there is one checkpoint per chunk, not per item.

Each item is retried inside the node (the same backoff as the project's RetryPolicy), so one
item's retries never re-run its neighbours; after its last attempt, or at once on an error only
it causes (a 400), it is given up into the results with its error: the dead-letter list. A
fatal error (a wrong key, an unknown model) stops new items, lets those in flight finish and
fails the run, which resumes where it stopped once the cause is fixed.

Driven by a worker of a fleet on PostgreSQL, a chunk's items are handed out to every worker
instead (`RunContext.spread`, runtime/fleet/spread.py), with the same results, counters and
events.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.store.base import GetOp, PutOp

from nodes.errors import classify, describe, retry_wait
from nodes.items import read_items, render_prompt
from nodes.model_call import call_model
from state.storage import item_key, items_namespace, require_store, results_namespace, thread_of
from nodes.usage import text_of, token_usage
from state.context import RunContext, WaitInterrupted
from state.task_queue import TaskQueueState

_SLICE = 500
"""Store reads and writes per statement."""

CHUNK_WINDOWS = 64
"""A chunk is this many windows of `concurrency` items (and at least MIN_CHUNK): checkpoints
come every few thousand items, and the window drains only once per chunk."""

MIN_CHUNK = 256


def chunk_size(concurrency: int) -> int:
    return max(MIN_CHUNK, CHUNK_WINDOWS * max(1, concurrency))


async def load_items(state: TaskQueueState, runtime: Runtime[RunContext], config: RunnableConfig) -> dict:
    """Move the items into the store (idempotent: keyed by index) and empty them from state."""
    items = read_items(state.get("items"), state.get("items_file"), state.get("items_column"))
    store = require_store(runtime.store)
    namespace = items_namespace(thread_of(config))
    for start in range(0, len(items), _SLICE):
        chunk = items[start : start + _SLICE]
        await store.abatch(
            [PutOp(namespace, item_key(start + i), {"item": item}, index=False) for i, item in enumerate(chunk)]
        )
    return {"items": None, "total": len(items), "cursor": 0, "round": 0}


def route_after_chunk(state: TaskQueueState) -> Literal["process_items", "__end__"]:
    """The next chunk, or the end once the cursor has passed the last item."""
    return "process_items" if state.get("cursor", 0) < state.get("total", 0) else END


def needs_work(result: dict[str, Any] | None, round_: int) -> bool:
    """An item without a result, or (in a retry round) one given up in an earlier round."""
    if result is None:
        return True
    return result.get("status") == "failed" and result.get("round", 0) < round_


async def process_items(state: TaskQueueState, runtime: Runtime[RunContext], config: RunnableConfig) -> dict:
    """The next chunk of items through the model, up to `concurrency` at a time.

    Returns the new cursor and what changed in the counters. A drain request (Ctrl-C, a
    deadline) stops new items from starting; those in flight finish and are saved, except those
    that were waiting (a backoff, a Retry-After): they stop at once without a result. The cursor
    stops at the first item not started or stopped.
    """
    ctx = runtime.context
    store = require_store(runtime.store)
    thread_id = thread_of(config)
    round_ = state.get("round", 0)
    start = state.get("cursor", 0)
    end = min(state.get("total", 0), start + chunk_size(ctx.concurrency))
    results = await read_indexes(store, results_namespace(thread_id), start, end)
    todo = [i for i in range(start, end) if needs_work(results.get(i), round_)]
    items: dict[int, Any] = {}

    def report(index: int, record: dict[str, Any], previous: dict[str, Any] | None) -> None:
        runtime.stream_writer(
            {
                "queue_item": index,
                "status": record["status"],
                "previous": previous["status"] if previous else None,
                "error": record.get("error"),
                "input_tokens": record.get("input_tokens", 0),
                "output_tokens": record.get("output_tokens", 0),
            }
        )

    async def one(index: int) -> dict[str, Any]:
        stored, previous = items.get(index), results.get(index)
        if stored is None:
            raise RuntimeError(f"item {index} is missing from the store")
        record = await process_one(ctx, state["prompt"], index, stored["item"], previous, round_)
        await store.aput(results_namespace(thread_id), item_key(index), record, index=False)
        report(index, record, previous)
        return record

    def draining() -> bool:
        return runtime.drain_requested

    if ctx.spread is not None and todo:  # a worker of a fleet hands the items out to every worker
        done, stopped, started = await ctx.spread.process(round_, state["prompt"], todo, report, results, draining)
    else:
        items = await read_indexes(store, items_namespace(thread_id), todo)
        done, stopped, started = await run_window(todo, one, ctx.concurrency, draining)
    results.update(done)
    cursor = min(stopped + todo[started : started + 1], default=end)
    update: dict[str, Any] = {"cursor": cursor, "done": 0, "failed": 0, "input_tokens": 0, "output_tokens": 0}
    for index in range(start, cursor):
        for key, change in _counted(results.get(index), round_).items():
            update[key] += change
    return update


async def run_window(
    todo: list[int], work: Callable[[int], Awaitable[Any]], concurrency: int, draining: Callable[[], bool]
) -> tuple[dict[int, Any], list[int], int]:
    """`work(index)` for the indexes of `todo` in order, up to `concurrency` at a time, the next
    started the moment one finishes, until `draining()` says to start no more.

    Returns what each finished item gave (by index), the items stopped while they were waiting
    (`WaitInterrupted`), and how many items were started. The first other error stops new items
    from starting and is raised once those in flight have finished.
    """
    started = 0
    running: dict[asyncio.Task, int] = {}
    fatal: BaseException | None = None
    stopped: list[int] = []
    done: dict[int, Any] = {}

    def may_start() -> bool:
        if started >= len(todo) or fatal is not None or draining():
            return False
        return len(running) < max(1, concurrency)

    try:
        while started < len(todo) or running:
            while may_start():
                running[asyncio.ensure_future(work(todo[started]))] = todo[started]
                started += 1
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                index = running.pop(task)
                if isinstance(task.exception(), WaitInterrupted):
                    stopped.append(index)  # no result: it runs again on resume
                elif task.exception() is not None:
                    fatal = fatal or task.exception()
                else:
                    done[index] = task.result()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    if fatal is not None:
        raise fatal
    return done, stopped, started


def _counted(result: dict[str, Any] | None, round_: int) -> dict[str, int]:
    """What a result of this round adds to the counters; results of earlier rounds were counted then.

    In a retry round, only items that had failed are sent again: one that is now done moves
    from `failed` to `done`, one that failed again leaves the counts as they were.
    """
    if result is None or result.get("round", 0) != round_:
        return {}
    tokens = {"input_tokens": result.get("input_tokens", 0), "output_tokens": result.get("output_tokens", 0)}
    if round_ == 0:
        return {result["status"]: 1, **tokens}
    if result["status"] == "done":
        return {"done": 1, "failed": -1, **tokens}
    return tokens


async def process_one(
    ctx: RunContext, template: str, index: int, item: Any, previous: dict[str, Any] | None, round_: int
) -> dict[str, Any]:
    """One item to its final result: done, or failed with its error after its last attempt.

    Retryable failures (429, 5xx, timeouts, dropped connections) wait and try again, up to
    `max_attempts`; an error only this item causes (400) gives it up at once; a fatal one is
    raised. `attempts` counts every attempt the item has had, over all rounds.

    The record is stored compact: its index is its key, the item is in the items namespace,
    and `error` and `round` are left out when empty (`runtime.threads.history.iter_results` gives
    every field back).
    """
    prompt = render_prompt(template, item)
    chosen = ctx.choose_model(routine=True)  # every item is routine: the cheap model when there is one
    earlier = previous.get("attempts", 0) if previous else 0
    attempt = 0
    while True:
        attempt += 1
        try:
            message = await call_model(ctx, prompt, attempt=attempt, model=chosen)
        except WaitInterrupted:
            raise
        except Exception as exc:
            kind = classify(exc)
            if kind == "fatal":
                raise
            if kind == "retryable" and attempt < ctx.max_attempts:
                await ctx.clock.wait(retry_wait(ctx.backoff, attempt))
                continue
            record = {"status": "failed", "error": describe(exc), "attempts": earlier + attempt}
        else:
            record = {"status": "done", "output": text_of(message), "attempts": earlier + attempt, **token_usage(message)}
            if ctx.cheap_model is not None:
                record["model"] = chosen[0]  # which model answered, when there is a choice
        if round_:
            record["round"] = round_
        return record


async def read_indexes(store: Any, namespace: tuple[str, ...], start: int | list[int], end: int | None = None) -> dict[int, Any]:
    """Values under `namespace` for a range of indexes (or a list of them), by index."""
    indexes = list(range(start, end)) if isinstance(start, int) else start
    found: dict[int, Any] = {}
    for at in range(0, len(indexes), _SLICE):
        part = indexes[at : at + _SLICE]
        for index, got in zip(part, await store.abatch([GetOp(namespace, item_key(i)) for i in part])):
            if got is not None:
                found[index] = got.value
    return found
