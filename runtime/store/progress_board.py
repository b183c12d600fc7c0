"""The progress graphs report of their own, in SQLite (`agent_progress`): one row per thread.

A graph's custom stream event `{"progress": {"done": n, "total": N}}` is turned into figures by
its runner (runtime/threads/progress.py), which writes them here with its heartbeat and when the
run ends, so that `agent status` in another process shows them (runtime/store/seam.py,
`ProgressBoard`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def get(conn: sqlite3.Connection, thread_id: str) -> tuple[dict[str, Any], float] | None:
    row = conn.execute("SELECT figures, updated_at FROM agent_progress WHERE thread_id = ?", (thread_id,)).fetchone()
    return None if row is None else (json.loads(row[0]), row[1])


def put(conn: sqlite3.Connection, thread_id: str, figures: dict[str, Any], now: float) -> None:
    conn.execute(
        "INSERT INTO agent_progress (thread_id, figures, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(thread_id) DO UPDATE SET figures = excluded.figures, updated_at = excluded.updated_at",
        (thread_id, json.dumps(figures), now),
    )


def delete(conn: sqlite3.Connection, thread_id: str) -> int:
    return conn.execute("DELETE FROM agent_progress WHERE thread_id = ?", (thread_id,)).rowcount
