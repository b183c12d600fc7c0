"""The thread registry: which graph a thread runs, its status, and who is running it.

A thread has at most one runner. The runner holds a lease (pid, host, heartbeat) in the
registry row; a second runner is refused while the holder is alive, and may take the thread
over once the holder's process is gone or its heartbeat has stopped. The rows are kept by
runtime/store/registry.py; this module decides who may hold a thread and what to refuse.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.store.parts import namespaces
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.database import Database
from runtime.store.seam import Connection, Owner
from runtime.store.parts import immediate
from runtime.errors import BadInput, Command, Duration, Message, Setting, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.policy.times import iso_time

LEASE_ENV = "AGENT_LEASE_SECONDS"


def _lease_seconds() -> float:
    from runtime.policy.numbers import env_number

    return float(env_number(LEASE_ENV, minimum=1, unit="seconds") or 30.0)


STALE_AFTER_SECONDS = _lease_seconds()
"""A heartbeat older than this marks the holder as gone (AGENT_LEASE_SECONDS, default 30): a
live worker then takes the thread over, and the stalled holder's writes are refused."""
HEARTBEAT_SECONDS = min(2.0, STALE_AFTER_SECONDS / 4)

WAIT_POLL_SECONDS = 0.5

MAX_THREAD_ID = 200

FINAL = ("completed", "failed")
STATUSES = ("queued", "running", "completed", "failed", "timeout", "stopped", "interrupted", "stale", "paused", "budget_exceeded", "cancelled")


@dataclass
class ThreadRecord:
    thread_id: str
    graph: str
    graph_version: str
    status: str
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    steps: int = 0
    error: str | None = None
    owner_pid: int | None = None
    owner_host: str | None = None
    owner_since: float | None = None
    heartbeat_at: float | None = None
    lease: int = 0
    """Grows each time a runner takes the thread; a runner's writes carry it (fencing)."""
    resumes: int = 0
    """Takeovers of a dead runner's thread since a run of it last ended."""

    def holder_alive(self, now: float | None = None) -> bool:
        if self.owner_pid is None:
            return False
        now = time.time() if now is None else now
        fresh = self.heartbeat_at is not None and now - self.heartbeat_at < STALE_AFTER_SECONDS
        if self.owner_host == socket.gethostname():
            return fresh and pid_alive(self.owner_pid)
        return fresh

    @property
    def shown_status(self) -> str:
        """`stale` for a thread recorded as running whose runner is gone."""
        if self.status == "running" and not self.holder_alive():
            return "stale"
        return self.status

    def as_dict(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "graph": self.graph,
            "graph_version": self.graph_version,
            "status": self.shown_status,
            "steps": self.steps,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
            "error": self.error,
            "settings": self.settings,
            "runner": {"pid": self.owner_pid, "host": self.owner_host} if self.owner_pid is not None else None,
        }


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_process() -> Owner:
    """This process, as the holder of a lease."""
    return Owner(os.getpid(), socket.gethostname())


def check_thread_id(thread_id: str) -> None:
    """Refuse a new thread id that a terminal could misread: empty or too long, with leading or
    trailing spaces, or holding a character that is not printable (control characters, which a
    terminal reads as escape sequences; bidi overrides and other invisible format characters,
    which reorder or hide what is shown; line separators). Existing ids are looked up as they are."""
    hint = f"use up to {MAX_THREAD_ID} printable characters with no space at either end, e.g. docs-2026-11"
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise BadInput(f"invalid thread id {thread_id!r}: it is empty", hint)
    if len(thread_id) > MAX_THREAD_ID:
        raise BadInput(f"invalid thread id {thread_id[:40]!r}...: it is longer than {MAX_THREAD_ID} characters", hint)
    if thread_id != thread_id.strip():
        raise BadInput(f"invalid thread id {thread_id!r}: it starts or ends with a space", hint)
    if odd := next((c for c in thread_id if not c.isprintable()), None):
        raise BadInput(f"invalid thread id {thread_id!r}: it holds U+{ord(odd):04X}, a character that is not printable", hint)


