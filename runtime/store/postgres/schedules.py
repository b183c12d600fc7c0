"""Schedules and their runs on PostgreSQL (`agent_schedules`, `agent_schedule_runs`).

As SQLite's (runtime/store/schedules.py): UNIQUE (schedule, fire_time) claims an occurrence
once. A claim of a taken occurrence inserts nothing (ON CONFLICT DO NOTHING) and raises
OccurrenceTaken; the caller's transaction is left usable, though the seam lets SQLite's be
rolled back whole. A schedule's input and settings are JSONB.
"""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from runtime.store.seam import OccurrenceTaken, RunRow, ScheduleRow

COLUMNS = "name, graph, cron, tz, input, settings, overlap, missed, max_failures, status, pause_reason, failures, next_fire, created_at, updated_at"
RUN_COLUMNS = "id, schedule, fire_time, thread_id, status, started_at, ended_at, error, worker, resumes"


def schedule_row(row: tuple) -> ScheduleRow:
    """A row of COLUMNS; its input and settings, JSONB, come decoded from the driver."""
    return ScheduleRow(*row)


# -- schedules -----------------------------------------------------------------------------------


def get(conn: psycopg.Connection, name: str) -> ScheduleRow | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM agent_schedules WHERE name = %s", (name,)).fetchone()
    return None if row is None else schedule_row(row)


def list_all(conn: psycopg.Connection) -> list[ScheduleRow]:
    return [schedule_row(r) for r in conn.execute(f"SELECT {COLUMNS} FROM agent_schedules ORDER BY name").fetchall()]


def count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM agent_schedules").fetchone()[0]


def insert(conn: psycopg.Connection, schedule: ScheduleRow) -> None:
    values = list(schedule)
    values[4], values[5] = Jsonb(values[4]), Jsonb(values[5])
    conn.execute(f"INSERT INTO agent_schedules ({COLUMNS}) VALUES ({', '.join(['%s'] * len(values))})", values)


def pause(conn: psycopg.Connection, name: str, reason: str | None, now: float) -> None:
    conn.execute("UPDATE agent_schedules SET status = 'paused', pause_reason = %s, updated_at = %s WHERE name = %s", (reason, now, name))


def resume(conn: psycopg.Connection, name: str, next_fire: float, now: float) -> None:
    conn.execute(
        "UPDATE agent_schedules SET status = 'active', pause_reason = NULL, failures = 0, next_fire = %s, updated_at = %s WHERE name = %s",
        (next_fire, now, name),
    )


def delete(conn: psycopg.Connection, name: str) -> int:
    removed = conn.execute("DELETE FROM agent_schedule_runs WHERE schedule = %s", (name,)).rowcount
    conn.execute("DELETE FROM agent_schedules WHERE name = %s", (name,))
    return removed


def graphs(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT name, graph FROM agent_schedules ORDER BY name").fetchall()


def due(conn: psycopg.Connection, now: float) -> list[str]:
    rows = conn.execute("SELECT name FROM agent_schedules WHERE status = 'active' AND next_fire <= %s ORDER BY next_fire, name", (now,))
    return [r[0] for r in rows.fetchall()]


def advance(conn: psycopg.Connection, name: str, next_fire: float, now: float) -> None:
    conn.execute("UPDATE agent_schedules SET next_fire = %s, updated_at = %s WHERE name = %s", (next_fire, now, name))


def failures(conn: psycopg.Connection, name: str) -> tuple[int, int, str] | None:
    return conn.execute("SELECT failures, max_failures, status FROM agent_schedules WHERE name = %s", (name,)).fetchone()


def set_failures(conn: psycopg.Connection, name: str, failures: int, paused: str | None, now: float) -> None:
    conn.execute(
        "UPDATE agent_schedules SET failures = %s, status = CASE WHEN %s::text IS NULL THEN status ELSE 'paused' END, "
        "pause_reason = COALESCE(%s::text, pause_reason), updated_at = %s WHERE name = %s",
        (failures, paused, paused, now, name),
    )


# -- runs ------------------------------------------------------------------------------------------


def insert_run(
    conn: psycopg.Connection, name: str, fire_time: float, thread_id: str | None, status: str, error: str | None, worker: str, now: float
) -> int:
    """A claimed run starts now; a skipped or missed one also ends now."""
    ended = now if status in ("missed", "skipped") else None
    row = conn.execute(
        "INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status, started_at, ended_at, error, worker) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (schedule, fire_time) DO NOTHING RETURNING id",
        (name, fire_time, thread_id, status, now, ended, error, worker),
    ).fetchone()
    if row is None:
        raise OccurrenceTaken(f"schedule {name!r} already has a run at {fire_time}")
    return row[0]


def fire_time(conn: psycopg.Connection, run_id: int) -> float | None:
    row = conn.execute("SELECT fire_time FROM agent_schedule_runs WHERE id = %s", (run_id,)).fetchone()
    return None if row is None else row[0]


def end_run(conn: psycopg.Connection, run_id: int, status: str, error: str | None, now: float) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_schedule_runs SET status = %s, error = %s, ended_at = %s WHERE id = %s AND status IN ('running', 'stopped')",
            (status, error, now, run_id),
        ).rowcount
    )


def running_runs(conn: psycopg.Connection, name: str | None = None) -> list[RunRow]:
    where, params = ("schedule = %s AND ", (name,)) if name is not None else ("", ())
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM agent_schedule_runs WHERE {where}status = 'running' ORDER BY fire_time", params)
    return [RunRow(*r) for r in rows.fetchall()]


def unfinished_runs(conn: psycopg.Connection) -> list[RunRow]:
    rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM agent_schedule_runs WHERE status IN ('running', 'stopped') ORDER BY fire_time")
    return [RunRow(*r) for r in rows.fetchall()]


def claim_resume(conn: psycopg.Connection, run_id: int, resumes: int, status: str, worker: str) -> bool:
    return bool(
        conn.execute(
            "UPDATE agent_schedule_runs SET resumes = resumes + 1, status = 'running', worker = %s WHERE id = %s AND resumes = %s AND status = %s",
            (worker, run_id, resumes, status),
        ).rowcount
    )


def last_runs(conn: psycopg.Connection) -> dict[str, RunRow]:
    rows = conn.execute(
        f"SELECT DISTINCT ON (schedule) {RUN_COLUMNS} FROM agent_schedule_runs ORDER BY schedule, fire_time DESC, id DESC"
    ).fetchall()
    return {r[1]: RunRow(*r) for r in rows}


def runs_with_spend(conn: psycopg.Connection, name: str, since: float | None, until: float | None) -> list[tuple[RunRow, float, int]]:
    listed = ", ".join(f"r.{column}" for column in RUN_COLUMNS.split(", "))
    rows = conn.execute(
        f"SELECT {listed}, COALESCE(s.cost_usd, 0), COALESCE(s.input_tokens + s.output_tokens, 0) FROM agent_schedule_runs r "
        "LEFT JOIN agent_spend s ON s.thread_id = r.thread_id WHERE r.schedule = %s AND r.fire_time >= %s AND r.fire_time < %s "
        "ORDER BY r.fire_time, r.id",
        (name, since if since is not None else float("-inf"), until if until is not None else float("inf")),
    ).fetchall()
    return [(RunRow(*r[:10]), r[10], r[11]) for r in rows]
