"""Pause and cancel requests in SQLite (`agent_control`): at most one per thread.

A request is addressed to the process that held the thread's lease when it was asked (its pid
and host). Whether to ask, and whether a request is this process's, is decided in
runtime/threads/control.py (runtime/store/seam.py, `ControlRequests`).
"""

from __future__ import annotations

import sqlite3

from runtime.store.seam import ControlRow, Owner


def addressed_to(conn: sqlite3.Connection, owner: Owner) -> dict[str, str]:
    rows = conn.execute(
        "SELECT thread_id, request FROM agent_control WHERE target_pid IS NULL OR (target_pid = ? AND target_host = ?)", (owner.pid, owner.host)
    ).fetchall()
    return dict(rows)


def get(conn: sqlite3.Connection, thread_id: str) -> ControlRow | None:
    row = conn.execute(
        "SELECT request, target_pid, target_host, requested_by, requested_at FROM agent_control WHERE thread_id = ?", (thread_id,)
    ).fetchone()
    return None if row is None else ControlRow(*row)


def put(conn: sqlite3.Connection, thread_id: str, request: str, target: Owner, requested_by: str, now: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO agent_control (thread_id, request, target_pid, target_host, requested_by, requested_at) VALUES (?, ?, ?, ?, ?, ?)",
        (thread_id, request, target.pid, target.host, requested_by, now),
    )


def delete(conn: sqlite3.Connection, thread_id: str) -> None:
    conn.execute("DELETE FROM agent_control WHERE thread_id = ?", (thread_id,))


def clear(conn: sqlite3.Connection, thread_id: str, pid: int) -> None:
    conn.execute("DELETE FROM agent_control WHERE thread_id = ? AND (target_pid = ? OR target_pid IS NULL)", (thread_id, pid))
