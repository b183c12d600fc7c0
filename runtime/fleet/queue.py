"""Queued runs: a face records a run for a worker to drive and returns at once.

`submit_run` checks everything `run_thread` checks (the graph, the input, the settings, the
models) and records the thread as `queued` with its settings; `submit_resume`, `submit_retry` and
`submit_decisions` queue a resume (from the latest or a chosen checkpoint, with edits), a new round
of a queue's failed items, or answers to a thread's approvals, each checked as its direct form
checks it. Nothing is written when a check fails. At most one request waits per thread; a
request for a thread that is running waits for that run to end. Workers take requests oldest
first within their priority (runtime/fleet/worker.py). Queued runs are background runs: nobody is
at a terminal, so their sensitive actions wait for `agent approve`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from runtime.errors import Command, Message, Setting, ThreadBusy, ThreadExists
from runtime.policy.settings import RunSettings
from runtime.runs.plan import prepare_resume, prepare_retry, prepare_run
from runtime.store.database import Database
from runtime.store.parts import immediate
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.seam import QueueRow
from runtime.threads import registry as threads
from runtime.threads.control import current_user

RUN, RESUME, RETRY, ANSWER = "run", "resume", "retry", "answer"
log = logging.getLogger(__name__)


def submit_run(
    db: Database, graph: str, thread_id: str, input: dict[str, Any], settings: RunSettings | None = None, *, priority: int = 0, origin: dict[str, Any] | None = None
) -> str:
    """Queue a new thread of `graph` with `input`; checked as `run_thread` checks it. Returns the
    thread id. `origin` is kept with the request (a schedule's run, for its worker to record)."""
    return queue_plan(db, prepare_submit(graph, thread_id, input, settings), priority=priority, origin=origin)


def prepare_submit(graph: str, thread_id: str, input: dict[str, Any], settings: RunSettings | None = None) -> Any:
    """A queued run, checked as `run_thread` checks it, before the database is touched (or made)."""
    return prepare_run(graph, thread_id, input, replace_background(settings))


def queue_plan(db: Database, plan: Any, *, priority: int = 0, origin: dict[str, Any] | None = None) -> str:
    """Record a checked run (`prepare_submit`) as a queued thread."""
    thread_id, now = plan.thread_id, time.time()
    with immediate(db.conn):
        if not thread_rows.insert_queued(db.conn, thread_id, plan.spec.spec, plan.spec.version, plan.settings.as_dict(), now):
            _refuse_taken(db, thread_id)
            thread_rows.delete(db.conn, thread_id)  # an id whose first run saved nothing: free again
            thread_rows.insert_queued(db.conn, thread_id, plan.spec.spec, plan.spec.version, plan.settings.as_dict(), now)
        _put(db, QueueRow(thread_id, RUN, {"input": plan.input, **({"origin": origin} if origin else {})}, priority, now, current_user()))
    announce(db, [thread_id], priority)
    return thread_id


def submit_resume(
    db: Database,
    thread_id: str,
    checkpoint: str | None = None,
    settings: RunSettings | None = None,
    *,
    edits: dict[str, Any] | None = None,
    force: bool = False,
    priority: int = 0,
) -> str:
    """Queue a resume of a thread (from `checkpoint`, a fork, with `edits` applied first); checked
    as `resume_thread` checks it, but a thread that is running is not refused: the resume waits."""
    plan = prepare_resume(db, thread_id, checkpoint, settings, edits=edits, force=force, queued=True)
    request = {"checkpoint": plan.checkpoint_id, "settings": _given(settings), "edits": plan.edits, "force": force}
    return _queue(db, thread_id, RESUME, request, priority)


def submit_retry(db: Database, thread_id: str, settings: RunSettings | None = None, *, force: bool = False, priority: int = 0) -> str:
    """Queue a new round of a finished queue's failed items; checked as `retry_failed` checks it."""
    prepare_retry(db, thread_id, settings, force=force)
    return _queue(db, thread_id, RETRY, {"settings": _given(settings), "force": force}, priority)


def submit_decisions(
    db: Database,
    thread_id: str,
    ids: list[str] | None,
    approved: bool,
    reason: str | None = None,
    *,
    every: bool = False,
    priority: int = 0,
    by: str | None = None,
    via: str | None = None,
    attended: bool = True,
) -> str:
    """Queue the answers to a thread's pending approvals, made and checked as `decide` makes
    them (who, when and why recorded now): a worker resumes the thread with them. Answers to a
    thread whose earlier answers still wait in the queue join them (one approval answered after
    another, before a worker took the first): the worker resumes it with all of them."""
    from runtime.runs.approvals import check_reason, decisions_for

    check_reason(thread_id, ids, approved, reason)
    answers = decisions_for(db, thread_id, ids, approved, reason, every, attended=attended, by=by, via=via)
    with immediate(db.conn):
        waiting = queue_rows.get(db.conn, thread_id)
        if waiting is not None and waiting.kind == ANSWER:
            joined = {**waiting.request.get("answers", {}), **answers}
            queue_rows.delete(db.conn, thread_id)
            _put(db, waiting._replace(request={**waiting.request, "answers": joined}, priority=max(waiting.priority, priority)))
            return thread_id
    return _queue(db, thread_id, ANSWER, {"answers": answers}, priority)


WAIT_POLL_SECONDS = 0.2


def wait_for_thread(db: Database, thread_id: str, timeout: float | None = None) -> threads.ThreadRecord:
    """Block until the thread has no queued request and nobody runs it (a worker, in this or
    another process, has taken it to an end or a stop); its record. ThreadBusy after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = threads.get_thread(db, thread_id)
        if queue_rows.get(db.conn, thread_id) is None and record.status not in ("queued", "running"):
            return record
        if deadline is not None and time.monotonic() >= deadline:
            raise ThreadBusy(f"thread {thread_id!r} is still {record.shown_status} after waiting {timeout:g}s", Message("{} shows where it is", Command("status", thread_id=thread_id)))
        time.sleep(WAIT_POLL_SECONDS)


def replace_background(settings: RunSettings | None) -> RunSettings:
    """A queued run's settings: nobody is at its terminal."""
    given = asdict(settings) if settings is not None else {}
    return RunSettings(**{**given, "background": True})


def _queue(db: Database, thread_id: str, kind: str, request: dict[str, Any], priority: int) -> str:
    with immediate(db.conn):
        threads.get_thread(db, thread_id)
        _put(db, QueueRow(thread_id, kind, request, priority, time.time(), current_user()))
        thread_rows.mark_queued(db.conn, thread_id, time.time())
    announce(db, [thread_id], priority)
    return thread_id


def announce(db: Database, thread_ids: list[str], priority: int = 0) -> None:
    """Tell the database's job queue, where it has one (Procrastinate on PostgreSQL), that these
    threads have a request waiting, once it is committed. If that fails the request still
    stands: every worker looks for requests that have no job and announces them itself."""
    jobs = db.job_queue()
    if jobs is None:
        return
    try:
        jobs.defer(thread_ids, priority)
    except Exception as exc:  # the job queue's server or schema: the workers catch up
        log.warning("queued %s; announcing it to the workers failed (%s), a worker will find it", ", ".join(thread_ids), exc)


def _put(db: Database, row: QueueRow) -> None:
    if not queue_rows.put(db.conn, row):
        waiting = queue_rows.get(db.conn, row.thread_id)
        raise ThreadBusy(
            f"thread {row.thread_id!r} has a request queued already (a {waiting.kind if waiting else 'request'}); one may wait at a time",
            Message("{} shows it", Command("status", thread_id=row.thread_id)),
        )


def _refuse_taken(db: Database, thread_id: str) -> None:
    existing = threads.get_thread(db, thread_id)
    if existing.holder_alive() or threads.has_saved_work(db.conn, thread_id) or queue_rows.get(db.conn, thread_id) is not None:
        raise ThreadExists(
            f"thread {thread_id!r} already exists (graph {existing.graph}, {existing.shown_status})",
            Message("continue it with: {resume}  (or pick a new {thread})", resume=Command("resume", thread_id=thread_id), thread=Setting("thread_id")),
        )


def _given(settings: RunSettings | None) -> dict[str, Any]:
    """The settings given for a resume or retry (they replace the thread's from then on)."""
    return {k: v for k, v in asdict(settings).items() if v is not None} if settings is not None else {}
