"""A thread's state as the database holds it, read without importing its graph.

For a thread whose graph may not be imported here (runtime/policy/trust.py), `agent state`, `diff`,
`approvals` and `history` read the checkpoint itself: the values of its state keys, the tasks
that run next as the saver recorded them, and the errors and interrupts of tasks that have not
finished, from the pending writes. What only the graph knows is missing: the value of a channel
that must be rebuilt from earlier checkpoints (a DeltaChannel) shows as stored, and a checkpoint
written without its next tasks (an old file) shows none.

`reading_checkpoints` guards every reader of stored checkpoints, here and in
runtime/threads/history.py: a checkpoint that does not decode is bad input, not a crash.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Iterator

from runtime.errors import AgentError, CheckpointUnreadable, Command, Message
from runtime.store.database import Database

ERROR, INTERRUPT, RESUME = "__error__", "__interrupt__", "__resume__"
"""LangGraph's channels for a task's failure, its interrupts and the answers to them."""


@contextmanager
def reading_checkpoints(db: Database, thread_id: str, checkpoint_id: str | None = None) -> Iterator[None]:
    """Around code that reads stored checkpoints back: a failure to decode one (a format the
    serializer refuses, data that does not decode or does not fit) is CheckpointUnreadable, bad
    input (exit 2), not a crash. The database's own errors and the domain's pass through."""
    try:
        yield
    except (AgentError, sqlite3.Error):
        raise
    except Exception as exc:
        raise _unreadable(db, thread_id, checkpoint_id, exc) from exc


def _unreadable(db: Database, thread_id: str, checkpoint_id: str | None, exc: Exception) -> CheckpointUnreadable:
    if checkpoint_id is None:
        checkpoint_id = db.checkpoint_columns().latest_checkpoint_id(thread_id) or "?"
    why = "it is stored in a format agent does not read" if isinstance(exc, NotImplementedError) else "its data does not decode"
    return CheckpointUnreadable(
        f"checkpoint {checkpoint_id} of thread {thread_id!r} cannot be read: {why} (changed outside agent, or damaged)",
        Message(
            "restore the database from a backup, or go on from an older checkpoint: {history}, then {resume}",
            history=Command("history", thread_id=thread_id), resume=Command("resume", thread_id=thread_id, checkpoint="ID"),
        ),
    )


def stored_snapshot(db: Database, thread_id: str, checkpoint_id: str | None = None) -> Any:
    """A LangGraph StateSnapshot of the checkpoint (the latest without an id), or None."""
    from langgraph.types import StateSnapshot

    configurable = {"thread_id": thread_id, "checkpoint_ns": "", **({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}
    with reading_checkpoints(db, thread_id, checkpoint_id):
        saved = db.checkpointer().get_tuple({"configurable": configurable})
    if saved is None:
        return None
    channels = saved.checkpoint.get("channel_values", {})
    values = {key: value for key, value in channels.items() if not key.startswith("__") and ":" not in key}
    stored_id = saved.config["configurable"]["checkpoint_id"]
    next_ = db.checkpoint_columns().recorded_next(thread_id, [stored_id]).get(stored_id) or []
    tasks = _waiting_tasks(saved.pending_writes or [], next_)
    return StateSnapshot(
        values=values,
        next=tuple(next_),
        config=saved.config,
        metadata=saved.metadata,
        created_at=saved.checkpoint.get("ts"),
        parent_config=saved.parent_config,
        tasks=tuple(tasks),
        interrupts=tuple(i for task in tasks for i in task.interrupts),
    )


def _waiting_tasks(writes: list[tuple[str, str, Any]], next_: list[str]) -> list[Any]:
    """Tasks that failed or wait on an interrupt: a task that wrote anything else has finished."""
    from langgraph.types import PregelTask

    by_task: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in writes:
        by_task.setdefault(task_id, []).append((channel, value))
    name = next_[0] if len(set(next_)) == 1 else "?"  # writes do not name their task
    tasks = []
    for task_id, written in by_task.items():
        if any(channel not in (ERROR, INTERRUPT, RESUME) for channel, _ in written):
            continue
        error = next((value for channel, value in written if channel == ERROR), None)
        interrupts = tuple(
            item for channel, value in written if channel == INTERRUPT for item in (value if isinstance(value, (list, tuple)) else [value])
        )
        if error is not None or interrupts:
            tasks.append(PregelTask(task_id, name, (), error, interrupts))
    return tasks
