"""The thread registry in SQLite (`agent_threads`): one row per thread, with its lease.

A lease is the holder's pid and host, since when it holds the thread, and its last heartbeat.
These functions return facts (a row, whether a conditional UPDATE matched); whether a holder is
alive and what to refuse is decided in runtime/threads/registry.py, which takes a lease by
reading the row and writing it inside one `immediate` (runtime/store/seam.py, `ThreadRegistry`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from runtime.store.seam import Owner, ThreadRow

COLUMNS = (
    "thread_id, graph, graph_version, status, settings, created_at, updated_at, steps, error, "
    "owner_pid, owner_host, owner_since, heartbeat_at, lease, resumes"
)


def thread_row(row: tuple) -> ThreadRow:
    """A row of COLUMNS, its settings decoded."""
    values = list(row)
    values[4] = json.loads(values[4] or "{}")
    return ThreadRow(*values)


def get(conn: sqlite3.Connection, thread_id: str) -> ThreadRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_threads WHERE thread_id = ?", (thread_id,)).fetchone()
    return None if row is None else thread_row(row)


def list_all(conn: sqlite3.Connection) -> list[ThreadRow]:
    return [thread_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_threads ORDER BY updated_at DESC").fetchall()]


def running(conn: sqlite3.Connection) -> list[ThreadRow]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM agent_threads WHERE status = 'running' ORDER BY thread_id").fetchall()
    return [thread_row(r) for r in rows]


def insert(conn: sqlite3.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> bool:
    try:
        conn.execute(
            f"INSERT INTO agent_threads ({COLUMNS}) VALUES (?, ?, ?, 'running', ?, ?, ?, 0, NULL, ?, ?, ?, ?, 1, 0)",
            (thread_id, graph, graph_version, json.dumps(settings), now, now, owner.pid, owner.host, now, now),
        )
    except sqlite3.IntegrityError:  # undoes the statement only; the transaction goes on
        return False
    return True


def reuse(conn: sqlite3.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET graph = ?, graph_version = ?, status = 'running', settings = ?, created_at = ?, "
        "updated_at = ?, steps = 0, error = NULL, owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ?, "
        "lease = lease + 1, resumes = 0 WHERE thread_id = ?",
        (graph, graph_version, json.dumps(settings), now, now, owner.pid, owner.host, now, now, thread_id),
    )


def take_lease(conn: sqlite3.Connection, thread_id: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET status = 'running', settings = ?, error = NULL, updated_at = ?, "
        "owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ?, lease = lease + 1 WHERE thread_id = ?",
        (json.dumps(settings), now, owner.pid, owner.host, now, now, thread_id),
    )


def heartbeat(conn: sqlite3.Connection, thread_id: str, pid: int, now: float, steps: int | None) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET heartbeat_at = ?, updated_at = ?, steps = COALESCE(?, steps) "
            "WHERE thread_id = ? AND owner_pid = ?",
            (now, now, steps, thread_id, pid),
        ).rowcount
    )


def release(conn: sqlite3.Connection, thread_id: str, pid: int, status: str, error: str | None, steps: int | None, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET status = ?, error = ?, steps = COALESCE(?, steps), updated_at = ?, "
            "owner_pid = NULL, owner_host = NULL, owner_since = NULL, heartbeat_at = NULL, resumes = 0 "
            "WHERE thread_id = ? AND owner_pid = ?",
            (status, error, steps, now, thread_id, pid),
        ).rowcount
    )


def end_unowned(conn: sqlite3.Connection, thread_id: str, status: str, error: str | None, now: float) -> None:
    conn.execute(
        "UPDATE agent_threads SET status = ?, error = ?, updated_at = ?, owner_pid = NULL, owner_host = NULL, "
        "owner_since = NULL, heartbeat_at = NULL WHERE thread_id = ?",
        (status, error, now, thread_id),
    )


def insert_queued(conn: sqlite3.Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], now: float) -> bool:
    try:
        conn.execute(
            f"INSERT INTO agent_threads ({COLUMNS}) VALUES (?, ?, ?, 'queued', ?, ?, ?, 0, NULL, NULL, NULL, NULL, NULL, 0, 0)",
            (thread_id, graph, graph_version, json.dumps(settings), now, now),
        )
    except sqlite3.IntegrityError:
        return False
    return True


def mark_queued(conn: sqlite3.Connection, thread_id: str, now: float) -> None:
    conn.execute("UPDATE agent_threads SET status = 'queued', updated_at = ? WHERE thread_id = ? AND status != 'running'", (now, thread_id))


def claim(conn: sqlite3.Connection, thread_id: str, owner: Owner, now: float) -> int | None:
    row = conn.execute(
        "UPDATE agent_threads SET status = 'running', error = NULL, updated_at = ?, owner_pid = ?, owner_host = ?, "
        "owner_since = ?, heartbeat_at = ?, lease = lease + 1 WHERE thread_id = ? AND status != 'running' RETURNING lease",
        (now, owner.pid, owner.host, now, now, thread_id),
    ).fetchall()
    return row[0][0] if row else None


def take_over(conn: sqlite3.Connection, thread_id: str, lease: int, owner: Owner, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_threads SET updated_at = ?, owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ?, "
            "lease = lease + 1, resumes = resumes + 1 WHERE thread_id = ? AND lease = ? AND status = 'running'",
            (now, owner.pid, owner.host, now, now, thread_id, lease),
        ).rowcount
    )


def leases_held(conn: sqlite3.Connection, owner: Owner, now: float) -> dict[str, int]:
    rows = conn.execute(
        "UPDATE agent_threads SET heartbeat_at = ?, updated_at = ? WHERE owner_pid = ? AND owner_host = ? AND status = 'running' "
        "RETURNING thread_id, lease",
        (now, now, owner.pid, owner.host),
    ).fetchall()
    return dict(rows)


def delete(conn: sqlite3.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_threads WHERE thread_id = ?", (thread_id,)).rowcount


def has_checkpoints(conn: sqlite3.Connection, thread_id: str) -> bool:
    return conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)).fetchone() is not None
