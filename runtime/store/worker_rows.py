"""Worker processes in SQLite (`agent_workers`): one row each, with its heartbeat
(runtime/store/seam.py, `WorkerRegistry`)."""

from __future__ import annotations

import sqlite3

from runtime.store.seam import WorkerRow

COLUMNS = "worker_id, pid, host, started_at, heartbeat_at, concurrency, running, status"


def register(conn: sqlite3.Connection, row: WorkerRow) -> None:
    conn.execute(f"INSERT OR REPLACE INTO agent_workers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(row))


def beat(conn: sqlite3.Connection, worker_id: str, running: int, status: str, now: float) -> None:
    conn.execute("UPDATE agent_workers SET heartbeat_at = ?, running = ?, status = ? WHERE worker_id = ?", (now, running, status, worker_id))


def list_all(conn: sqlite3.Connection) -> list[WorkerRow]:
    return [WorkerRow(*r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_workers ORDER BY started_at DESC")]
