"""A thread's state as the database holds it, read without importing its graph.

For a thread whose graph may not be imported here (runtime/policy/trust.py), `agent state`, `diff`,
`approvals` and `history` read the checkpoint itself: the values of its state keys, the tasks
that run next as the saver recorded them, and the errors and interrupts of tasks that have not
finished, from the pending writes. What only the graph knows is missing: the value of a channel
that must be rebuilt from earlier checkpoints (a DeltaChannel) shows as stored, and a checkpoint
written without its next tasks (an old file) shows none.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.store.database import Database

ERROR, INTERRUPT, RESUME = "__error__", "__interrupt__", "__resume__"
"""LangGraph's channels for a task's failure, its interrupts and the answers to them."""


def stored_snapshot(db: Database, thread_id: str, checkpoint_id: str | None = None) -> Any:
    """A LangGraph StateSnapshot of the checkpoint (the latest without an id), or None."""
    from langgraph.types import StateSnapshot

    from runtime.threads.history import reading_checkpoints

    configurable = {"thread_id": thread_id, "checkpoint_ns": "", **({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}
    with reading_checkpoints(db, thread_id, checkpoint_id):
        saved = db.checkpointer().get_tuple({"configurable": configurable})
    if saved is None:
        return None
    channels = saved.checkpoint.get("channel_values", {})
    values = {key: value for key, value in channels.items() if not key.startswith("__") and ":" not in key}
    next_ = _stored_next(db, thread_id, saved.config["configurable"]["checkpoint_id"])
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


def _stored_next(db: Database, thread_id: str, checkpoint_id: str) -> list[str]:
    row = db.conn.execute(
        "SELECT next FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?", (thread_id, checkpoint_id)
    ).fetchone()
    return json.loads(row[0]) if row and row[0] else []


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
