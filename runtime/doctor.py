"""`agent doctor`: check a database and say what is wrong and how to fix it. Changes nothing.

The file is opened read-only, so a database of another schema version is examined as it is
(opening it normally would convert an older one). The facts are read by runtime/store/checks.py
and the stores of the rooms; this module says what they mean and how to fix them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.errors import Command, DatabaseMissing, Message, Placeholder, Setting, joined
from runtime.store.parts import checks, namespaces, server_location
from runtime.store.parts import threads as thread_rows
from runtime.store.parts import queue as queue_rows
from runtime.store.parts import schedules as schedule_rows
from runtime.store.parts import workers as worker_rows
from runtime.store.seam import Connection, StorageUnreadable
from runtime.threads.registry import ThreadRecord


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str | Message | None = None
    """What to do, worded by each face (runtime/errors.py)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_database(path: str | os.PathLike) -> list[Finding]:
    """Integrity, schema version, orphaned writes and blobs, threads whose runner died, schedule
    runs recorded as running with no live thread, schedules naming a graph that is gone."""
    on_server = server_location(path)
    if not on_server:
        path = Path(path)
        if not path.exists():
            raise DatabaseMissing(f"no database at {path}", Message("point {} (or AGENT_DB) at the database to check", Setting("path")))
    try:
        conn = checks.open_read_only(path)
    except StorageUnreadable as exc:
        if on_server:
            fix = Message("check {} (or AGENT_DB), and that the server is up", Setting("path"))
            return [Finding("connection", False, f"cannot read the PostgreSQL database: {exc}", fix)]
        return [Finding("integrity", False, f"{path} is not a usable SQLite database: {exc}", "restore it from a backup")]
    try:
        integrity = _integrity(conn)
        findings = [integrity]
        if not integrity.ok:
            return findings  # the rest would read damaged pages
        schema = _schema(conn)
        findings.append(schema)
        tables = checks.tables(conn)
        if {"checkpoints", checks.layout(conn).writes_table, "checkpoint_blobs"} <= tables:
            findings.append(_orphaned_writes(conn))
            findings.append(_orphaned_blobs(conn))
        if "agent_threads" in tables:
            findings.append(_dead_runners(conn))
        if {"agent_schedules", "agent_schedule_runs", "agent_threads"} <= tables:
            findings.append(_orphaned_runs(conn))
            findings.append(_schedule_graphs(conn))
        if {"agent_queue", "agent_workers"} <= tables:
            findings.append(_queued_graphs(conn))
            findings.append(_stale_workers(conn))
        return findings
    finally:
        conn.close()


def _integrity(conn: Connection) -> Finding:
    rows = checks.integrity(conn)
    kind = checks.layout(conn).kind
    if not rows:
        return Finding("integrity", True, f"{kind} integrity check passed" if kind == "SQLite" else f"{kind} database readable")
    return Finding(
        "integrity",
        False,
        f"{kind} integrity check failed: " + "; ".join(rows[:5]),
        "restore the file from a backup; to salvage what is readable: sqlite3 DB .recover | sqlite3 NEW.db (agent never repairs in place)",
    )


def _schema(conn: Connection) -> Finding:
    version = checks.schema_version(conn)
    layout = checks.layout(conn)
    if version > layout.schema_version:
        return Finding(
            "schema",
            False,
            f"schema version {version} was written by a newer agent (this one reads {layout.schema_version})",
            "upgrade agent (pip install -U agent), or use this database only with the newer version",
        )
    if version < layout.schema_version:
        return Finding(
            "schema",
            False,
            f"schema version {version} is older than this agent's ({layout.schema_version})",
            Message("run any agent command on it (e.g. {}): the database is converted on opening, in one transaction", Command("threads")),
        )
    missing = [t for t in layout.expected_tables if t not in checks.tables(conn)]
    if missing:
        return Finding("schema", False, f"schema version {version}, but tables are missing: {', '.join(missing)}", "restore the file from a backup")
    return Finding("schema", True, f"schema version {version}, all tables present")


