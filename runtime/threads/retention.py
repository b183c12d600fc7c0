"""Retention: prune old checkpoints, delete threads, reclaim the file's free space.

Every operation runs in one transaction; with `dry_run` it is carried out and rolled back, so
the report says exactly what would go and nothing changes. A thread that a live process is
running is never touched: `--thread` refuses it, a database-wide prune skips it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from runtime.store.parts import checks, namespaces
from runtime.store.parts import progress as progress_rows
from runtime.store.parts import threads as thread_rows
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
    _check_criteria(keep, older_than, orphans, thread)
    saver = db.checkpointer()
    report = PruneReport(dry_run=dry_run)
    candidates = [thread] if thread is not None else _all_threads(db)
    if thread is not None:
        _require_thread(db, thread)
        _refuse_if_running(db, thread)
    before = (datetime.now(timezone.utc) - timedelta(seconds=older_than)).isoformat() if older_than else None
    with saver.removing(dry_run=dry_run) as removal:
        # Inside the transaction, which holds the write lock: no runner takes a thread meanwhile.
        busy = {t for t in candidates if _running(db, t)}
        report.skipped = [{"thread_id": t, "reason": "a live process is running it"} for t in sorted(busy)]
        if keep is not None or before is not None:
            for thread_id in candidates:
                if thread_id in busy:
                    continue
                pruned = removal.prune_thread(thread_id, keep=keep, before=before)
                if pruned is not None:
                    report.threads.append(asdict(pruned))
        if orphans:
            report.orphans = removal.remove_orphans(skip=busy)
    return report


def delete_thread(db: Database, thread_id: str, *, dry_run: bool = False) -> DeleteReport:
    """Remove everything of a thread: checkpoints, writes, blobs, its store namespaces, its registry row."""
    _require_thread(db, thread_id)
    _refuse_if_running(db, thread_id)
    from state.storage import thread_label

    saver = db.checkpointer()
    # The saver is on this thread's connection (db.conn): the registry's and the store's rows
    # go in the same transaction as the checkpoints.
    with saver.removing(dry_run=dry_run) as removal:
        counts = removal.delete_thread(thread_id)
        counts["store_items"] = namespaces.delete_of_thread(db.conn, thread_label(thread_id))
        progress_rows.delete(db.conn, thread_id)
        counts["registry"] = thread_rows.delete(db.conn, thread_id)
    return DeleteReport(dry_run=dry_run, thread_id=thread_id, **counts)


def vacuum(db: Database, *, dry_run: bool = False) -> VacuumReport:
    """Give the database's free space back (SQLite's VACUUM, or PostgreSQL's VACUUM FULL of agent's tables)."""
    running = [r.thread_id for r in threads.list_threads(db) if r.status == "running" and r.holder_alive()]
    if running and not dry_run:
        raise ThreadBusy(
            f"{len(running)} thread(s) are running ({', '.join(running[:5])}); VACUUM rewrites the database and would block them",
            Message("run {vacuum} when they have finished ({threads} shows them)", vacuum=Command("vacuum"), threads=Command("threads")),
        )
    free = checks.reclaimable_bytes(db.conn)  # first: on SQLite it empties the WAL into the file
    before = checks.storage_bytes(db.conn)
    if dry_run:
        return VacuumReport(dry_run=True, bytes_before=before, reclaimable_bytes=free, bytes_after=before)
    checks.reclaim(db.conn)
    return VacuumReport(dry_run=False, bytes_before=before, reclaimable_bytes=free, bytes_after=checks.storage_bytes(db.conn))


def _check_criteria(keep: int | None, older_than: float | None, orphans: bool, thread: str | None) -> None:
    """BadInput unless prune was told what to remove, by criteria that can hold."""
    if keep is None and older_than is None and not orphans:
        raise BadInput(
            Message(
                "say what to prune: {keep}, {older_than} or {orphans}",
                keep=Setting("keep", Placeholder("N")), older_than=Setting("older_than", Placeholder("DURATION")), orphans=Setting("orphans"),
            ),
            Message("e.g. {}", Command("prune", **({"thread": thread} if thread else {}), keep=100, dry_run=True)),
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


def _all_threads(db: Database) -> list[str]:
    registered = {row.thread_id for row in thread_rows.list_all(db.conn)}
    return sorted(registered | db.checkpoint_columns().checkpointed_threads())


def _require_thread(db: Database, thread_id: str) -> None:
    known = thread_rows.get(db.conn, thread_id) is not None or (
        db.checkpoint_columns().has_checkpoints(thread_id)
    )
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
