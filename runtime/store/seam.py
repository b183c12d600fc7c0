"""The storage seam: everything the rooms above runtime/store/ ask of storage, written down.

A backend is the parts below. SQLite's implementation is the modules beside this one, named in
each part; PostgreSQL's (runtime/store/postgres/) provides the same parts, with the same behaviour
and the same guarantees, and passes the same tests (tests/test_store_seam.py for these parts, LangGraph's own
checkpointer tests and the conformance suite for the checkpointer). The rooms above keep their
policy: the store returns facts (rows, counts, whether a conditional UPDATE matched) and never
decides what is wrong; the rooms do, and raise the runtime's errors (runtime/errors.py).

Every part but the checkpointer and the store is a set of plain functions whose first argument
is the connection `Database.conn` gives the calling thread (for SQLite a sqlite3 connection; for
PostgreSQL its driver's). Times (epoch seconds) and process identities are passed in, never read
by the store, so that a backend keeps no clock and a test can play two processes on one file.
Values a part keeps as JSON (a thread's settings, a schedule's input) go in and come out as
Python values: how they are encoded is the backend's business.

What each part must guarantee:

- Transactions (`transaction.immediate(conn)`): the statements inside run as one step that takes
  the write lock before its first read, so that no other writer comes between a read and the
  write that depends on it; inside an open transaction it is a savepoint, committed with it.
  SQLite: BEGIN IMMEDIATE / SAVEPOINT. PostgreSQL: BEGIN, then a transaction-level advisory lock
  on one key for the database (pg_advisory_xact_lock) as its first statement; SAVEPOINT nested.
  `transactions.snapshot(conn)`: reads only, every one inside seeing the database as it was at
  the first, while writers go on. SQLite: BEGIN DEFERRED (WAL). PostgreSQL: BEGIN ISOLATION
  LEVEL REPEATABLE READ, READ ONLY.
- The checkpointer (`saver.AgentSaver`): LangGraph's BaseCheckpointSaver, sync and async, passing
  LangGraph's checkpointer tests; plus the members of `Checkpointer` the rooms call.
- The store (LangGraph's BaseStore, opened by `Database.open_async`): its transactions take the
  write lock as they begin, since one batch may read before it writes.
- The thread registry with leases (`registry`): a lease is taken atomically: the rooms read the
  row and write the lease inside one `immediate`, so of two processes taking one thread at once
  the second reads the first's lease. `insert` of an id that exists returns False and leaves the
  transaction usable (SQLite undoes the statement alone; PostgreSQL: ON CONFLICT DO NOTHING).
  `heartbeat` and `release` change the row only while the given pid holds it, and say whether
  they did.
- Spend (`spend`): `add` is one atomic statement that adds to the thread's row, so that adders in
  many processes never lose a count (an upsert).
- Progress (`progress`): at most one row of figures per thread; `put` replaces it.
- Shared rates (`rates`): `reserve` is one atomic statement (an upsert with RETURNING), so that
  of many processes reserving units of one key's bucket at once each sees the others' units.
- The run queue (`queue`): at most one queued request per thread; a worker takes one inside
  `immediate`, deleting it and taking the thread's lease in the same transaction (`claim`), so
  of two workers one gets it. Workers (`workers`): one row per worker process.
- Fencing: a runner's checkpoint and writes carry its lease (LEASE_KEY) and are stored only
  while the thread's `lease` is still that number, checked in the statement (or transaction)
  that stores them; otherwise `LeaseLost` and nothing is stored.
- Control requests (`control`): at most one per thread; `put` replaces it.
- Schedules, their occurrences and runs (`schedules`): an occurrence is claimed once under
  UNIQUE (schedule, fire_time): `insert_run` of a claimed one raises `OccurrenceTaken` (the
  caller's transaction is then rolled back whole). The worker claims inside `immediate`,
  re-reading the schedule's next fire time, so an occurrence fires once however many workers
  serve the database. `claim_resume` is conditional on the run's resume count and status: of
  two workers continuing one run, one wins.
- The store's rows by thread namespace (`namespaces`): a thread's data lives under namespaces
  (kind, thread label, ...), see state/storage.py; copied, read (`items`, streamed) and written
  (`put_items`, keeping the items' times) inside the caller's transaction.
- Maintenance checks (`checks`): read only; `open_read_only` neither converts nor writes.

How the parts are reached: the rooms import them from runtime/store/parts.py (`from
runtime.store.parts import threads as thread_rows`) and call them on `db.conn`; that module runs
the function of the backend whose connection it is given: SQLite's (runtime/store/sqlite_backend.py
names its modules together as one `Backend`) or PostgreSQL's (runtime/store/postgres/backend.py).
No room above names an implementation. The checkpointer and the store come from the database
`runtime.open_database` opened, a file or a postgresql:// URL (`checkpointer()`, `open_async()`).
`differences(implementation, part)` says where an implementation departs from a part;
tests/test_store_seam.py runs it on every part of every backend.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
    from os import PathLike

Connection = Any
"""The backend's connection, as `Database.conn` gives it to the calling thread."""