def _orphaned_writes(conn: Connection) -> Finding:
    rows = checks.orphaned_writes(conn)
    if not rows:
        return Finding("orphaned writes", True, "every write belongs to a checkpoint")
    total = sum(n for _, n in rows)
    shown = ", ".join(f"{t} ({n})" for t, n in rows[:5]) + (" ..." if len(rows) > 5 else "")
    return Finding(
        "orphaned writes",
        False,
        f"{total} write(s) belong to no checkpoint, in thread(s) {shown}",
        Message(
            "{prune} shows what would go; without {dry_run} removes them", prune=Command("prune", orphans=True, dry_run=True), dry_run=Setting("dry_run")
        ),
    )


def _orphaned_blobs(conn: Connection) -> Finding:
    rows = checks.orphaned_blobs(conn)
    if not rows:
        return Finding("orphaned blobs", True, "every stored value belongs to a thread that has checkpoints")
    total = sum(n for _, n in rows)
    return Finding(
        "orphaned blobs",
        False,
        f"{total} stored value(s) belong to thread(s) with no checkpoints: {', '.join(t for t, _ in rows[:5])}",
        Message("{} removes them", Command("prune", orphans=True)),
    )


def _dead_runners(conn: Connection) -> Finding:
    now = time.time()
    records = [ThreadRecord(*row) for row in thread_rows.running(conn)]
    dead = [r for r in records if not r.holder_alive(now)]
    if not dead:
        return Finding("runners", True, f"{len(records)} thread(s) running, every runner alive")
    shown = ", ".join(
        f"{r.thread_id} (pid {r.owner_pid} on {r.owner_host}, heartbeat {_age(now, r.heartbeat_at)})" for r in dead[:5]
    )
    fixes: dict[str, Message] = {}
    for record in dead:
        kind, fix = _leftover_fix(conn, record)
        fixes.setdefault(kind, fix)  # one command for each kind of leftover, naming its first thread
    return Finding(
        "runners",
        False,
        f"{len(dead)} thread(s) are recorded as running but their runner is gone: {shown}",
        joined("; ", list(fixes.values())),
    )


def _leftover_fix(conn: Connection, record: ThreadRecord) -> tuple[str, Message]:
    """What a thread whose runner died left behind, and the command that fixes it."""
    thread = record.thread_id
    rows = checks.latest_checkpoints(conn, thread, 2) if "checkpoints" in checks.tables(conn) else []
    if not rows:
        return "unstarted", Message(
            "{run} starts {thread} again, under the same id (its first run stopped before its input was saved), or {delete}",
            run=Command("run", graph=record.graph, thread_id=thread, input=Placeholder("JSON")),
            thread=thread,
            delete=Command("delete", thread_id=thread),
        )
    source, metadata, next_json = rows[0]
    if len(rows) == 1 and source == "fork" and (origin := _half_made_fork(conn, thread, metadata)):
        return "half fork", Message(
            "{delete}, then {fork} (an older agent was stopped half way through that fork)",
            delete=Command("delete", thread_id=thread), fork=Command("fork", thread_id=origin[0], checkpoint=origin[1], new_thread_id=thread),
        )
    if next_json == "[]":
        return "finished", Message("{} records it completed (its latest checkpoint has nothing left to run)", Command("resume", thread_id=thread))
    return "resumable", Message(
        "{resume} takes it over and continues from its latest checkpoint (or {delete})",
        resume=Command("resume", thread_id=thread),
        delete=Command("delete", thread_id=thread),
    )


def _half_made_fork(conn: Connection, thread: str, metadata: str | None) -> tuple[str, str] | None:
    """(source thread, checkpoint) of a fork whose copy of the source's store data is missing."""
    from state.storage import thread_label

    try:
        origin = json.loads(metadata or "{}").get("forked_from") or {}
    except ValueError:
        return None
    source, checkpoint = origin.get("thread_id"), origin.get("checkpoint_id")
    if not source or not checkpoint or "store" not in checks.tables(conn):
        return None
    kinds: dict[str, set[str]] = {}  # label -> the kinds of data stored for it (items, results, ...)
    for prefix in namespaces.prefixes(conn):
        kind, label = (prefix.split(".") + [""])[:2]
        kinds.setdefault(label, set()).add(kind)
    missing = kinds.get(thread_label(source), set()) - kinds.get(thread_label(thread), set())
    return (source, checkpoint) if missing else None


def _age(now: float, ts: float | None) -> str:
    return "never" if ts is None else f"{now - ts:.0f}s ago"


