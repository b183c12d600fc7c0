"""The checkpointer on PostgreSQL: LangGraph's own PostgresSaver and AsyncPostgresSaver, with the
members the storage seam adds (runtime/store/seam.py, `Checkpointer`).

The tables, the SQL of every LangGraph call and the serialisation are the stock savers'
(langgraph-checkpoint-postgres), so a database written here is one LangGraph's own savers read.
What is added, and why:

- Fencing (seam: LEASE_KEY). A put or a task's writes whose config carries a lease run in one
  transaction whose last statement reads the thread's lease row FOR SHARE, just before the
  commit: a takeover (which updates that row) either committed first, and the put sees the new
  lease, raises `LeaseLost` and is rolled back, or waits for the put's commit. The check comes
  last because LangGraph's put hands work to a thread (`asyncio.to_thread`) inside its
  transaction: with the row locked from the start, a takeover waiting for the row, holding the
  database's write lock, could keep every thread of the pool waiting for that lock, and the put
  waiting for a thread, forever. A run's put (the async saver) sends BEGIN, its statements, the
  check (which divides by zero on a stale lease) and COMMIT as one pipeline: one round trip, as
  the stock saver's unfenced put.
- No saver-wide lock over a connection pool. The stock async saver takes one asyncio lock around
  every call, which is needed for its single-connection form but turns a pool into one
  connection at a time: a worker driving hundreds of threads would wait in line for each read.
  Over a pool each call checks out a connection of its own, as LangGraph's PostgresStore does.
- The reads the rooms make without decoding values (history, branches, latest ids), the
  removal transaction of the retention commands, and the stored writes history shows.
- The tasks that run next from each root checkpoint, in `agent_next`, written with the
  checkpoint when the saver is bound to its graph (`bind_graph`, as SQLite's saver records them
  in its row), so that history lists them without loading a checkpoint or importing LangGraph.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from datetime import datetime
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver, _ainternal
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runtime.store.postgres.columns import CheckpointColumns, ColumnReader
from runtime.store.postgres.transaction import in_transaction
from runtime.store.pruning import PrunedThread
from runtime.store.seam import LEASE_KEY, LeaseLost

_FENCE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("agent_fence", default=None)
"""(thread id, lease) of the put being made, for `_cursor` to check in the put's transaction."""

_NEXT: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar("agent_next", default=None)
"""(thread id, checkpoint id, next tasks JSON) of the put being made, stored in its `_cursor` block."""

_LEASE_CHECK = "SELECT lease FROM agent_threads WHERE thread_id = %s FOR SHARE"
_LEASE_GUARD = (
    "SELECT 1 / (SELECT count(*) FROM (SELECT 1 FROM agent_threads WHERE thread_id = %s AND lease = %s FOR SHARE) AS held)::int"
)
"""The lease check inside a pipeline, where no row can be read back before COMMIT is sent: it
fails (division by zero) unless the thread's lease is still the runner's."""
_RECORD_NEXT = (
    "INSERT INTO agent_next (thread_id, checkpoint_id, next) VALUES (%s, %s, %s::jsonb) "
    "ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET next = excluded.next"
)


def _lost(thread_id: str) -> LeaseLost:
    return LeaseLost(f"the lease on thread {thread_id!r} was taken over; this runner's writes are refused")


def _fence_of(config: Any) -> tuple[str, int] | None:
    configurable = config.get("configurable", {})
    lease = configurable.get(LEASE_KEY)
    return None if lease is None else (str(configurable["thread_id"]), int(lease))


