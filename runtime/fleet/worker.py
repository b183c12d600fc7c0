"""The fleet worker: drives up to `concurrency` threads at once, in one process, on one event loop.

Each pass of its loop it takes what it has room for: first the threads whose runner died (a
`kill -9`, a machine that lost power: the thread is `running` but its runner's process is gone or
its heartbeat is older than `STALE_AFTER_SECONDS`), which it takes over from their latest
checkpoint, at most `max_resumes` times before marking them `failed`; then queued requests,
highest priority and oldest first, whose thread nobody runs. Taking either is one transaction
that also takes the thread's lease (runtime/store/seam.py): of several workers on one database
one gets each thread. Every thread is driven as `agent run` drives one (runtime/runs/drive.py):
checkpoint after every node, its own lease, budget, deadline, pause and cancel; one thread
failing touches no other. The runs share the process's host (runtime/runs/host.py): one saver,
one heartbeat for every lease, one reader of requests.

SIGTERM (or Ctrl-C): the worker takes nothing new, every thread it drives stops at its next node
boundary and is queued again (`stopped`, with a resume waiting), and it exits once they have, or
after `grace` seconds; a second SIGTERM stops at once, losing only the nodes in flight. The next
worker continues every one of them.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable

from runtime.errors import AgentError, NothingToResume
from runtime.fleet import queue
from runtime.fleet.claims import CLAIM_BATCH, SCAN_SECONDS, TAKEOVER, Claim, WorkerEvent
from runtime.fleet.jobs import JobDriven
from runtime.fleet.spread import ItemSpread, ItemWorker
from runtime.policy.settings import RunSettings
from runtime.runs.drive import Drive
from runtime.runs.host import LEASE_LAPSED, RunHost
from runtime.runs.outcome import RunEvent, RunOutcome
from runtime.runs.plan import RunPlan, prepare_resume, prepare_retry, prepare_run
from runtime.store.database import Database
from runtime.store.parts import immediate, out_of_reach
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.parts import workers as worker_rows
from runtime.store.seam import QueueRow, WorkerRow
from runtime.threads import registry as threads

PLAN_BATCH = 128
"""Threads prepared at a time (off the loop) and started before the next are prepared."""
POLL_SECONDS = 0.5
"""How long the worker waits for a run to end before it looks at the queue again."""
SHUTDOWN = "worker_shutdown"
"""The drain reason of the threads of a worker that is stopping."""


@dataclass
class WorkerStats:
    """What a worker did, for `--stats`: steps checkpointed, save latency, CPU, peak runs at once."""

    started_at: float = field(default_factory=time.time)
    steps: int = 0
    finished: int = 0
    max_running: int = 0
    save_latencies: list[float] = field(default_factory=list)
    items: int = 0
    """Queue items whose result this worker wrote for threads spread over the fleet (PostgreSQL)."""

    def as_dict(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        ordered = sorted(self.save_latencies)

        def percentile(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3) if ordered else None

        return {
            "started_at": self.started_at,
            "steps": self.steps,
            "finished": self.finished,
            "max_running": self.max_running,
            "items": self.items,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "save_latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99), "count": len(ordered)},
        }


class FleetWorker(JobDriven):
    """One worker process's loop (`agent worker`, or `run` from Python for a bounded time)."""

    def __init__(
        self,
        db: Database,
        *,
        concurrency: int = 8,
        item_parts: int | None = None,
        max_resumes: int = 3,
        grace: float = 30.0,
        until_idle: bool = False,
        handle_signals: bool = False,
        on_event: Callable[[WorkerEvent], Any] | None = None,
        on_tick: Callable[[], Any] | None = None,
    ) -> None:
        self.db, self.concurrency, self.max_resumes, self.grace = db, concurrency, max_resumes, grace
        self.item_parts = item_parts or concurrency
        """Parts of queue threads' items worked on at once (with a job queue: runtime/fleet/spread.py)."""
        self.until_idle, self.handle_signals = until_idle, handle_signals
        self.emit = on_event or (lambda event: None)
        self.on_tick = on_tick
        """Called off the loop on each pass (the scheduler fires due schedules there)."""
        self.on_run_event: Callable[[str, RunEvent], Any] | None = None
        """Told every event of every run this worker drives, on the worker's loop (the HTTP server's streams)."""
        self.on_origin: Callable[[dict[str, Any], RunOutcome], Any] | None = None
        """Told, off the loop, how each run whose request named an origin ended (a schedule's run)."""
        self.owner = threads.this_process()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"
        self.tasks: dict[str, asyncio.Task] = {}
        self.drives: dict[str, Drive] = {}
        self.stopping = False
        self.stats = WorkerStats()
        self._changed: asyncio.Event | None = None
        self._last_scan = 0.0
        self._host: RunHost | None = None
        self.jobs = db.job_queue()
        """The database's job queue (Procrastinate on PostgreSQL), or None: the run queue read directly."""
        self._jobs_task: asyncio.Task | None = None
        self._items_task: asyncio.Task | None = None
        self._jobs_started = 0.0
        self.items: ItemWorker | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop it serves on, once it does (`stop` is called there, from another thread with `call_soon_threadsafe`)."""

    def run(self, seconds: float | None = None, once: bool = False) -> WorkerStats:
        """Serve until stopped (SIGTERM, `stop()`, or idle with `until_idle`), or for `seconds`;
        `once`: until idle (what is queued now, and what it leads to, is run)."""
        from runtime.runs.runner import run_sync

        self.until_idle = self.until_idle or once
        return run_sync(self.serve(seconds))  # also from a notebook, whose loop is running

    async def serve(self, seconds: float | None = None) -> WorkerStats:
        loop = self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        await asyncio.to_thread(self._register)
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        if seconds is not None:
            loop.call_later(seconds, self.stop)
        try:
            async with RunHost(self.db) as host:
                self._host = host
                if self.jobs is not None:
                    host.spread = partial(ItemSpread, self.db, self.jobs)
                    self.items = ItemWorker(self.db, lambda: host.storage[1], self.drives.get)
                host.storage[0].save_latencies = self.stats.save_latencies
                if self.jobs is None:
                    await self._loop()
                else:
                    await self._serve_jobs()
        finally:
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            await asyncio.to_thread(self._beat, "stopped")
        if self.items is not None:
            self.stats.items = self.items.items_done
        return self.stats

    def wake(self) -> None:
        """Look at the queue now, not at the next poll (from any thread: a request was just queued in this process)."""
        loop, changed = self.loop, self._changed
        if loop is not None and changed is not None:
            loop.call_soon_threadsafe(changed.set)

    def stop(self) -> None:
        """First call: take nothing new, stop every thread at its next node boundary (then, after
        `grace`, at once). Second call: stop at once."""
        if self.stopping:
            for task in self.tasks.values():
                task.cancel()
            return
        self.stopping = True
        if self.items is not None:
            self.items.stopping = True
        for task in (self._jobs_task, self._items_task):
            if task is not None:
                task.cancel()  # Procrastinate takes no new job; its running jobs end as their threads stop
        self.emit(WorkerEvent("stopping", message=f"stopping {len(self.tasks)} thread(s) at their next node boundary"))
        for drive in self.drives.values():
            drive.control.request_drain(SHUTDOWN)
        loop = asyncio.get_running_loop()
        loop.call_later(self.grace, lambda: [task.cancel() for task in self.tasks.values()])
        if self._changed is not None:
            self._changed.set()

    async def _loop(self) -> None:
        last_beat = 0.0
        while True:
            self._watch_jobs()
            try:
                if not self.stopping:
                    claimed = await (self._take_work() if self.jobs is None else self._announce_work())
                    if self.until_idle and not claimed and not self.tasks and await asyncio.to_thread(self._idle):
                        break
                elif not self.tasks:
                    break
                if time.monotonic() - last_beat >= threads.HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    await asyncio.to_thread(self._beat, "stopping" if self.stopping else "running")
            except Exception as exc:
                if not out_of_reach(exc):
                    raise
                # The server is out of reach: the threads this worker drives stop once their
                # leases lapse (runtime/runs/host.py); it serves again when the server is back.
                self.emit(WorkerEvent("warning", message=f"the database could not be reached ({type(exc).__name__}); trying again"))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
            except TimeoutError:
                pass

    async def _take_work(self) -> int:
        if self.on_tick is not None:
            await asyncio.to_thread(self.on_tick)
        room = self.concurrency - len(self.tasks)
        if room <= 0:
            return 0
        claims = await asyncio.to_thread(self._claim, min(room, CLAIM_BATCH))
        for start in range(0, len(claims), PLAN_BATCH):
            batch = claims[start : start + PLAN_BATCH]
            plans = await asyncio.to_thread(lambda: [self._plan(claim) for claim in batch])
            for claim, plan in zip(batch, plans):
                if plan is not None and not self.stopping:
                    self._start(plan, claim)
                elif plan is not None:  # stopped while it was being prepared: it waits for the next worker
                    await asyncio.to_thread(self._give_back, claim)
        return len(claims)

    # -- taking threads (off the loop) --------------------------------------------------------------

    def _claim(self, room: int) -> list[Claim]:
        claims = self._take_over(room) if time.monotonic() - self._last_scan >= SCAN_SECONDS else []
        now = time.time()
        with immediate(self.db.conn):
            for row in queue_rows.ready(self.db.conn, room - len(claims)):
                before = thread_rows.get(self.db.conn, row.thread_id)
                lease = thread_rows.claim(self.db.conn, row.thread_id, self.owner, now)
                if lease is not None and before is not None:
                    queue_rows.delete(self.db.conn, row.thread_id)
                    claims.append(Claim(row.thread_id, row.kind, row.request, lease, before=before.status, priority=row.priority))
        return claims

    def _take_over(self, room: int) -> list[Claim]:
        """Threads recorded as running whose runner is gone, taken over in one transaction (each
        conditional on the lease read, so of two workers one gets each thread)."""
        self._last_scan = time.monotonic()
        now, claims, events = time.time(), [], []
        records = [threads.ThreadRecord(*row) for row in thread_rows.running(self.db.conn)]
        dead = [r for r in records if r.thread_id not in self.tasks and not r.holder_alive(now)]
        if not dead:
            return claims
        with immediate(self.db.conn):
            for record in dead[:room]:
                claim = self._take_over_one(record, now, events)
                if claim is not None:
                    claims.append(claim)
        for event in events:
            self.emit(event)
        return claims

    def _take_over_one(self, record: threads.ThreadRecord, now: float, events: list[WorkerEvent]) -> Claim | None:
        """Inside the caller's transaction: take over a thread whose runner is gone, while its
        lease is still the one read (of two takers, one wins), or fail it past `max_resumes`."""
        if not thread_rows.take_over(self.db.conn, record.thread_id, record.lease, self.owner, now):
            return None  # another worker took it first
        if record.resumes >= self.max_resumes:
            why = f"its runner died {record.resumes + 1} times; gave up after {self.max_resumes} takeovers (--max-resumes)"
            thread_rows.release(self.db.conn, record.thread_id, self.owner.pid, "failed", why, None, now)
            events.append(WorkerEvent("gave_up", record.thread_id, "failed", why))
            return None
        events.append(WorkerEvent("taken_over", record.thread_id, message=f"its runner was gone; takeover {record.resumes + 1} of {self.max_resumes}"))
        return Claim(record.thread_id, TAKEOVER, {}, record.lease + 1)

    def _plan(self, claim: Claim) -> RunPlan | None:
        """The run a claim asks for, checked as its direct form checks it; None (and the thread
        released, saying why) when it cannot run."""
        try:
            plan = _plan_for(self.db, claim)
        except NothingToResume as exc:
            if claim.kind == TAKEOVER:  # its last runner died after its last step: nothing left to run
                self._release(claim.thread_id, "completed", None)
                return None
            self._refused(claim, exc)
            return None
        except AgentError as exc:
            self._refused(claim, exc)
            return None
        if claim.kind == queue.RUN:
            return replace(plan, lease=claim.lease)
        return replace(plan, lease=self._keep_settings(claim, plan.settings.as_dict()))

    def _keep_settings(self, claim: Claim, settings: dict[str, Any]) -> int:
        """A resume's or retry's settings replace the thread's from now on, as `agent resume`'s
        do; the thread's lease, taken again with them (still this worker's)."""
        with immediate(self.db.conn):
            row = thread_rows.get(self.db.conn, claim.thread_id)
            if row is None or row.lease != claim.lease or row.owner_pid != self.owner.pid:
                return claim.lease  # no longer this worker's: its writes will be refused
            thread_rows.take_lease(self.db.conn, claim.thread_id, {**row.settings, **settings}, self.owner, time.time())
            return thread_rows.get(self.db.conn, claim.thread_id).lease

    def _refused(self, claim: Claim, exc: AgentError) -> None:
        """A claimed thread that cannot run here: a new run fails; a dead runner's thread this
        worker may not continue (its graph is not trusted here, say) is left `stopped` for a
        person to resume; any other request leaves the thread as it was before."""
        if claim.kind == TAKEOVER:
            status = "stopped"
        elif claim.kind == queue.RUN or claim.before in ("queued", "running"):
            status = "failed"
        else:
            status = claim.before
        self._release(claim.thread_id, status, f"the queued {claim.kind} could not start: {exc.message}")
        self.emit(WorkerEvent("refused", claim.thread_id, status, exc.message))

    def _release(self, thread_id: str, status: str, error: str | None) -> None:
        with immediate(self.db.conn):
            thread_rows.release(self.db.conn, thread_id, self.owner.pid, status, error, None, time.time())

    def _give_back(self, claim: Claim) -> None:
        """A thread taken but not started (the worker is stopping): released as it was, with its
        request queued again (a takeover's as a resume) for the next worker."""
        kind, request = (queue.RESUME, {}) if claim.kind == TAKEOVER else (claim.kind, claim.request)
        status = "stopped" if claim.kind == TAKEOVER else claim.before
        with immediate(self.db.conn):
            thread_rows.release(self.db.conn, claim.thread_id, self.owner.pid, status, None, None, time.time())
            queue_rows.put(self.db.conn, QueueRow(claim.thread_id, kind, request, claim.priority, time.time(), self.worker_id))
        queue.announce(self.db, [claim.thread_id], claim.priority)

    def _idle(self) -> bool:
        """Nothing queued that could run, no dead runner's thread to take over, no job waiting."""
        if queue_rows.ready(self.db.conn, 1):
            return False
        if self.jobs is not None and self.jobs.pending(self.db.conn):
            return False
        return all(threads.ThreadRecord(*row).holder_alive() for row in thread_rows.running(self.db.conn))

    # -- driving -------------------------------------------------------------------------------------

    def _start(self, plan: RunPlan, claim: Claim) -> None:
        drive = Drive(self.db, plan, self._events(plan.thread_id), self._host)
        self.drives[plan.thread_id] = drive
        self.tasks[plan.thread_id] = asyncio.create_task(self._drive(drive, claim))
        self.stats.max_running = max(self.stats.max_running, len(self.tasks))
        self.emit(WorkerEvent("started", plan.thread_id, message=claim.kind))

    async def _drive(self, drive: Drive, claim: Claim) -> None:
        """Drive one thread, then record what follows from how it ended; the thread counts as
        this worker's until that is done, so a stopping worker does not exit before it is."""
        thread_id = drive.plan.thread_id
        try:
            outcome = await drive.run(handle_signals=False)
            self.stats.finished += 1
            self.stats.steps += max(outcome.steps, 0)
            # Stopped for this worker's shutdown, or because its lease lapsed while the database
            # was out of reach: a resume is queued, for the next worker (or this one, once back).
            requeue = outcome.status == "stopped" and (self.stopping or drive.control.drain_reason == LEASE_LAPSED)
            # Whole even if this task is cancelled meanwhile (a second SIGTERM).
            await asyncio.shield(asyncio.to_thread(self._after, claim, outcome, requeue))
            self.emit(WorkerEvent("finished", thread_id, outcome.status, outcome.error))
        except Exception as exc:  # a bug of ours: the thread is left to a takeover, the worker goes on
            self.emit(WorkerEvent("finished", thread_id, "failed", f"{type(exc).__name__}: {exc}"))
        finally:
            self.tasks.pop(thread_id, None)
            self.drives.pop(thread_id, None)
            self._changed.set()

    def _after(self, claim: Claim, outcome: RunOutcome, requeue: bool) -> None:
        if requeue:
            self._requeue_stopped(claim.thread_id)
        self._finished(claim, outcome)

    def _requeue_stopped(self, thread_id: str) -> None:
        """A thread stopped because this worker is stopping: it stays `stopped`, with a resume queued."""
        with immediate(self.db.conn):
            queue_rows.put(self.db.conn, QueueRow(thread_id, queue.RESUME, {}, 0, time.time(), self.worker_id))
        queue.announce(self.db, [thread_id])

    def _finished(self, claim: Claim, outcome: RunOutcome) -> None:
        """What a request's origin must know of its run (a schedule records how its run ended)."""
        origin = claim.request.get("origin")
        if origin and self.on_origin is not None:
            self.on_origin(origin, outcome)

    def _events(self, thread_id: str) -> Callable[[RunEvent], None]:
        def on_event(event: RunEvent) -> None:
            if event.kind in ("warning", "notice"):
                self.emit(WorkerEvent(event.kind, thread_id, message=event.message))
            if self.on_run_event is not None:
                self.on_run_event(thread_id, event)

        return on_event

    # -- the worker's own row ------------------------------------------------------------------------

    def _register(self) -> None:
        now = time.time()
        row = WorkerRow(self.worker_id, self.owner.pid, self.owner.host, now, now, self.concurrency, 0, "running")
        with immediate(self.db.conn):
            worker_rows.register(self.db.conn, row)

    def _beat(self, status: str) -> None:
        with immediate(self.db.conn):
            worker_rows.beat(self.db.conn, self.worker_id, len(self.tasks), status, time.time())


def _plan_for(db: Database, claim: Claim) -> RunPlan:
    """The plan of a claimed thread: the run, resume, retry or answer its request asks for."""
    from langgraph.types import Command as GraphCommand

    from runtime.policy.trust import require_trusted

    request = claim.request
    settings = RunSettings(**request.get("settings", {})) if request.get("settings") else None
    if claim.kind == queue.RUN:
        record = threads.get_thread(db, claim.thread_id)
        require_trusted(record.graph, attended=False, owner=f"queued thread {claim.thread_id!r}")
        plan = prepare_run(record.graph, claim.thread_id, request.get("input", {}), RunSettings(**record.settings))
        return replace(plan, record=record)
    if claim.kind == queue.RETRY:
        return prepare_retry(db, claim.thread_id, settings, force=bool(request.get("force")), attended=False)
    command = GraphCommand(resume=request["answers"]) if claim.kind == queue.ANSWER else None
    return prepare_resume(
        db, claim.thread_id, request.get("checkpoint"), settings, edits=request.get("edits"), force=bool(request.get("force")), command=command, attended=False
    )

