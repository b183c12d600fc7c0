"""Schedules and their runs in SQLite (`agent_schedules`, `agent_schedule_runs`).

One row per schedule, with its next fire time; one row per occurrence a worker claimed, skipped
or recorded missed, UNIQUE (schedule, fire_time), so that an occurrence is claimed once. What
fires when, and what a run's end does to its schedule, is decided in runtime/schedules/
(runtime/store/seam.py, `Schedules`).
"""

from __future__ import annotations

import json
import sqlite3

from runtime.store.seam import OccurrenceTaken, RunRow, ScheduleRow

COLUMNS = "name, graph, cron, tz, input, settings, overlap, missed, max_failures, status, pause_reason, failures, next_fire, created_at, updated_at"
RUN_COLUMNS = "id, schedule, fire_time, thread_id, status, started_at, ended_at, error, worker, resumes"


def schedule_row(row: tuple) -> ScheduleRow:
    """A row of COLUMNS, its input and settings decoded."""
    values = list(row)
    values[4], values[5] = json.loads(values[4] or "{}"), json.loads(values[5] or "{}")
    return ScheduleRow(*values)


# -- schedules -----------------------------------------------------------------------------------


def get(conn: sqlite3.Connection, name: str) -> ScheduleRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_schedules WHERE name = ?", (name,)).fetchone()
    return None if row is None else schedule_row(row)


def list_all(conn: sqlite3.Connection) -> list[ScheduleRow]:
    return [schedule_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_schedules ORDER BY name")]


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM agent_schedules").fetchone()[0]


def insert(conn: sqlite3.Connection, schedule: ScheduleRow) -> None:
    values = list(schedule)
    values[4], values[5] = json.dumps(values[4]), json.dumps(values[5])
    conn.execute(f"INSERT INTO agent_schedules ({COLUMNS}) VALUES ({', '.join('?' * len(values))})", values)


def pause(conn: sqlite3.Connection, name: str, reason: str | None, now: float) -> None:
    conn.execute("UPDATE agent_schedules SET status = 'paused', pause_reason = ?, updated_at = ? WHERE name = ?", (reason, now, name))


def resume(conn: sqlite3.Connection, name: str, next_fire: float, now: float) -> None:
    conn.execute(
        "UPDATE agent_schedules SET status = 'active', pause_reason = NULL, failures = 0, next_fire = ?, updated_at = ? WHERE name = ?",
        (next_fire, now, name),
    )


def delete(conn: sqlite3.Connection, name: str) -> int:
    removed = conn.execute("DELETE FROM agent_schedule_runs WHERE schedule = ?", (name,)).rowcount
    conn.execute("DELETE FROM agent_schedules WHERE name = ?", (name,))
    return removed


def graphs(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT name, graph FROM agent_schedules ORDER BY name").fetchall()


def due(conn: sqlite3.Connection, now: float) -> list[str]:
    rows = conn.execute("SELECT name FROM agent_schedules WHERE status = 'active' AND next_fire <= ? ORDER BY next_fire, name", (now,))
    return [r[0] for r in rows]


def advance(conn: sqlite3.Connection, name: str, next_fire: float, now: float) -> None:
    conn.execute("UPDATE agent_schedules SET next_fire = ?, updated_at = ? WHERE name = ?", (next_fire, now, name))


def failures(conn: sqlite3.Connection, name: str) -> tuple[int, int, str] | None:
    return conn.execute("SELECT failures, max_failures, status FROM agent_schedules WHERE name = ?", (name,)).fetchone()


def set_failures(conn: sqlite3.Connection, name: str, failures: int, paused: str | None, now: float) -> None:
    conn.execute(
        "UPDATE agent_schedules SET failures = ?, status = CASE WHEN ? IS NULL THEN status ELSE 'paused' END, "
        "pause_reason = COALESCE(?, pause_reason), updated_at = ? WHERE name = ?",
        (failures, paused, paused, now, name),
    )


# -- runs ------------------------------------------------------------------------------------------


def insert_run(
    conn: sqlite3.Connection, name: str, fire_time: float, thread_id: str | None, status: str, error: str | None, worker: str, now: float
) -> int:
    """A claimed run starts now; a skipped or missed one also ends now."""
    ended = now if status in ("missed", "skipped") else None
    try:
        cursor = conn.execute(
            "INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status, started_at, ended_at, error, worker) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, fire_time, thread_id, status, now, ended, error, worker),
        )
    except sqlite3.IntegrityError as exc:
        raise OccurrenceTaken(f"schedule {name!r} already has a run at {fire_time}") from exc
    return cursor.lastrowid


def fire_time(conn: sqlite3.Connection, run_id: int) -> float | None:
    row = conn.execute("SELECT fire_time FROM agent_schedule_runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else row[0]


def end_run(conn: sqlite3.Connection, run_id: int, status: str, error: str | None, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_schedule_runs SET status = ?, error = ?, ended_at = ? WHERE id = ? AND status IN ('running', 'stopped')",
            (status, error, now, run_id),
        ).rowcount
    )


def running_runs(conn: sqlite3.Connection, name: str | None = None) -> list[RunRow]:
    where, params = ("schedule = ? AND ", (name,)) if name is not None else ("", ())
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM agent_schedule_runs WHERE {where}status = 'running' ORDER BY fire_time", params)
    return [RunRow(*r) for r in rows.fetchall()]


def unfinished_runs(conn: sqlite3.Connection) -> list[RunRow]:
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM agent_schedule_runs WHERE status IN ('running', 'stopped') ORDER BY fire_time")
    return [RunRow(*r) for r in rows.fetchall()]


def claim_resume(conn: sqlite3.Connection, run_id: int, resumes: int, status: str, worker: str) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_schedule_runs SET resumes = resumes + 1, status = 'running', worker = ? WHERE id = ? AND resumes = ? AND status = ?",
            (worker, run_id, resumes, status),
        ).rowcount
    )


def last_runs(conn: sqlite3.Connection) -> dict[str, RunRow]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM agent_schedule_runs r WHERE id = "
        "(SELECT id FROM agent_schedule_runs WHERE schedule = r.schedule ORDER BY fire_time DESC, id DESC LIMIT 1)"
    ).fetchall()
    return {r[1]: RunRow(*r) for r in rows}


def runs_with_spend(conn: sqlite3.Connection, name: str, since: float | None, until: float | None) -> list[tuple[RunRow, float, int]]:
    listed = ", ".join(f"r.{column}" for column in RUN_COLUMNS.split(", "))
    rows = conn.execute(
        f"SELECT {listed}, COALESCE(s.cost_usd, 0), COALESCE(s.input_tokens + s.output_tokens, 0) FROM agent_schedule_runs r "
        "LEFT JOIN agent_spend s ON s.thread_id = r.thread_id WHERE r.schedule = ? AND r.fire_time >= ? AND r.fire_time < ? "
        "ORDER BY r.fire_time, r.id",
        (name, since if since is not None else float("-inf"), until if until is not None else float("inf")),
    ).fetchall()
    return [(RunRow(*r[:10]), r[10], r[11]) for r in rows]
