"""Retention: prune old checkpoints, delete threads, reclaim the file's free space.

Every operation runs in one transaction; with `dry_run` it is carried out and rolled back, so
the report says exactly what would go and nothing changes. A thread that a live process is
running is never touched: `--thread` refuses it, a database-wide prune skips it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from runtime.threads import registry as threads
from runtime.store.database import Database
from runtime.errors import BadInput, Command, Duration, Message, Placeholder, Setting, ThreadBusy, ThreadNotFound


@dataclass
class PruneReport:
    dry_run: bool
    threads: list[dict[str, Any]] = field(default_factory=list)
    """Per pruned thread: thread_id, checkpoints_removed, checkpoints_kept, writes_removed, blobs_removed."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Threads left alone, with the reason (a live runner)."""
    orphans: dict[str, int] = field(default_factory=lambda: {"writes": 0, "blobs": 0})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def checkpoints_removed(self) -> int:
        return sum(t["checkpoints_removed"] for t in self.threads)


@dataclass
class DeleteReport:
    dry_run: bool
    thread_id: str
    checkpoints: int
    writes: int
    blobs: int
    store_items: int
    registry: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VacuumReport:
    dry_run: bool
    bytes_before: int
    reclaimable_bytes: int
    bytes_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(
    db: Database,
    *,
    thread: str | None = None,
    keep: int | None = None,
    older_than: float | None = None,
    orphans: bool = False,
    dry_run: bool = False,
) -> PruneReport:
    """Remove checkpoints (with their writes and the blobs nothing else refers to).

    A checkpoint goes when it is neither among the newest `keep` of its thread nor younger than
    `older_than` seconds (each criterion applies only when given). Each thread's latest
    checkpoint and whatever a kept checkpoint needs to be resumed or forked from stay. With
    `orphans`, writes and blobs that belong to no checkpoint go too.
    """
    _check_criteria(keep, older_than, orphans)
    saver = db.checkpointer()
    report = PruneReport(dry_run=dry_run)
    candidates = [thread] if thread is not None else _all_threads(db)
    if thread is not None:
        _require_thread(db, thread)
        _refuse_if_running(db, thread)
    before = (datetime.now(timezone.utc) - timedelta(seconds=older_than)).isoformat() if older_than else None
    with saver.lock, saver._tx() as cur:
        busy = {t for t in candidates if _running(db, t)}
        report.skipped = [{"thread_id": t, "reason": "a live process is running it"} for t in sorted(busy)]
        if keep is not None or before is not None:
            for thread_id in candidates:
                if thread_id in busy:
                    continue
                plan = saver.plan_prune(cur, thread_id, keep=keep, before=before)
                if not plan.doomed:
                    continue
                writes = saver._delete_checkpoints(cur, plan.doomed)
                for ns in plan.kept:
                    plan.blobs_removed += saver._collect_blobs(cur, thread_id, ns)
                report.threads.append(
                    {
                        "thread_id": thread_id,
                        "checkpoints_removed": len(plan.doomed),
                        "checkpoints_kept": sum(len(k) for k in plan.kept.values()),
                        "writes_removed": writes,
                        "blobs_removed": plan.blobs_removed,
                    }
                )
        if orphans:
            report.orphans = _remove_orphans(saver, cur, skip=busy)
        if dry_run:
            cur.execute("ROLLBACK")
            cur.execute("BEGIN")  # _tx commits on the way out: let it commit nothing
    saver._last.clear()
    return report


def _remove_orphans(saver: Any, cur: Any, skip: set[str]) -> dict[str, int]:
    """Writes whose checkpoint is gone, and blobs that no checkpoint of their thread refers to."""
    orphan_writes = cur.execute(
        "SELECT DISTINCT thread_id FROM writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
        "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)"
    ).fetchall()
    removed = {"writes": 0, "blobs": 0}
    for (thread_id,) in orphan_writes:
        if thread_id in skip:
            continue
        removed["writes"] += cur.execute(
            "DELETE FROM writes WHERE thread_id = ? AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = writes.thread_id "
            "AND c.checkpoint_ns = writes.checkpoint_ns AND c.checkpoint_id = writes.checkpoint_id)",
            (thread_id,),
        ).rowcount
    for thread_id, ns in cur.execute("SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoint_blobs").fetchall():
        if thread_id not in skip:
            removed["blobs"] += saver._collect_blobs(cur, thread_id, ns)
    return removed


