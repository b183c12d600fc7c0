"""The worker: fires due schedules, continues runs whose runner died, stops cleanly on SIGTERM.

One worker runs one schedule's run at a time, in its own process (`agent worker`); a run that
takes long delays the others, which then fire late (within `grace` they are not missed). For
more runs side by side, start more workers on the same database: each occurrence is claimed in
one `BEGIN IMMEDIATE` transaction that re-reads the schedule's next fire time, advances it and
inserts the run row (UNIQUE (schedule, fire_time)), so two workers never fire one occurrence
(the rows: runtime/store/schedules.py).

A run row goes `running` -> the thread's final status (`completed`, `failed`, ...). On each tick
the worker first looks for rows left `running` whose thread's runner is gone (a killed worker:
stale heartbeat or dead pid), or `stopped` (a worker stopped by SIGTERM), and continues each with
`resume_thread`, at most `max_resumes` times; then it is marked failed. Runs are background runs:
budgets apply and sensitive actions wait for `agent approve`.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from runtime.threads import registry as threads
from runtime.schedules.clock import SystemClock, WorkerClock
from runtime.store.parts import schedules as schedule_rows
from runtime.store.database import Database
from runtime.store.seam import OccurrenceTaken
from runtime.errors import AgentError, Command, Message, ScheduleBusy, ThreadNotFound
from runtime.policy.times import iso_time
from runtime.schedules.calendar import FAILED, Schedule, get_schedule, next_fire_after, thread_name, utc_iso
from runtime.store.parts import immediate

POLL_SECONDS = 15.0
GRACE_SECONDS = 15 * 60.0
"""An occurrence found later than this after its time counts as missed (policy `--missed`)."""
MAX_RESUMES = 3
MAX_MISSED_COUNTED = 10_000


@dataclass
class WorkerEvent:
    """Something the worker did: `fired`, `finished`, `skipped`, `missed`, `resumed`, `gave_up`, `paused`."""

    kind: str
    schedule: str
    fire_time: float | None = None
    thread_id: str | None = None
    status: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "schedule": self.schedule,
            "fire_time": iso_time(self.fire_time) if self.fire_time else None,
            "thread_id": self.thread_id,
            "status": self.status,
            "message": self.message,
        }


def _identity() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def worker_alive(identity: str | None) -> bool:
    """Whether the worker `pid@host` may still be running (one on another machine is taken to be)."""
    pid, _, host = (identity or "").partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker: its thread's heartbeat tells, once the thread exists
    return threads.pid_alive(int(pid))


class Worker:
    def __init__(
        self,
        db: Database,
        clock: WorkerClock | None = None,
        *,
        grace: float = GRACE_SECONDS,
        max_resumes: int = MAX_RESUMES,
        poll: float = POLL_SECONDS,
        handle_signals: bool = False,
        on_event: Callable[[WorkerEvent], None] | None = None,
        enqueue: bool = False,
    ) -> None:
        self.db = db
        self.enqueue = enqueue
        """Put each occurrence on the run queue for the fleet worker that hosts this scheduler
        (runtime/fleet/worker.py, which reports each run's end to `finished_run`) instead of
        running it here; dead and stopped runs are then the fleet's to continue."""
        self.clock = clock or SystemClock()
        self.grace = grace
        self.max_resumes = max_resumes
        self.poll = poll
        self.handle_signals = handle_signals
        self.on_event = on_event or (lambda event: None)
        self.stopping = False
        self.identity = _identity()

    # -- the loop ------------------------------------------------------------------------------------

    def serve(self, once: bool = False) -> None:
        """Tick every `poll` seconds until SIGTERM/SIGINT (or after one tick with `once`)."""
        while not self.stopping:
            if self.handle_signals:
                self._install_signals()  # a run's own handlers are removed when it ends
            self.tick()
            if once:
                return
            waited = 0.0
            while not self.stopping and waited < self.poll:
                step = min(1.0, self.poll - waited)
                self.clock.sleep(step)
                waited += step

    def _install_signals(self) -> None:
        def stop(signum: int, frame: Any) -> None:
            self.stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)

    def tick(self) -> list[WorkerEvent]:
        """Continue dead runs, then fire every due schedule, one at a time."""
        events = self.recover()
        now = self.clock.now()
        for name in schedule_rows.due(self.db.conn, now):
            if self.stopping:
                break
            events += self.fire_due(name)
        return events

    def _emit(self, events: list[WorkerEvent], event: WorkerEvent) -> None:
        events.append(event)
        self.on_event(event)

    # -- firing ----------------------------------------------------------------------------------------

    def fire_due(self, name: str) -> list[WorkerEvent]:
        """Claim the schedule's due occurrence (or record it skipped or missed), then run it."""
        events: list[WorkerEvent] = []
        now = self.clock.now()
        try:
            with immediate(self.db.conn):
                try:
                    schedule = get_schedule(self.db, name)
                except AgentError:
                    return events  # deleted meanwhile
                if schedule.status != "active" or schedule.next_fire is None or schedule.next_fire > now:
                    return events  # another worker claimed it first
                latest, count = schedule.next_fire, 1
                while count < MAX_MISSED_COUNTED and (following := next_fire_after(schedule.cron, schedule.tz, latest)) <= now:
                    latest, count = following, count + 1
                late = now - latest > self.grace
                fire = latest if (not late or schedule.missed == "run-once") else None
                missed = count - (1 if fire is not None else 0)
                if missed:
                    first = schedule.next_fire
                    note = f"{missed}{'+' if count >= MAX_MISSED_COUNTED else ''} occurrence(s) from {utc_iso(first)} missed: no worker was running"
                    if fire is None:
                        note += f" (--missed skip; the latest, {utc_iso(latest)}, was {now - latest:.0f}s late)"
                    self._insert(schedule.name, first, None, "missed", note, now)
                    self._emit(events, WorkerEvent("missed", name, first, message=note))
                if fire is not None and schedule.overlap == "skip" and (busy := self.run_in_progress(name)):
                    note = f"the previous run (thread {busy}) was still running (--overlap skip)"
                    self._insert(name, fire, None, "skipped", note, now)
                    self._emit(events, WorkerEvent("skipped", name, fire, message=note))
                    fire = None
                run_id = thread_id = None
                if fire is not None:
                    thread_id = thread_name(name, fire)
                    run_id = self._insert(name, fire, thread_id, "running", None, now)
                schedule_rows.advance(self.db.conn, name, next_fire_after(schedule.cron, schedule.tz, now), now)
        except OccurrenceTaken:
            return events  # the occurrence was claimed by another worker (or a trigger) first
        if run_id is not None:
            self._emit(events, WorkerEvent("fired", name, fire, thread_id))
            self.execute(run_id, schedule, thread_id, events)
        return events

    def _insert(self, name: str, fire: float, thread_id: str | None, status: str, error: str | None, now: float) -> int:
        return schedule_rows.insert_run(self.db.conn, name, fire, thread_id, status, error, self.identity, now)

    def run_in_progress(self, name: str) -> str | None:
        """The thread of a run of the schedule that is still going, if any."""
        for run in schedule_rows.running_runs(self.db.conn, name):
            thread_id, worker = run.thread_id, run.worker
            try:
                record = threads.get_thread(self.db, thread_id)
            except ThreadNotFound:
                if worker_alive(worker):
                    return thread_id  # claimed, its thread not created yet
                continue
            if (record.status == "running" and record.holder_alive()) or record.status == "queued":
                return thread_id
        return None

    def trigger(self, name: str) -> Any:
        """Run the schedule once now, in this process, recorded like a worker's run; returns the RunOutcome."""
        now = self.clock.now()
        with immediate(self.db.conn):
            schedule = get_schedule(self.db, name)
            if schedule.overlap == "skip" and (busy := self.run_in_progress(name)):
                raise ScheduleBusy(
                    f"schedule {name!r} has a run in progress (thread {busy}) and does not overlap runs",
                    Message(
                        "wait for it ({status}), or stop it: {cancel}", status=Command("status", thread_id=busy), cancel=Command("cancel", thread_id=busy)
                    ),
                )
            thread_id = thread_name(name, now)
            try:
                run_id = self._insert(name, now, thread_id, "running", None, now)
            except OccurrenceTaken:  # a worker fired the same instant first
                raise ScheduleBusy(f"schedule {name!r} was fired by another process at this very instant", Message("{} shows its runs", Command("schedule runs", name=name))) from None
        return self.execute(run_id, schedule, thread_id, [], reraise=True)

    def execute(self, run_id: int, schedule: Schedule, thread_id: str, events: list[WorkerEvent], *, resume: bool = False, reraise: bool = False) -> Any:
        """Run (or continue) one claimed occurrence and record how it ended."""
        from runtime.runs.outcome import explain_failure
        from runtime.runs.runner import resume_thread, run_thread
        from runtime.policy.settings import RunSettings
        from runtime.policy.trust import require_trusted

        stored = schedule.settings
        settings = RunSettings(model=stored.get("model"), max_cost=stored.get("max_cost"), deadline=stored.get("deadline"), background=True)
        outcome = None
        if self.enqueue and not reraise:
            return self._enqueue(run_id, schedule, thread_id, settings, events)
        try:
            # Unattended: only built-in graphs and those listed in AGENT_TRUSTED_GRAPHS (runtime/policy/trust.py).
            if resume:
                outcome = resume_thread(self.db, thread_id, None, settings, handle_signals=self.handle_signals, attended=False)
            else:
                require_trusted(schedule.graph, attended=False, owner=f"schedule {schedule.name!r}")
                outcome = run_thread(self.db, schedule.graph, thread_id, schedule.input, settings, handle_signals=self.handle_signals)
            status, error = outcome.status, outcome.error
        except AgentError as exc:
            status, error = "failed", exc.message
            if reraise:
                self.finish(run_id, schedule.name, status, error, events, thread_id)
                raise
        except Exception as exc:
            status, error = "failed", explain_failure(exc)
        self.finish(run_id, schedule.name, status, error, events, thread_id)
        if status == "stopped":
            self.stopping = True  # the run was stopped by SIGTERM/SIGINT: the worker stops too
        return outcome

    def _enqueue(self, run_id: int, schedule: Schedule, thread_id: str, settings: Any, events: list[WorkerEvent]) -> None:
        """Queue a claimed occurrence for the fleet worker; a run that cannot be queued fails here."""
        from runtime.fleet.queue import submit_run
        from runtime.policy.trust import require_trusted

        try:
            require_trusted(schedule.graph, attended=False, owner=f"schedule {schedule.name!r}")
            submit_run(self.db, schedule.graph, thread_id, schedule.input, settings, origin={"schedule": schedule.name, "run_id": run_id})
        except AgentError as exc:
            self.finish(run_id, schedule.name, "failed", exc.message, events, thread_id)

    def finished_run(self, origin: dict[str, Any], thread_id: str, status: str, error: str | None) -> None:
        """The fleet worker's report of a queued occurrence's run. A run stopped by its worker
        stopping is recorded `stopped` and continued by the next worker; its end, like that of a
        run taken over, is recorded when it comes (`recover`)."""
        if status != "taken_over":
            self.finish(origin["run_id"], origin["schedule"], status, error, [], thread_id)

    def finish(self, run_id: int, name: str, status: str, error: str | None, events: list[WorkerEvent], thread_id: str | None = None) -> None:
        """Record a run's end and its effect on the schedule's failure count, in one transaction;
        once: a run whose end was recorded already (by the worker that ran it, or another
        worker's `recover`) is left as it is, and its failure counted once."""
        paused = None
        with immediate(self.db.conn):
            fire = schedule_rows.fire_time(self.db.conn, run_id)
            if not schedule_rows.end_run(self.db.conn, run_id, status, error, self.clock.now()):
                return
            row = schedule_rows.failures(self.db.conn, name)
            if row is not None:
                failures, max_failures, current = row
                if status == "completed":
                    failures = 0
                elif status in FAILED:
                    failures += 1
                    if failures >= max_failures and current == "active":
                        paused = f"paused after {failures} consecutive failed runs; the last: {status}" + (f": {error}" if error else "")
                schedule_rows.set_failures(self.db.conn, name, failures, paused, time.time())
        self._emit(events, WorkerEvent("finished", name, fire, thread_id, status, error))
        if paused:
            self._emit(events, WorkerEvent("paused", name, message=paused))

    # -- recovery --------------------------------------------------------------------------------------

    def recover(self) -> list[WorkerEvent]:
        """Continue runs whose runner died (or that a stopping worker left `stopped`)."""
        events: list[WorkerEvent] = []
        for run in schedule_rows.unfinished_runs(self.db.conn):
            run_id, name, thread_id, status, resumes, worker = run.id, run.schedule, run.thread_id, run.status, run.resumes, run.worker
            if self.stopping:
                break
            try:
                record = threads.get_thread(self.db, thread_id)
            except ThreadNotFound:
                record = None
            if record is None:
                if status == "running" and worker_alive(worker):
                    continue  # just claimed by a live worker
                resume = False
            elif (record.status == "running" and record.holder_alive()) or record.status == "queued":
                continue
            elif self.enqueue and (record.shown_status == "stale" or record.status == "stopped"):
                continue  # the fleet continues it; its end is recorded here once it has one
            elif record.shown_status == "stale" or record.status == "stopped":
                resume = True
            else:  # the thread ended, but its worker died before recording it
                self.finish(run_id, name, record.status, record.error, events, thread_id)
                continue
            if resumes >= self.max_resumes:
                self.finish(run_id, name, "failed", f"its runner died or was stopped {resumes + 1} times; gave up after {self.max_resumes} resumes", events, thread_id)
                self._emit(events, WorkerEvent("gave_up", name, thread_id=thread_id))
                continue
            with immediate(self.db.conn):
                claimed = schedule_rows.claim_resume(self.db.conn, run_id, resumes, status, self.identity)
            if not claimed:
                continue  # another worker took it
            try:
                schedule = get_schedule(self.db, name)
            except AgentError:
                continue
            self._emit(events, WorkerEvent("resumed", name, thread_id=thread_id, message=f"resume {resumes + 1} of {self.max_resumes}"))
            self.execute(run_id, schedule, thread_id, events, resume=resume)
        return events