from runtime.store.records import (  # noqa: F401  the rows and errors, apart to keep this file short; named here as the seam's
    OccurrenceTaken,
    Layout,
    LeaseLost,
    StorageUnreadable,
    Owner,
    ThreadRow,
    QueueRow,
    WorkerRow,
    StoreItem,
    SpendRow,
    ControlRow,
    ScheduleRow,
    RunRow,
    LEASE_KEY,
)


@runtime_checkable
class Transactions(Protocol):
    """SQLite: runtime/store/transaction.py."""

    def immediate(self, conn: Connection) -> ContextManager[None]: ...
    def snapshot(self, conn: Connection) -> ContextManager[None]: ...


@runtime_checkable
class Checkpointer(Protocol):
    """LangGraph's BaseCheckpointSaver (an implementation subclasses it) and what the rooms call
    of ours. SQLite: runtime/store/saver.py (`AgentSaver`, from `Database.checkpointer()` and
    `Database.open_async()`)."""

    serde: Any

    def get_tuple(self, config: Any) -> Any: ...
    def list(self, config: Any, *, filter: Any = None, before: Any = None, limit: int | None = None) -> Iterator[Any]: ...
    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any: ...
    def put_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None: ...
    def delete_thread(self, thread_id: str) -> None: ...
    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None: ...
    def get_next_version(self, current: Any, channel: None = None) -> Any: ...
    async def aget_tuple(self, config: Any) -> Any: ...
    def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: int | None = None) -> AsyncIterator[Any]: ...
    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any: ...
    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None: ...
    async def adelete_thread(self, thread_id: str) -> None: ...

    def bind_graph(self, graph: Any, thread_id: str | None = None) -> Any:
        """Record with each checkpoint the tasks that run next (what history shows), of every
        thread or of `thread_id` only."""

    def unbind(self, thread_id: str) -> None:
        """Forget the graph bound for `thread_id`."""

    def flush(self, min_age: float = 0.0) -> int:
        """Store the writes queued for a later commit; how many."""

    def settle(self) -> None:
        """Wait until every queued write is stored."""

    def close(self) -> None:
        """Store what is queued and let go of the connection."""

    def stored_writes(self, thread_id: str, checkpoint_ns: str, checkpoint_ids: Sequence[str]) -> dict[str, list[tuple]]:
        """The pending writes of given checkpoints, undecoded: (task_id, channel, type, value,
        task_path, idx) per checkpoint id (history shows what each step wrote)."""

    def forget_thread(self, thread_id: str) -> None:
        """Drop what the saver remembers of a thread after its rows were changed beneath it (a
        fork rolled back)."""

    def removing(self, *, dry_run: bool = False) -> ContextManager[Any]:
        """One removal transaction under the saver's lock, rolled back at its end on a dry run.
        It yields an object with `prune_thread(thread_id, keep=, before=)` (the checkpoints
        neither kept nor needed by a kept one, with their writes and unreferenced values; None
        when nothing would go), `delete_thread(thread_id)` and `remove_orphans(skip)`, each
        returning what went. Pruning never removes a thread's latest checkpoint."""

    def history_columns(self, thread_id: str, limit: int | None = None) -> list[Any]:
        """The plain columns `agent history` lists, newest first, read without decoding values
        (also offered without a saver by `Database.checkpoint_columns()`)."""

    def recorded_next(self, thread_id: str, checkpoint_ids: list[str] | set[str]) -> dict[str, list[str] | None]:
        """The tasks recorded to run next after each checkpoint; None where none were recorded."""

    def branch_rows(self, thread_id: str) -> list[tuple[str, str | None, int]]:
        """(checkpoint id, parent id, step) of every checkpoint of a thread, oldest first."""

    def thread_checkpoints(self, thread_id: str) -> list[tuple[str, str, str | None]]:
        """(namespace, checkpoint id, parent id) of every checkpoint of a thread, in every
        namespace, by namespace and then oldest first (ids grow with time), read without decoding."""

    def latest_checkpoint_id(self, thread_id: str) -> str | None: ...
    def has_checkpoints(self, thread_id: str) -> bool: ...
    def checkpointed_threads(self) -> set[str]: ...


