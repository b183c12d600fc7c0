"""Removing checkpoints: which rows go when a thread is pruned, deleted or copied, in one transaction.

Pruning keeps what the kept checkpoints need to be loaded: values held by a removed row move to
`checkpoint_blobs`, writes stored with a removed row for a kept parent move to `writes`, and the
ancestors a `DeltaChannel` replays from stay. `Removal` does the work inside one transaction;
`CheckpointDeletes` gives the saver LangGraph's `delete_thread`, `delete_for_runs`, `copy_thread`
and `prune`, and `removing()`, the transaction the retention commands
(runtime/threads/retention.py) use to say what goes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from runtime.store.rows import COLUMNS, INSERT_WRITE, LEGACY, NO_VALUE, blob_version, locations, stored_row_facts, unpack, vals_of

CheckpointKey = tuple[str, str, str]
"""(thread_id, checkpoint_ns, checkpoint_id)"""


@dataclass
class PrunedThread:
    """What pruning one thread removed and kept."""

    thread_id: str
    checkpoints_removed: int
    checkpoints_kept: int
    writes_removed: int
    blobs_removed: int


@dataclass
class _Plan:
    """What pruning one thread removes (`doomed`) and keeps, per namespace."""

    thread_id: str
    doomed: list[CheckpointKey] = field(default_factory=list)
    kept: dict[str, set[str]] = field(default_factory=dict)


class CheckpointDeletes:
    """Deleting, copying and pruning for AgentSaver (runtime/store/saver.py), which gives it
    `conn`, `serde`, `_locked()`, `_tx()` and `_last`."""

    @contextmanager
    def removing(self, *, dry_run: bool = False) -> Iterator[Removal]:
        """One transaction that removes checkpoints, taking the write lock as it begins; with
        `dry_run` it is rolled back at the end, so that what it reported is what would go. Other
        statements on the saver's connection inside it (the registry's, the store's) are part of it."""
        with self._locked(), self._tx(keep=not dry_run) as cur:
            yield Removal(cur, self.serde.loads_typed)
        self._last.clear()

    def forget_thread(self, thread_id: str) -> None:
        """Drop what this saver remembers of a thread's last checkpoint (after the rows it put
        were rolled back, or removed behind its back)."""
        for key in [k for k in self._last if k[0] == thread_id]:
            self._last.pop(key, None)

    def delete_thread(self, thread_id: str) -> None:
        with self._locked():
            self._delete_thread(thread_id)

    def _delete_thread(self, thread_id: str) -> None:
        with self._tx() as cur:
            Removal(cur, self.serde.loads_typed).delete_thread(str(thread_id))
        self.forget_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        with self._locked():
            self._delete_for_runs(run_ids)

    def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        with self._tx() as cur:
            touched = Removal(cur, self.serde.loads_typed).delete_runs(run_ids)
        for thread_id in touched:
            self.forget_thread(thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        with self._locked():
            self._copy_thread(source_thread_id, target_thread_id)

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = str(source_thread_id), str(target_thread_id)
        with self._tx() as cur:
            cur.execute(
                f"INSERT OR REPLACE INTO checkpoints ({COLUMNS}) SELECT ?, {COLUMNS.split(', ', 1)[1]} "
                "FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id",
                (target, source),
            )
            cur.execute(
                "INSERT OR REPLACE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
                "SELECT ?, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = ?",
                (target, source),
            )
            cur.execute(
                "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                "SELECT ?, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value FROM writes WHERE thread_id = ?",
                (target, source),
            )
        self.forget_thread(target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        with self._locked():
            self._prune(thread_ids, strategy)

    def _prune(self, thread_ids: Sequence[str], strategy: str = "keep_latest") -> None:
        if strategy == "delete":
            for thread_id in thread_ids:
                self._delete_thread(thread_id)
            return
        if strategy != "keep_latest":
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            with self._tx() as cur:
                removal = Removal(cur, self.serde.loads_typed)
                removal._apply(removal._plan(str(thread_id), keep=1))
            self.forget_thread(str(thread_id))


class Removal:
    """Removing checkpoints inside one open transaction (`cur`): what `AgentSaver.removing()` yields."""

    def __init__(self, cur: sqlite3.Cursor, loads_typed: Callable[[tuple[str, bytes]], Any]) -> None:
        self._cur = cur
        self._loads_typed = loads_typed

    def prune_thread(self, thread_id: str, *, keep: int | None = None, before: str | None = None) -> PrunedThread | None:
        """Remove every checkpoint of a thread that is neither among the newest `keep` (if given)
        nor created at or after `before` (an ISO time, if given), except the latest and what a
        kept checkpoint needs to be loaded (the ancestors its delta channels replay from), with
        their writes and the blobs nothing refers to any more. None when nothing would go."""
        plan = self._plan(thread_id, keep, before)
        return self._apply(plan) if plan.doomed else None

    def delete_thread(self, thread_id: str) -> dict[str, int]:
        """Remove every checkpoint, write and blob of a thread; how many of each went."""
        counts = {"checkpoints": 0, "writes": self._writes_in_rows(thread_id), "blobs": 0}
        for table, key in (("checkpoints", "checkpoints"), ("writes", "writes"), ("checkpoint_blobs", "blobs")):
            counts[key] += self._cur.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,)).rowcount
        return counts

    def delete_runs(self, run_ids: Sequence[str]) -> set[str]:
        """Remove the checkpoints the runs wrote (with what only they needed); the threads touched."""
        marks = ",".join("?" * len(run_ids))
        doomed = self._cur.execute(
            f"SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints WHERE run_id IN ({marks})", tuple(run_ids)
        ).fetchall()
        self._delete_checkpoints(doomed)
        for thread_id, ns in {(t, n) for t, n, _ in doomed}:
            self._collect_blobs(thread_id, ns)
        return {thread_id for thread_id, _, _ in doomed}

    def remove_orphans(self, skip: set[str]) -> dict[str, int]:
        """Writes whose checkpoint is gone, and blobs that no checkpoint of their thread refers
        to, except those of the threads in `skip`; how many of each went."""
        orphan_writes = self._cur.execute(
            "SELECT DISTINCT thread_id FROM writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
            "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)"
        ).fetchall()
        removed = {"writes": 0, "blobs": 0}
        for (thread_id,) in orphan_writes:
            if thread_id in skip:
                continue
            removed["writes"] += self._cur.execute(
                "DELETE FROM writes WHERE thread_id = ? AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = writes.thread_id "
                "AND c.checkpoint_ns = writes.checkpoint_ns AND c.checkpoint_id = writes.checkpoint_id)",
                (thread_id,),
            ).rowcount
        for thread_id, ns in self._cur.execute("SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoint_blobs").fetchall():
            if thread_id not in skip:
                removed["blobs"] += self._collect_blobs(thread_id, ns)
        return removed

    def _plan(self, thread_id: str, keep: int | None = None, before: str | None = None) -> _Plan:
        """What pruning one thread would remove, per namespace (see prune_thread)."""
        plan = _Plan(thread_id)
        rows = self._cur.execute(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, created_at FROM checkpoints WHERE thread_id = ? "
            "ORDER BY checkpoint_ns, checkpoint_id DESC",
            (thread_id,),
        ).fetchall()
        by_ns: dict[str, list[tuple]] = {}
        for row in rows:
            by_ns.setdefault(row[0], []).append(row)
        for ns, group in by_ns.items():
            parents = {cid: parent for _, cid, parent, _ in group}
            kept = set()
            for rank, (_, cid, _, created) in enumerate(group):
                if rank == 0 or (keep is not None and rank < keep) or (before is not None and (created or "") >= before):
                    kept.add(cid)
                elif keep is None and before is None:
                    kept.add(cid)
            kept |= self._delta_ancestors(thread_id, ns, kept, parents)
            plan.doomed += [(thread_id, ns, cid) for _, cid, _, _ in group if cid not in kept]
            plan.kept[ns] = kept
        return plan

    def _apply(self, plan: _Plan) -> PrunedThread:
        writes = self._delete_checkpoints(plan.doomed)
        blobs = sum(self._collect_blobs(plan.thread_id, ns) for ns in plan.kept)
        kept = sum(len(k) for k in plan.kept.values())
        return PrunedThread(plan.thread_id, len(plan.doomed), kept, writes, blobs)

    def _delta_ancestors(self, thread_id: str, ns: str, kept: set[str], parents: dict[str, str | None]) -> set[str]:
        """Ancestors of kept checkpoints that their delta channels are rebuilt from.

        A `DeltaChannel` not snapshotted at a checkpoint is listed in its metadata's
        `counters_since_delta_snapshot`; LangGraph rebuilds it from the writes of the ancestors
        back to the nearest one that stores a value for it, so those must stay.
        """
        needed: set[str] = set()
        for cid in kept:
            meta = self._metadata(thread_id, ns, cid)
            channels = set((meta.get("counters_since_delta_snapshot") or {}).keys())
            cursor = parents.get(cid)
            while channels and cursor is not None and cursor in parents:
                needed.add(cursor)
                checkpoint = self._skeleton(thread_id, ns, cursor)
                versions = checkpoint.get("channel_versions", {})
                inline = checkpoint.get("channel_values") or {}
                for ch in list(channels):
                    if ch in inline or self._has_value(thread_id, ns, cursor, ch, versions.get(ch)):
                        channels.discard(ch)
                cursor = parents.get(cursor)
        return needed - kept

    def _metadata(self, thread_id: str, ns: str, cid: str) -> dict[str, Any]:
        row = self._cur.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (thread_id, ns, cid)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def _skeleton(self, thread_id: str, ns: str, cid: str) -> dict[str, Any]:
        row = self._cur.execute(
            "SELECT type, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, ns, cid),
        ).fetchone()
        return self._loads_typed(row) if row else {}

    def _has_value(self, thread_id: str, ns: str, cid: str, channel: str, version: Any) -> bool:
        """Whether checkpoint `cid` stores a value for `channel` at `version`."""
        if version is None:
            return False
        where = stored_row_facts(self._cur, self._loads_typed, thread_id, ns, cid).where
        loc = where.get(channel, LEGACY)
        if loc == NO_VALUE:
            return False
        if loc != LEGACY:
            row = self._cur.execute(
                "SELECT vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (thread_id, ns, loc)
            ).fetchone()
            hit = vals_of(row[0] if row else None).get(channel)
            if hit is not None and hit[0] == str(version):
                return hit[1][0] != "empty"
        row = self._cur.execute(
            "SELECT type FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
            (thread_id, ns, channel, blob_version(str(version), loc)),
        ).fetchone()
        return row is not None and row[0] != "empty"

    def _delete_checkpoints(self, doomed: Sequence[CheckpointKey]) -> int:
        """Delete checkpoints and their writes; returns the number of writes removed.

        What the remaining checkpoints need of the removed rows stays: the values they refer to
        move to checkpoint_blobs (where a lookup falls back to when a row is gone), and writes
        stored with a removed row for a parent that remains move to `writes`.
        """
        by_ns: dict[tuple[str, str], set[str]] = {}
        for thread_id, ns, cid in doomed:
            by_ns.setdefault((thread_id, ns), set()).add(cid)
        removed_writes = 0
        for key, gone in by_ns.items():
            self._keep_referenced_values(key, gone)
            removed_writes += self._keep_parents_writes(key, gone)
            for cid in gone:
                self._cur.execute("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid))
                removed_writes += self._cur.execute(
                    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid)
                ).rowcount
        return removed_writes

    def _keep_referenced_values(self, key: tuple[str, str], gone: set[str]) -> None:
        """Move the values that remaining rows of a thread's namespace take from rows that go
        into checkpoint_blobs."""
        needed: dict[str, set[str]] = {}
        for cid, refs in self._cur.execute(
            "SELECT checkpoint_id, refs FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND refs IS NOT NULL", key
        ).fetchall():
            if cid not in gone:
                for loc, channels in unpack(refs).items():
                    if loc in gone:
                        needed.setdefault(loc, set()).update(channels)
        for loc, channels in needed.items():
            row = self._cur.execute(
                "SELECT vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, loc)
            ).fetchone()
            kept = [(*key, ch, blob_version(v, loc), t, b) for ch, (v, (t, b)) in vals_of(row[0] if row else None).items() if ch in channels]
            self._cur.executemany(
                "INSERT OR IGNORE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                kept,
            )

    def _keep_parents_writes(self, key: tuple[str, str], gone: set[str]) -> int:
        """Move the writes a row that goes holds for a parent that stays into `writes`, and drop
        those a row that stays holds for a parent that goes; returns how many were dropped."""
        dropped = 0
        for cid, parent, packed in self._cur.execute(
            "SELECT checkpoint_id, parent_checkpoint_id, pwrites FROM checkpoints "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND pwrites IS NOT NULL",
            key,
        ).fetchall():
            rows = unpack(packed)
            if cid in gone and parent not in gone:
                self._cur.executemany(INSERT_WRITE, [(*key, parent, *row) for row in rows])
            elif parent in gone:
                dropped += len(rows)
                if cid not in gone:
                    self._cur.execute(
                        "UPDATE checkpoints SET pwrites = NULL WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid)
                    )
        return dropped

    def _writes_in_rows(self, thread_id: str) -> int:
        """How many writes a thread's checkpoint rows hold (`pwrites`)."""
        return sum(
            len(unpack(packed))
            for (packed,) in self._cur.execute("SELECT pwrites FROM checkpoints WHERE thread_id = ? AND pwrites IS NOT NULL", (thread_id,))
        )

    def _collect_blobs(self, thread_id: str, ns: str) -> int:
        """Delete the blobs of a thread's namespace that no remaining checkpoint refers to."""
        referenced = set(self._referenced_blobs(thread_id, ns))
        stored = self._cur.execute(
            "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
        ).fetchall()
        unused = [(thread_id, ns, ch, v) for ch, v in stored if (ch, v) not in referenced]
        self._cur.executemany(
            "DELETE FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?", unused
        )
        return len(unused)

    def _referenced_blobs(self, thread_id: str, ns: str) -> Iterator[tuple[str, str]]:
        """The (channel, version) keys of checkpoint_blobs that a thread's checkpoints may read."""
        for cid, type_, blob, vals, refs in self._cur.execute(
            "SELECT checkpoint_id, type, checkpoint, vals, refs FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
        ).fetchall():
            where = locations(cid, vals_of(vals), unpack(refs) if refs is not None else None)
            for ch, version in self._loads_typed((type_, blob)).get("channel_versions", {}).items():
                yield ch, blob_version(str(version), where.get(ch, LEGACY))
