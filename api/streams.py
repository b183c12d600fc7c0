"""A run's events as Server-Sent Events, read from the database so that a reconnect loses none.

Each checkpoint the run writes is one group of events, in the modes asked for: `values` (the
state at it), `updates` (what each task that made it wrote), `debug` (the checkpoint itself);
the group's last event carries the checkpoint's id, and a reconnect with `Last-Event-ID` goes on
after that checkpoint. A run's other events are live only and carry no id: `custom` (what the
graph writes to its stream) and our `progress` (a queue's figures), when a worker in this
process drives the run. `messages-tuple` is accepted and sends nothing: the graphs call their
models whole, with no token stream. The stream ends with `end` (or `error` for a run that
failed) once the run has ended and every checkpoint it wrote was sent.

Workers in this process wake a stream the moment a run of its thread writes a checkpoint
(`Hub`); runs driven by workers elsewhere are found by reading again every `POLL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator

from api import book
from runtime.runs.outcome import RunEvent
from runtime.store.database import Database
from runtime.threads.history import get_state
from runtime.threads.stored_state import reading_checkpoints

POLL_SECONDS = 0.5
"""How long a stream waits for a wake-up before it reads the database again."""
CATCH_UP = (0.002, 0.005, 0.01, 0.02, 0.05)
"""After a wake-up that found no new checkpoint yet (its row is being written), read again after these."""
MODES = {"values", "updates", "debug", "custom", "messages-tuple", "messages", "events", "progress", "tasks", "checkpoints"}


class Hub:
    """Run events of the workers in this process, passed to the streams that follow their threads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._subs: dict[str, dict[asyncio.Queue, frozenset[str] | None]] = {}
        self._lock = threading.Lock()
        self.ended: asyncio.Queue[str] = asyncio.Queue()
        """Threads whose run just ended here (the run book settles them at once)."""

    def subscribe(self, thread_id: str, kinds: frozenset[str] | None = None) -> asyncio.Queue:
        """A queue of the thread's run events (only those of `kinds`, when given: a waiter wants
        only `ended`, and each event passed across threads costs a wake-up of the loop)."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subs.setdefault(thread_id, {})[queue] = kinds
        return queue

    def unsubscribe(self, thread_id: str, queue: asyncio.Queue) -> None:
        with self._lock:
            subs = self._subs.get(thread_id)
            if subs is not None:
                subs.pop(queue, None)
                if not subs:
                    del self._subs[thread_id]

    def publish(self, thread_id: str, event: RunEvent) -> None:
        """From any thread: an event of a run of `thread_id`."""
        with self._lock:
            subs = [queue for queue, kinds in self._subs.get(thread_id, {}).items() if kinds is None or event.kind in kinds]
        for queue in subs:
            self.loop.call_soon_threadsafe(queue.put_nowait, event)

    def run_ended(self, thread_id: str) -> None:
        self.loop.call_soon_threadsafe(self.ended.put_nowait, thread_id)


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}", f"data: {json.dumps(data, ensure_ascii=False, default=_plain)}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    return ("\n".join(lines) + "\n\n").encode()


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


def checkpoints_after(db: Database, thread_id: str, after: str | None) -> list[Any]:
    """The thread's checkpoints newer than `after`, oldest first (their plain columns)."""
    limit = 32
    while True:
        rows = db.checkpoint_columns().history_columns(thread_id, limit)
        newer = [row for row in rows if after is None or row.checkpoint_id > after]
        if len(newer) < len(rows) or len(rows) < limit:
            return newer[::-1]
        limit *= 4


def group_of(db: Database, thread_id: str, row: Any, modes: set[str], keys: set[str] | None = None) -> list[tuple[str, Any]]:
    """The events of one checkpoint, in the modes asked for."""
    events: list[tuple[str, Any]] = []
    if "updates" in modes and row.source == "loop" and row.parent_id:
        events += [("updates", update) for update in updates_of(db, thread_id, row.parent_id)]
    if "values" in modes and row.source != "input":  # the input is not yet the state: as LangGraph, values start after it
        events.append(("values", values_at(db, thread_id, row.checkpoint_id, keys)))
    if "debug" in modes or "checkpoints" in modes:
        payload = {"checkpoint_id": row.checkpoint_id, "parent_checkpoint_id": row.parent_id, "step": row.step, "source": row.source,
                   "writers": row.writers, "next": row.next, "created_at": row.created_at}  # fmt: skip
        if "debug" in modes:
            events.append(("debug", {"type": "checkpoint", "step": row.step, "timestamp": row.created_at, "payload": payload}))
        if "checkpoints" in modes:
            events.append(("checkpoints", payload))
    return events


def updates_of(db: Database, thread_id: str, parent_id: str) -> list[dict[str, Any]]:
    """What each task of the step after `parent_id` wrote, `{node: {key: value}}` per task, in task order."""
    saver = db.checkpointer()
    stored = saver.stored_writes(thread_id, "", [parent_id]).get(parent_id, [])
    tasks: dict[str, tuple[str, dict[str, Any]]] = {}
    for task_id, channel, type_, value, path, _idx in sorted(stored, key=lambda r: (r[4], r[0], r[5])):
        if channel.startswith(("__", "branch:")) or ":" in channel:
            continue
        with reading_checkpoints(db, thread_id, parent_id):
            decoded = saver.serde.loads_typed((type_, value))
        name, update = tasks.setdefault(task_id, (_task_name(path), {}))
        update[channel] = decoded
    return [{name: update} for name, update in tasks.values() if name != "__start__"]  # the input is no node's update


