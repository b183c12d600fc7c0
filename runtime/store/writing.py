"""The saver's write path: a checkpoint as one row written by one statement, and writes stored
on their own.

A step's row holds the values the step changed (each stored once per version), where its other
values are (`refs`: the rows that hold them; the last put's map is kept in memory, so a put reads
nothing), and the writes of the tasks that made it (`pwrites`). A value is found by what it is,
channel and version: a checkpoint refers to the row its parent took a value from only where it
has the parent's very version; any other value it carries is stored in its own row (a `__copy__`
fork is stored under its source's parent with the source's versions). Putting an id that is
stored already keeps what other rows need of the old row: its values (moved to
`checkpoint_blobs`) and the writes it holds for its parent (moved to `writes`). Writes join a
child's row only when the child's id sorts after its parent's, which is where readers look for
them: ids come from the clock of the machine that made them, and a clock that is behind makes a
child with a smaller id.
"""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import datetime
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_checkpoint_metadata,
)

from runtime.store.rows import (
    COLUMNS,
    HOLDS_LEASE,
    INSERT_CHECKPOINT,
    INSERT_CHECKPOINT_FENCED,
    INSERT_WRITE,
    LEGACY,
    NO_PARENT,
    NO_VALUE,
    RowFacts,
    blob_version,
    encode_json,
    names_json,
    pack,
    stored_row_facts,
    unpack,
    vals_of,
)

from runtime.store.seam import LEASE_KEY, LeaseLost

_WRITE_COLUMNS = 9
_PARAMS_PER_STATEMENT = _WRITE_COLUMNS * 100
"""Writes go in statements of up to 100 rows."""


