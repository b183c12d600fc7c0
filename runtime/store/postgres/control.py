"""Pause and cancel requests on PostgreSQL (`agent_control`): at most one per thread, a new one
replacing the old (as SQLite's, runtime/store/control.py)."""

from __future__ import annotations

import psycopg

from runtime.store.seam import ControlRow, Owner


def addressed_to(conn: psycopg.Connection, owner: Owner) -> dict[str, str]:
    rows = conn.execute(
        "SELECT thread_id, request FROM agent_control WHERE target_pid IS NULL OR (target_pid = %s AND target_host = %s)",
        (owner.pid, owner.host),
    ).fetchall()
    return dict(rows)


def get(conn: psycopg.Connection, thread_id: str) -> ControlRow | None:
    row = conn.execute(
        "SELECT request, target_pid, target_host, requested_by, requested_at FROM agent_control WHERE thread_id = %s", (thread_id,)
    ).fetchone()
    return None if row is None else ControlRow(*row)


def put(conn: psycopg.Connection, thread_id: str, request: str, target: Owner, requested_by: str, now: float) -> None:
    conn.execute(
        "INSERT INTO agent_control (thread_id, request, target_pid, target_host, requested_by, requested_at) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (thread_id) DO UPDATE SET request = excluded.request, target_pid = excluded.target_pid, "
        "target_host = excluded.target_host, requested_by = excluded.requested_by, requested_at = excluded.requested_at",
        (thread_id, request, target.pid, target.host, requested_by, now),
    )


def delete(conn: psycopg.Connection, thread_id: str) -> None:
    conn.execute("DELETE FROM agent_control WHERE thread_id = %s", (thread_id,))


def clear(conn: psycopg.Connection, thread_id: str, pid: int) -> None:
    conn.execute("DELETE FROM agent_control WHERE thread_id = %s AND (target_pid = %s OR target_pid IS NULL)", (thread_id, pid))
