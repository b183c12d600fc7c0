"""The progress graphs report of their own, on PostgreSQL (`agent_progress`): one row per thread,
its figures JSONB (as SQLite's, runtime/store/progress_board.py)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def get(conn: psycopg.Connection, thread_id: str) -> tuple[dict[str, Any], float] | None:
    row = conn.execute("SELECT figures, updated_at FROM agent_progress WHERE thread_id = %s", (thread_id,)).fetchone()
    return None if row is None else (row[0], row[1])


def put(conn: psycopg.Connection, thread_id: str, figures: dict[str, Any], now: float) -> None:
    conn.execute(
        "INSERT INTO agent_progress (thread_id, figures, updated_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (thread_id) DO UPDATE SET figures = excluded.figures, updated_at = excluded.updated_at",
        (thread_id, Jsonb(figures), now),
    )


def delete(conn: psycopg.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_progress WHERE thread_id = %s", (thread_id,)).rowcount
