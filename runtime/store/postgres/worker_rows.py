"""Worker processes on PostgreSQL (`agent_workers`): one row each, with its heartbeat (as
SQLite's, runtime/store/worker_rows.py; registering again replaces the row)."""

from __future__ import annotations

import psycopg

from runtime.store.seam import WorkerRow

COLUMNS = "worker_id, pid, host, started_at, heartbeat_at, concurrency, running, status"
REPLACED = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS.split(", ")[1:])


def register(conn: psycopg.Connection, row: WorkerRow) -> None:
    conn.execute(
        f"INSERT INTO agent_workers ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET {REPLACED}",
        tuple(row),
    )


def beat(conn: psycopg.Connection, worker_id: str, running: int, status: str, now: float) -> None:
    conn.execute("UPDATE agent_workers SET heartbeat_at = %s, running = %s, status = %s WHERE worker_id = %s", (now, running, status, worker_id))


def list_all(conn: psycopg.Connection) -> list[WorkerRow]:
    return [WorkerRow(*r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_workers ORDER BY started_at DESC").fetchall()]
