"""The checkpointer: langgraph-checkpoint-sqlite's `SqliteSaver`, extended for speed.

What differs from the stock saver (tables in runtime/store/schema.py):

- A step is one row of `checkpoints`, written by one autocommit INSERT: the checkpoint without
  its values, the values the step changed (each stored once per version, as LangGraph's
  Postgres saver does, instead of the whole state in every checkpoint), where its other values
  are (`refs`: the rows that hold them; the last put's map is kept in memory, so a put reads
  nothing), and the writes of the tasks that made it (`pwrites`). One statement into one table
  that grows at its end: the per-step cost is what one durable commit costs, not five
  statements across three B-trees.
- A value is found by what it is, channel and version: a checkpoint refers to the row its
  parent took a value from only where it has the parent's very version; any other value it
  carries is stored in its own row (a `__copy__` fork is stored under its source's parent with
  the source's versions). Putting an id that is stored already keeps what other rows need of
  the old row: its values (moved to `checkpoint_blobs`) and the writes it holds for its parent
  (moved to `writes`). Writes join a child's row only when the child's id sorts after its
  parent's, which is where readers look for them: ids come from the clock of the machine that
  made them, and a clock that is behind makes a child with a smaller id.
- A task's writes join the step's checkpoint row: put_writes/aput_writes queue them (LangGraph
  waits for neither) and the step's put takes them; a flusher thread stores on their own, in
  `writes`, those that no put took within JOIN_SECONDS to twice that (a task that finished
  while a sibling still runs). Errors, interrupts and LangGraph's other special writes, and
  writes to a saver without a connection of its own, are stored at once.
- What history shows (step, source, time, the nodes that wrote a checkpoint and the tasks that
  run next) is kept in plain columns, written with the checkpoint, so history is one indexed
  query with nothing to deserialise. `next` is known when the saver is bound to the compiled
  graph (`bind_graph`), which the runtime does; otherwise it is NULL and history computes it.
- Loading a checkpoint reads its row, the rows its `refs` name (one query) and its writes (two
  queries); listing does the same for a batch of checkpoints at once. Rows written before
  schema 5 keep their values in `checkpoint_blobs`, which a lookup falls back to.
- The async methods run the (fast, WAL, `synchronous=NORMAL`) sqlite3 calls directly on the
  event loop instead of hopping to aiosqlite's thread per call. A call that finds the database
  locked (by another connection in this process mid-transaction, or another process) moves to a
  worker thread that waits for the lock, so the event loop is never blocked waiting for it.
- `prune`, `copy_thread` and `delete_for_runs` are implemented; pruning keeps what the kept
  checkpoints need to be loaded (values held by a removed row move to `checkpoint_blobs`,
  writes stored with a removed row for a kept parent move to `writes`, and the ancestors a
  `DeltaChannel` replays from stay).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Callable, NamedTuple

import orjson
import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.utils import search_where

from runtime.store.connect import (
    BUSY_TIMEOUT_MS,
    NO_WAIT,
    WORKER_BUSY_TIMEOUT_MS,
    checkpoint_wal,
    connect,
    is_busy_or_locked,
    set_busy_timeout,
    stop_automatic_wal_checkpoints,
)
from runtime.store.schema import create_checkpoint_tables, needs_conversion, send_targets, table_columns
from runtime.store.transaction import immediate

JOIN_SECONDS = 0.005
"""How long a task's queued writes (sync API) wait for the step's checkpoint to take them."""
_BATCH = 200
_TASKS = "__pregel_tasks"


def _value_means_available() -> tuple[type, ...]:
    from langgraph.channels.ephemeral_value import EphemeralValue
    from langgraph.channels.last_value import LastValue

    return (EphemeralValue, LastValue)


_VALUE_MEANS_AVAILABLE = _value_means_available()
"""Channel types that store a value exactly when they are available (checked without rebuilding them)."""


class NextTasks:
    """Which tasks run from a checkpoint, computed as LangGraph's `prepare_next_tasks` does,
    from the compiled graph's triggers, without building the tasks or their input.

    Pushed tasks (each `Send` in the task channel) come first, then each node one of whose
    trigger channels is available at a version the node has not seen, in the graph's node order.
    """

    def __init__(self, graph: Any) -> None:
        self.triggers = {name: tuple(node.triggers) for name, node in graph.nodes.items()}
        self.specs = {ch: graph.channels[ch] for t in self.triggers.values() for ch in t if ch in graph.channels}
        self.by_channel: dict[str, set[str]] = {}
        for name, triggers in self.triggers.items():
            for ch in triggers:
                self.by_channel.setdefault(ch, set()).add(name)
        self._candidates: dict[tuple[str, ...], list[str]] = {}

    def __call__(self, checkpoint: Checkpoint) -> list[str]:
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        names = [n for n in send_targets(values[_TASKS]) if n in self.triggers] if _TASKS in values else []
        if not versions:
            return names
        seen_by_node = checkpoint["versions_seen"]
        available: dict[str, bool] = {}
        for name in self._candidates_for(checkpoint.get("updated_channels")):
            seen = seen_by_node.get(name)
            for ch in self.triggers[name]:
                version = versions.get(ch)
                if version is None or (seen is not None and ch in seen and not version > seen[ch]):
                    continue
                if ch not in available:
                    available[ch] = self._available(ch, values)
                if available[ch]:
                    names.append(name)
                    break
        return names

    def _candidates_for(self, updated: Sequence[str] | None) -> Sequence[str]:
        """The nodes a step's updated channels trigger (as LangGraph narrows them), in graph order;
        every node when the checkpoint does not say what was updated."""
        if not updated:
            return tuple(self.triggers)
        key = tuple(updated)
        found = self._candidates.get(key)
        if found is None:
            triggered = {n for ch in updated for n in self.by_channel.get(ch, ())}
            found = [n for n in self.triggers if n in triggered]
            if len(self._candidates) < 1024:
                self._candidates[key] = found
        return found

    def _available(self, channel: str, values: Mapping[str, Any]) -> bool:
        spec = self.specs.get(channel)
        if spec is None or channel not in values:
            return False
        if type(spec) in _VALUE_MEANS_AVAILABLE:
            return True
        return spec.from_checkpoint(values[channel]).is_available()


class AgentSaver(SqliteSaver):
    """SqliteSaver with one row per step, history columns, pruning and a direct async path."""

    def __init__(
        self, conn: sqlite3.Connection, *, serde: Any = None, fast_async: bool = False, wal_path: str | None = None
    ) -> None:
        """`fast_async`: the connection belongs to this saver and runs async calls on the event
        loop; its busy timeout is then 0 on the loop (a locked database moves the call to a thread).
        `wal_path`: the database file; WAL checkpoints (which fsync) then run on a background
        thread every few hundred commits instead of inside a commit."""
        super().__init__(conn, serde=serde)
        self.fast_async = fast_async
        self._wal = _BackgroundWalCheckpoints(wal_path) if wal_path else None
        if self._wal is not None:
            stop_automatic_wal_checkpoints(conn)
        # Mutable holders, shared with the copies LangGraph makes (`with_allowlist` clones the
        # saver when a graph is compiled and on every run).
        self._bound: dict[str, NextTasks] = {}
        self._sync_pending: list[_PendingWrites] = []
        self._sync_lock = threading.Lock()
        self._flusher = _Flusher()
        _FLUSHERS.add(self._flusher)
        self.join_writes = wal_path is not None  # a connection of its own, as for runs
        # (thread_id, checkpoint_ns) -> the facts of the last checkpoint put or loaded: a put
        # whose parent it is knows which nodes wrote it (the tasks that ran from its parent) and
        # where its unchanged values are.
        self._last: dict[tuple[str, str], _RowFacts] = {}
        self._put_cursor: dict[sqlite3.Connection, sqlite3.Cursor] = {}
        if fast_async:
            set_busy_timeout(conn, NO_WAIT)

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

    # -- set-up -------------------------------------------------------------------------

    def bind_graph(self, graph: Any) -> "AgentSaver":
        """Record, with each checkpoint, the tasks that run next (what `agent history` shows)."""
        self._bound["next"] = NextTasks(graph)
        return self

    def setup(self) -> None:
        if self.is_setup:
            return
        columns = table_columns(self.conn, "checkpoints")
        if needs_conversion(self.conn) or (columns and "vals" not in columns):
            raise RuntimeError("this database has checkpoints in an older layout; open it with runtime.open_database")
        if columns and all(table_columns(self.conn, t) for t in ("checkpoint_blobs", "writes")):
            self.is_setup = True  # the usual case (runtime.open_database made them): no write lock needed
            return
        with immediate(self.conn):
            create_checkpoint_tables(self.conn)
        self.is_setup = True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taking the write lock as it begins; inside a transaction the
        connection already has open (a fork writes a thread, its checkpoint and its data as one),
        a savepoint of it.

        Not runtime.store.transaction.immediate: a statement that fails on a full disk or an I/O
        error may have rolled the transaction back already, and then it is that error, not a
        failed ROLLBACK, that must reach the caller (runtime.store.connect.is_full); and a commit
        here counts towards the next background WAL checkpoint."""
        cur = self.conn.cursor()
        nested = self.conn.in_transaction
        cur.execute("SAVEPOINT agent_saver" if nested else "BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            if nested:
                self.conn.execute("ROLLBACK TO agent_saver")
                self.conn.execute("RELEASE agent_saver")
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            cur.execute("RELEASE agent_saver" if nested else "COMMIT")
            if self._wal is not None and not nested:
                self._wal.committed()
        finally:
            cur.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self.lock:
            if not self.is_setup:
                self.setup()
            if self._sync_pending:
                self._store(self._take_due())  # reads and deletes see every write put_writes accepted
            yield

    # -- reading --------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._locked():
            return self._get_tuple(config)

    def _get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        if checkpoint_id := get_checkpoint_id(config):
            row = self.conn.execute(
                f"SELECT {_ROW} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (thread_id, ns, checkpoint_id),
            ).fetchone()
        else:
            row = self.conn.execute(
                f"SELECT {_ROW} FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? ORDER BY checkpoint_id DESC LIMIT 1",
                (thread_id, ns),
            ).fetchone()
        if row is None:
            return None
        located: dict[str, dict[str, str]] = {}
        loaded = self._load(thread_id, ns, [row], located)[0]
        # The run that loads a checkpoint puts its child next: remember where its values are.
        self._last[(thread_id, ns)] = _RowFacts(row[0], row[7], located[row[0]], dict(loaded.checkpoint["channel_versions"]))
        return loaded

    def _load(
        self, thread_id: str, ns: str, rows: Sequence[tuple], located: dict[str, dict[str, str]] | None = None
    ) -> list[CheckpointTuple]:
        """Tuples for rows of one thread and namespace (`_ROW` columns): the values each checkpoint
        refers to, from the rows that hold them (one query), and its writes (two queries).
        `located` receives, per checkpoint, where each of its channels' values is."""
        held: dict[str, dict[str, tuple]] = {row[0]: _vals(row[5]) for row in rows}
        refs = {row[0]: _unpack(row[6]) if row[6] is not None else None for row in rows}
        other_rows = sorted({loc for r in refs.values() if r for loc in r if loc not in held and loc not in _NOT_ROWS})
        for start in range(0, len(other_rows), 500):
            chunk = other_rows[start : start + 500]
            for cid, vals in self.conn.execute(
                f"SELECT checkpoint_id, vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
                f"AND checkpoint_id IN ({','.join('?' * len(chunk))})",
                (thread_id, ns, *chunk),
            ):
                held[cid] = _vals(vals)
        writes = self._writes_of(thread_id, ns, [row[0] for row in rows])
        found: list[tuple[dict[str, Any], dict[str, tuple], dict[str, tuple[str, str]]]] = []
        legacy: set[tuple[str, str]] = set()
        for cid, _, type_, blob, *_ in rows:
            checkpoint = self.serde.loads_typed((type_, blob))
            where = _locations(cid, held[cid], refs[cid])
            if located is not None:
                located[cid] = where
            # A row may hold values inline (a tampered one); those win, the rest are looked up.
            inline = checkpoint.get("channel_values") or {}
            hits: dict[str, tuple] = {}  # channel -> (type, bytes) found in a row
            elsewhere: dict[str, tuple[str, str]] = {}  # channel -> its key in checkpoint_blobs
            for ch, version in checkpoint["channel_versions"].items():
                if ch in inline:
                    continue
                v = str(version)
                loc = where.get(ch, _LEGACY)
                if loc == _NO_VALUE:
                    continue
                hit = held.get(loc, {}).get(ch)
                if hit is not None and hit[0] == v:
                    hits[ch] = hit[1]
                else:  # a row written before schema 5, or a row pruning removed
                    elsewhere[ch] = (ch, _blob_version(v, loc))
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
                for task_id, task_path, idx, channel, type_, value in _unpack(packed):
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
        query, params = _list_query(config, filter, before, limit)
        with self._locked():
            rows = self.conn.execute(query, params).fetchall()
        for start in range(0, len(rows), _BATCH):
            with self._locked():
                batch = self._load_batch(rows[start : start + _BATCH])
            yield from batch

    def _load_batch(self, rows: list[tuple]) -> list[CheckpointTuple]:
        """Tuples for a batch of `list` rows (thread_id, checkpoint_ns, then `_ROW`), in their order."""
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

    # -- writing --------------------------------------------------------------------------

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

    def _put_joined(self, config, checkpoint, metadata, new_versions) -> RunnableConfig:
        """`_put` with the thread's queued writes joined (callers hold `self.lock`: queued writes
        leave the queue only under it, so a reader, which holds it too, finds every write either
        still queued or stored)."""
        joined = self._claim(config) if self._sync_pending else []
        try:
            return self._put(config, checkpoint, metadata, new_versions, [p.args for p in joined])
        except BaseException:
            self._unclaim(joined)
            raise

    def _claim(self, config: RunnableConfig) -> list["_PendingWrites"]:
        """Take the queued writes of a thread, for its next checkpoint's row."""
        thread_id = str(config["configurable"]["thread_id"])
        with self._sync_lock:
            joined = [p for p in self._sync_pending if p.thread_id == thread_id]
            for p in joined:
                self._sync_pending.remove(p)
        return joined

    def _unclaim(self, joined: list["_PendingWrites"]) -> None:
        """Writes a failed put did not store: back to the queue, for the flusher or the next call."""
        if joined:
            with self._sync_lock:
                self._sync_pending[:0] = joined

    def _put(self, config, checkpoint, metadata, new_versions, joined: Sequence[tuple] = ()) -> RunnableConfig:
        """Store a checkpoint as one row, written by one statement: the values it introduced, where
        its other values are, and `joined` (put_writes arguments: its parent's writes)."""
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        ns = configurable.get("checkpoint_ns", "")
        parent = configurable.get("checkpoint_id")
        cid = checkpoint["id"]
        values = checkpoint["channel_values"]
        dumps = self.serde.dumps_typed
        last = self._last.get((thread_id, ns))
        if last is None or last.checkpoint_id != parent:
            last = self._row_facts(thread_id, ns, parent) if parent else _NO_PARENT
        inherited, parent_versions = last.where, last.versions
        versions = checkpoint["channel_versions"]
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
                loc = _NO_VALUE
            else:
                loc = inherited.get(ch, _LEGACY)
            where[ch] = loc
            if loc in refs:
                refs[loc].append(ch)
            else:
                refs[loc] = [ch]
        meta = get_checkpoint_metadata(config, metadata)
        source = meta.get("source")
        next_tasks = self._bound.get("next")
        next_json = _names_json(next_tasks(checkpoint)) if next_tasks is not None and ns == "" else None
        writers = last.next_json if source == "loop" and parent else None
        pwrites = None
        if joined:
            rows = []
            # The parent's writes join this row only where readers look for them: in a row whose
            # id sorts after the parent's (a child made on a machine whose clock is behind does
            # not); the others are stored on their own.
            joins = parent is not None and cid > parent
            for args in joined:
                target = args[0]["configurable"]
                if joins and target.get("checkpoint_id") == parent and target.get("checkpoint_ns", "") == ns:
                    rows += self._pwrite_rows(*args)
                else:
                    self._put_writes(*args)
            pwrites = _pack(rows) if rows else None
        type_, serialized = dumps({**checkpoint, "channel_values": {}})
        row = (
            thread_id,
            ns,
            cid,
            parent,
            type_,
            serialized,
            _encode_json(meta),
            meta.get("step"),
            source,
            checkpoint.get("ts"),
            meta.get("run_id"),
            writers,
            next_json,
            _pack(vals) if vals else None,
            _pack(refs) if refs else None,
            pwrites,
        )
        cur = self._cursor()
        cur.execute(_INSERT_CHECKPOINT, row)
        if cur.rowcount == 0:  # the id is stored already
            self._put_again(row)
        elif self._wal is not None:
            self._wal.committed()
        self._last[(thread_id, ns)] = _RowFacts(cid, next_json, where, dict(versions))
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

    def _row_facts(self, thread_id: str, ns: str, cid: str) -> "_RowFacts":
        """The facts of a stored checkpoint, for a put whose parent is not the last checkpoint
        this saver put or loaded."""
        row = self.conn.execute(
            "SELECT next, vals, refs, type, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, ns, cid),
        ).fetchone()
        if row is None:
            return _RowFacts(cid, None, {}, {})
        versions = self.serde.loads_typed((row[3], row[4])).get("channel_versions", {})
        return _RowFacts(cid, row[0], _locations(cid, _vals(row[1]), _unpack(row[2]) if row[2] is not None else None), versions)

    def _put_again(self, row: tuple) -> None:
        """Store a checkpoint whose id is stored already (`row`: the `_COLUMNS` of the new one).

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
                cur.execute(_INSERT_CHECKPOINT, row)
                return
            old_parent, old_vals, old_pwrites = old
            cur.executemany(
                "INSERT OR REPLACE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                [(thread_id, ns, ch, _blob_version(v, cid), t, b) for ch, (v, (t, b)) in _vals(old_vals).items()],
            )
            if old_pwrites is not None and old_parent is not None:
                cur.executemany(
                    "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(thread_id, ns, old_parent, *write) for write in _unpack(old_pwrites)],
                )
            cur.execute(
                f"UPDATE checkpoints SET ({_COLUMNS}) = ({', '.join('?' * 16)}) WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                (*row, *key),
            )

    def _cursor(self) -> sqlite3.Cursor:
        """The put's cursor, kept between puts (callers hold `self.lock`)."""
        cur = self._put_cursor.get(self.conn)
        if cur is None:
            self._put_cursor.clear()
            cur = self._put_cursor[self.conn] = self.conn.cursor()
        return cur

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """Store a task's writes.

        LangGraph's loop does not wait for this call. When the task was its step's last, the
        step's checkpoint `put` follows within microseconds and stores the writes in its row;
        so on a saver with a connection of its own (`join_writes`, as for runs) the writes are
        queued, and whatever no put took within JOIN_SECONDS to twice that is stored by a flusher
        thread (a task that finished while others of its step still run). Any read or delete
        through this saver, and `flush()`, stores the queue first.
        """
        args = (config, writes, task_id, task_path)
        if not self._queue(args):
            with self._locked():
                self._put_writes(*args)

    def _queue(self, args: tuple) -> bool:
        """Queue a task's writes for its step's checkpoint row; False when they must be stored
        at once: none to store, no connection of this saver's own, or an error, an interrupt or
        another of LangGraph's special writes (it relies on those being stored before it goes on)."""
        writes = args[1]
        if not writes or not self.join_writes or any(w[0] in WRITES_IDX_MAP for w in writes):
            return False
        pending = _PendingWrites(str(args[0]["configurable"]["thread_id"]), args)
        with self._sync_lock:
            self._sync_pending.append(pending)
            if not self._flusher.running:
                self._flusher.start(self)
        return True

    def settle(self) -> None:
        """Store the queued writes and wait for a background WAL checkpoint under way: the work a
        run leaves behind, done (a benchmark does this between runs, so that it does not slow the next)."""
        self.flush()
        if self._wal is not None:
            with self._wal.running:
                pass

    def close(self) -> None:
        """Store the queued writes, waiting their turn like any write, then close the connection.
        If the database refuses them, the run has already failed and the tasks run again on resume."""
        with contextlib.suppress(sqlite3.Error):
            set_busy_timeout(self.conn, BUSY_TIMEOUT_MS)
            self.flush()
        self.conn.close()

    def flush(self, min_age: float = 0.0) -> int:
        """Store the queued writes at least `min_age` seconds old; returns how many tasks' writes."""
        if not self._sync_pending:
            return 0
        with self.lock:  # taken from the queue and stored under the lock readers hold
            due = self._take_due(min_age)
            self._store(due)
        return len(due)

    def _take_due(self, min_age: float = 0.0) -> list["_PendingWrites"]:
        now = time.monotonic()
        with self._sync_lock:
            due = [p for p in self._sync_pending if now - p.queued >= min_age]
            for p in due:
                self._sync_pending.remove(p)
        return due

    def _store(self, due: list["_PendingWrites"]) -> None:
        """Store taken writes on their own (callers hold `self.lock`); what fails goes back."""
        for i, p in enumerate(due):
            try:
                self._put_writes(*p.args)
            except BaseException:
                self._unclaim(due[i:])
                raise

    def _flushed(self, method: Callable[..., Any], *args: Any) -> Any:
        """`method(*args)` after storing every queued write (callers hold `self.lock`)."""
        if self._sync_pending:
            self._store(self._take_due())
        return method(*args)

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

    def _put_writes(self, config, writes, task_id, task_path) -> None:
        verb, params = self._write_rows(config, writes, task_id, task_path)
        if not params:
            return
        if len(params) <= 9 * 100 and not self.conn.in_transaction:
            # One statement is one (implicit) transaction: the rows commit together, in one call.
            # In autocommit SQLite waits out the busy timeout even for a changed snapshot; on the
            # loop's fast path (timeout 0) a lock found taken sends the call to a thread.
            self._insert_writes(self.conn, verb, params)
            if self._wal is not None:
                self._wal.committed()
            return
        with self._tx() as cur:
            for start in range(0, len(params), 9 * 100):
                self._insert_writes(cur, verb, params[start : start + 9 * 100])

    @staticmethod
    def _insert_writes(target: Any, verb: str, params: list[Any]) -> None:
        target.execute(
            f"INSERT OR {verb} INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
            "VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(params) // 9)),
            params,
        )

    # -- deleting and copying ---------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        with self._locked():
            self._delete_thread(thread_id)

    def _delete_thread(self, thread_id: str) -> None:
        with self._tx() as cur:
            for table in ("checkpoints", "writes", "checkpoint_blobs"):
                cur.execute(f"DELETE FROM {table} WHERE thread_id = ?", (str(thread_id),))
        self._forget(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        with self._locked():
            self._delete_for_runs(run_ids)

    def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        with self._tx() as cur:
            doomed = cur.execute(
                f"SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints WHERE run_id IN ({marks})", tuple(run_ids)
            ).fetchall()
            self._delete_checkpoints(cur, doomed)
            for thread_id, ns in {(t, n) for t, n, _ in doomed}:
                self._collect_blobs(cur, thread_id, ns)
        for thread_id, _, _ in doomed:
            self._forget(thread_id)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        with self._locked():
            self._copy_thread(source_thread_id, target_thread_id)

    def _copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = str(source_thread_id), str(target_thread_id)
        with self._tx() as cur:
            cur.execute(
                f"INSERT OR REPLACE INTO checkpoints ({_COLUMNS}) SELECT ?, {_COLUMNS.split(', ', 1)[1]} "
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
        self._forget(target)

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
                self.apply_prune(cur, self.plan_prune(cur, str(thread_id), keep=1))

    # The retention commands (runtime/threads/retention.py) build on these two.

    def plan_prune(self, cur: sqlite3.Cursor, thread_id: str, keep: int | None = None, before: str | None = None) -> "PrunePlan":
        """What pruning one thread would remove, per namespace: every checkpoint that is neither
        among the newest `keep` (if given) nor created at or after `before` (if given), except
        the latest and what a kept checkpoint needs to be loaded (the ancestors its delta
        channels replay from)."""
        plan = PrunePlan(thread_id)
        rows = cur.execute(
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
            kept |= self._delta_ancestors(cur, thread_id, ns, kept, parents)
            plan.doomed += [(thread_id, ns, cid) for _, cid, _, _ in group if cid not in kept]
            plan.kept[ns] = kept
        return plan

    def _delta_ancestors(self, cur, thread_id: str, ns: str, kept: set[str], parents: dict[str, str | None]) -> set[str]:
        """Ancestors of kept checkpoints that their delta channels are rebuilt from.

        A `DeltaChannel` not snapshotted at a checkpoint is listed in its metadata's
        `counters_since_delta_snapshot`; LangGraph rebuilds it from the writes of the ancestors
        back to the nearest one that stores a value for it, so those must stay.
        """
        needed: set[str] = set()
        for cid in kept:
            meta = self._metadata(cur, thread_id, ns, cid)
            channels = set((meta.get("counters_since_delta_snapshot") or {}).keys())
            cursor = parents.get(cid)
            while channels and cursor is not None and cursor in parents:
                needed.add(cursor)
                checkpoint = self._skeleton(cur, thread_id, ns, cursor)
                versions = checkpoint.get("channel_versions", {})
                inline = checkpoint.get("channel_values") or {}
                for ch in list(channels):
                    if ch in inline or self._has_value(cur, thread_id, ns, cursor, ch, versions.get(ch)):
                        channels.discard(ch)
                cursor = parents.get(cursor)
        return needed - kept

    def _metadata(self, cur, thread_id: str, ns: str, cid: str) -> dict[str, Any]:
        row = cur.execute(
            "SELECT metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (thread_id, ns, cid)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def _skeleton(self, cur, thread_id: str, ns: str, cid: str) -> dict[str, Any]:
        row = cur.execute(
            "SELECT type, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, ns, cid),
        ).fetchone()
        return self.serde.loads_typed(row) if row else {}

    def _has_value(self, cur, thread_id: str, ns: str, cid: str, channel: str, version: Any) -> bool:
        """Whether checkpoint `cid` stores a value for `channel` at `version`."""
        if version is None:
            return False
        where = self._row_facts(thread_id, ns, cid).where
        loc = where.get(channel, _LEGACY)
        if loc == _NO_VALUE:
            return False
        if loc != _LEGACY:
            row = cur.execute(
                "SELECT vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (thread_id, ns, loc)
            ).fetchone()
            hit = _vals(row[0] if row else None).get(channel)
            if hit is not None and hit[0] == str(version):
                return hit[1][0] != "empty"
        row = cur.execute(
            "SELECT type FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?",
            (thread_id, ns, channel, _blob_version(str(version), loc)),
        ).fetchone()
        return row is not None and row[0] != "empty"

    def apply_prune(self, cur: sqlite3.Cursor, plan: "PrunePlan") -> None:
        self._delete_checkpoints(cur, plan.doomed)
        for ns in plan.kept:
            plan.blobs_removed += self._collect_blobs(cur, plan.thread_id, ns)
        self._forget(plan.thread_id)

    def _delete_checkpoints(self, cur: sqlite3.Cursor, doomed: Sequence[tuple[str, str, str]]) -> int:
        """Delete checkpoints and their writes; returns the number of writes removed.

        What the remaining checkpoints need of the removed rows stays: the values they refer to
        move to checkpoint_blobs (where a lookup falls back to when a row is gone), and writes
        stored with a removed row for a parent that remains move to `writes`.
        """
        by_ns: dict[tuple[str, str], set[str]] = {}
        for thread_id, ns, cid in doomed:
            by_ns.setdefault((thread_id, ns), set()).add(cid)
        removed_writes = 0
        for (thread_id, ns), gone in by_ns.items():
            key = (thread_id, ns)
            needed: dict[str, set[str]] = {}
            for cid, refs in cur.execute(
                "SELECT checkpoint_id, refs FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND refs IS NOT NULL", key
            ).fetchall():
                if cid not in gone:
                    for loc, channels in _unpack(refs).items():
                        if loc in gone:
                            needed.setdefault(loc, set()).update(channels)
            for loc, channels in needed.items():
                row = cur.execute(
                    "SELECT vals FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, loc)
                ).fetchone()
                kept = [(*key, ch, _blob_version(v, loc), t, b) for ch, (v, (t, b)) in _vals(row[0] if row else None).items() if ch in channels]
                cur.executemany(
                    "INSERT OR IGNORE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                    kept,
                )
            for cid, parent, packed in cur.execute(
                "SELECT checkpoint_id, parent_checkpoint_id, pwrites FROM checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = ? AND pwrites IS NOT NULL",
                key,
            ).fetchall():
                rows = _unpack(packed)
                if cid in gone and parent not in gone:
                    cur.executemany(
                        "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(*key, parent, *row) for row in rows],
                    )
                elif parent in gone:
                    removed_writes += len(rows)
                    if cid not in gone:
                        cur.execute(
                            "UPDATE checkpoints SET pwrites = NULL WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid)
                        )
            for cid in gone:
                cur.execute("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid))
                removed_writes += cur.execute(
                    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", (*key, cid)
                ).rowcount
        return removed_writes

    def writes_in_rows(self, cur: sqlite3.Cursor, thread_id: str) -> int:
        """How many writes a thread's checkpoint rows hold (`pwrites`)."""
        return sum(
            len(_unpack(packed))
            for (packed,) in cur.execute("SELECT pwrites FROM checkpoints WHERE thread_id = ? AND pwrites IS NOT NULL", (thread_id,))
        )

    def _collect_blobs(self, cur: sqlite3.Cursor, thread_id: str, ns: str) -> int:
        """Delete the blobs of a thread's namespace that no remaining checkpoint refers to."""
        referenced = set(self.referenced_blobs(cur, thread_id, ns))
        stored = cur.execute(
            "SELECT channel, version FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
        ).fetchall()
        unused = [(thread_id, ns, ch, v) for ch, v in stored if (ch, v) not in referenced]
        cur.executemany(
            "DELETE FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? AND version = ?", unused
        )
        return len(unused)

    def referenced_blobs(self, cur: sqlite3.Cursor, thread_id: str, ns: str) -> Iterator[tuple[str, str]]:
        """The (channel, version) keys of checkpoint_blobs that a thread's checkpoints may read."""
        for cid, type_, blob, vals, refs in cur.execute(
            "SELECT checkpoint_id, type, checkpoint, vals, refs FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?", (thread_id, ns)
        ).fetchall():
            where = _locations(cid, _vals(vals), _unpack(refs) if refs is not None else None)
            for ch, version in self.serde.loads_typed((type_, blob)).get("channel_versions", {}).items():
                yield ch, _blob_version(str(version), where.get(ch, _LEGACY))

    def _forget(self, thread_id: str) -> None:
        for key in [k for k in self._last if k[0] == thread_id]:
            self._last.pop(key, None)

    # -- async: the same calls, on the event loop ------------------------------------------------

    async def _arun(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a sync method now, on the loop; if the database is locked, on a worker thread that waits.

        Waiting on the loop could deadlock: the lock may be held by another connection of this
        process (the store's) whose transaction needs the loop to finish.
        """
        if self.fast_async and self.lock.acquire(blocking=False):
            try:
                if not self.is_setup:
                    self.setup()
                return method(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not is_busy_or_locked(exc):
                    raise
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            finally:
                self.lock.release()
        return await asyncio.to_thread(self._waiting, method, *args, **kwargs)

    def _waiting(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            if self.fast_async:
                set_busy_timeout(self.conn, WORKER_BUSY_TIMEOUT_MS)
            try:
                if not self.is_setup:
                    self.setup()
                return method(*args, **kwargs)
            finally:
                if self.fast_async:
                    set_busy_timeout(self.conn, NO_WAIT)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._arun(self._flushed, self._get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query, params = _list_query(config, filter, before, limit)
        rows = await self._arun(self._flushed, lambda: self.conn.execute(query, params).fetchall())
        for start in range(0, len(rows), _BATCH):
            for item in await self._arun(self._load_batch, rows[start : start + _BATCH]):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._arun(self._put_joined, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """As put_writes: queued for the step's checkpoint row (LangGraph does not wait for this
        call either), stored at once when it must be."""
        args = (config, writes, task_id, task_path)
        if not self._queue(args):
            await self._arun(self._put_writes, *args)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun(self._flushed, self._delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._arun(self._flushed, self._delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._arun(self._flushed, self._copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._arun(self._flushed, self._prune, thread_ids, strategy)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]:
        return await BaseCheckpointSaver.aget_delta_channel_history(self, config=config, channels=channels)


class _PendingWrites:
    """A task's writes queued for its step's checkpoint row (see put_writes)."""

    __slots__ = ("thread_id", "args", "queued")

    def __init__(self, thread_id: str, args: tuple) -> None:
        self.thread_id = thread_id
        self.args = args
        self.queued = time.monotonic()


class _Flusher:
    """Stores queued writes that no checkpoint put took within JOIN_SECONDS, on a thread of its
    own. Started by the first write queued while it is not running, it looks at the queue every
    JOIN_SECONDS (nothing wakes it per write: waking a thread per step costs more than the step's
    SQL) and ends after a second with nothing queued. It holds the saver only while it runs
    (LangGraph runs a shallow copy of the compiled graph's saver; copies share the queue, this
    flusher, the connection and its lock). At interpreter exit, `_flush_at_exit` stores what is left."""

    def __init__(self) -> None:
        self.saver: AgentSaver | None = None  # set and cleared under the saver's _sync_lock
        self.running = False  # likewise

    def start(self, saver: "AgentSaver") -> None:
        """Called under `saver._sync_lock`, with `running` false."""
        self.running = True
        self.saver = saver
        threading.Thread(target=self._run, name="agent-writes-flusher", daemon=True).start()

    def _run(self) -> None:
        quiet_since = time.monotonic()
        while True:
            time.sleep(JOIN_SECONDS)
            saver = self.saver
            if saver is None:
                return
            if saver._sync_pending:
                quiet_since = time.monotonic()
                try:
                    saver.flush(JOIN_SECONDS)
                except sqlite3.ProgrammingError:  # its connection was closed: nothing more to do
                    with saver._sync_lock:
                        self.running = False
                        self.saver = None
                    return
                except Exception:
                    pass  # kept queued: the next put, read or flush stores it or raises
            elif time.monotonic() - quiet_since > 1.0:
                with saver._sync_lock:
                    if not saver._sync_pending:
                        self.running = False
                        self.saver = None
                        return
            del saver


_FLUSHERS: "weakref.WeakSet[_Flusher]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for flusher in list(_FLUSHERS):
        saver = flusher.saver
        if saver is not None:
            try:
                saver.flush()
            except Exception:
                pass


_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, step, source, created_at, "
    "run_id, writers, next, vals, refs, pwrites"
)
_INSERT_CHECKPOINT = f"INSERT INTO checkpoints ({_COLUMNS}) VALUES ({', '.join('?' * 16)}) ON CONFLICT DO NOTHING"
_ROW = "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, vals, refs, next"
"""The columns `_load` reads."""
_pack = ormsgpack.packb
_unpack = ormsgpack.unpackb
_LEGACY = ""
"""In `refs`: the value is in `checkpoint_blobs`, by (channel, version)."""
_NO_VALUE = "-"
"""In `refs`: the channel has a version but no value."""
_NOT_ROWS = (_LEGACY, _NO_VALUE)


class _RowFacts(NamedTuple):
    """What a put needs of its parent checkpoint."""

    checkpoint_id: str | None
    next_json: str | None
    """The tasks that ran from it (as JSON): the writers of its child."""
    where: dict[str, str]
    """Where each of its channels' values is (a row's id, or _LEGACY / _NO_VALUE)."""
    versions: dict[str, Any]
    """Its channel versions: a location serves a child only for the same version."""


_NO_PARENT = _RowFacts(None, None, {}, {})


def _vals(packed: bytes | None) -> dict[str, tuple[str, tuple[str, bytes]]]:
    """A row's `vals` as {channel: (version, (type, bytes))}."""
    if packed is None:
        return {}
    return {ch: (version, (type_, blob)) for ch, version, type_, blob in _unpack(packed)}


def _blob_version(version: str, location: str) -> str:
    """The `version` key of a value in checkpoint_blobs: the version itself for a row written
    before schema 5; for a value pruning moved out of row `location`, the version and that row
    (versions are counters that two branches of a thread can both reach)."""
    return version if location in _NOT_ROWS else f"{version}@{location}"


def _locations(cid: str, held: Mapping[str, Any], refs: Mapping[str, list[str]] | None) -> dict[str, str]:
    """Where each channel's value is, for the row `cid`: its own `vals`, else its `refs`. A row
    written before schema 5 has neither: everything is in checkpoint_blobs."""
    where = {ch: loc for loc, channels in (refs or {}).items() for ch in channels}
    for ch in held:
        where[ch] = cid
    return where
_json_fallback = json.JSONEncoder(ensure_ascii=False).encode


def _encode_json(obj: Any) -> str:
    """Metadata as JSON text, by orjson (a tenth of the json module's time); what orjson refuses
    (keys that are not strings, integers over 64 bits) by the json module, as before."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return _json_fallback(obj)

_NAMES_JSON: dict[tuple[str, ...], str] = {}


def _names_json(names: list[str]) -> str:
    """JSON of a list of task names; most steps repeat a handful of lists, so they are cached."""
    key = tuple(names)
    text = _NAMES_JSON.get(key)
    if text is None:
        text = json.dumps(names)
        if len(_NAMES_JSON) < 4096:
            _NAMES_JSON[key] = text
    return text


class _BackgroundWalCheckpoints:
    """Copy the WAL into the database file on a worker thread, every `every` commits.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold and fsyncs
    the database file there: on the event loop, a pause of milliseconds every few hundred steps.
    A PASSIVE checkpoint on another connection does the same work beside the writer.
    """

    every = 256

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.running = threading.Lock()

    def committed(self) -> None:
        self.count += 1
        if self.count >= self.every and self.running.acquire(blocking=False):
            self.count = 0
            threading.Thread(target=self._checkpoint, name="agent-wal-checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            checkpoint_wal(self.path)
        except sqlite3.Error:
            pass  # the next one, or another connection's automatic checkpoint, catches up
        finally:
            self.running.release()


class PrunePlan:
    """What pruning one thread removes (`doomed`) and keeps, per namespace."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.doomed: list[tuple[str, str, str]] = []
        self.kept: dict[str, set[str]] = {}
        self.blobs_removed = 0


def open_saver(path: str, *, serde: Any = None, fast_async: bool = False) -> AgentSaver:
    """A saver on its own connection to `path` (an existing database, opened once by
    runtime.open_database so that its tables are in place): WAL, `synchronous=NORMAL`,
    writes that wait their turn (runtime.store.connect), WAL checkpoints on a background thread."""
    conn = connect(path)
    return AgentSaver(conn, serde=serde, fast_async=fast_async, wal_path=str(path))


def _list_query(
    config: RunnableConfig | None, filter: dict[str, Any] | None, before: RunnableConfig | None, limit: int | None
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT behind `list` and `alist`: checkpoints matching the filters, newest first."""
    where, params = search_where(config, filter, before)
    query = f"SELECT thread_id, checkpoint_ns, {_ROW} FROM checkpoints {where} ORDER BY checkpoint_id DESC"
    if limit is not None:
        query += " LIMIT ?"
        params = (*params, limit)
    return query, tuple(params)