@runtime_checkable
class Store(Protocol):
    """LangGraph's BaseStore (an implementation subclasses it); the nodes use `abatch` and `aput`.
    SQLite: LangGraph's AsyncSqliteStore with immediate transactions (runtime/store/database.py)."""

    def batch(self, ops: Iterable[Any]) -> list[Any]: ...
    async def abatch(self, ops: Iterable[Any]) -> list[Any]: ...
    def get(self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None) -> Any: ...
    async def aget(self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None) -> Any: ...
    def put(self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any], index: Any = None, *, ttl: Any = None) -> None: ...
    async def aput(self, namespace: tuple[str, ...], key: str, value: Mapping[str, Any], index: Any = None, *, ttl: Any = None) -> None: ...
    def delete(self, namespace: tuple[str, ...], key: str) -> None: ...
    async def adelete(self, namespace: tuple[str, ...], key: str) -> None: ...
    def search(self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None, filter: Any = None, limit: int = 10, offset: int = 0, refresh_ttl: bool | None = None) -> list[Any]: ...
    async def asearch(self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None, filter: Any = None, limit: int = 10, offset: int = 0, refresh_ttl: bool | None = None) -> list[Any]: ...
    def list_namespaces(self, *, prefix: Any = None, suffix: Any = None, max_depth: int | None = None, limit: int = 100, offset: int = 0) -> list[tuple[str, ...]]: ...
    async def alist_namespaces(self, *, prefix: Any = None, suffix: Any = None, max_depth: int | None = None, limit: int = 100, offset: int = 0) -> list[tuple[str, ...]]: ...


