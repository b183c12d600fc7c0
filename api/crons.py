"""Crons of the LangGraph API as our schedules (runtime/schedules/): a cron is a schedule whose
name is its id, checked as `agent schedule add` checks one, with its time zone (`timezone`, UTC
when none is given). Each occurrence starts a new thread, which any face can then follow.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from api import book
from runtime.errors import BadInput
from runtime.policy.times import iso_time
from runtime.store.database import Database

NEXT_RUNS = 3


def add(db: Database, assistant_id: str, spec: str, body: dict[str, Any]) -> dict[str, Any]:
    from runtime.schedules.calendar import add_schedule, check_schedule, get_schedule

    settings = book.settings_of(body.get("config"), body.get("context"))
    given = settings.given() if settings is not None else {}
    if set(given) - {"model", "max_cost", "deadline"}:
        raise BadInput("a cron's runs take only `model`, `max_cost` and `deadline` as settings")
    name = f"cron-{uuid.uuid4().hex[:12]}"
    new = check_schedule(name, spec, body["schedule"], body.get("timezone") or "UTC", body.get("input") or {}, **given)
    add_schedule(db, new)
    return cron_view(get_schedule(db, name), assistant_id)


def cron_view(schedule: Any, assistant_id: str | None = None) -> dict[str, Any]:
    graph_id = schedule.graph.rsplit(":", 1)[-1]
    return {
        "cron_id": schedule.name,
        "assistant_id": assistant_id or book.assistant_uuid(graph_id),
        "graph_id": graph_id,
        "thread_id": None,
        "schedule": schedule.cron,
        "timezone": schedule.tz,
        "payload": {"input": schedule.input, "config": {"configurable": schedule.settings}},
        "next_run_date": iso_time(next_runs(schedule, 1)[0]) if next_runs(schedule, 1) else None,
        "metadata": {"status": schedule.status},
        "created_at": iso_time(getattr(schedule, "created_at", None)),
        "updated_at": iso_time(getattr(schedule, "created_at", None)),
        "end_time": None,
        "user_id": None,
    }


def next_runs(schedule: Any, count: int = NEXT_RUNS) -> list[float]:
    from runtime.schedules.calendar import next_fire_after

    if schedule.status != "active":
        return []
    found, after = [], time.time()
    for _ in range(count):
        after = next_fire_after(schedule.cron, schedule.tz, after)
        found.append(after)
    return found


def search(db: Database, graphs: dict[str, str]) -> list[dict[str, Any]]:
    from runtime.schedules.calendar import list_schedules

    return [cron_view(schedule) for schedule in list_schedules(db)]


def schedules_view(db: Database) -> list[dict[str, Any]]:
    """Each schedule with its next runs in its own zone and in UTC (the dashboard's list)."""
    from runtime.schedules.calendar import last_runs, list_schedules

    latest = last_runs(db)
    shown = []
    for schedule in list_schedules(db):
        zone = ZoneInfo(schedule.tz)
        shown.append({
            "name": schedule.name, "graph": schedule.graph, "cron": schedule.cron, "tz": schedule.tz, "status": schedule.status,
            "paused": schedule.status != "active", "pause_reason": schedule.pause_reason, "input": schedule.input,
            "next_runs": [{"at_local": datetime.fromtimestamp(t, zone).isoformat(), "at_utc": datetime.fromtimestamp(t, timezone.utc).isoformat()}
                          for t in next_runs(schedule)],
            "last_run": latest.get(schedule.name),
        })  # fmt: skip
    return shown
