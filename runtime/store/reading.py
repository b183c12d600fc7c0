"""The saver's read path: loading checkpoints (`get_tuple`, `list`) and their pending writes.

Loading a checkpoint reads its row, the rows its `refs` name (one query) and its writes (two
queries); listing does the same for a batch of checkpoints at once. Rows written before schema 5
keep their values in `checkpoint_blobs`, which a lookup falls back to, as it does for a value
whose row pruning removed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    writes_sort_key,
)
from langgraph.checkpoint.sqlite.utils import search_where

from runtime.store.rows import LEGACY, LOADED, NO_VALUE, NOT_ROWS, RowFacts, blob_version, locations, unpack, vals_of

BATCH = 200
"""Checkpoints loaded together while listing."""

Located = dict[str, dict[str, str]]
"""Per checkpoint, where each of its channels' values is."""


class CheckpointReads:
    """The read half of AgentSaver (runtime/store/saver.py), which gives it `conn`, `serde`,
    `_locked()` (the saver's lock, queued writes stored first) and `_last`."""

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._locked():
            return self._get_tuple(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        if checkpoint_id := get_checkpoint_id(config):
            row = self.conn.execute(
                f"SELECT {LOADED} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (thread_id, ns, checkpoint_id),
            ).fetchone()
        else:
            row = self.conn.execute(
                f"SELECT {LOADED} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1",
                (thread_id, ns),
            ).fetchone()
        if row is None:
            return None
        located: Located = {}
        loaded = self._load(thread_id, ns, [row], located)[0]
        # The run that loads a checkpoint puts its child next: remember where its values are.
        self._last[(thread_id, ns)] = RowFacts(row[0], row[7], located[row[0]], dict(loaded.checkpoint["channel_versions"]))
        return loaded

    def _load(self, thread_id: str, ns: str, rows: Sequence[tuple], located: Located | None = None) -> list[CheckpointTuple]:
        """Tuples for rows of one thread and namespace (`LOADED` columns): the values each checkpoint
        refers to, from the rows that hold them (one query), and its writes (two queries).
        `located` receives, per checkpoint, where each of its channels' values is."""
        held, refs = self._held_values(thread_id, ns, rows)
        writes = self._writes_of(thread_id, ns, [row[0] for row in rows])
        found: list[tuple[dict[str, Any], dict[str, tuple], dict[str, tuple[str, str]]]] = []
        legacy: set[tuple[str, str]] = set()
        for cid, _, type_, blob, *_ in rows:
            checkpoint = self.serde.loads_typed((type_, blob))
            where = locations(cid, held[cid], refs[cid])
            if located is not None:
                located[cid] = where
            hits, elsewhere = _look_up(checkpoint, where, held)
            legacy.update(elsewhere.values())
            found.append((checkpoint, hits, elsewhere))
        stored = self._fetch_blobs(thread_id, ns, legacy) if legacy else {}
        out = []
        for (cid, parent, _, _, metadata, *_), (checkpoint, hits, elsewhere) in zip(rows, found):
            values = dict(checkpoint.get("channel_values") or {})
            for ch, key in elsewhere.items():
                if key in stored:
                    hits[ch] = stored[key]
            for ch, typed in hits.items():
                if typed[0] != "empty":
                    values[ch] = self.serde.loads_typed(typed)
            checkpoint["channel_values"] = values
            out.append(self._tuple(thread_id, ns, cid, parent, checkpoint, metadata, writes.get(cid, ())))
        return out

    def _held_values(self, thread_id: str, ns: str, rows: Sequence[tuple]) -> tuple[dict[str, dict[str, tuple]], dict[str, Any]]:
        """The `vals` of the rows and of the other rows their `refs` name, and the rows' `refs`."""
        held: dict[str, dict[str, tuple]] = {row[0]: vals_of(row[5]) for row in rows}
        refs = {row[0]: unpack(row[6]) if row[6] is not None else None for row in rows}
        other_rows = sorted({loc for r in refs.values() if r for loc in r if loc not in held and loc not in NOT_ROWS})
        for start in range(0, len(other_rows), 500):
            chunk = other_rows[start : start + 500]
            for cid, vals in self.conn.execute(
                f"SELECT checkpoint_id, vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                f"AND checkpoint_id IN ({','.join('?' * len(chunk))})",
                (thread_id, ns, *chunk),
            ):
                held[cid] = vals_of(vals)
        return held, refs

    def _fetch_blobs(self, thread_id: str, ns: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, bytes]]:
        """Values from `checkpoint_blobs` (rows written before schema 5, values kept by pruning)."""
        found: dict[tuple[str, str], tuple[str, bytes]] = {}
        pairs = sorted(wanted)
        for start in range(0, len(pairs), 200):
            chunk = pairs[start : start + 200]
            terms = " OR ".join(["(channel = ? AND version = ?)"] * len(chunk))
            params: list[Any] = [thread_id, ns]
            for ch, v in chunk:
                params += [ch, v]
            for ch, v, type_, blob in self.conn.execute(
                f"SELECT channel, version, type, blob FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND ({terms})",
                params,
            ):
                found[(ch, v)] = (type_, blob)
        return found

    def stored_writes(self, thread_id: str, checkpoint_ns: str, checkpoint_ids: Sequence[str]) -> dict[str, list[tuple]]:
        """The pending writes of checkpoints, as stored (not deserialised): per checkpoint id,
        (task_id, channel, type, value, task_path, idx) each, in no particular order."""
        with self._locked():
            return self._writes_of(thread_id, checkpoint_ns, checkpoint_ids)

    def _writes_of(self, thread_id: str, ns: str, cids: Sequence[str]) -> dict[str, list[tuple]]:
        """The pending writes of checkpoints, (task_id, channel, type, value, task_path, idx) each:
        those stored on their own and those stored with a child checkpoint, merged as the writes
        table would have them (a task's regular write stays as first stored, a special one
        (error, interrupt, ...) as last stored)."""
        out: dict[str, list[tuple]] = {}
        for start in range(0, len(cids), 500):
            chunk = cids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, *write in self.conn.execute(
                "SELECT checkpoint_id, task_id, channel, type, value, task_path, idx FROM writes "
                f"WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id IN ({marks})",
                (thread_id, ns, *chunk),
            ):
                out.setdefault(cid, []).append(tuple(write))
            # A child is newer than its parent (checkpoint ids grow with time): the rows after
            # the oldest of these, found through the unique index; for the latest, none.
            for parent, packed in self.conn.execute(
                "SELECT parent_checkpoint_id, pwrites FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                f"AND checkpoint_id > ? AND parent_checkpoint_id IN ({marks}) AND pwrites IS NOT NULL ORDER BY checkpoint_id",
                (thread_id, ns, min(chunk), *chunk),
            ):
                rows = out.setdefault(parent, [])
                for task_id, task_path, idx, channel, type_, value in unpack(packed):
                    rows.append((task_id, channel, type_, value, task_path, idx))
        for cid, rows in out.items():
            merged: dict[tuple[str, int], tuple] = {}
            for row in rows:
                key = (row[0], row[5])
                if key not in merged or row[5] < 0:
                    merged[key] = row
            out[cid] = list(merged.values())
        return out

    def _tuple(self, thread_id, ns, cid, parent, checkpoint, metadata, writes) -> CheckpointTuple:
        pending = [
            (task_id, channel, self.serde.loads_typed((type_, value)))
            for task_id, channel, type_, value, _, _ in sorted(writes, key=lambda r: writes_sort_key(r[4], r[0], r[5]))
        ]
        return CheckpointTuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint,
            json.loads(metadata) if metadata is not None else {},
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}} if parent else None,
            pending,
        )

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        query, params = list_query(config, filter, before, limit)
        with self._locked():
            rows = self.conn.execute(query, params).fetchall()
        for start in range(0, len(rows), BATCH):
            with self._locked():
                batch = self._load_batch(rows[start : start + BATCH])
            yield from batch

    def _load_batch(self, rows: list[tuple]) -> list[CheckpointTuple]:
        """Tuples for a batch of `list` rows (thread_id, checkpoint_ns, then `LOADED`), in their order."""
        by_thread: dict[tuple[str, str], list[tuple]] = {}
        for row in rows:
            by_thread.setdefault((row[0], row[1]), []).append(row[2:])
        loaded: dict[tuple[str, str, str], CheckpointTuple] = {}
        for (thread_id, ns), group in by_thread.items():
            for row, item in zip(group, self._load(thread_id, ns, group)):
                loaded[(thread_id, ns, row[0])] = item
        return [loaded[(r[0], r[1], r[2])] for r in rows]

    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]:
        # The stock override reads values inline from each checkpoint row; here they are in other rows,
        # so the generic ancestor walk (through get_tuple) is the correct one.
        return BaseCheckpointSaver.get_delta_channel_history(self, config=config, channels=channels)


