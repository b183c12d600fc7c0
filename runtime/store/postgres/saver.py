"""The checkpointer on PostgreSQL: LangGraph's own PostgresSaver and AsyncPostgresSaver, with the
members the storage seam adds (runtime/store/seam.py, `Checkpointer`).

The tables, the SQL of every LangGraph call and the serialisation are the stock savers'
(langgraph-checkpoint-postgres), so a database written here is one LangGraph's own savers read.
What is added, and why:

- Fencing (seam: LEASE_KEY). A put or a task's writes whose config carries a lease run in one
  transaction that first reads the thread's lease row FOR SHARE: a takeover (which updates that
  row) waits for it, or it sees the new lease and raises `LeaseLost` with nothing stored.
- No saver-wide lock over a connection pool. The stock async saver takes one asyncio lock around
  every call, which is needed for its single-connection form but turns a pool into one
  connection at a time: a worker driving hundreds of threads would wait in line for each read.
  Over a pool each call checks out a connection of its own, as LangGraph's PostgresStore does.
- The reads the rooms make without decoding values (history, branches, latest ids), the
  removal transaction of the retention commands, and the stored writes history shows.

`bind_graph` records nothing here: the next tasks are not stored with PostgresSaver's
checkpoints, so history computes them from the graph where it needs them (as it does for a
SQLite checkpoint written by an unbound saver).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver, _ainternal
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runtime.store.columns import HistoryColumns
from runtime.store.pruning import PrunedThread
from runtime.store.seam import LEASE_KEY, LeaseLost

_FENCE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("agent_fence", default=None)
"""(thread id, lease) of the put being made, for `_cursor` to check in the put's transaction."""

_LEASE_CHECK = "SELECT lease FROM agent_threads WHERE thread_id = %s FOR SHARE"


def _lost(thread_id: str) -> LeaseLost:
    return LeaseLost(f"the lease on thread {thread_id!r} was taken over; this runner's writes are refused")


def _fence_of(config: Any) -> tuple[str, int] | None:
    configurable = config.get("configurable", {})
    lease = configurable.get(LEASE_KEY)
    return None if lease is None else (str(configurable["thread_id"]), int(lease))


class CheckpointColumns:
    """The plain reads of the checkpoint table (runtime/store/columns.py has SQLite's), on `conn`.

    Step and source come from the metadata, the time from the checkpoint's `ts`; the nodes that
    wrote a checkpoint and the tasks that run next are not stored (None: history computes them).
    """

    conn: Any

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = self.conn
        with conn.cursor() as cur:  # tuples, whatever the connection's own row factory
            cur.execute(sql, params)
            return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cur.fetchall()]

    def history_columns(self, thread_id: str, limit: int | None = None) -> list[HistoryColumns]:
        sql = (
            "SELECT checkpoint_id, parent_checkpoint_id, (metadata->>'step')::bigint, metadata->>'source', checkpoint->>'ts' "
            "FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC"
        )
        params: tuple[Any, ...] = (thread_id,)
        if limit:
            sql += " LIMIT %s"
            params += (limit,)
        return [HistoryColumns(cid, parent, step, source, None, None, ts) for cid, parent, step, source, ts in self._rows(sql, params)]

    def recorded_next(self, thread_id: str, checkpoint_ids: list[str] | set[str]) -> dict[str, list[str] | None]:
        ids = sorted(checkpoint_ids)
        found = self._rows(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = ANY(%s)",
            (thread_id, ids),
        )
        return {cid: None for (cid,) in found}

    def branch_rows(self, thread_id: str) -> list[tuple[str, str | None, int]]:
        return [
            (cid, parent, step if step is not None else -1)
            for cid, parent, step in self._rows(
                "SELECT checkpoint_id, parent_checkpoint_id, (metadata->>'step')::bigint FROM checkpoints "
                "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id",
                (thread_id,),
            )
        ]

    def thread_checkpoints(self, thread_id: str) -> list[tuple[str, str, str | None]]:
        return self._rows(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = %s "
            'ORDER BY checkpoint_ns COLLATE "C", checkpoint_id COLLATE "C"',
            (thread_id,),
        )

    def latest_checkpoint_id(self, thread_id: str) -> str | None:
        rows = self._rows(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread_id,),
        )
        return rows[0][0] if rows else None

    def has_checkpoints(self, thread_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM checkpoints WHERE thread_id = %s LIMIT 1", (thread_id,)))

    def checkpointed_threads(self) -> set[str]:
        return {t for (t,) in self._rows("SELECT DISTINCT thread_id FROM checkpoints")}


class ColumnReader(CheckpointColumns):
    """The column reads on a bare connection (`Database.checkpoint_columns()`)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn


class SeamMembers(CheckpointColumns):
    """What the seam asks of a checkpointer beyond LangGraph's BaseCheckpointSaver."""

    def bind_graph(self, graph: Any, thread_id: str | None = None) -> Any:
        return self

    def unbind(self, thread_id: str) -> None:
        pass

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

    def put(self, config, checkpoint, metadata, new_versions):
        token = _FENCE.set(_fence_of(config))
        try:
            return super().put(config, checkpoint, metadata, new_versions)
        finally:
            _FENCE.reset(token)

    def put_writes(self, config, writes, task_id, task_path=""):
        token = _FENCE.set(_fence_of(config))
        try:
            return super().put_writes(config, writes, task_id, task_path)
        finally:
            _FENCE.reset(token)

    @contextlib.contextmanager
    def _cursor(self, *, pipeline: bool = False) -> Iterator[Any]:
        fence = _FENCE.get()
        if fence is None:
            with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        with self.lock, self.conn.transaction(), self.conn.cursor(binary=True, row_factory=dict_row) as cur:
            row = cur.execute(_LEASE_CHECK, (fence[0],)).fetchone()
            if row is None or row["lease"] != fence[1]:
                raise _lost(fence[0])
            yield cur


class AsyncAgentPostgresSaver(SeamMembers, AsyncPostgresSaver):
    """The async saver of runs, over a connection pool; its plain reads on `reader` (a
    connection of the calling thread's, from the Database)."""

    def __init__(self, pool: AsyncConnectionPool, *, reader: Any, serde: Any = None) -> None:
        super().__init__(pool, serde=serde)
        self._reader_of = reader

    @property
    def _reader_conn(self) -> Any:
        return self._reader_of()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._reader_conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(row) for row in cur.fetchall()]

    async def aput(self, config, checkpoint, metadata, new_versions):
        token = _FENCE.set(_fence_of(config))
        try:
            return await super().aput(config, checkpoint, metadata, new_versions)
        finally:
            _FENCE.reset(token)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        token = _FENCE.set(_fence_of(config))
        try:
            return await super().aput_writes(config, writes, task_id, task_path)
        finally:
            _FENCE.reset(token)

    @contextlib.asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        fence = _FENCE.get()
        async with _ainternal.get_connection(self.conn) as conn:
            if fence is not None:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    await cur.execute(_LEASE_CHECK, (fence[0],))
                    row = await cur.fetchone()
                    if row is None or row["lease"] != fence[1]:
                        raise _lost(fence[0])
                    yield cur
            elif pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    @contextlib.contextmanager
    def removing(self, *, dry_run: bool = False) -> Iterator[Removal]:
        reader = ColumnReader(self._reader_conn)
        with SeamMembers.removing(reader, dry_run=dry_run) as removal:  # type: ignore[arg-type]
            yield removal

