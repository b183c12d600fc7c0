"""The plain reads of PostgresSaver's checkpoint table (SQLite's are runtime/store/columns.py):
what history lists, the branches of a thread, its latest checkpoint, read without decoding a
value and without importing LangGraph, so that `agent history` starts fast on either backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.store.columns import HistoryColumns


class CheckpointColumns:
    """The plain reads of the checkpoint table (runtime/store/columns.py has SQLite's), on `conn`.

    Step and source come from the metadata, the time from the checkpoint's `ts`, the tasks that
    run next from `agent_next` (None where the saver was not bound to the graph: history computes
    them); the nodes that wrote a checkpoint are its parent's next tasks, which history reads.
    """

    conn: Any

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self.conn
        with conn.cursor() as cur:  # tuples, whatever the connection's own row factory
            cur.execute(sql, params)
            return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cur.fetchall()]

    def history_columns(self, thread_id: str, limit: int | None = None) -> list[HistoryColumns]:
        sql = (
            "SELECT c.checkpoint_id, c.parent_checkpoint_id, (c.metadata->>'step')::bigint, c.metadata->>'source', n.next, "
            "c.checkpoint->>'ts' FROM checkpoints c LEFT JOIN agent_next n ON n.thread_id = c.thread_id AND n.checkpoint_id = c.checkpoint_id "
            "WHERE c.thread_id = %s AND c.checkpoint_ns = '' ORDER BY c.checkpoint_id DESC"
        )
        params: tuple[Any, ...] = (thread_id,)
        if limit:
            sql += " LIMIT %s"
            params += (limit,)
        return [
            HistoryColumns(cid, parent, step, source, None, next_, ts) for cid, parent, step, source, next_, ts in self._rows(sql, params)
        ]

    def recorded_next(self, thread_id: str, checkpoint_ids: list[str] | set[str]) -> dict[str, list[str] | None]:
        ids = sorted(checkpoint_ids)
        found = self._rows(
            "SELECT c.checkpoint_id, n.next FROM checkpoints c LEFT JOIN agent_next n ON n.thread_id = c.thread_id "
            "AND n.checkpoint_id = c.checkpoint_id WHERE c.thread_id = %s AND c.checkpoint_ns = '' AND c.checkpoint_id = ANY(%s)",
            (thread_id, ids),
        )
        return {cid: next_ for cid, next_ in found}

    def branch_rows(self, thread_id: str) -> list[tuple[str, str | None, int]]:
        return [
            (cid, parent, step if step is not None else -1)
            for cid, parent, step in self._rows(
                "SELECT checkpoint_id, parent_checkpoint_id, (metadata->>'step')::bigint FROM checkpoints "
                "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id",
                (thread_id,),
            )
        ]

    def thread_checkpoints(self, thread_id: str) -> list[tuple[str, str, str | None]]:
        return self._rows(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = %s "
            'ORDER BY checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"',
            (thread_id,),
        )

    def latest_checkpoint_id(self, thread_id: str) -> str | None:
        rows = self._rows(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        )
        return rows[0][0] if rows else None

    def has_checkpoints(self, thread_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM checkpoints WHERE thread_id = %s LIMIT 1", (thread_id,)))

    def checkpointed_threads(self) -> set[str]:
        return {t for (t,) in self._rows("SELECT DISTINCT thread_id FROM checkpoints")}


class ColumnReader(CheckpointColumns):
    """The column reads on a bare connection (`Database.checkpoint_columns()`)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
