"""The thread registry on PostgreSQL (`agent_threads`): one row per thread, with its lease.

As SQLite's (runtime/store/registry.py): facts only, decided on in runtime/threads/registry.py.
An insert of an id that exists does nothing (ON CONFLICT DO NOTHING) and says so, leaving the
caller's transaction usable; the conditional updates say whether they matched.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from runtime.store.seam import Owner, ThreadRow

COLUMNS = (
    "thread_id, graph, graph_version, status, settings, created_at, updated_at, steps, error, "
    "owner_pid, owner_host, owner_since, heartbeat_at, lease, resumes"
)


def thread_row(row: tuple) -> ThreadRow:
    """A row of COLUMNS; its settings, JSONB, come decoded from the driver."""
    return ThreadRow(*row)


def get(conn: psycopg.Connection, thread_id: str) -> ThreadRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_threads WHERE thread_id = %s", (thread_id,)).fetchone()
    return None if row is None else thread_row(row)


def list_all(conn: psycopg.Connection) -> list[ThreadRow]:
    return [thread_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_threads ORDER BY updated_at DESC").fetchall()]


def running(conn: psycopg.Connection) -> list[ThreadRow]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM agent_threads WHERE status = 'running' ORDER BY thread_id").fetchall()
    return [thread_row(r) for r in rows]


def insert(conn: psycopg.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> bool:
    return (
        conn.execute(
            f"INSERT INTO agent_threads ({COLUMNS}) VALUES (%s, %s, %s, 'running', %s, %s, %s, 0, NULL, %s, %s, %s, %s, 1, 0) "
            "ON CONFLICT (thread_id) DO NOTHING",
            (thread_id, graph, graph_version, Jsonb(settings), now, now, owner.pid, owner.host, now, now),
        ).rowcount
        == 1
    )


def reuse(conn: psycopg.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET graph = %s, graph_version = %s, status = 'running', settings = %s, created_at = %s, "
        "updated_at = %s, steps = 0, error = NULL, owner_pid = %s, owner_host = %s, owner_since = %s, heartbeat_at = %s, "
        "lease = lease + 1, resumes = 0 WHERE thread_id = %s",
        (graph, graph_version, Jsonb(settings), now, now, owner.pid, owner.host, now, now, thread_id),
    )


def take_lease(conn: psycopg.Connection, thread_id: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET status = 'running', settings = %s, error = NULL, updated_at = %s, "
        "owner_pid = %s, owner_host = %s, owner_since = %s, heartbeat_at = %s, lease = lease + 1 WHERE thread_id = %s",
        (Jsonb(settings), now, owner.pid, owner.host, now, now, thread_id),
    )


def heartbeat(conn: psycopg.Connection, thread_id: str, pid: int, now: float, steps: int | None) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET heartbeat_at = %s, updated_at = %s, steps = COALESCE(%s::bigint, steps) "
            "WHERE thread_id = %s AND owner_pid = %s",
            (now, now, steps, thread_id, pid),
        ).rowcount
    )


def release(conn: psycopg.Connection, thread_id: str, pid: int, status: str, error: str | None, steps: int | None, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET status = %s, error = %s, steps = COALESCE(%s::bigint, steps), updated_at = %s, "
            "owner_pid = NULL, owner_host = NULL, owner_since = NULL, heartbeat_at = NULL, resumes = 0 "
            "WHERE thread_id = %s AND owner_pid = %s",
            (status, error, steps, now, thread_id, pid),
        ).rowcount
    )


def end_unowned(conn: psycopg.Connection, thread_id: str, status: str, error: str | None, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET status = %s, error = %s, updated_at = %s, owner_pid = NULL, owner_host = NULL, "
        "owner_since = NULL, heartbeat_at = NULL WHERE thread_id = %s",
        (status, error, now, thread_id),
    )


def insert_queued(conn: psycopg.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], now: float) -> bool:
    return (
        conn.execute(
            f"INSERT INTO agent_threads ({COLUMNS}) VALUES (%s, %s, %s, 'queued', %s, %s, %s, 0, NULL, NULL, NULL, NULL, NULL, 0, 0) "
            "ON CONFLICT (thread_id) DO NOTHING",
            (thread_id, graph, graph_version, Jsonb(settings), now, now),
        ).rowcount
        == 1
    )


def mark_queued(conn: psycopg.Connection, thread_id: str, now: float) -> None:
    conn.execute("UPDATE agent_threads SET status = 'queued', updated_at = %s WHERE thread_id = %s AND status != 'running'", (now, thread_id))


def claim(conn: psycopg.Connection, thread_id: str, owner: Owner, now: float) -> int | None:
    row = conn.execute(
        "UPDATE agent_threads SET status = 'running', error = NULL, updated_at = %s, owner_pid = %s, owner_host = %s, "
        "owner_since = %s, heartbeat_at = %s, lease = lease + 1 WHERE thread_id = %s AND status != 'running' RETURNING lease",
        (now, owner.pid, owner.host, now, now, thread_id),
    ).fetchone()
    return None if row is None else row[0]


def take_over(conn: psycopg.Connection, thread_id: str, lease: int, owner: Owner, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET updated_at = %s, owner_pid = %s, owner_host = %s, owner_since = %s, heartbeat_at = %s, "
            "lease = lease + 1, resumes = resumes + 1 WHERE thread_id = %s AND lease = %s AND status = 'running' RETURNING lease",
            (now, owner.pid, owner.host, now, now, thread_id, lease),
        ).fetchone()
    )


def leases_held(conn: psycopg.Connection, owner: Owner, now: float) -> dict[str, int]:
    rows = conn.execute(
        "UPDATE agent_threads SET heartbeat_at = %s, updated_at = %s WHERE owner_pid = %s AND owner_host = %s AND status = 'running' "
        "RETURNING thread_id, lease",
        (now, now, owner.pid, owner.host),
    ).fetchall()
    return dict(rows)


def delete(conn: psycopg.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_threads WHERE thread_id = %s", (thread_id,)).rowcount


def has_checkpoints(conn: psycopg.Connection, thread_id: str) -> bool:
    """In the checkpointer's table, `checkpoints` (LangGraph's PostgresSaver's, made by its setup())."""
    return conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = %s LIMIT 1", (thread_id,)).fetchone() is not None
