"""Runs and threads as the LangGraph API names them, over the runtime's threads and run queue.

A run is a request to the run queue (runtime/fleet/queue.py) with a record of its own, kept in the
thread's store namespace `apiruns.<label>` (so deleting a thread deletes its runs): the run's id,
assistant, what it asked for, its status and when it ended. The queue and the thread's row are
the truth; a record's status follows them (`settle`): `pending` while the request waits,
`running` while a worker drives the thread, then the status the thread ended with. A run made with
`multitask_strategy="enqueue"` while the thread is busy is recorded first and queued when the run
before it ends. A thread made by `POST /threads` with nothing run yet is a record under
`apithread.<label>` (its metadata) until its first run makes it a thread of the runtime.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, Iterator, NamedTuple

from runtime.errors import AgentError, BadInput, Message, NothingToResume, Setting, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.fleet import queue
from runtime.policy.settings import RunSettings
from runtime.policy.times import iso_time
from runtime.store.database import Database
from runtime.store.parts import immediate, namespaces
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.seam import StoreItem
from runtime.threads import registry as threads
from state.storage import thread_label

FINAL = {"success", "error", "timeout", "interrupted"}
OURS_TO_RUN = {
    "completed": "success",
    "failed": "error",
    "budget_exceeded": "error",
    "timeout": "timeout",
    "interrupted": "interrupted",
    "awaiting_approval": "interrupted",
    "paused": "interrupted",
    "cancelled": "interrupted",
    "stopped": "interrupted",
}
"""How a run ended, by the status its thread was left with."""
SETTINGS = {f.name for f in fields(RunSettings)} - {"background"}
"""Run settings a request may give in `config.configurable` or `context` (the CLI's flags)."""
LANGGRAPH_KEYS = {"thread_id", "checkpoint_id", "checkpoint_ns", "run_id", "assistant_id", "graph_id", "user_id", "langgraph_auth_user"}
"""Keys LangGraph's clients put in a config themselves; never settings."""


def new_id() -> str:
    """A run id that sorts by when it was made (records are read back in key order)."""
    from langgraph.checkpoint.base.id import uuid6

    return str(uuid6())


def _runs_prefix(thread_id: str) -> str:
    return f"apiruns.{thread_label(thread_id)}"


def _thread_prefix(thread_id: str) -> str:
    return f"apithread.{thread_label(thread_id)}"


# -- threads -----------------------------------------------------------------------------------------


def thread_meta(db: Database, thread_id: str) -> dict[str, Any] | None:
    """What `POST /threads` recorded of a thread (metadata, when made), or None."""
    for item in namespaces.items(db.conn, _thread_prefix(thread_id)):
        return {**item.value, "created_at": item.created_at, "updated_at": item.updated_at}
    return None


def put_thread_meta(db: Database, thread_id: str, metadata: dict[str, Any], created_at: float | None = None, **more: Any) -> None:
    """Record the thread's metadata (and, in `more`, its webhook), keeping what else was recorded."""
    now = time.time()
    kept = {k: v for k, v in (thread_meta(db, thread_id) or {}).items() if k not in ("created_at", "updated_at")}
    value = {**kept, "metadata": metadata, **more}
    with immediate(db.conn):
        namespaces.put_items(db.conn, _thread_prefix(thread_id), [StoreItem("meta", value, created_at or now, now)])


def find_thread(db: Database, thread_id: str) -> tuple[threads.ThreadRecord | None, dict[str, Any] | None]:
    """The runtime's record of the thread (None before its first run) and the API's; ThreadNotFound when neither has it."""
    threads.check_thread_id(thread_id)
    meta = thread_meta(db, thread_id)
    try:
        record = threads.get_thread(db, thread_id)
    except ThreadNotFound:
        if meta is None:
            raise
        record = None
    return record, meta


def schedule_hook(db: Database, name: str) -> dict[str, Any] | None:
    for item in namespaces.items(db.conn, f"apischedule.{thread_label(name)}"):
        return item.value.get("webhook")
    return None


def put_schedule_hook(db: Database, name: str, hook: dict[str, Any] | None) -> None:
    from runtime.schedules.calendar import get_schedule

    get_schedule(db, name)
    now = time.time()
    with immediate(db.conn):
        namespaces.put_items(db.conn, f"apischedule.{thread_label(name)}", [StoreItem("hook", {"webhook": hook}, now, now)])


# -- runs ----------------------------------------------------------------------------------------------


def runs_of(db: Database, thread_id: str) -> list[dict[str, Any]]:
    """The thread's run records, oldest first."""
    return [item.value for item in namespaces.items(db.conn, _runs_prefix(thread_id))]


def get_run(db: Database, thread_id: str, run_id: str) -> dict[str, Any]:
    for run in runs_of(db, thread_id):
        if run["run_id"] == run_id:
            return run
    raise ThreadNotFound(f"thread {thread_id!r} has no run {run_id!r}", Message("{} lists its runs", "GET /threads/{thread_id}/runs".replace("{thread_id}", thread_id)))


def _save(db: Database, run: dict[str, Any]) -> None:
    run["updated_at"] = iso_time(time.time())
    item = StoreItem(run["run_id"], run, time.time(), time.time())
    namespaces.put_items(db.conn, _runs_prefix(run["thread_id"]), [item])


def settings_of(config: dict[str, Any] | None, context: dict[str, Any] | None) -> RunSettings | None:
    """The run settings a request gives (in `config.configurable` or `context`): the CLI's flags by
    their runtime names (`max_cost`, `model`, ...); a key that is none of them is refused."""
    given: dict[str, Any] = {}
    for source in ((config or {}).get("configurable") or {}, context or {}):
        if not isinstance(source, dict):
            raise BadInput("`config.configurable` and `context` must be JSON objects")
        for key, value in source.items():
            if key in LANGGRAPH_KEYS or key.startswith("__"):
                continue
            if key not in SETTINGS:
                raise BadInput(
                    Message("unknown run setting {setting}", setting=Setting(key)),
                    f"the settings a run takes are: {', '.join(sorted(SETTINGS))}",
                )
            given[key] = value
    return RunSettings(**given) if given else None


def is_busy(db: Database, thread_id: str) -> bool:
    if queue_rows.get(db.conn, thread_id) is not None:
        return True
    try:
        return threads.get_thread(db, thread_id).status in ("queued", "running")
    except ThreadNotFound:
        return False


def create_run(db: Database, thread_id: str, graph: str, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check and queue a run of `graph` on the thread (made with its first run), as the request
    asks: new input for a new thread, no input to go on from where it stopped (or from
    `checkpoint_id`), `command.resume` to answer its approvals. Nothing is written when a check fails."""
    strategy = body.get("multitask_strategy") or "reject"
    if strategy not in ("reject", "enqueue"):
        raise BadInput(
            Message("multitask strategy {value!r} is not supported", value=strategy),
            "runs of one thread never interleave: use `reject` (refuse while it runs) or `enqueue` (run after it)",
        )
    settings_of(body.get("config"), body.get("context"))  # refused before anything is written
    with _settling(thread_id):
        return _create(db, thread_id, graph, assistant_id, body, strategy)


def _create(db: Database, thread_id: str, graph: str, assistant_id: str, body: dict[str, Any], strategy: str) -> dict[str, Any]:
    record, _meta = _existing(db, thread_id, body.get("if_not_exists"))
    if record is not None and record.graph != graph and not _same_graph(record.graph, graph):
        raise BadInput(f"thread {thread_id!r} belongs to graph {record.graph}, not {graph}", "run it with its own assistant, or start a new thread")
    busy = is_busy(db, thread_id)
    if busy and strategy == "reject":
        raise ThreadBusy(f"thread {thread_id!r} is busy with another run", "wait for it to end, or ask for multitask_strategy `enqueue`")
    run = {
        "run_id": new_id(),
        "thread_id": thread_id,
        "assistant_id": assistant_id,
        "created_at": iso_time(time.time()),
        "updated_at": iso_time(time.time()),
        "status": "pending",
        "metadata": body.get("metadata") or {},
        "multitask_strategy": strategy,
        "kwargs": {k: body.get(k) for k in ("input", "command", "config", "context", "checkpoint_id", "stream_mode", "webhook")},
        "graph": graph,
        "after": db.checkpoint_columns().latest_checkpoint_id(thread_id),
        "submitted": False,
    }
    if not busy:
        _submit(db, run, record)
    with immediate(db.conn):
        _save(db, run)
    return run


def _same_graph(stored: str, graph: str) -> bool:
    return stored.rsplit(":", 1)[-1] == graph.rsplit(":", 1)[-1] and ":" in stored + graph


def _existing(db: Database, thread_id: str, if_not_exists: str | None) -> tuple[threads.ThreadRecord | None, dict[str, Any] | None]:
    try:
        return find_thread(db, thread_id)
    except ThreadNotFound:
        if if_not_exists == "create":
            return None, None
        raise


def _submit(db: Database, run: dict[str, Any], record: threads.ThreadRecord | None) -> None:
    """Queue the run's request (checked as the CLI's `submit`, `resume` or `approve` checks it)."""
    kwargs, thread_id = run["kwargs"], run["thread_id"]
    settings = settings_of(kwargs.get("config"), kwargs.get("context"))
    checkpoint = kwargs.get("checkpoint_id") or ((kwargs.get("config") or {}).get("configurable") or {}).get("checkpoint_id")
    command = kwargs.get("command") or {}
    saved = record is not None and threads.has_saved_work(db.conn, thread_id)
    if command.get("resume") is not None:
        _answer(db, thread_id, command["resume"])
    elif kwargs.get("input") is not None and not saved:
        queue.submit_run(db, run["graph"], thread_id, kwargs["input"], settings)
    elif kwargs.get("input") is not None:
        raise ThreadExists(
            f"thread {thread_id!r} has run already; its state takes no new input",
            "go on from where it stopped with a run that has no input (or from a `checkpoint_id`), or start a new thread",
        )
    elif not saved:
        raise NothingToResume(f"thread {thread_id!r} has nothing to go on from", "give the run an `input`")
    else:
        try:
            queue.submit_resume(db, thread_id, checkpoint, settings)
        except NothingToResume:
            if checkpoint:
                raise
            # A thread at its end: the run has nothing to do, as LangGraph's invoke(None) of a
            # finished thread does nothing; it ends with the thread as it is.
    run["submitted"] = True


def _answer(db: Database, thread_id: str, resume: Any) -> None:
    """`command.resume` for a thread's approvals: `{"approved": bool, "reason": ..., "by": ...,
    "ids": [...]}`, recorded as an answer through the API (who, when, why), like the approve endpoint."""
    if not isinstance(resume, dict) or not isinstance(resume.get("approved"), bool):
        raise BadInput(
            "`command.resume` answers a thread's approvals: an object with `approved` (true or false)",
            'e.g. {"approved": true, "by": "ana", "reason": "checked the vendor"}',
        )
    ids = resume.get("ids")
    queue.submit_decisions(
        db, thread_id, ids, resume["approved"], resume.get("reason"), every=not ids, by=by_name(resume.get("by")), via="api", attended=False
    )


def by_name(given: Any) -> str:
    """Who decided, as a caller names themself: one short line, else `api`."""
    text = str(given or "").strip().splitlines()[0][:100] if str(given or "").strip() else ""
    return text or "api"


class Settled(NamedTuple):
    changed: list[dict[str, Any]]
    """The records that changed (a run that just ended among them)."""
    open: bool
    """Whether a run of the thread has still not ended."""


def settle(db: Database, thread_id: str) -> Settled:
    """Bring the thread's run records up to date with its queue and row: the current run's status,
    a run that ended with how it ended, the next enqueued run queued."""
    changed: list[dict[str, Any]] = []
    with _settling(thread_id):
        runs = runs_of(db, thread_id)
        for run in runs:
            if run["status"] in FINAL:
                continue
            status = _status_now(db, run)
            if status == run["status"] and run["submitted"]:
                break
            if not run["submitted"] and status not in ("pending", "running"):
                try:
                    _submit(db, run, _record(db, thread_id))
                    status = "pending"
                except AgentError as exc:  # the run cannot go on: it ends here, saying why
                    run["error"] = exc.message
                    status = "error"
            run["status"] = status
            if status in FINAL:
                _ended(db, run)
            with immediate(db.conn):
                _save(db, run)
            changed.append(run)
            if status not in FINAL:
                break
    return Settled(changed, any(run["status"] not in FINAL for run in runs))


_LOCKS = [threading.Lock() for _ in range(64)]
"""Locks by a thread id's hash: bounded, however many threads the server has seen."""


@contextmanager
def _settling(thread_id: str) -> Iterator[None]:
    """One settling of a thread's runs at a time in this process (an enqueued run is queued once)."""
    with _LOCKS[hash(thread_id) % len(_LOCKS)]:
        yield


def _ended(db: Database, run: dict[str, Any]) -> None:
    """What a run that just ended keeps: when, its last checkpoint, and the thread's spend then (the dashboard's chart)."""
    from runtime.policy.budget import get_spend

    spend = get_spend(db, run["thread_id"])
    run["ended_at"] = iso_time(time.time())
    run["checkpoint_id"] = db.checkpoint_columns().latest_checkpoint_id(run["thread_id"])
    run["spend"] = {"at": run["ended_at"], "cost_usd": round(spend.cost_usd, 6), "tokens": spend.tokens}


def _record(db: Database, thread_id: str) -> threads.ThreadRecord | None:
    try:
        return threads.get_thread(db, thread_id)
    except ThreadNotFound:
        return None


def _status_now(db: Database, run: dict[str, Any]) -> str:
    if not run["submitted"]:
        return "pending" if is_busy(db, run["thread_id"]) else "ready"
    if queue_rows.get(db.conn, run["thread_id"]) is not None:
        return "pending"
    record = _record(db, run["thread_id"])
    if record is None:
        return "error"
    if record.status in ("queued", "running"):
        return "running" if record.status == "running" else "pending"
    if record.status == "failed":
        run["error"] = record.error
    return OURS_TO_RUN.get(record.status, "success")


def open_threads(db: Database) -> list[str]:
    """Threads with a run record not ended (looked for when the server starts)."""
    found = []
    for prefix in namespaces.prefixes(db.conn):
        if prefix.startswith("apiruns."):
            thread_id = _thread_of(prefix)
            if any(run["status"] not in FINAL for run in runs_of(db, thread_id)):
                found.append(thread_id)
    return found


def _thread_of(prefix: str) -> str:
    return prefix.split(".", 1)[1].replace("%2E", ".").replace("%25", "%")


def api_thread_ids(db: Database) -> list[str]:
    """Threads made by `POST /threads` (run or not)."""
    return [_thread_of(prefix) for prefix in namespaces.prefixes(db.conn) if prefix.startswith("apithread.")]


def assistant_uuid(graph_id: str) -> str:
    """The id LangGraph's server gives the assistant it makes for a graph."""
    return str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), graph_id))


def cancel(db: Database, run: dict[str, Any]) -> None:
    """Cancel a run: one not queued yet ends at once; a queued one is taken off the queue; a
    running one is asked to stop at its next node boundary (as `agent cancel` asks)."""
    from runtime.threads.control import request_cancel

    thread_id = run["thread_id"]
    with _settling(thread_id):
        if not run["submitted"]:
            run.update(status="interrupted", error="cancelled before it started", ended_at=iso_time(time.time()))
            with immediate(db.conn):
                _save(db, run)
            return
        record = _record(db, thread_id)
        if record is not None and record.status != "running":
            with immediate(db.conn):
                if queue_rows.delete(db.conn, thread_id):
                    if threads.has_saved_work(db.conn, thread_id):
                        thread_rows.end_unowned(db.conn, thread_id, "cancelled", "cancelled before it started", time.time())
                    else:
                        thread_rows.delete(db.conn, thread_id)  # a first run that never started leaves no thread
                    run.update(status="interrupted", error="cancelled before it started", ended_at=iso_time(time.time()))
                    _save(db, run)
                    return
        request_cancel(db, thread_id)


def delete_run(db: Database, thread_id: str, run_id: str) -> None:
    """Forget an ended run's record (its thread's checkpoints stay)."""
    run = get_run(db, thread_id, run_id)
    if run["status"] not in FINAL:
        raise ThreadBusy(f"run {run_id!r} has not ended", "cancel it first")
    with immediate(db.conn):
        namespaces.delete_value(db.conn, _runs_prefix(thread_id), run_id)
