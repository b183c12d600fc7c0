"""A thread's history read from the checkpoints' plain columns (runtime/store/columns.py): one
indexed query, nothing deserialised, no LangGraph import (so `agent history` starts fast).

Each row's `next` (the tasks that run from it) and `writers` (the tasks whose writes made it)
are written with the checkpoint by the saver. Where one is not known (a checkpoint written by a
saver that was not bound to its graph, or the newest checkpoint of a database converted from the
old layout), it is computed from the graph as LangGraph's own `get_state` does, for those rows
only.
"""

from __future__ import annotations

from typing import Any, Callable

from runtime.store.database import Database


def history_rows(
    db: Database, thread_id: str, limit: int | None, compute_next: Callable[[list[str]], dict[str, list[str]]]
) -> list[dict[str, Any]]:
    """Rows newest first, every branch: checkpoint_id, parent_id, step, source, writers, next, created_at.

    `compute_next(ids)` returns the next tasks of checkpoints whose column is empty.
    """
    columns = db.checkpoint_columns()
    rows = columns.history_columns(thread_id, limit)
    next_of = {row.checkpoint_id: row.next for row in rows}
    # A loop checkpoint was written by the tasks that ran from its parent.
    wanted_parents = {r.parent_id for r in rows if r.source == "loop" and r.writers is None and r.parent_id}
    next_of.update(columns.recorded_next(thread_id, wanted_parents - next_of.keys()))
    unknown = sorted(cid for cid in {r.checkpoint_id for r in rows} | wanted_parents if cid in next_of and next_of[cid] is None)
    known: dict[str, list[str]] = {cid: names for cid, names in next_of.items() if names is not None}
    known.update(compute_next(unknown) if unknown else {})
    result = []
    for row in rows:
        if row.source != "loop":
            wrote: list[str] = []
        elif row.writers is not None:
            wrote = row.writers
        else:
            wrote = known.get(row.parent_id, []) if row.parent_id else []
        result.append(
            {
                "checkpoint_id": row.checkpoint_id,
                "parent_id": row.parent_id,
                "step": row.step if row.step is not None else -1,
                "source": row.source or "",
                "writers": wrote,
                "next": known.get(row.checkpoint_id, []),
                "created_at": row.created_at or "",
            }
        )
    return result


def branch_rows(db: Database, thread_id: str) -> list[tuple[str, str | None, int]]:
    """(checkpoint_id, parent_id, step) of every root-namespace checkpoint, oldest first."""
    return db.checkpoint_columns().branch_rows(thread_id)
