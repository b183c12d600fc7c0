"""What the runs of one process share: the saver and store they write through, one heartbeat
for every lease the process holds, and one reader of pause / cancel requests and spend.

`agent run` hosts one run; a worker hosts thousands at once on one event loop. Per run, a
heartbeat and a watcher would be two queries a run every half second or so, 20,000 a second for
10,000 threads: here each is one statement for all of them. Every `HEARTBEAT_SECONDS` the host
renews all its leases at once (`leases_held`) and learns which it still holds: a run whose lease
was taken over (this process stalled past it, or lost the database) is told to stop, and its
writes would be refused anyway (fencing, runtime/store/seam.py). Every `FLUSH_SECONDS` it adds
every run's new spend in one transaction and hands each run the pause or cancel asked of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from runtime.policy.budget import FLUSH_SECONDS, add_spend
from runtime.runs.outcome import RunEvent
from runtime.store.database import Database
from runtime.store.parts import control as control_rows
from runtime.store.parts import immediate, out_of_reach
from runtime.store.parts import threads as thread_rows
from runtime.threads import registry as threads
from runtime.threads.progress import save_reported

if TYPE_CHECKING:
    from runtime.runs.drive import Drive

LEASE_LOST = "lease_lost"
"""The drain reason of a run whose lease another runner took."""
LEASE_LAPSED = "lease_lapsed"
"""The drain reason of a run whose lease could not be renewed for as long as a lease lasts (the
database out of reach): another runner may take the thread over by now, so it stops."""


class RunHost:
    """The shared services of the runs in this process (use `async with`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.drives: dict[str, Drive] = {}
        self.storage: tuple[Any, Any] | None = None
        self._tasks: list[asyncio.Task] = []
        self._stack = contextlib.AsyncExitStack()
        self._compiled: dict[tuple, tuple[Any, Any]] = {}
        self.spread: Callable[[Drive], Any] | None = None
        """Makes a run's hand-out of its queue's items to a fleet (runtime/fleet/spread.py); set by
        a fleet worker on PostgreSQL. None: every run works through its items itself."""

    async def __aenter__(self) -> RunHost:
        self.storage = await self._stack.enter_async_context(self.db.open_async())
        self._tasks = [asyncio.create_task(self._beat()), asyncio.create_task(self._watch())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()

    def compiled(self, spec: Any, settings: Any) -> tuple[Any, Any]:
        """(builder, compiled graph) of a graph with a run's retry settings, on the host's saver
        and store: compiled once for every run of this process that asks for the same."""
        key = (spec.spec, spec.version, settings.max_attempts, settings.backoff, settings.node_timeout)
        found = self._compiled.get(key)
        if found is None:
            builder = spec.build(max_attempts=settings.max_attempts, backoff=settings.backoff, node_timeout=settings.node_timeout)
            saver, store = self.storage
            found = self._compiled[key] = (builder, builder.compile(checkpointer=saver, store=store))
        return found

    @contextlib.asynccontextmanager
    async def hosting(self, drive: Drive) -> AsyncIterator[None]:
        self.drives[drive.plan.thread_id] = drive
        try:
            yield
        finally:
            self.drives.pop(drive.plan.thread_id, None)

    async def _beat(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(threads.HEARTBEAT_SECONDS)
            if not self.drives:
                renewed = time.monotonic()
                continue
            try:
                # Off the event loop: the write may wait for the store's transaction, which needs the loop.
                held = await asyncio.to_thread(self.renew)
            except Exception as exc:
                if not out_of_reach(exc):
                    raise
                # The database is out of reach (a lost connection, a partition).
                if time.monotonic() - renewed < threads.STALE_AFTER_SECONDS:
                    continue  # try again; the leases still stand
                # Past the lease, another runner may hold them now: stop driving every thread.
                why = f"the database could not be reached for {threads.STALE_AFTER_SECONDS:g}s ({type(exc).__name__}); stopping at the next node boundary, as another runner may take the thread over"
                for drive in list(self.drives.values()):
                    if drive.plan.lease is not None:
                        drive.emit(RunEvent("warning", message=why))
                        drive.lease_lapsed()
                continue
            renewed = time.monotonic()
            for thread_id, drive in list(self.drives.items()):
                if drive.plan.lease is not None and held.get(thread_id) != drive.plan.lease:
                    drive.lease_lost()

    def renew(self) -> dict[str, int]:
        """Renew every lease this process holds, keep the progress runs reported; the leases held."""
        with immediate(self.db.conn):
            owner, now = threads.this_process(), time.time()
            held = thread_rows.leases_held(self.db.conn, owner, now)
            for drive in list(self.drives.values()):
                if held.get(drive.plan.thread_id) != drive.plan.lease:
                    continue
                if drive.step >= 0 and drive.step != drive.step_recorded:  # for `agent threads` meanwhile
                    drive.step_recorded = drive.step
                    thread_rows.heartbeat(self.db.conn, drive.plan.thread_id, owner.pid, now, drive.step)
                if drive.reported:
                    save_reported(self.db, drive.plan.thread_id, drive.figures())
        return held

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if not self.drives:
                continue
            try:
                requests = await asyncio.to_thread(self.flush)
            except Exception as exc:
                if not out_of_reach(exc):
                    raise
                continue  # the database is out of reach: the spend waits for the next flush
            for thread_id, request in requests.items():
                drive = self.drives.get(thread_id)
                if drive is not None:
                    drive.asked(request)

    def flush(self) -> dict[str, str]:
        """Add every run's new spend in one transaction; the requests addressed to this process's runs."""
        drives = list(self.drives.values())
        taken = [(drive, drive.meter.take_pending()) for drive in drives]
        try:
            with immediate(self.db.conn):
                for drive, pending in taken:
                    add_spend(self.db, drive.plan.thread_id, pending)
        except BaseException:
            for drive, pending in taken:  # not stored: kept for the next flush
                drive.meter.give_back(pending)
            raise
        return control_rows.addressed_to(self.db.conn, threads.this_process())