def _task_name(path: str) -> str:
    """A task's node from its stored path: `~__pregel_pull, plan` -> `plan`, a Send's `~__pregel_push, 0, ...` -> its node."""
    parts = [part.strip() for part in str(path).split(",")]
    named = [part for part in parts[1:] if part and not part.lstrip("~").startswith("__") and not part.isdigit()]
    return named[0] if named else (parts[-1] or "task")


async def run_stream(server: Any, run: dict[str, Any], modes: set[str], last_event_id: str | None, queue: asyncio.Queue | None = None) -> AsyncIterator[bytes]:
    """The SSE body of one run, from its start (or from after `last_event_id`) to its end.
    `queue`: the hub's, subscribed before the run was queued (so that no live event is missed)."""
    thread_id, hub, db = run["thread_id"], server.hub, server.db
    if queue is None:
        queue = hub.subscribe(thread_id)
    keys = await server.call(_state_keys, db, thread_id) if "values" in modes else None
    cursor = last_event_id or run.get("after")
    woken: list[str | None] = [None]
    attempt = 0
    try:
        if last_event_id is None:
            yield sse("metadata", {"run_id": run["run_id"], "attempt": 1})
        while True:
            if woken[0] != "checkpoint":  # a checkpoint is only read; an end, or a quiet poll, is settled first
                await server.settle(thread_id)
            current, groups = await server.call(_read, db, thread_id, run["run_id"], cursor, modes, keys)
            for checkpoint_id, events in groups:
                for index, (event, data) in enumerate(events):
                    yield sse(event, data, checkpoint_id if index == len(events) - 1 else None)
                cursor = checkpoint_id
            if current["status"] in book.FINAL:
                while queue is not None and not queue.empty():  # live events of the run's last moments
                    chunk = _live_event(queue.get_nowait(), modes)
                    if chunk is not None:
                        yield chunk
                if current["status"] == "error":
                    yield sse("error", {"error": "RunError", "message": current.get("error") or "the run failed"})
                yield sse("end", None)
                return
            if woken[0] and not groups and attempt < len(CATCH_UP):
                await asyncio.sleep(CATCH_UP[attempt])  # the checkpoint's row is being written
                attempt += 1
                continue
            woken[0], attempt = None, 0
            async for chunk in _live(queue, modes, woken):
                yield chunk
    finally:
        hub.unsubscribe(thread_id, queue)


def _read(
    db: Database, thread_id: str, run_id: str, cursor: str | None, modes: set[str], keys: set[str] | None
) -> tuple[dict[str, Any], list[tuple[str, list]]]:
    current = book.get_run(db, thread_id, run_id)
    rows = checkpoints_after(db, thread_id, cursor)
    last = current.get("checkpoint_id") if current["status"] in book.FINAL else None
    if last is not None:  # a run that has ended: its own checkpoints, none of a later run's
        rows = [row for row in rows if row.checkpoint_id <= last]
    return current, [(row.checkpoint_id, group_of(db, thread_id, row, modes, keys)) for row in rows]


def _state_keys(db: Database, thread_id: str) -> set[str] | None:
    """The keys of the thread's state (its graph's channels that are no internal ones); None
    for a graph this server may not import (its values are then read as `get_state` reads them)."""
    from runtime.threads.edit import state_keys
    from runtime.threads.history import readable_spec

    _, spec = readable_spec(db, thread_id, attended=False)
    return set(state_keys(spec)) if spec is not None else None


def values_at(db: Database, thread_id: str, checkpoint_id: str, keys: set[str] | None) -> dict[str, Any]:
    """The state at a checkpoint: its stored channel values of the state's keys (one read, no
    graph compiled), as LangGraph's `values` mode shows them."""
    if keys is None:
        return get_state(db, thread_id, checkpoint_id, attended=False).values
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
    with reading_checkpoints(db, thread_id, checkpoint_id):
        saved = db.checkpointer().get_tuple(config)
    channels = saved.checkpoint.get("channel_values", {}) if saved is not None else {}
    return {key: value for key, value in channels.items() if key in keys}


async def _live(queue: asyncio.Queue | None, modes: set[str], woken: list[str | None]) -> AsyncIterator[bytes]:
    """Live events until a checkpoint (or the run's end) calls for a read of the database
    (`woken[0]` says which), or `POLL_SECONDS` pass."""
    if queue is None:
        await asyncio.sleep(POLL_SECONDS)
        return
    try:
        event = await asyncio.wait_for(queue.get(), POLL_SECONDS)
    except TimeoutError:
        return
    while True:
        if event.kind in ("checkpoint", "ended"):
            woken[0] = event.kind
            return
        chunk = _live_event(event, modes)
        if chunk is not None:
            yield chunk
        if queue.empty():
            try:
                event = await asyncio.wait_for(queue.get(), POLL_SECONDS)
            except TimeoutError:
                return
        else:
            event = queue.get_nowait()


def _live_event(event: RunEvent, modes: set[str]) -> bytes | None:
    if event.kind == "custom" and "custom" in modes:
        return sse("custom", event.data)
    if event.kind == "progress" and "progress" in modes and event.progress is not None:
        return sse("progress", event.progress.as_dict())
    return None
