"""Spend over time, for the dashboard's charts: per thread, its spend as each of its runs through
the API left it (recorded when the run ended) and as it is now; per schedule, each run's cost at
its fire time (runtime/schedules/calendar.py's run history).
"""

from __future__ import annotations

from typing import Any

from api import book
from runtime.store.database import Database


def spend_over_time(db: Database) -> dict[str, Any]:
    from runtime.policy.budget import spend_by_thread
    from runtime.policy.times import iso_time
    from runtime.schedules.calendar import list_schedules, schedule_runs
    from runtime.threads.registry import list_threads

    spends = spend_by_thread(db)
    threads = []
    for record in list_threads(db):
        points = [run["spend"] for run in book.runs_of(db, record.thread_id) if run.get("spend")]
        now = spends.get(record.thread_id)
        if now is not None:
            points.append({"at": iso_time(record.updated_at), "cost_usd": round(now.cost_usd, 6), "tokens": now.tokens})
        if points:
            threads.append({"thread_id": record.thread_id, "graph": record.graph, "points": points})
    schedules = []
    for schedule in list_schedules(db):
        runs = schedule_runs(db, schedule.name)["runs"]
        points = [{"at": run["fire_time"], "cost_usd": run["cost_usd"], "tokens": run["tokens"]} for run in runs]
        schedules.append({"name": schedule.name, "tz": schedule.tz, "points": points})
    return {"threads": threads, "schedules": schedules}