def delete_thread(db: Database, thread_id: str, *, dry_run: bool = False) -> DeleteReport:
    """Remove everything of a thread: checkpoints, writes, blobs, its store namespaces, its registry row."""
    _require_thread(db, thread_id)
    _refuse_if_running(db, thread_id)
    from state.storage import thread_label

    saver = db.checkpointer()
    counts: dict[str, int] = {}
    with saver.lock, saver._tx() as cur:
        # Writes stored with a checkpoint (its parent's) go with its row: count them first.
        stored_with_rows = saver.writes_in_rows(cur, thread_id)
        for table, key in (("checkpoints", "checkpoints"), ("writes", "writes"), ("checkpoint_blobs", "blobs")):
            counts[key] = cur.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,)).rowcount
        counts["writes"] += stored_with_rows
        counts["store_items"] = _delete_store_namespaces(cur, thread_label(thread_id))
        counts["registry"] = cur.execute("DELETE FROM agent_threads WHERE thread_id = ?", (thread_id,)).rowcount
        if dry_run:
            cur.execute("ROLLBACK")
            cur.execute("BEGIN")
    saver._last.clear()
    return DeleteReport(dry_run=dry_run, thread_id=thread_id, **counts)


def _delete_store_namespaces(cur: Any, label: str) -> int:
    """The thread's store namespaces are (kind, label): `results.<label>`, `items.<label>`, ..."""
    tables = {r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('store', 'store_vectors')")}
    if "store" not in tables:
        return 0
    prefixes = [
        prefix
        for (prefix,) in cur.execute("SELECT DISTINCT prefix FROM store").fetchall()
        if prefix.split(".")[1:2] == [label]
    ]
    removed = 0
    for prefix in prefixes:
        removed += cur.execute("DELETE FROM store WHERE prefix = ?", (prefix,)).rowcount
        if "store_vectors" in tables:
            cur.execute("DELETE FROM store_vectors WHERE prefix = ?", (prefix,))
    return removed


def vacuum(db: Database, *, dry_run: bool = False) -> VacuumReport:
    """Give the file's free pages back to the file system (SQLite VACUUM)."""
    running = [r.thread_id for r in threads.list_threads(db) if r.status == "running" and r.holder_alive()]
    if running and not dry_run:
        raise ThreadBusy(
            f"{len(running)} thread(s) are running ({', '.join(running[:5])}); VACUUM rewrites the whole file and would block them",
            Message("run {vacuum} when they have finished ({threads} shows them)", vacuum=Command("vacuum"), threads=Command("threads")),
        )
    conn = db.conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _file_bytes(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
    if dry_run:
        return VacuumReport(dry_run=True, bytes_before=before, reclaimable_bytes=free, bytes_after=before)
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return VacuumReport(dry_run=False, bytes_before=before, reclaimable_bytes=free, bytes_after=_file_bytes(db))


def _check_criteria(keep: int | None, older_than: float | None, orphans: bool) -> None:
    """BadInput unless prune was told what to remove, by criteria that can hold."""
    if keep is None and older_than is None and not orphans:
        raise BadInput(
            Message(
                "say what to prune: {keep}, {older_than} or {orphans}",
                keep=Setting("keep", Placeholder("N")), older_than=Setting("older_than", Placeholder("DURATION")), orphans=Setting("orphans"),
            ),
            Message("e.g. {}", Command("prune", thread="T", keep=100, dry_run=True)),
        )
    if keep is not None and keep < 1:
        raise BadInput(
            Message("{setting} must be at least 1 (got {value}): the latest checkpoint always stays", setting=Setting("keep"), value=keep),
            Message("e.g. {}", Setting("keep", 100)),
        )
    if older_than is not None and older_than <= 0:
        raise BadInput(
            Message("{setting} must be a positive duration", setting=Setting("older_than"), value=older_than),
            Message("e.g. {}", Setting("older_than", Duration(30 * 86400))),
        )


def _file_bytes(db: Database) -> int:
    return sum(os.path.getsize(p) for p in (db.path, f"{db.path}-wal") if os.path.exists(p))


def _all_threads(db: Database) -> list[str]:
    registered = {r[0] for r in db.conn.execute("SELECT thread_id FROM agent_threads")}
    stored = {r[0] for r in db.conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    return sorted(registered | stored)


def _require_thread(db: Database, thread_id: str) -> None:
    known = db.conn.execute("SELECT 1 FROM agent_threads WHERE thread_id = ?", (thread_id,)).fetchone() or db.conn.execute(
        "SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (thread_id,)
    ).fetchone()
    if not known:
        raise ThreadNotFound(f"no thread {thread_id!r} in {db.path}", Message("{} lists the threads", Command("threads")))


def _running(db: Database, thread_id: str) -> bool:
    try:
        record = threads.get_thread(db, thread_id)
    except ThreadNotFound:
        return False
    return record.status == "running" and record.holder_alive()


def _refuse_if_running(db: Database, thread_id: str) -> None:
    if _running(db, thread_id):
        record = threads.get_thread(db, thread_id)
        raise ThreadBusy(
            f"thread {thread_id!r} is being run by pid {record.owner_pid} on {record.owner_host}",
            "wait for it to finish, or stop it first (Ctrl-C in its terminal)",
        )