class SeamMembers(CheckpointColumns):
    """What the seam asks of a checkpointer beyond LangGraph's BaseCheckpointSaver."""

    _bound: dict[Any, Any]
    """Shared with the copies LangGraph makes of the saver (`with_allowlist`)."""

    def bind_graph(self, graph: Any, thread_id: str | None = None) -> Any:
        from runtime.store.next_tasks import NextTasks

        tasks = self._bound.get(id(graph))
        if not isinstance(tasks, NextTasks) or tasks.graph is not graph:
            tasks = self._bound[id(graph)] = NextTasks(graph)
        self._bound[thread_id or "next"] = tasks
        return self

    def unbind(self, thread_id: str) -> None:
        self._bound.pop(thread_id, None)

    def _fences(self, config: Any, checkpoint: Any = None) -> tuple[contextvars.Token, contextvars.Token]:
        """Set what `_cursor` adds to a put: the lease check, and the next tasks to record."""
        next_ = None
        configurable = config["configurable"]
        if checkpoint is not None and configurable.get("checkpoint_ns", "") == "":
            thread_id = str(configurable["thread_id"])
            tasks = self._bound.get(thread_id) or self._bound.get("next")
            if tasks is not None:
                from runtime.store.rows import names_json

                next_ = (thread_id, checkpoint["id"], names_json(tasks(checkpoint)))
        return _FENCE.set(_fence_of(config)), _NEXT.set(next_)

    def flush(self, min_age: float = 0.0) -> int:
        return 0  # every write is stored when its call returns

    def settle(self) -> None:
        pass

    def close(self) -> None:
        pass

    def forget_thread(self, thread_id: str) -> None:
        pass  # nothing of a thread is remembered between calls

    def stored_writes(self, thread_id: str, checkpoint_ns: str, checkpoint_ids: Sequence[str]) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        for cid, *write in self._rows(
            "SELECT checkpoint_id, task_id, channel, type, blob, task_path, idx FROM checkpoint_writes "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)",
            (thread_id, checkpoint_ns, list(checkpoint_ids)),
        ):
            out.setdefault(cid, []).append((write[0], write[1], write[2], bytes(write[3]), write[4], write[5]))
        return out

    @contextlib.contextmanager
    def removing(self, *, dry_run: bool = False) -> Iterator[Removal]:
        """One transaction under the database's write lock (runtime/store/postgres/transaction.py),
        rolled back at its end on a dry run; statements of the registry and the store on the same
        connection inside it are part of it."""
        from runtime.store.postgres.transaction import immediate

        conn = self.conn
        with immediate(conn):
            if not dry_run:
                yield Removal(self)
                return
            conn.execute("SAVEPOINT agent_dry_run")
            try:
                yield Removal(self)
            finally:
                conn.execute("ROLLBACK TO SAVEPOINT agent_dry_run")


