"""The checkpoint table's plain columns, read without LangGraph: what a history listing, the
branches of a thread and the tasks that run next need (one indexed query, nothing deserialised,
so `agent history` starts fast).

`CheckpointColumns` is part of every AgentSaver; `ColumnReader` gives the same reads on a bare
connection (`Database.checkpoint_columns()`), for commands that never import LangGraph.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, NamedTuple


class HistoryColumns(NamedTuple):
    """A checkpoint of the root namespace, as history lists it."""

    checkpoint_id: str
    parent_id: str | None
    step: int | None
    source: str | None
    writers: list[str] | None
    """The nodes whose writes made it; None where not recorded."""
    next: list[str] | None
    """The tasks that run from it; None where not recorded (a saver not bound to its graph, a
    converted file)."""
    created_at: str | None


class CheckpointColumns:
    """Reads of the columns of a thread's root-namespace checkpoints, on `conn`."""

    conn: sqlite3.Connection

    def history_columns(self, thread_id: str, limit: int | None = None) -> list[HistoryColumns]:
        """The thread's checkpoints, newest first, every branch (the newest `limit`, if given)."""
        sql = (
            "SELECT checkpoint_id, parent_checkpoint_id, step, source, writers, next, created_at FROM checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC"
        )
        params: tuple[Any, ...] = (thread_id,)
        if limit:
            sql += " LIMIT ?"
            params += (limit,)
        return [
            HistoryColumns(cid, parent, step, source, _names(writers), _names(next_), created)
            for cid, parent, step, source, writers, next_, created in self.conn.execute(sql, params)
        ]

    def recorded_next(self, thread_id: str, checkpoint_ids: list[str] | set[str]) -> dict[str, list[str] | None]:
        """The tasks that run from each of these checkpoints that is stored, as recorded (None
        where they were not)."""
        found: dict[str, list[str] | None] = {}
        for cid in sorted(checkpoint_ids):
            row = self.conn.execute(
                "SELECT next FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?", (thread_id, cid)
            ).fetchone()
            if row is not None:
                found[cid] = _names(row[0])
        return found

    def branch_rows(self, thread_id: str) -> list[tuple[str, str | None, int]]:
        """(checkpoint_id, parent_id, step) of every root-namespace checkpoint, oldest first (step
        -1 where none was recorded)."""
        return [
            (cid, parent, step if step is not None else -1)
            for cid, parent, step in self.conn.execute(
                "SELECT checkpoint_id, parent_checkpoint_id, step FROM checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id",
                (thread_id,),
            )
        ]

    def thread_checkpoints(self, thread_id: str) -> list[tuple[str, str, str | None]]:
        """(namespace, checkpoint_id, parent_id) of every checkpoint of the thread, in every
        namespace, by namespace and then oldest first."""
        return self.conn.execute(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = ? "
            "ORDER BY checkpoint_ns, checkpoint_id",
            (thread_id,),
        ).fetchall()

    def latest_checkpoint_id(self, thread_id: str) -> str | None:
        """The id of the thread's latest checkpoint; None when it has none (or the file no
        checkpoint table yet)."""
        if not self._has_checkpoint_table():
            return None
        row = self.conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        ).fetchone()
        return row[0] if row else None

    def has_checkpoints(self, thread_id: str) -> bool:
        """Whether any checkpoint of the thread (in any namespace) is stored."""
        return self.conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)).fetchone() is not None

    def checkpointed_threads(self) -> set[str]:
        """The ids of the threads that have checkpoints stored."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}

    def _has_checkpoint_table(self) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'").fetchone() is not None


class ColumnReader(CheckpointColumns):
    """The column reads on a bare connection (no saver, no LangGraph)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _names(text: str | None) -> list[str] | None:
    return json.loads(text) if text is not None else None
