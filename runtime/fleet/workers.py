"""The workers of a database, as `agent workers` shows them: alive or stale."""

from __future__ import annotations

import socket
import time
from typing import Any

from runtime.policy.times import iso_time
from runtime.store.database import Database
from runtime.store.parts import workers as worker_rows
from runtime.threads.registry import STALE_AFTER_SECONDS, pid_alive


def list_workers(db: Database, *, include_stopped: bool = False) -> list[dict[str, Any]]:
    """Each worker: id, pid, host, status (`running`, `stopping`, `stale`, `stopped`), threads
    running, concurrency, started, heartbeat and its age; newest first."""
    now, rows = time.time(), []
    for row in worker_rows.list_all(db.conn):
        status = row.status
        if status != "stopped" and not _alive(row.pid, row.host, row.heartbeat_at, now):
            status = "stale"
        if status == "stopped" and not include_stopped:
            continue
        rows.append(
            {
                "worker_id": row.worker_id,
                "pid": row.pid,
                "host": row.host,
                "status": status,
                "running": row.running if status in ("running", "stopping") else 0,
                "concurrency": row.concurrency,
                "started_at": iso_time(row.started_at),
                "heartbeat_at": iso_time(row.heartbeat_at),
                "heartbeat_age_seconds": round(now - row.heartbeat_at, 1),
            }
        )
    return rows


def _alive(pid: int, host: str, heartbeat_at: float, now: float) -> bool:
    fresh = now - heartbeat_at < STALE_AFTER_SECONDS
    return fresh and pid_alive(pid) if host == socket.gethostname() else fresh