@runtime_checkable
class ThreadRegistry(Protocol):
    """Threads and their leases. SQLite: runtime/store/registry.py."""

    def get(self, conn: Connection, thread_id: str) -> ThreadRow | None: ...

    def list_all(self, conn: Connection) -> list[ThreadRow]:
        """Most recently updated first."""

    def running(self, conn: Connection) -> list[ThreadRow]:
        """The threads recorded as running, by id (whether their runner lives is the caller's question)."""

    def insert(self, conn: Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> bool:
        """A new thread, running and leased to `owner`; False (nothing written) when the id exists."""

    def reuse(self, conn: Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
        """Start an existing id afresh, as `insert` would have."""

    def take_lease(self, conn: Connection, thread_id: str, settings: dict[str, Any], owner: Owner, now: float) -> None:
        """Lease the thread to `owner`, running, with these settings and its error cleared."""

    def heartbeat(self, conn: Connection, thread_id: str, pid: int, now: float, steps: int | None) -> bool:
        """Renew the lease while `pid` holds it; False when it does not."""

    def release(self, conn: Connection, thread_id: str, pid: int, status: str, error: str | None, steps: int | None, now: float) -> bool:
        """Record how the run ended and drop the lease, while `pid` holds it; False when it does not."""

    def end_unowned(self, conn: Connection, thread_id: str, status: str, error: str | None, now: float) -> None:
        """Record a status for a thread nobody runs, dropping whatever lease is left."""

    def insert_queued(self, conn: Connection, thread_id: str, graph: str, graph_version: str, settings: dict[str, Any], now: float) -> bool:
        """A new thread waiting in the queue (status `queued`, nobody holds it); False when the id exists."""

    def mark_queued(self, conn: Connection, thread_id: str, now: float) -> None:
        """Show a thread that nobody runs as `queued` (a running one is left as it is)."""

    def claim(self, conn: Connection, thread_id: str, owner: Owner, now: float) -> int | None:
        """Lease a thread that is not running to `owner`, running; its new lease, or None when it is running."""

    def take_over(self, conn: Connection, thread_id: str, lease: int, owner: Owner, now: float) -> bool:
        """Lease a running thread whose runner is gone to `owner`, while its lease is still `lease`
        (of two takers, one wins); its takeovers (`resumes`) grow by one."""

    def leases_held(self, conn: Connection, owner: Owner, now: float) -> dict[str, int]:
        """Renew every lease `owner` holds, in one statement; thread id -> lease of each."""

    def has_checkpoints(self, conn: Connection, thread_id: str) -> bool: ...

    def delete(self, conn: Connection, thread_id: str) -> int:
        """Forget a thread's row (its checkpoints and data are the callers' to remove)."""


@runtime_checkable
class RunQueue(Protocol):
    """Queued requests to run threads, at most one per thread. SQLite: runtime/store/queue_rows.py."""

    def put(self, conn: Connection, row: QueueRow) -> bool:
        """Queue a request; False (nothing written) when the thread has one queued already."""

    def get(self, conn: Connection, thread_id: str) -> QueueRow | None: ...
    def list_all(self, conn: Connection) -> list[QueueRow]: ...

    def ready(self, conn: Connection, limit: int) -> list[QueueRow]:
        """Requests whose thread nobody is running (its status is not `running`), highest
        priority first, then oldest first."""

    def delete(self, conn: Connection, thread_id: str) -> int: ...


@runtime_checkable
class WorkerRegistry(Protocol):
    """The worker processes and their heartbeats. SQLite: runtime/store/worker_rows.py."""

    def register(self, conn: Connection, row: WorkerRow) -> None: ...
    def beat(self, conn: Connection, worker_id: str, running: int, status: str, now: float) -> None: ...
    def list_all(self, conn: Connection) -> list[WorkerRow]: ...


@runtime_checkable
class SpendLedger(Protocol):
    """What each thread's model calls spent. SQLite: runtime/store/spend.py."""

    def get(self, conn: Connection, thread_id: str) -> SpendRow | None: ...
    def by_thread(self, conn: Connection) -> dict[str, SpendRow]: ...

    def add(self, conn: Connection, thread_id: str, spend: SpendRow, now: float) -> None:
        """Add to the thread's spend in one atomic statement."""


@runtime_checkable
class SharedRates(Protocol):
    """Leaky buckets by key (a model's requests a minute), shared by every process on the
    database. SQLite: runtime/store/rates.py."""

    def reserve(self, conn: Connection, key: str, per_second: float, capacity: float, now: float, amount: float = 1.0) -> float:
        """Reserve `amount` units of the key's bucket in one atomic statement: its level, leaked
        by `per_second` over the time since the last reservation (none if `now` is earlier),
        grows by `amount`. The seconds the caller must wait before using the units: (level -
        capacity) / per_second, at least 0."""


@runtime_checkable
class ProgressBoard(Protocol):
    """The latest progress a graph reported of its own, per thread. SQLite:
    runtime/store/progress_board.py."""

    def get(self, conn: Connection, thread_id: str) -> tuple[dict[str, Any], float] | None:
        """The figures and when they were written (epoch seconds)."""

    def put(self, conn: Connection, thread_id: str, figures: dict[str, Any], now: float) -> None:
        """Replace the thread's figures."""

    def delete(self, conn: Connection, thread_id: str) -> int: ...


@runtime_checkable
class ControlRequests(Protocol):
    """Pause and cancel requests to a thread's runner. SQLite: runtime/store/control.py."""

    def get(self, conn: Connection, thread_id: str) -> ControlRow | None: ...

    def addressed_to(self, conn: Connection, owner: Owner) -> dict[str, str]:
        """thread id -> request, of the requests addressed to `owner` (or to no one in particular)."""

    def put(self, conn: Connection, thread_id: str, request: str, target: Owner, requested_by: str, now: float) -> None:
        """Ask `target` (the lease holder) to carry out `request`, replacing an earlier request."""

    def delete(self, conn: Connection, thread_id: str) -> None: ...

    def clear(self, conn: Connection, thread_id: str, pid: int) -> None:
        """Remove the request addressed to `pid`, or to nobody in particular."""


@runtime_checkable
class Schedules(Protocol):
    """Schedules, their occurrences and run history. SQLite: runtime/store/schedules.py."""

    def get(self, conn: Connection, name: str) -> ScheduleRow | None: ...
    def list_all(self, conn: Connection) -> list[ScheduleRow]: ...
    def count(self, conn: Connection) -> int: ...
    def insert(self, conn: Connection, schedule: ScheduleRow) -> None: ...
    def pause(self, conn: Connection, name: str, reason: str | None, now: float) -> None: ...

    def resume(self, conn: Connection, name: str, next_fire: float, now: float) -> None:
        """Active again from `next_fire`, its failure count cleared."""

    def delete(self, conn: Connection, name: str) -> int:
        """Delete the schedule and its runs; how many runs."""

    def graphs(self, conn: Connection) -> list[tuple[str, str]]:
        """(name, graph) of every schedule, by name."""

    def due(self, conn: Connection, now: float) -> list[str]:
        """Active schedules whose next fire time has come, soonest first."""

    def advance(self, conn: Connection, name: str, next_fire: float, now: float) -> None: ...

    def failures(self, conn: Connection, name: str) -> tuple[int, int, str] | None:
        """(consecutive failures, max failures, status), None when the schedule is gone."""

    def set_failures(self, conn: Connection, name: str, failures: int, paused: str | None, now: float) -> None:
        """Store the failure count; with `paused` (the reason), pause the schedule too."""

    def insert_run(self, conn: Connection, name: str, fire_time: float, thread_id: str | None, status: str, error: str | None, worker: str, now: float) -> int:
        """Claim (or record skipped or missed) an occurrence; its id. Raises OccurrenceTaken."""

    def fire_time(self, conn: Connection, run_id: int) -> float | None: ...
    def end_run(self, conn: Connection, run_id: int, status: str, error: str | None, now: float) -> bool:
        """Record a run's end while it is `running` or `stopped`; False (nothing changed) once ended."""

    def running_runs(self, conn: Connection, name: str | None = None) -> list[RunRow]:
        """Runs recorded as running (of one schedule, or of all), oldest occurrence first."""

    def unfinished_runs(self, conn: Connection) -> list[RunRow]:
        """Runs left `running` or `stopped`, oldest occurrence first."""

    def claim_resume(self, conn: Connection, run_id: int, resumes: int, status: str, worker: str) -> bool:
        """Take a run over to continue it, if it still has that resume count and status."""

    def last_runs(self, conn: Connection) -> dict[str, RunRow]:
        """Each schedule's latest run."""

    def runs_with_spend(self, conn: Connection, name: str, since: float | None, until: float | None) -> list[tuple[RunRow, float, int]]:
        """(run, its thread's cost, its thread's tokens) fired in [since, until), oldest first."""


@runtime_checkable
class Namespaces(Protocol):
    """The store's rows by thread namespace. SQLite: runtime/store/namespaces.py."""

    def prefixes(self, conn: Connection) -> list[str]:
        """Every namespace that holds data, dotted; none before the store is set up."""

    def of_thread(self, conn: Connection, label: str) -> list[str]: ...

    def copy(self, conn: Connection, source_label: str, target_label: str) -> int:
        """Copy one thread's rows under another's label; how many."""

    def items(self, conn: Connection, prefix: str) -> Iterator[StoreItem]:
        """The items under one namespace (dotted), by key, streamed."""

    def put_items(self, conn: Connection, prefix: str, items: Iterable[StoreItem]) -> int:
        """Store items under one namespace (dotted) with the times they carry; how many."""

    def results(self, conn: Connection, prefix: str, items_prefix: str, status: str | None) -> Iterator[tuple[str, dict, dict | None]]:
        """(key, result, item or None) of the results under one namespace (of one status, if
        given), by key, each with the item of its key under `items_prefix`, streamed."""

    def has_items(self, conn: Connection, prefix: str) -> bool: ...

    def delete_of_thread(self, conn: Connection, label: str) -> int:
        """Delete every row of the thread's namespaces (inside the caller's transaction); how many."""

    def delete_value(self, conn: Connection, prefix: str, key: str) -> None: ...

    def result_counts(self, conn: Connection, prefix: str, round_: int, since: float | None) -> list[tuple]:
        """Per result status: (status, given up before `round_`, count, input tokens, output
        tokens, written at or after `since`)."""


@runtime_checkable
class Maintenance(Protocol):
    """The checks `agent doctor` makes. SQLite: runtime/store/checks.py."""

    def open_read_only(self, path: str | PathLike[str]) -> Connection:
        """A connection that cannot write; raises StorageUnreadable."""

    def layout(self, conn: Connection) -> Layout:
        """The backend's name, schema version and tables, as this code makes them."""

    def integrity(self, conn: Connection) -> list[str]:
        """What the backend's own integrity check finds wrong; empty when it passes."""

    def tables(self, conn: Connection) -> set[str]: ...
    def schema_version(self, conn: Connection) -> int: ...

    def orphaned_writes(self, conn: Connection) -> list[tuple[str, int]]:
        """(thread, count) of writes that belong to no checkpoint."""

    def orphaned_blobs(self, conn: Connection) -> list[tuple[str, int]]:
        """(thread, count) of stored values of threads that have no checkpoints."""

    def latest_checkpoints(self, conn: Connection, thread_id: str, limit: int) -> list[tuple[str | None, str | None, str | None]]:
        """(source, metadata JSON, next tasks JSON) of the thread's latest root checkpoints."""

    def storage_bytes(self, conn: Connection) -> int:
        """The bytes the database takes where it is kept."""

    def reclaimable_bytes(self, conn: Connection) -> int:
        """What `reclaim` would give back, as far as the backend can tell."""

    def reclaim(self, conn: Connection) -> None:
        """Give the database's free space back (the backend's own VACUUM); nothing may be running."""


@dataclass(frozen=True)
class Backend:
    """One backend's parts, but the checkpointer and the store, which its `Database` opens
    (SQLite's: runtime/store/sqlite_backend.py)."""

    transactions: Transactions
    threads: ThreadRegistry
    spend: SpendLedger
    rates: SharedRates
    progress: ProgressBoard
    queue: RunQueue
    workers: WorkerRegistry
    control: ControlRequests
    schedules: Schedules
    namespaces: Namespaces
    checks: Maintenance


def members(part: type) -> list[str]:
    """The names a part asks for."""
    names: dict[str, None] = {}
    for cls in reversed(part.__mro__):
        if cls in (object, Protocol) or cls.__module__ == "typing":
            continue
        for name in [*vars(cls).get("__annotations__", {}), *vars(cls)]:
            if not name.startswith("_"):
                names[name] = None
    return list(names)


def differences(implementation: object, part: type) -> list[str]:
    """Where `implementation` (a module of functions, or an instance) does not provide `part`: a
    member missing, or parameters named otherwise. Empty when it conforms."""
    wrong = []
    for name in members(part):
        if not hasattr(implementation, name):
            wrong.append(f"{name}: missing")
            continue
        wanted = getattr(part, name, None)
        if not callable(wanted):
            continue
        expected = list(inspect.signature(wanted).parameters)[1:]  # without self
        given = list(inspect.signature(getattr(implementation, name)).parameters)
        if given != expected:
            wrong.append(f"{name}({', '.join(given)}): expected ({', '.join(expected)})")
    return wrong
