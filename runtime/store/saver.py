"""The checkpointer: langgraph-checkpoint-sqlite's `SqliteSaver`, extended for speed.

`AgentSaver` is put together here from the rooms of runtime/store/ that hold its parts:

- `rows`: a step is one row of `checkpoints`, written by one autocommit INSERT: the checkpoint
  without its values, the values the step changed (each stored once per version, as LangGraph's
  Postgres saver does, instead of the whole state in every checkpoint), where its other values
  are, and the writes of the tasks that made it. One statement into one table that grows at its
  end: the per-step cost is what one durable commit costs, not five statements across three
  B-trees.
- `writing`: the put (`put`, `put_writes` stored on their own) and what it keeps of the row it
  replaces when an id is put again.
- `write_queue`: a task's writes wait (JOIN_SECONDS) for the step's checkpoint row to take them;
  a flusher thread stores the others.
- `reading`: loading checkpoints and their writes (`get_tuple`, `list`, `stored_writes`).
- `columns`: what history shows (step, source, time, the nodes that wrote a checkpoint and the
  tasks that run next), kept in plain columns written with the checkpoint, so history is one
  indexed query with nothing to deserialise. `next` is known when the saver is bound to the
  compiled graph (`bind_graph`, computed by `next_tasks`), which the runtime does; otherwise it
  is NULL and history computes it.
- `pruning`: `prune`, `copy_thread`, `delete_for_runs`, and `removing()` for the retention
  commands.
- `wal_checkpoints`: the WAL copied into the file on a worker thread, not inside a commit.

Here: the set-up, the write transaction, the lock every call takes, and the async methods, which
run the (fast, WAL, `synchronous=NORMAL`) sqlite3 calls directly on the event loop instead of
hopping to aiosqlite's thread per call. A call that finds the database locked (by another
connection in this process mid-transaction, or another process) moves to a worker thread that
waits for the lock, so the event loop is never blocked waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Callable

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from runtime.store.columns import CheckpointColumns
from runtime.store.connect import (
    BUSY_TIMEOUT_MS,
    NO_WAIT,
    WORKER_BUSY_TIMEOUT_MS,
    connect,
    is_busy_or_locked,
    set_busy_timeout,
    stop_automatic_wal_checkpoints,
)
from runtime.store.next_tasks import NextTasks
from runtime.store.pruning import CheckpointDeletes
from runtime.store.reading import BATCH, CheckpointReads, list_query
from runtime.store.rows import RowFacts
from runtime.store.schema import create_checkpoint_tables, needs_conversion, table_columns
from runtime.store.transaction import immediate
from runtime.store.wal_checkpoints import BackgroundWalCheckpoints
from runtime.store.write_queue import JOIN_SECONDS, QueuedWrites
from runtime.store.writing import CheckpointWrites

__all__ = ["AgentSaver", "JOIN_SECONDS", "open_saver"]  # JOIN_SECONDS lives in write_queue; the tests read it here


class AgentSaver(CheckpointReads, CheckpointWrites, QueuedWrites, CheckpointDeletes, CheckpointColumns, SqliteSaver):
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
        self._wal = BackgroundWalCheckpoints(wal_path) if wal_path else None
        if self._wal is not None:
            stop_automatic_wal_checkpoints(conn)
        # Mutable holders, shared with the copies LangGraph makes (`with_allowlist` clones the
        # saver when a graph is compiled and on every run).
        self._bound: dict[str, NextTasks] = {}
        self._start_write_queue()
        self.join_writes = wal_path is not None  # a connection of its own, as for runs
        # (thread_id, checkpoint_ns) -> the facts of the last checkpoint put or loaded: a put
        # whose parent it is knows which nodes wrote it (the tasks that ran from its parent) and
        # where its unchanged values are.
        self._last: dict[tuple[str, str], RowFacts] = {}
        self._put_cursor: dict[sqlite3.Connection, sqlite3.Cursor] = {}
        if fast_async:
            set_busy_timeout(conn, NO_WAIT)

    # -- set-up -------------------------------------------------------------------------

    def bind_graph(self, graph: Any, thread_id: str | None = None) -> "AgentSaver":
        """Record, with each checkpoint, the tasks that run next (what `agent history` shows):
        of every thread, or of `thread_id` only (a saver shared by runs of different graphs)."""
        self._bound[thread_id or "next"] = NextTasks(graph)
        return self

    def unbind(self, thread_id: str) -> None:
        self._bound.pop(thread_id, None)

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
    def _tx(self, *, keep: bool = True) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taking the write lock as it begins; inside a transaction the
        connection already has open (a fork writes a thread, its checkpoint and its data as one),
        a savepoint of it. Without `keep`, what it did is rolled back at the end (a dry run).

        Not runtime.store.transaction.immediate: a statement that fails on a full disk or an I/O
        error may have rolled the transaction back already, and then it is that error, not a
        failed ROLLBACK, that must reach the caller (runtime.store.connect.is_full); and a commit
        here counts towards the next background WAL checkpoint."""
        cur = self.conn.cursor()
        nested = self.conn.in_transaction
        cur.execute("SAVEPOINT agent_saver" if nested else "BEGIN IMMEDIATE")
        try:
            yield cur
            if not keep:
                raise _RolledBack
        except BaseException as exc:
            if nested:
                self.conn.execute("ROLLBACK TO agent_saver")
                self.conn.execute("RELEASE agent_saver")
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if not isinstance(exc, _RolledBack):
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


    # -- after a run ----------------------------------------------------------------------

    def settle(self) -> None:
        """Store the queued writes and wait for a background WAL checkpoint under way: the work a
        run leaves behind, done (a benchmark does this between runs, so that it does not slow the next)."""
        self.flush()
        if self._wal is not None:
            self._wal.wait()

    def close(self) -> None:
        """Store the queued writes, waiting their turn like any write, then close the connection.
        If the database refuses them, the run has already failed and the tasks run again on resume."""
        with contextlib.suppress(sqlite3.Error):
            set_busy_timeout(self.conn, BUSY_TIMEOUT_MS)
            self.flush()
        self.conn.close()

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
        query, params = list_query(config, filter, before, limit)
        rows = await self._arun(self._flushed, lambda: self.conn.execute(query, params).fetchall())
        for start in range(0, len(rows), BATCH):
            for item in await self._arun(self._load_batch, rows[start : start + BATCH]):
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


class _RolledBack(Exception):
    """Ends a transaction that is not to be kept (see AgentSaver._tx)."""


def open_saver(path: str, *, serde: Any = None, fast_async: bool = False) -> AgentSaver:
    """A saver on its own connection to `path` (an existing database, opened once by
    runtime.open_database so that its tables are in place): WAL, `synchronous=NORMAL`,
    writes that wait their turn (runtime.store.connect), WAL checkpoints on a background thread."""
    conn = connect(path)
    return AgentSaver(conn, serde=serde, fast_async=fast_async, wal_path=str(path))