class CheckpointWrites:
    """The write half of AgentSaver (runtime/store/saver.py), which gives it `conn`, `lock`,
    `serde`, `_tx()`, `_wal`, `_bound`, `_last`, `_put_cursor` and `_put_joined` (the write queue's)."""

    save_latencies: list[float] | None = None
    """When a list: each checkpoint's seconds from its creation (LangGraph stamps `ts` once the
    step's tasks finished) to its row being stored (`agent worker --stats`)."""

    def get_next_version(self, current: str | int | None, channel: None = None) -> int | str:
        """A counter, as LangGraph's base saver has it: a step's versions are then a few bytes in
        its row instead of 50-character strings (the stock savers add a random part so that two
        branches never store different values under one version; here a value is found through
        the row that holds it, never by its version alone). A thread started with string
        versions keeps their format."""
        if current is None:
            return 1
        if isinstance(current, int):
            return current + 1
        return f"{int(str(current).split('.')[0]) + 1:032}.{random.random():016}"

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with self.lock:
            if not self.is_setup:
                self.setup()
            return self._put_joined(config, checkpoint, metadata, new_versions)

    def _put(self, config, checkpoint, metadata, new_versions, joined: Sequence[tuple] = ()) -> RunnableConfig:
        """Store a checkpoint as one row, written by one statement: the values it introduced, where
        its other values are, and `joined` (put_writes arguments: its parent's writes)."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        parent = configurable.get("checkpoint_id")
        cid = checkpoint["id"]
        last = self._last.get((thread_id, ns))
        if last is None or last.checkpoint_id != parent:
            last = self._row_facts(thread_id, ns, parent) if parent else NO_PARENT
        versions = checkpoint["channel_versions"]
        vals, where, refs = self._place_values(cid, checkpoint["channel_values"], versions, new_versions, last)
        meta = get_checkpoint_metadata(config, metadata)
        source = meta.get("source")
        next_tasks = self._bound.get(thread_id) or self._bound.get("next")
        next_json = names_json(next_tasks(checkpoint)) if next_tasks is not None and ns == "" else None
        pwrites = self._join_parent_writes(ns, cid, parent, joined) if joined else None
        type_, serialized = self.serde.dumps_typed({**checkpoint, "channel_values": {}})
        row = (
            thread_id,
            ns,
            cid,
            parent,
            type_,
            serialized,
            encode_json(meta),
            meta.get("step"),
            source,
            checkpoint.get("ts"),
            meta.get("run_id"),
            last.next_json if source == "loop" and parent else None,  # writers: the tasks that ran from the parent
            next_json,
            pack(vals) if vals else None,
            pack(refs) if refs else None,
            pwrites,
        )
        cur = self._cursor()
        lease = configurable.get(LEASE_KEY)
        if lease is None:
            cur.execute(INSERT_CHECKPOINT, row)
        else:
            cur.execute(INSERT_CHECKPOINT_FENCED, (*row, thread_id, lease))
        if cur.rowcount == 0:  # the id is stored already, or the lease is lost
            if lease is not None:
                self._check_lease(thread_id, lease)
            self._put_again(row)
        elif self._wal is not None:
            self._wal.committed()
        self._last[(thread_id, ns)] = RowFacts(cid, next_json, where, dict(versions))
        if self.save_latencies is not None and checkpoint.get("ts"):
            self.save_latencies.append(time.time() - datetime.fromisoformat(checkpoint["ts"]).timestamp())
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

    def _place_values(
        self, cid: str, values: dict[str, Any], versions: ChannelVersions, new_versions: ChannelVersions, last: RowFacts
    ) -> tuple[list[tuple], dict[str, str], dict[str, list[str]]]:
        """A checkpoint's values in its row (`vals`), where each channel's value is, and the
        locations of those it does not hold (`refs`)."""
        dumps = self.serde.dumps_typed
        inherited, parent_versions = last.where, last.versions
        vals = []
        where: dict[str, str] = {}
        refs: dict[str, list[str]] = {}
        for ch, version in versions.items():
            # A value is found by what it is: the parent's location serves only for the very
            # version the parent has. Otherwise (new versions, or a copy of another checkpoint
            # stored under this parent, as `__copy__` forks are) the value goes in this row.
            if ch in new_versions or parent_versions.get(ch) != version:
                if ch in values:
                    vals.append((ch, str(version), *dumps(values[ch])))
                    where[ch] = cid
                    continue
                loc = NO_VALUE
            else:
                loc = inherited.get(ch, LEGACY)
            where[ch] = loc
            if loc in refs:
                refs[loc].append(ch)
            else:
                refs[loc] = [ch]
        return vals, where, refs

    def _join_parent_writes(self, ns: str, cid: str, parent: str | None, joined: Sequence[tuple]) -> bytes | None:
        """The parent's queued writes, packed for this row's `pwrites`. They join it only where
        readers look for them: in a row whose id sorts after the parent's (a child made on a
        machine whose clock is behind does not); the others are stored on their own."""
        rows = []
        joins = parent is not None and cid > parent
        for args in joined:
            target = args[0]["configurable"]
            if joins and target.get("checkpoint_id") == parent and target.get("checkpoint_ns", "") == ns:
                rows += self._pwrite_rows(*args)
            else:
                self._put_writes(*args)
        return pack(rows) if rows else None

    def _row_facts(self, thread_id: str, ns: str, cid: str) -> RowFacts:
        """The facts of a stored checkpoint, for a put whose parent is not the last checkpoint
        this saver put or loaded."""
        return stored_row_facts(self.conn, self.serde.loads_typed, thread_id, ns, cid)

    def _put_again(self, row: tuple) -> None:
        """Store a checkpoint whose id is stored already (`row`: the `COLUMNS` of the new one).

        Other rows may hold values by reference to the old row, and a child's writes may be in
        it: the old row's values move to checkpoint_blobs (keyed by version and row, where a
        lookup that misses in the row finds them, as after pruning) and its writes to `writes`
        under its parent, then the row takes the new checkpoint. LangGraph's own savers keep
        both the same way (values by version, writes by checkpoint)."""
        thread_id, ns, cid = row[:3]
        key = (thread_id, ns, cid)
        with self._tx() as cur:
            old = cur.execute(
                "SELECT parent_checkpoint_id, vals, pwrites FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                key,
            ).fetchone()
            if old is None:  # removed between the two statements
                cur.execute(INSERT_CHECKPOINT, row)
                return
            old_parent, old_vals, old_pwrites = old
            cur.executemany(
                "INSERT OR REPLACE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                [(thread_id, ns, ch, blob_version(v, cid), t, b) for ch, (v, (t, b)) in vals_of(old_vals).items()],
            )
            if old_pwrites is not None and old_parent is not None:
                cur.executemany(INSERT_WRITE, [(thread_id, ns, old_parent, *write) for write in unpack(old_pwrites)])
            cur.execute(
                f"UPDATE checkpoints SET ({COLUMNS}) = ({', '.join('?' * 16)}) WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (*row, *key),
            )

    def _cursor(self) -> sqlite3.Cursor:
        """The put's cursor, kept between puts (callers hold `self.lock`)."""
        cur = self._put_cursor.get(self.conn)
        if cur is None:
            self._put_cursor.clear()
            cur = self._put_cursor[self.conn] = self.conn.cursor()
        return cur

    def _write_rows(self, config, writes, task_id, task_path) -> tuple[str, list[Any]]:
        verb = "REPLACE" if all(w[0] in WRITES_IDX_MAP for w in writes) else "IGNORE"
        thread_id = str(config["configurable"]["thread_id"])
        ns = str(config["configurable"].get("checkpoint_ns", ""))
        cid = str(config["configurable"]["checkpoint_id"])
        params: list[Any] = []
        for idx, (channel, value) in enumerate(writes):
            params += (thread_id, ns, cid, task_id, task_path, WRITES_IDX_MAP.get(channel, idx), channel, *self.serde.dumps_typed(value))
        return verb, params

    def _pwrite_rows(self, config, writes, task_id, task_path) -> list[tuple]:
        """A task's writes as stored in its checkpoint's child row (`pwrites`)."""
        dumps = self.serde.dumps_typed
        return [(task_id, task_path, WRITES_IDX_MAP.get(ch, idx), ch, *dumps(value)) for idx, (ch, value) in enumerate(writes)]

    def _check_lease(self, thread_id: str, lease: int) -> None:
        """Raise LeaseLost unless the thread's lease is still `lease`."""
        if not self.conn.execute(f"SELECT {HOLDS_LEASE}", (thread_id, lease)).fetchone()[0]:
            raise LeaseLost(f"the lease on thread {thread_id!r} was taken over; this runner's writes are refused")

    def _put_writes(self, config, writes, task_id, task_path) -> None:
        verb, params = self._write_rows(config, writes, task_id, task_path)
        if not params:
            return
        lease = config["configurable"].get(LEASE_KEY)
        if lease is not None:
            self._put_writes_fenced(str(config["configurable"]["thread_id"]), lease, verb, params)
            return
        if len(params) <= _PARAMS_PER_STATEMENT and not self.conn.in_transaction:
            # One statement is one (implicit) transaction: the rows commit together, in one call.
            # In autocommit SQLite waits out the busy timeout even for a changed snapshot; on the
            # loop's fast path (timeout 0) a lock found taken sends the call to a thread.
            self._insert_writes(self.conn, verb, params)
            if self._wal is not None:
                self._wal.committed()
            return
        with self._tx() as cur:
            for start in range(0, len(params), _PARAMS_PER_STATEMENT):
                self._insert_writes(cur, verb, params[start : start + _PARAMS_PER_STATEMENT])

    def _put_writes_fenced(self, thread_id: str, lease: int, verb: str, params: list[Any]) -> None:
        """A runner's writes, stored only while it holds the lease: the check is in the statement
        that stores them (or, for more than one statement's worth, in their transaction), so no
        taking over comes between."""
        if len(params) <= _PARAMS_PER_STATEMENT and not self.conn.in_transaction:
            rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(params) // _WRITE_COLUMNS))
            cur = self.conn.execute(
                f"INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                f"SELECT * FROM (VALUES {rows}) WHERE {HOLDS_LEASE}",
                [*params, thread_id, lease],
            )
            if cur.rowcount == 0:  # stored already (IGNORE), or the lease is lost
                self._check_lease(thread_id, lease)
            if self._wal is not None:
                self._wal.committed()
            return
        with self._tx() as cur:
            self._check_lease(thread_id, lease)
            for start in range(0, len(params), _PARAMS_PER_STATEMENT):
                self._insert_writes(cur, verb, params[start : start + _PARAMS_PER_STATEMENT])

    @staticmethod
    def _insert_writes(target: Any, verb: str, params: list[Any]) -> None:
        target.execute(
            f"INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
            "VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(params) // _WRITE_COLUMNS)),
            params,
        )
