"""The run queue in SQLite (`agent_queue`): at most one queued request per thread.

A worker takes a request inside `immediate`: it reads the ready ones, deletes the one it takes
and leases the thread (runtime/store/registry.py, `claim`) in the same transaction, so of two
workers one gets it (runtime/store/seam.py, `RunQueue`).
"""

from __future__ import annotations

import json
import sqlite3

from runtime.store.seam import QueueRow

COLUMNS = "thread_id, kind, request, priority, queued_at, queued_by"


def _row(row: tuple) -> QueueRow:
    values = list(row)
    values[2] = json.loads(values[2] or "{}")
    return QueueRow(*values)


def put(conn: sqlite3.Connection, row: QueueRow) -> bool:
    try:
        conn.execute(
            f"INSERT INTO agent_queue ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (row.thread_id, row.kind, json.dumps(row.request), row.priority, row.queued_at, row.queued_by),
        )
    except sqlite3.IntegrityError:
        return False
    return True


def get(conn: sqlite3.Connection, thread_id: str) -> QueueRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_queue WHERE thread_id = ?", (thread_id,)).fetchone()
    return None if row is None else _row(row)


def list_all(conn: sqlite3.Connection) -> list[QueueRow]:
    return [_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_queue ORDER BY priority DESC, queued_at")]


def ready(conn: sqlite3.Connection, limit: int) -> list[QueueRow]:
    rows = conn.execute(
        f"SELECT {', '.join('q.' + c.strip() for c in COLUMNS.split(','))} FROM agent_queue q "
        "JOIN agent_threads t ON t.thread_id = q.thread_id WHERE t.status != 'running' "
        "ORDER BY q.priority DESC, q.queued_at LIMIT ?",
        (limit,),
    ).fetchall()
    return [_row(r) for r in rows]


def delete(conn: sqlite3.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_queue WHERE thread_id = ?", (thread_id,)).rowcount