def _look_up(
    checkpoint: dict[str, Any], where: dict[str, str], held: dict[str, dict[str, tuple]]
) -> tuple[dict[str, tuple], dict[str, tuple[str, str]]]:
    """Where a checkpoint's values are: (type, bytes) of those found in a row's `vals`, and the
    checkpoint_blobs key of the others. A row may hold values inline (a tampered one); those win."""
    inline = checkpoint.get("channel_values") or {}
    hits: dict[str, tuple] = {}
    elsewhere: dict[str, tuple[str, str]] = {}
    for ch, version in checkpoint["channel_versions"].items():
        if ch in inline:
            continue
        v = str(version)
        loc = where.get(ch, LEGACY)
        if loc == NO_VALUE:
            continue
        hit = held.get(loc, {}).get(ch)
        if hit is not None and hit[0] == v:
            hits[ch] = hit[1]
        else:  # a row written before schema 5, or a row pruning removed
            elsewhere[ch] = (ch, blob_version(v, loc))
    return hits, elsewhere


def list_query(
    config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None, limit: int | None
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT behind `list` and `alist`: checkpoints matching the filters, newest first."""
    where, params = search_where(config, filter, before)
    query = f"SELECT thread_id, checkpoint_ns, {LOADED} FROM checkpoints {where} ORDER BY checkpoint_id DESC"
    if limit is not None:
        query += " LIMIT ?"
        params = (*params, limit)
    return query, tuple(params)
