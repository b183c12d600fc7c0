"""Dispatch of queued runs across machines by Procrastinate, the PostgreSQL job queue.

The run queue (`agent_queue`, runtime/store/postgres/queue_rows.py) stays the record of what is
asked of each thread: `agent status` reads it, `agent cancel` clears it, a schedule's worker
fills it. Procrastinate carries the news to the workers, wherever they run:

- Every queued request, and every thread whose runner died, becomes a job `agent.drive` whose
  argument is the thread. Its `lock` is the thread, so at most one job of a thread runs anywhere
  at a time; its `queueing_lock` is the thread too, so at most one waits.
- Workers take jobs as Procrastinate hands them out (LISTEN/NOTIFY, its polling as a fallback),
  up to their concurrency; the job takes the thread's lease and drives it
  (runtime/fleet/worker.py). Several workers on many machines share the jobs.
- A worker that dies mid-job stops sending Procrastinate's heartbeat; the live workers find its
  jobs (`get_stalled_jobs`) and hand them back to the queue (`retry_job`), and the one that takes
  the job takes the thread over from its latest checkpoint. Procrastinate cannot see a run of
  `agent run` (no job) whose process died: the workers look for those in `agent_threads`
  themselves and queue a job for each.

A `task_queue` thread driven by a worker spreads its items the same way: each part of a chunk
is a job `agent.items` (runtime/fleet/spread.py), whose lock is the part, so no two workers work
on one part at once, and which the same stalled-job search hands back when its worker dies.

What is added on top, and why: the job is deferred after the request's transaction commits
(Procrastinate defers on its own connection), so a process that dies between the two, or a
server that refused the job, leaves a request without a job; every worker looks for those each
second (`unannounced`) and defers them. Deferring is idempotent (the queueing lock), so two
workers doing it at once defer one job. Procrastinate's own schema is made by its schema manager,
once, under the setup lock of the database; its CLI (`procrastinate --app=... shell`) and tables
(`procrastinate_jobs`) show the jobs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Awaitable, Callable

import psycopg

TASK = "agent.drive"
QUEUE = "agent"
ITEMS_TASK = "agent.items"
"""A part of one queue thread's items, for any worker with room (runtime/fleet/spread.py)."""
ITEMS_QUEUE = "agent.items"
"""Served by a Procrastinate worker of its own in each fleet worker, so a thread's run waiting
for its items never holds the slot its items need."""
POOL_SIZE = 4
"""Procrastinate's own connections: one listens, the others fetch and finish jobs."""
ANALYZE_AFTER = 500
"""Rows of Procrastinate's jobs table changed since its statistics were last taken past which a
worker takes them again (`keep_statistics`)."""

log = logging.getLogger(__name__)