def get_thread(db: Database, thread_id: str) -> ThreadRecord:
    row = thread_rows.get(db.conn, thread_id)
    if row is None:
        raise ThreadNotFound(f"no thread {thread_id!r} in {db.path}", Message("{} lists the threads", Command("threads")))
    return ThreadRecord(*row)


def list_threads(db: Database) -> list[ThreadRecord]:
    return [ThreadRecord(*row) for row in thread_rows.list_all(db.conn)]


def _holder(record: ThreadRecord) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.owner_since or 0))
    return f"pid {record.owner_pid} on {record.owner_host}, since {since}"


def create_thread(db: Database, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any]) -> ThreadRecord:
    """Register a new thread, leased to this process; refuse an id that exists or is not a valid id.

    An id whose earlier run saved nothing (it was stopped before its first checkpoint, and its
    runner is gone) is free again: the new run takes its place.
    """
    check_thread_id(thread_id)
    now = time.time()
    with immediate(db.conn):
        if not thread_rows.insert(db.conn, thread_id, graph, graph_version, settings, this_process(), now):
            existing = get_thread(db, thread_id)
            if existing.holder_alive() or has_saved_work(db.conn, thread_id) or queue_rows.get(db.conn, thread_id) is not None:
                raise ThreadExists(
                    f"thread {thread_id!r} already exists (graph {existing.graph}, {existing.shown_status})",
                    Message(
                        "continue it with: {resume}  (or pick a new {thread})", resume=Command("resume", thread_id=thread_id), thread=Setting("thread_id")
                    ),
                ) from None
            thread_rows.reuse(db.conn, thread_id, graph, graph_version, settings, this_process(), now)
    return get_thread(db, thread_id)


def has_saved_work(conn: Connection, thread_id: str) -> bool:
    """Whether anything of the thread's besides its registry row is stored: a checkpoint, or data
    in the store under its namespaces (`results.<label>`, `items.<label>`, ...)."""
    from state.storage import thread_label

    return thread_rows.has_checkpoints(conn, thread_id) or bool(namespaces.of_thread(conn, thread_label(thread_id)))


def refuse_if_busy(record: ThreadRecord, now: float | None = None) -> None:
    """Raise ThreadBusy while another live process runs the thread."""
    if record.holder_alive(now) and record.owner_pid != os.getpid():
        raise ThreadBusy(
            f"thread {record.thread_id!r} is being run by {_holder(record)}",
            Message(
                "wait for it with {resume}, or stop it (Ctrl-C in its terminal, or kill -TERM {pid})",
                resume=Command("resume", thread_id=record.thread_id, wait=Duration(600)), pid=record.owner_pid,
            ),
        )


def acquire(db: Database, thread_id: str, settings: dict[str, Any] | None = None) -> ThreadRecord:
    """Lease an existing thread to this process; refuse while a live runner holds it."""
    now = time.time()
    with immediate(db.conn):
        record = get_thread(db, thread_id)
        refuse_if_busy(record, now)
        merged = {**record.settings, **(settings or {})}
        thread_rows.take_lease(db.conn, thread_id, merged, this_process(), now)
    return get_thread(db, thread_id)


def wait_until_free(db: Database, thread_id: str, timeout: float, notify: Callable[[str], Any] | None = None) -> None:
    """Block until no live process holds the thread, or raise ThreadBusy after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        record = get_thread(db, thread_id)
        if not record.holder_alive() or record.owner_pid == os.getpid():
            return
        if not told and notify:
            notify(_holder(record))
            told = True
        if time.monotonic() >= deadline:
            raise ThreadBusy(f"thread {thread_id!r} is still being run by {_holder(record)} after waiting {timeout:g}s")
        time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def release(db: Database, thread_id: str, status: str, steps: int | None, error: str | None) -> None:
    """Record how the run ended and give up the lease."""
    thread_rows.release(db.conn, thread_id, os.getpid(), status, error, steps, time.time())
