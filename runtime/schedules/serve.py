"""`agent worker`: one process that fires due schedules onto the run queue and drives queued
threads, many at once (runtime/fleet/worker.py). The scheduler (runtime/schedules/worker.py)
claims each occurrence once across every worker and queues its run; the fleet worker runs it and
tells the scheduler how it ended."""

from __future__ import annotations

import time
from typing import Any, Callable

from runtime.fleet.worker import FleetWorker
from runtime.schedules.clock import WorkerClock
from runtime.schedules.worker import Worker as Scheduler
from runtime.store.database import Database


def serve_worker(
    db: Database,
    clock: WorkerClock,
    *,
    concurrency: int,
    max_resumes: int,
    grace: float,
    until_idle: bool,
    poll: float,
    missed_after: float,
    once: bool = False,
    item_parts: int | None = None,
    on_event: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Serve until SIGTERM / Ctrl-C (or, `until_idle`, until nothing is left to do); what the worker did."""
    scheduler = Scheduler(db, clock, grace=missed_after, max_resumes=max_resumes, poll=poll, on_event=on_event, enqueue=True)
    last_tick = [float("-inf")]

    def fire_due() -> None:
        # The scheduler's own connection is this thread's (Database.conn is per thread).
        if once and last_tick[0] != float("-inf"):
            scheduler.recover()  # only record how queued occurrences ended
            return
        if time.monotonic() - last_tick[0] >= poll:
            last_tick[0] = time.monotonic()
            scheduler.tick()

    fleet = FleetWorker(
        db, concurrency=concurrency, item_parts=item_parts, max_resumes=max_resumes, grace=grace, until_idle=until_idle, handle_signals=True, on_event=on_event, on_tick=fire_due
    )
    fleet.on_origin = lambda origin, outcome: scheduler.finished_run(origin, outcome.thread_id, outcome.status, outcome.error)
    stats = fleet.run()
    if once:
        scheduler.recover()
    return stats.as_dict()
