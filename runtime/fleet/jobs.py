"""How a fleet worker takes threads on PostgreSQL: as the jobs Procrastinate hands out
(runtime/store/postgres/jobs.py), instead of reading the run queue itself (runtime/fleet/worker.py).

Procrastinate's worker runs beside the fleet worker's loop, on the same event loop, and calls
`_job` for each job: it takes the thread (its queued request, or a takeover of a dead runner's)
in one transaction and drives it to its end. The loop, each SCAN_SECONDS, hands back the jobs of
dead workers and announces requests and dead runners' threads that have no job yet; and it
starts Procrastinate's worker again when that stopped on its own (the database was out of reach).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from runtime.fleet.claims import CLAIM_BATCH, SCAN_SECONDS, Claim, WorkerEvent
from runtime.store.parts import immediate
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import threads as thread_rows
from runtime.threads import registry as threads

if TYPE_CHECKING:
    from runtime.fleet.worker import FleetWorker


class JobDriven:
    """The part of FleetWorker that serves Procrastinate's jobs (`self.jobs` is the database's job queue)."""

    async def _serve_jobs(self: FleetWorker) -> None:
        """Take threads as Procrastinate hands out their jobs (runtime/store/postgres/jobs.py),
        while the loop announces requests and dead runners' threads that have no job yet."""
        await asyncio.to_thread(self.jobs.ensure_schema)
        async with self.jobs.app.open_async():
            self._start_jobs()
            try:
                await self._loop()
            finally:
                for task in (self._jobs_task, self._items_task):
                    if not self.stopping:  # idle (--until-idle); a stopping worker cancelled them once already
                        task.cancel()
                    # A second cancel would cut short Procrastinate's wait for its running jobs to be
                    # recorded as done, leaving them `doing` for another worker to find stalled.
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _start_jobs(self: FleetWorker) -> None:
        """Procrastinate's two workers: one hands out threads, the other parts of queue threads'
        items (runtime/fleet/spread.py), so a run waiting for its items never holds their slot."""
        self._jobs_started = time.monotonic()
        stalled_after = threads.STALE_AFTER_SECONDS
        if self._jobs_task is None or self._jobs_task.done():
            self._jobs_task = asyncio.create_task(
                self.jobs.serve(self._job, concurrency=self.concurrency, name=self.worker_id, stalled_after=stalled_after)
            )
        if self._items_task is None or self._items_task.done():
            self._items_task = asyncio.create_task(
                self.jobs.serve(self.items.handle, concurrency=self.item_parts, name=f"{self.worker_id}:items", stalled_after=stalled_after, items=True)
            )

    def _watch_jobs(self: FleetWorker) -> None:
        """Start Procrastinate's workers again once one has stopped on its own: it stops when it
        cannot reach the database (a heartbeat or a fetch failed), and a worker cut off for longer
        than the stall timeout has had its registration removed by the others, so it must
        register anew; this process goes on serving once the database is back."""
        stopped = [task for task in (self._jobs_task, self._items_task) if task is not None and task.done()]
        if not stopped or self.stopping or time.monotonic() - self._jobs_started < SCAN_SECONDS:
            return
        for task in stopped:
            failure = task.exception() if not task.cancelled() else None
            why = f"{type(failure).__name__}: {failure}" if failure else "it stopped"
            self.emit(WorkerEvent("warning", message=f"the job queue's worker stopped ({why}); starting it again"))
        self._start_jobs()

    async def _announce_work(self: FleetWorker) -> int:
        """Each SCAN_SECONDS: jobs of dead workers handed back, and a job deferred for each
        request and each dead runner's thread that has none; how many were deferred."""
        if self.on_tick is not None:
            await asyncio.to_thread(self.on_tick)
        if time.monotonic() - self._last_scan < SCAN_SECONDS:
            return 0
        self._last_scan = time.monotonic()
        await self.jobs.retry_stalled(threads.STALE_AFTER_SECONDS)
        await asyncio.to_thread(self.jobs.keep_statistics, self.db.conn)
        deferred = 0
        for priority, thread_ids in (await asyncio.to_thread(self._unannounced)).items():
            deferred += await self.jobs.adefer(thread_ids, priority)
        return deferred

    def _unannounced(self: FleetWorker) -> dict[int, list[str]]:
        """Priority -> threads that want a job and have none: queued requests whose thread nobody
        runs, and threads whose runner died."""
        conn, now = self.db.conn, time.time()
        wanted = {row.thread_id: row.priority for row in queue_rows.ready(conn, CLAIM_BATCH)}
        for row in thread_rows.running(conn):
            record = threads.ThreadRecord(*row)
            if record.thread_id not in self.tasks and not record.holder_alive(now):
                wanted.setdefault(record.thread_id, 0)
        by_priority: dict[int, list[str]] = {}
        for thread_id in self.jobs.unannounced(conn, list(wanted)):
            by_priority.setdefault(wanted[thread_id], []).append(thread_id)
        return by_priority

    async def _job(self: FleetWorker, thread_id: str) -> None:
        """A job of Procrastinate's: take the thread (its queued request, or a takeover of a dead
        runner's) and drive it to its end. Nothing to take (done by another, cancelled, still
        running elsewhere) ends the job; a request that comes later gets a job of its own."""
        if self.stopping:
            return  # the request stays queued, and a live worker announces it again
        claim = await asyncio.to_thread(self._claim_thread, thread_id)
        if claim is None:
            return
        try:
            plan = await asyncio.to_thread(self._plan, claim)
            if plan is not None and not self.stopping:
                self._start(plan, claim)
        except Exception:  # the database went away meanwhile: the thread goes back, for this job's retry
            await asyncio.to_thread(self._give_back, claim)
            raise
        if plan is None:
            return
        if thread_id not in self.tasks:  # stopping: it waits for the next worker
            await asyncio.to_thread(self._give_back, claim)
            return
        await self.tasks[thread_id]

    def _claim_thread(self: FleetWorker, thread_id: str) -> Claim | None:
        """Take one thread, as `_claim` and `_take_over` take many, in one transaction."""
        conn, now, events = self.db.conn, time.time(), []
        with immediate(conn):
            row = thread_rows.get(conn, thread_id)
            if row is None:
                queue_rows.delete(conn, thread_id)
                return None
            record = threads.ThreadRecord(*row)
            if record.status == "running":
                if thread_id in self.tasks or record.holder_alive(now):
                    return None
                claim = self._take_over_one(record, now, events)
            else:
                queued = queue_rows.get(conn, thread_id)
                lease = thread_rows.claim(conn, thread_id, self.owner, now) if queued is not None else None
                if lease is None:
                    return None
                queue_rows.delete(conn, thread_id)
                claim = Claim(thread_id, queued.kind, queued.request, lease, before=record.status, priority=queued.priority)
        for event in events:
            self.emit(event)
        return claim
