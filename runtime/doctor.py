"""`agent doctor`: check a database and say what is wrong and how to fix it. Changes nothing.

The file is opened read-only, so a database of another schema version is examined as it is
(opening it normally would convert an older one).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.errors import Command, DatabaseMissing, Message, Placeholder, Setting, joined
from runtime.store.schema import EXPECTED_TABLES, SCHEMA_VERSION
from runtime.threads.registry import ThreadRecord, _COLUMNS, _record


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
    path = Path(path)
    if not path.exists():
        raise DatabaseMissing(f"no database at {path}", Message("point {} (or AGENT_DB) at the database to check", Setting("path")))
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        return [Finding("integrity", False, f"{path} is not a usable SQLite database: {exc}", "restore it from a backup")]
    try:
        integrity = _integrity(conn)
        findings = [integrity]
        if not integrity.ok:
            return findings  # the rest would read damaged pages
        schema = _schema(conn)
        findings.append(schema)
        tables = _tables(conn)
        if {"checkpoints", "writes", "checkpoint_blobs"} <= tables:
            findings.append(_orphaned_writes(conn))
            findings.append(_orphaned_blobs(conn))
        if "agent_threads" in tables:
            findings.append(_dead_runners(conn))
        if {"agent_schedules", "agent_schedule_runs", "agent_threads"} <= tables:
            findings.append(_orphaned_runs(conn))
            findings.append(_schedule_graphs(conn))
        return findings
    finally:
        conn.close()


def _integrity(conn: sqlite3.Connection) -> Finding:
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    if rows == ["ok"]:
        return Finding("integrity", True, "SQLite integrity check passed")
    return Finding(
        "integrity",
        False,
        "SQLite integrity check failed: " + "; ".join(rows[:5]),
        "restore the file from a backup; to salvage what is readable: sqlite3 DB .recover | sqlite3 NEW.db (agent never repairs in place)",
    )


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _schema(conn: sqlite3.Connection) -> Finding:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        return Finding(
            "schema",
            False,
            f"schema version {version} was written by a newer agent (this one reads {SCHEMA_VERSION})",
            "upgrade agent (pip install -U agent), or use this database only with the newer version",
        )
    if version < SCHEMA_VERSION:
        return Finding(
            "schema",
            False,
            f"schema version {version} is older than this agent's ({SCHEMA_VERSION})",
            Message("run any agent command on it (e.g. {}): the database is converted on opening, in one transaction", Command("threads")),
        )
    missing = [t for t in EXPECTED_TABLES if t not in _tables(conn)]
    if missing:
        return Finding("schema", False, f"schema version {version}, but tables are missing: {', '.join(missing)}", "restore the file from a backup")
    return Finding("schema", True, f"schema version {version}, all tables present")


def _orphaned_writes(conn: sqlite3.Connection) -> Finding:
    rows = conn.execute(
        "SELECT thread_id, count(*) FROM writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
        "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id) GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()
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


def _orphaned_blobs(conn: sqlite3.Connection) -> Finding:
    rows = conn.execute(
        "SELECT thread_id, count(*) FROM checkpoint_blobs b WHERE NOT EXISTS "
        "(SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns) "
        "GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()
    if not rows:
        return Finding("orphaned blobs", True, "every stored value belongs to a thread that has checkpoints")
    total = sum(n for _, n in rows)
    return Finding(
        "orphaned blobs",
        False,
        f"{total} stored value(s) belong to thread(s) with no checkpoints: {', '.join(t for t, _ in rows[:5])}",
        Message("{} removes them", Command("prune", orphans=True)),
    )


def _dead_runners(conn: sqlite3.Connection) -> Finding:
    now = time.time()
    records: list[ThreadRecord] = [
        _record(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM agent_threads WHERE status = 'running' ORDER BY thread_id")
    ]
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


def _leftover_fix(conn: sqlite3.Connection, record: ThreadRecord) -> tuple[str, Message]:
    """What a thread whose runner died left behind, and the command that fixes it."""
    thread = record.thread_id
    rows = conn.execute(
        "SELECT source, metadata, next FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 2",
        (thread,),
    ).fetchall() if "checkpoints" in _tables(conn) else []
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


def _half_made_fork(conn: sqlite3.Connection, thread: str, metadata: str | None) -> tuple[str, str] | None:
    """(source thread, checkpoint) of a fork whose copy of the source's store data is missing."""
    from state.storage import thread_label

    try:
        origin = json.loads(metadata or "{}").get("forked_from") or {}
    except ValueError:
        return None
    source, checkpoint = origin.get("thread_id"), origin.get("checkpoint_id")
    if not source or not checkpoint or "store" not in _tables(conn):
        return None
    kinds: dict[str, set[str]] = {}  # label -> the kinds of data stored for it (items, results, ...)
    for (prefix,) in conn.execute("SELECT DISTINCT prefix FROM store"):
        kind, label = (prefix.split(".") + [""])[:2]
        kinds.setdefault(label, set()).add(kind)
    missing = kinds.get(thread_label(source), set()) - kinds.get(thread_label(thread), set())
    return (source, checkpoint) if missing else None


def _age(now: float, ts: float | None) -> str:
    return "never" if ts is None else f"{now - ts:.0f}s ago"


def _orphaned_runs(conn: sqlite3.Connection) -> Finding:
    rows = conn.execute(
        "SELECT r.schedule, r.thread_id, r.worker, t.thread_id IS NOT NULL FROM agent_schedule_runs r "
        "LEFT JOIN agent_threads t ON t.thread_id = r.thread_id WHERE r.status = 'running' ORDER BY r.fire_time"
    ).fetchall()
    from runtime.schedules.worker import _worker_alive

    orphans = []
    for schedule, thread_id, worker, exists in rows:
        if exists:
            record = _record(conn.execute(f"SELECT {_COLUMNS} FROM agent_threads WHERE thread_id = ?", (thread_id,)).fetchone())
            if record.status == "running" and record.holder_alive():
                continue
        elif _worker_alive(worker):
            continue  # claimed a moment ago; its thread is being created
        orphans.append(f"{schedule}: {thread_id}")
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


def _schedule_graphs(conn: sqlite3.Connection) -> Finding:
    rows = conn.execute("SELECT name, graph FROM agent_schedules ORDER BY name").fetchall()
    if not rows:
        return Finding("schedule graphs", True, "no schedules")
    from graphs import BUILTIN, locate
    from runtime.policy.trust import TRUSTED_GRAPHS_ENV, is_trusted

    # Looked for, never imported: a check of the database must not run code it names.
    missing = [(name, graph) for name, graph in rows if graph not in BUILTIN and (":" not in graph or locate(graph) is None)]
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
