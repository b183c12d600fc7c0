"""The thread registry: which graph a thread runs, its status, and who is running it.

A thread has at most one runner. The runner holds a lease (pid, host, heartbeat) in the
registry row; a second runner is refused while the holder is alive, and may take the thread
over once the holder's process is gone or its heartbeat has stopped.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.store.database import Database
from runtime.store.transaction import immediate
from runtime.errors import BadInput, Command, Duration, Message, Setting, ThreadBusy, ThreadExists, ThreadNotFound

HEARTBEAT_SECONDS = 2.0
STALE_AFTER_SECONDS = 30.0
"""A heartbeat older than this marks the holder as gone."""

WAIT_POLL_SECONDS = 0.5

MAX_THREAD_ID = 200

FINAL = ("completed", "failed")
STATUSES = ("running", "completed", "failed", "timeout", "stopped", "interrupted", "stale", "paused", "budget_exceeded", "cancelled")


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

    def holder_alive(self, now: float | None = None) -> bool:
        if self.owner_pid is None:
            return False
        now = time.time() if now is None else now
        fresh = self.heartbeat_at is not None and now - self.heartbeat_at < STALE_AFTER_SECONDS
        if self.owner_host == socket.gethostname():
            return fresh and _pid_alive(self.owner_pid)
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
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error": self.error,
            "settings": self.settings,
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_COLUMNS = (
    "thread_id, graph, graph_version, status, settings, created_at, updated_at, steps, error, "
    "owner_pid, owner_host, owner_since, heartbeat_at"
)


def _record(row: tuple) -> ThreadRecord:
    values = list(row)
    values[4] = json.loads(values[4] or "{}")
    return ThreadRecord(*values)


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
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM agent_threads WHERE thread_id = ?", (thread_id,)).fetchone()
    if row is None:
        raise ThreadNotFound(f"no thread {thread_id!r} in {db.path}", Message("{} lists the threads", Command("threads")))
    return _record(row)


def list_threads(db: Database) -> list[ThreadRecord]:
    rows = db.conn.execute(f"SELECT {_COLUMNS} FROM agent_threads ORDER BY updated_at DESC").fetchall()
    return [_record(r) for r in rows]


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
    row = (graph, graph_version, json.dumps(settings), now, now, os.getpid(), socket.gethostname(), now, now)
    with immediate(db.conn):
        try:
            db.conn.execute(
                f"INSERT INTO agent_threads ({_COLUMNS}) VALUES (?, ?, ?, 'running', ?, ?, ?, 0, NULL, ?, ?, ?, ?)", (thread_id, *row)
            )
        except sqlite3.IntegrityError:  # undoes the statement only; the transaction goes on
            existing = get_thread(db, thread_id)
            if existing.holder_alive() or has_saved_work(db.conn, thread_id):
                raise ThreadExists(
                    f"thread {thread_id!r} already exists (graph {existing.graph}, {existing.shown_status})",
                    Message(
                        "continue it with: {resume}  (or pick a new {thread})", resume=Command("resume", thread_id=thread_id), thread=Setting("thread_id")
                    ),
                ) from None
            db.conn.execute(
                "UPDATE agent_threads SET graph = ?, graph_version = ?, status = 'running', settings = ?, created_at = ?, "
                "updated_at = ?, steps = 0, error = NULL, owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ? "
                "WHERE thread_id = ?",
                (*row, thread_id),
            )
    return get_thread(db, thread_id)


def has_saved_work(conn: sqlite3.Connection, thread_id: str) -> bool:
    """Whether anything of the thread's besides its registry row is stored: a checkpoint, or data
    in the store under its namespaces (`results.<label>`, `items.<label>`, ...)."""
    from state.storage import thread_label

    if conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)).fetchone():
        return True
    label = thread_label(thread_id)
    try:
        prefixes = conn.execute("SELECT DISTINCT prefix FROM store").fetchall()
    except sqlite3.OperationalError:  # no store table yet
        return False
    return any(prefix.split(".")[1:2] == [label] for (prefix,) in prefixes)


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
        db.conn.execute(
            "UPDATE agent_threads SET status = 'running', settings = ?, error = NULL, updated_at = ?, "
            "owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ? WHERE thread_id = ?",
            (json.dumps(merged), now, os.getpid(), socket.gethostname(), now, now, thread_id),
        )
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


def heartbeat(db: Database, thread_id: str, steps: int | None = None) -> None:
    now = time.time()
    db.conn.execute(
        "UPDATE agent_threads SET heartbeat_at = ?, updated_at = ?, steps = COALESCE(?, steps) "
        "WHERE thread_id = ? AND owner_pid = ?",
        (now, now, steps, thread_id, os.getpid()),
    )


def release(db: Database, thread_id: str, status: str, steps: int | None, error: str | None) -> None:
    """Record how the run ended and give up the lease."""
    db.conn.execute(
        "UPDATE agent_threads SET status = ?, error = ?, steps = COALESCE(?, steps), updated_at = ?, "
        "owner_pid = NULL, owner_host = NULL, owner_since = NULL, heartbeat_at = NULL "
        "WHERE thread_id = ? AND owner_pid = ?",
        (status, error, steps, time.time(), thread_id, os.getpid()),
    )