class Removal:
    """Removing checkpoints inside the open transaction of `SeamMembers.removing()`."""

    def __init__(self, reader: CheckpointColumns) -> None:
        self._reader = reader

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._reader._rows(sql, params)

    def _count(self, sql: str, params: Sequence[Any]) -> int:
        with self._reader.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def delete_thread(self, thread_id: str) -> dict[str, int]:
        self._count("DELETE FROM agent_next WHERE thread_id = %s", (thread_id,))
        return {
            "checkpoints": self._count("DELETE FROM checkpoints WHERE thread_id = %s", (thread_id,)),
            "writes": self._count("DELETE FROM checkpoint_writes WHERE thread_id = %s", (thread_id,)),
            "blobs": self._count("DELETE FROM checkpoint_blobs WHERE thread_id = %s", (thread_id,)),
        }

    def prune_thread(self, thread_id: str, *, keep: int | None = None, before: str | None = None) -> PrunedThread | None:
        """As SQLite's (runtime/store/pruning.py): every checkpoint neither among the newest `keep`
        nor created at or after `before`, except the latest of each namespace and the ancestors
        of a kept checkpoint that replays a delta channel, with their writes and the values no
        remaining checkpoint refers to. None when nothing would go."""
        rows = self._rows(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint->>'ts', "
            "metadata ? 'counters_since_delta_snapshot' FROM checkpoints WHERE thread_id = %s "
            'ORDER BY checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C" DESC',
            (thread_id,),
        )
        by_ns: dict[str, list[tuple]] = {}
        for row in rows:
            by_ns.setdefault(row[0], []).append(row)
        doomed: list[tuple[str, str]] = []
        kept_count = 0
        for ns, group in by_ns.items():
            parents = {cid: parent for _, cid, parent, _, _ in group}
            kept: set[str] = set()
            for rank, (_, cid, _, created, _) in enumerate(group):
                if rank == 0 or (keep is not None and rank < keep) or (before is not None and (created or "") >= before):
                    kept.add(cid)
            for _, cid, _, _, replays in group:
                if cid in kept and replays:  # keep every ancestor it may replay from
                    cursor = parents.get(cid)
                    while cursor is not None and cursor in parents:
                        kept.add(cursor)
                        cursor = parents.get(cursor)
            kept_count += len(kept)
            doomed += [(ns, cid) for _, cid, _, _, _ in group if cid not in kept]
        if not doomed:
            return None
        writes = blobs = 0
        for ns in {ns for ns, _ in doomed}:
            ids = [cid for n, cid in doomed if n == ns]
            writes += self._count(
                "DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)", (thread_id, ns, ids)
            )
            self._count("DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = ANY(%s)", (thread_id, ns, ids))
            if ns == "":
                self._count("DELETE FROM agent_next WHERE thread_id = %s AND checkpoint_id = ANY(%s)", (thread_id, ids))
            blobs += self._collect_blobs(thread_id, ns)
        return PrunedThread(thread_id, len(doomed), kept_count, writes, blobs)

    def remove_orphans(self, skip: set[str]) -> dict[str, int]:
        removed = {"writes": 0, "blobs": 0}
        for (thread_id,) in self._rows(
            "SELECT DISTINCT thread_id FROM checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c "
            "WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)"
        ):
            if thread_id in skip:
                continue
            removed["writes"] += self._count(
                "DELETE FROM checkpoint_writes w WHERE thread_id = %s AND NOT EXISTS (SELECT 1 FROM checkpoints c "
                "WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id)",
                (thread_id,),
            )
        for thread_id, ns in self._rows("SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoint_blobs"):
            if thread_id not in skip:
                removed["blobs"] += self._collect_blobs(thread_id, ns)
        return removed

    def _collect_blobs(self, thread_id: str, ns: str) -> int:
        """Delete the thread's stored values in `ns` that no remaining checkpoint refers to."""
        return self._count(
            "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND b.checkpoint_ns = %s AND NOT EXISTS ("
            "SELECT 1 FROM checkpoints c, jsonb_each_text(c.checkpoint -> 'channel_versions') v "
            "WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns AND v.key = b.channel AND v.value = b.version)",
            (thread_id, ns),
        )


class AgentPostgresSaver(SeamMembers, PostgresSaver):
    """The synchronous saver on one connection (reading history and state, forks, imports)."""

    def __init__(self, conn: Any, *, serde: Any = None) -> None:
        super().__init__(conn, serde=serde)
        self._bound = {}

    def put(self, config, checkpoint, metadata, new_versions):
        fence, next_ = self._fences(config, checkpoint)
        try:
            return super().put(config, checkpoint, metadata, new_versions)
        finally:
            _FENCE.reset(fence)
            _NEXT.reset(next_)

    def put_writes(self, config, writes, task_id, task_path=""):
        fence, next_ = self._fences(config)
        try:
            return super().put_writes(config, writes, task_id, task_path)
        finally:
            _FENCE.reset(fence)
            _NEXT.reset(next_)

    def delete_thread(self, thread_id: str) -> None:
        super().delete_thread(thread_id)
        with self.lock, self.conn.cursor() as cur:
            cur.execute("DELETE FROM agent_next WHERE thread_id = %s", (str(thread_id),))

    @contextlib.contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[Any]:
        fence, next_ = _FENCE.get(), _NEXT.get()
        if fence is None and next_ is None:
            with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        with self.lock, self.conn.transaction(), self.conn.cursor(binary=True, row_factory=dict_row) as cur:
            yield cur
            if next_ is not None:
                cur.execute(_RECORD_NEXT, next_)
            if fence is not None:  # last, so the row is locked only until the commit that follows
                row = cur.execute(_LEASE_CHECK, (fence[0],)).fetchone()
                if row is None or row["lease"] != fence[1]:
                    raise _lost(fence[0])