def _orphaned_runs(conn: Connection) -> Finding:
    rows = schedule_rows.running_runs(conn)
    from runtime.schedules.worker import worker_alive

    orphans = []
    for run in rows:
        thread = thread_rows.get(conn, run.thread_id)
        if thread is not None:
            record = ThreadRecord(*thread)
            if record.status == "running" and record.holder_alive():
                continue
        elif worker_alive(run.worker):
            continue  # claimed a moment ago; its thread is being created
        orphans.append(f"{run.schedule}: {run.thread_id}")
    if not orphans:
        return Finding("schedule runs", True, f"{len(rows)} scheduled run(s) running, each with a live thread")
    shown = ", ".join(orphans[:5]) + (" ..." if len(orphans) > 5 else "")
    return Finding(
        "schedule runs",
        False,
        f"{len(orphans)} scheduled run(s) are recorded as running with no live thread: {shown}",
        Message(
            "start a worker ({worker}, or {once}): it continues each, up to {max_resumes} times",
            worker=Command("worker"), once=Command("worker", once=True), max_resumes=Setting("max_resumes"),
        ),
    )


def _missing_graph(graph: str) -> bool:
    """A graph that is neither built in nor found where its spec points (looked for, never imported)."""
    from graphs import BUILTIN, locate

    return graph not in BUILTIN and (":" not in graph or locate(graph) is None)


def _queued_graphs(conn: Connection) -> Finding:
    queued = queue_rows.list_all(conn)
    graphs = {row.thread_id: thread_rows.get(conn, row.thread_id) for row in queued}
    missing = [(thread_id, row.graph) for thread_id, row in graphs.items() if row is not None and _missing_graph(row.graph)]
    if missing:
        shown = ", ".join(f"{t} ({g})" for t, g in missing[:5])
        return Finding(
            "queued runs",
            False,
            f"{len(missing)} queued run(s) name a graph that no longer exists: {shown}",
            Message("restore the graph, or cancel the thread: {} (a worker would fail it)", Command("cancel", thread_id=missing[0][0])),
        )
    return Finding("queued runs", True, f"{len(queued)} run(s) queued, the graph of each exists")


def _stale_workers(conn: Connection) -> Finding:
    from runtime.fleet.workers import worker_alive

    rows = [row for row in worker_rows.list_all(conn) if row.status != "stopped"]
    stale = [row for row in rows if not worker_alive(row.pid, row.host, row.heartbeat_at, time.time())]
    if stale:
        shown = ", ".join(f"pid {w.pid} on {w.host}, heartbeat {_age(time.time(), w.heartbeat_at)}" for w in stale[:5])
        return Finding(
            "workers",
            False,
            f"{len(stale)} worker(s) stopped without saying so: {shown}",
            Message("their threads are taken over by a live worker: start one with {}", Command("worker")),
        )
    return Finding("workers", True, f"{len(rows)} worker(s) alive")


def _schedule_graphs(conn: Connection) -> Finding:
    rows = schedule_rows.graphs(conn)
    if not rows:
        return Finding("schedule graphs", True, "no schedules")
    from runtime.policy.trust import TRUSTED_GRAPHS_ENV, is_trusted

    # Looked for, never imported: a check of the database must not run code it names.
    missing = [(name, graph) for name, graph in rows if _missing_graph(graph)]
    if missing:
        shown = ", ".join(f"{n} ({g})" for n, g in missing[:5])
        return Finding(
            "schedule graphs",
            False,
            f"{len(missing)} schedule(s) name a graph that no longer exists: {shown}",
            Message(
                "restore the graph, or delete the schedule: {} (its runs would fail and pause it)",
                Command("schedule delete", name=missing[0][0]),
            ),
        )
    untrusted = [(name, graph) for name, graph in rows if not is_trusted(graph, attended=False)]
    if untrusted:
        shown = ", ".join(f"{n} ({g})" for n, g in untrusted[:5])
        return Finding(
            "schedule graphs",
            False,
            f"{len(untrusted)} schedule(s) name a graph the worker will not import: {shown}",
            Message(
                "if you trust that code, list it in {env} in the worker's environment, or delete the schedule: {delete}",
                env=TRUSTED_GRAPHS_ENV, delete=Command("schedule delete", name=untrusted[0][0]),
            ),
        )
    return Finding("schedule graphs", True, f"the graph of each of {len(rows)} schedule(s) exists")