class JobQueue:
    """The Procrastinate app of one database, made on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False
        self._app: Any = None
        self._sync_app: Any = None

    @property
    def app(self) -> Any:
        """The app a worker serves and defers through on its event loop (`serve`, `adefer`)."""
        if self._app is None:
            self._app = _make_app(self.url)
        return self._app

    def _opened_sync_app(self) -> Any:
        """An app of its own for deferring from plain threads (a face's submit, a scheduler's
        tick inside a worker), opened once and kept until `close`."""
        if self._sync_app is None:
            self._sync_app = _make_app(self.url).open()
        return self._sync_app

    # -- Procrastinate's schema -----------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Make Procrastinate's tables once (under the database's setup lock, as LangGraph's are)."""
        if self._ready:
            return
        from procrastinate.schema import SchemaManager

        from runtime.store.postgres.schema import setup_lock

        with psycopg.connect(self.url, autocommit=True) as conn:
            if not _has_schema(conn):
                with setup_lock(conn):
                    if not _has_schema(conn):
                        conn.execute(SchemaManager.get_schema())  # type: ignore[call-overload]
        self._ready = True

    # -- deferring ------------------------------------------------------------------------------

    def defer(self, thread_ids: Iterable[str], priority: int = 0) -> int:
        """A job for each thread that has none waiting; how many were deferred (from any thread
        of the process, not the event loop)."""
        wanted = list(thread_ids)
        if not wanted:
            return 0
        self.ensure_schema()
        from procrastinate.exceptions import AlreadyEnqueued

        deferred = 0
        task = self._opened_sync_app().tasks[TASK]
        for thread_id in wanted:
            try:
                task.configure(lock=thread_id, queueing_lock=thread_id, priority=priority).defer(thread_id=thread_id)
                deferred += 1
            except AlreadyEnqueued:
                continue
        return deferred

    async def adefer(self, thread_ids: Iterable[str], priority: int = 0) -> int:
        """`defer` on the event loop, through the app opened by `serve`."""
        from procrastinate.exceptions import AlreadyEnqueued

        task = self.app.tasks[TASK]
        deferred = 0
        for thread_id in thread_ids:
            try:
                await task.configure(lock=thread_id, queueing_lock=thread_id, priority=priority).defer_async(thread_id=thread_id)
                deferred += 1
            except AlreadyEnqueued:
                continue
        return deferred

    def unannounced(self, conn: psycopg.Connection, thread_ids: Iterable[str]) -> list[str]:
        """Those of `thread_ids` with no job waiting or running (read from Procrastinate's table)."""
        wanted = list(thread_ids)
        if not wanted:
            return []
        have = {
            row[0]
            for row in conn.execute(
                "SELECT queueing_lock FROM procrastinate_jobs WHERE task_name = %s AND status IN ('todo', 'doing') "
                "AND queueing_lock = ANY(%s)",
                (TASK, wanted),
            )
        }
        return [t for t in wanted if t not in have]

    def pending(self, conn: psycopg.Connection) -> int:
        """Jobs waiting or running."""
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status IN ('todo', 'doing')", (TASK,)
        ).fetchone()[0]

    def keep_statistics(self, conn: psycopg.Connection) -> bool:
        """ANALYZE Procrastinate's jobs table once ANALYZE_AFTER rows have changed since its last
        statistics; whether it did.

        Procrastinate fetches each job with a query whose plan the statistics decide: with none
        (a burst of thousands of jobs on a new table, before autovacuum's next round, or on a
        server where it is off) the planner guesses, and a fetch was measured at 57-82 ms with
        2,000 jobs waiting against 0.9 ms after an ANALYZE (bench/README.md). A worker looks each
        time it looks for unannounced work (a second): one read of the server's counters."""
        row = conn.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = to_regclass('procrastinate_jobs')").fetchone()
        if row is None or row[0] < ANALYZE_AFTER:
            return False
        conn.execute("ANALYZE procrastinate_jobs")
        return True

    # -- working --------------------------------------------------------------------------------

    async def retry_stalled(self, seconds: float) -> list[str]:
        """Jobs of workers whose heartbeat is older than `seconds` (or gone) handed back to the
        queue; the threads they were driving."""
        from procrastinate.exceptions import UniqueViolation
        from procrastinate.jobs import Status

        manager = self.app.job_manager
        stalled = []
        for task_name in (TASK, ITEMS_TASK):
            stalled += await manager.get_stalled_jobs(task_name=task_name, seconds_since_heartbeat=seconds)
        for job in stalled:
            try:
                await manager.retry_job(job)
            except (UniqueViolation, psycopg.errors.UniqueViolation):  # Procrastinate's wrapping of it, or its own
                # A job of the thread (or of the part) waits already (its request was queued
                # again, a worker announced its dead runner, the part was deferred again): this
                # one is not needed; Procrastinate's retry does not say so more kindly than the
                # queueing lock's index does.
                await manager.finish_job(job, Status.FAILED, delete_job=True)
        return [job.task_kwargs.get("thread_id") for job in stalled if job.task_name == TASK]

    async def serve(
        self, handler: Callable[..., Awaitable[None]], *, concurrency: int, name: str, stalled_after: float, items: bool = False
    ) -> None:
        """Run jobs with `handler` until cancelled (then running jobs end first): the queued
        runs' jobs, or with `items` the queue threads' parts."""
        self.ensure_schema()
        await self.app.run_worker_async(
            queues=[ITEMS_QUEUE if items else QUEUE],
            name=name,
            concurrency=concurrency,
            wait=True,
            install_signal_handlers=False,
            listen_notify=True,
            fetch_job_polling_interval=1.0,
            delete_jobs="successful",
            additional_context={"handler": handler},
            update_heartbeat_interval=max(0.5, stalled_after / 4),
            stalled_worker_timeout=stalled_after,
        )

    # -- a queue thread's items ------------------------------------------------------------------

    async def adefer_items(self, thread_id: str, round_: int, parts: dict[int, list[int]], work: dict[str, Any]) -> dict[int, int | None]:
        """A job for each part (part number -> item indexes) that has none waiting; part number
        -> the job's id, None where one waits already. `work` (the prompt, the settings) goes
        with each job."""
        from procrastinate.exceptions import AlreadyEnqueued

        task = self.app.tasks[ITEMS_TASK]
        ids: dict[int, int | None] = {}
        for part, indexes in parts.items():
            key = part_key(thread_id, round_, part)
            try:
                ids[part] = await task.configure(lock=key, queueing_lock=key).defer_async(
                    thread_id=thread_id, round=round_, indexes=indexes, **work
                )
            except AlreadyEnqueued:
                ids[part] = None
        return ids

    async def acancel(self, job_ids: Iterable[int]) -> int:
        """Cancel those of the jobs that have not started; how many were."""
        manager = self.app.job_manager
        cancelled = 0
        for job_id in job_ids:
            cancelled += bool(await manager.cancel_job_by_id_async(job_id, delete_job=True))
        return cancelled

    def part_states(self, conn: psycopg.Connection, thread_id: str, round_: int, parts: Iterable[int]) -> dict[int, str]:
        """Part number -> the status of its job waiting, running or failed (`todo`, `doing`,
        `failed`...); a part whose job finished (and was deleted) is not there."""
        keys = {part_key(thread_id, round_, part): part for part in parts}
        if not keys:
            return {}
        rows = conn.execute(
            "SELECT lock, status::text FROM procrastinate_jobs WHERE task_name = %s AND lock = ANY(%s) ORDER BY id",
            (ITEMS_TASK, list(keys)),
        ).fetchall()
        return {keys[lock]: status for lock, status in rows}

    def close(self) -> None:
        if self._sync_app is not None:
            with contextlib.suppress(Exception):  # a server already gone
                self._sync_app.close()
            self._sync_app = None


def _make_app(url: str) -> Any:
    from procrastinate import App, PsycopgConnector

    from runtime.store.postgres.connect import session_options

    app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=POOL_SIZE, kwargs=session_options()))

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    async def drive(context: Any, thread_id: str) -> None:
        await context.additional_context["handler"](thread_id)

    @app.task(name=ITEMS_TASK, queue=ITEMS_QUEUE, pass_context=True)
    async def items(context: Any, **part: Any) -> None:
        await context.additional_context["handler"](**part)

    return app


def part_key(thread_id: str, round_: int, part: int) -> str:
    """The lock (and queueing lock) of one part of a thread's items in one round."""
    return f"items:{round_}:{part}:{thread_id}"


def _has_schema(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is not None


def __getattr__(name: str) -> Any:
    """`app`: the app of the database AGENT_DB names, for Procrastinate's own CLI
    (`procrastinate --app=runtime.store.postgres.jobs.app shell`)."""
    if name == "app":
        import os

        url = os.environ.get("AGENT_DB", "")
        if not url.startswith(("postgresql://", "postgres://")):
            raise RuntimeError("set AGENT_DB to the postgresql:// URL of agent's database")
        return _make_app(url)
    raise AttributeError(name)
