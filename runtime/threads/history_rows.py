"""A thread's history read from the checkpoint table's columns: one indexed query, nothing
deserialised, no LangGraph import (so `agent history` starts fast).

Each row's `next` (the tasks that run from it) and `writers` (the tasks whose writes made it)
are written with the checkpoint by the saver (runtime/store/saver.py). Where one is not known (a
checkpoint written by a saver that was not bound to its graph, or the newest checkpoint of a
database converted from the old layout), it is computed from the graph as LangGraph's own
`get_state` does, for those rows only.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from runtime.store.database import Database

_COLUMNS = "checkpoint_id, parent_checkpoint_id, step, source, writers, next, created_at"


def history_rows(
    db: Database, thread_id: str, limit: int | None, compute_next: Callable[[list[str]], dict[str, list[str]]]
) -> list[dict[str, Any]]:
    """Rows newest first, every branch: checkpoint_id, parent_id, step, source, writers, next, created_at.

    `compute_next(ids)` returns the next tasks of checkpoints whose column is empty.
    """
    sql = f"SELECT {_COLUMNS} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC"
    params: tuple[Any, ...] = (thread_id,)
    if limit:
        sql += " LIMIT ?"
        params += (limit,)
    rows = db.conn.execute(sql, params).fetchall()
    next_of = {cid: nxt for cid, _, _, _, _, nxt, _ in rows}
    # A loop checkpoint was written by the tasks that ran from its parent.
    wanted_parents = {parent for _, parent, _, source, writers, _, _ in rows if source == "loop" and writers is None and parent}
    for parent in wanted_parents - next_of.keys():
        found = db.conn.execute(
            "SELECT next FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?", (thread_id, parent)
        ).fetchone()
        if found is not None:
            next_of[parent] = found[0]
    unknown = sorted(cid for cid in {r[0] for r in rows} | wanted_parents if cid in next_of and next_of[cid] is None)
    computed = compute_next(unknown) if unknown else {}
    decoded: dict[str, list[str]] = {cid: json.loads(v) for cid, v in next_of.items() if v is not None}
    decoded.update(computed)
    result = []
    for cid, parent, step, source, writers, _, created in rows:
        if source != "loop":
            wrote: list[str] = []
        elif writers is not None:
            wrote = json.loads(writers)
        else:
            wrote = decoded.get(parent, []) if parent else []
        result.append(
            {
                "checkpoint_id": cid,
                "parent_id": parent,
                "step": step if step is not None else -1,
                "source": source or "",
                "writers": wrote,
                "next": decoded.get(cid, []),
                "created_at": created or "",
            }
        )
    return result


def branch_rows(db: Database, thread_id: str) -> list[tuple[str, str | None, int]]:
    """(checkpoint_id, parent_id, step) of every root-namespace checkpoint, oldest first."""
    return [
        (cid, parent, step if step is not None else -1)
        for cid, parent, step in db.conn.execute(
            "SELECT checkpoint_id, parent_checkpoint_id, step FROM checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id",
            (thread_id,),
        )
    ]
