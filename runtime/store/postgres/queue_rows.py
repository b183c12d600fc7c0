"""The run queue on PostgreSQL (`agent_queue`): at most one queued request per thread, its
request JSONB (as SQLite's, runtime/store/queue_rows.py: a worker takes one inside `immediate`,
deleting it and leasing the thread in the same transaction).

The fleet on PostgreSQL is to be dispatched by Procrastinate; this table is what `agent submit`
and `agent threads` see of a queued request meanwhile, on either backend.
"""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from runtime.store.seam import QueueRow

COLUMNS = "thread_id, kind, request, priority, queued_at, queued_by"
JOINED = ", ".join(f"q.{column}" for column in COLUMNS.split(", "))


def queue_row(row: tuple) -> QueueRow:
    """A row of COLUMNS; its request, JSONB, comes decoded from the driver."""
    return QueueRow(*row)


def put(conn: psycopg.Connection, row: QueueRow) -> bool:
    return (
        conn.execute(
            f"INSERT INTO agent_queue ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (thread_id) DO NOTHING",
            (row.thread_id, row.kind, Jsonb(row.request), row.priority, row.queued_at, row.queued_by),
        ).rowcount
        == 1
    )


def get(conn: psycopg.Connection, thread_id: str) -> QueueRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_queue WHERE thread_id = %s", (thread_id,)).fetchone()
    return None if row is None else queue_row(row)


def list_all(conn: psycopg.Connection) -> list[QueueRow]:
    return [queue_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_queue ORDER BY priority DESC, queued_at").fetchall()]


def ready(conn: psycopg.Connection, limit: int) -> list[QueueRow]:
    rows = conn.execute(
        f"SELECT {JOINED} FROM agent_queue q JOIN agent_threads t ON t.thread_id = q.thread_id WHERE t.status != 'running' "
        "ORDER BY q.priority DESC, q.queued_at LIMIT %s",
        (limit,),
    ).fetchall()
    return [queue_row(r) for r in rows]


def delete(conn: psycopg.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_queue WHERE thread_id = %s", (thread_id,)).rowcount