class AsyncAgentPostgresSaver(SeamMembers, AsyncPostgresSaver):
    """The async saver of runs, over a connection pool; its plain reads on `reader` (a
    connection of the calling thread's, from the Database)."""

    def __init__(self, pool: AsyncConnectionPool, *, reader: Any, serde: Any = None) -> None:
        super().__init__(pool, serde=serde)
        self._reader_of = reader
        self._bound = {}

    @property
    def _reader_conn(self) -> Any:
        return self._reader_of()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._reader_conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(row) for row in cur.fetchall()]

    save_latencies: list[float] | None = None
    """When a list: each checkpoint's seconds from its creation to its row being stored (`agent worker --stats`)."""

    async def aput(self, config, checkpoint, metadata, new_versions):
        fence, next_ = self._fences(config, checkpoint)
        try:
            stored = await super().aput(config, checkpoint, metadata, new_versions)
        finally:
            _FENCE.reset(fence)
            _NEXT.reset(next_)
        if self.save_latencies is not None and checkpoint.get("ts"):
            self.save_latencies.append(time.time() - datetime.fromisoformat(checkpoint["ts"]).timestamp())
        return stored

    async def aput_writes(self, config, writes, task_id, task_path=""):
        fence, next_ = self._fences(config)
        try:
            return await super().aput_writes(config, writes, task_id, task_path)
        finally:
            _FENCE.reset(fence)
            _NEXT.reset(next_)

    async def adelete_thread(self, thread_id: str) -> None:
        await super().adelete_thread(thread_id)
        async with _ainternal.get_connection(self.conn) as conn:
            await conn.execute("DELETE FROM agent_next WHERE thread_id = %s", (str(thread_id),))

    @contextlib.asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        fence, next_ = _FENCE.get(), _NEXT.get()
        async with _ainternal.get_connection(self.conn) as conn:
            if fence is not None or next_ is not None:
                async with self._pipelined_transaction(conn, fence, next_) as cur:
                    yield cur
            elif pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    @contextlib.asynccontextmanager
    async def _pipelined_transaction(self, conn: Any, fence: tuple[str, int] | None, next_: tuple[str, str, str] | None) -> AsyncIterator[Any]:
        """BEGIN, the call's statements, the next tasks, the lease check, COMMIT: one pipeline,
        one round trip (as the stock saver's unfenced call), where `conn.transaction()` would
        wait for each of BEGIN, the check and COMMIT. A stale lease makes the check divide by
        zero, which aborts the transaction on the server: nothing of it is stored."""
        try:
            async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                await cur.execute("BEGIN")
                yield cur
                if next_ is not None:
                    await cur.execute(_RECORD_NEXT, next_)
                if fence is not None:  # last: see the module's docstring
                    await cur.execute(_LEASE_GUARD, fence)
                await cur.execute("COMMIT")
            # Leaving the pipeline sent it and read every result: an error of any statement
            # (the guard's included) is raised there, with the transaction aborted.
        except BaseException as exc:
            if in_transaction(conn):
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
            if isinstance(exc, psycopg.errors.DivisionByZero) and fence is not None:
                raise _lost(fence[0]) from None
            raise

    @contextlib.contextmanager
    def removing(self, *, dry_run: bool = False) -> Iterator[Removal]:
        reader = ColumnReader(self._reader_conn)
        with SeamMembers.removing(reader, dry_run=dry_run) as removal:  # type: ignore[arg-type]
            yield removal

