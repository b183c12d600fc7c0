"""The storage seam (runtime/store/seam.py): each backend provides every part, and keeps its guarantees.

Parametrised over the backends: a new one is a new implementation plus these same tests. Two
processes are played by two connections on one new database (a file on SQLite, a database made
for the test on the PostgreSQL server of tests/postgres_server.py), each with an owner of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from runtime.store import seam
from runtime.store.database import connect, open_database
from runtime.store.seam import Backend, OccurrenceTaken, Owner, QueueRow, SpendRow, StorageUnreadable, StoreItem, WorkerRow
from tests.postgres_server import postgres_off, set_up_database

BACKENDS = {"sqlite": "runtime.store.sqlite_backend", "postgres": "runtime.store.postgres.backend"}
SCHEMAS = {"sqlite": "runtime.store.schema", "postgres": "runtime.store.postgres.schema"}
"""Imported as they are needed: PostgreSQL's need its driver, which AGENT_TEST_POSTGRES=off may go without."""
A, B = Owner(101, "host-a"), Owner(202, "host-b")


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and postgres_off():
        pytest.skip("AGENT_TEST_POSTGRES=off leaves PostgreSQL out")
    return request.param


@pytest.fixture
def backend(backend_name: str) -> Backend:
    return importlib.import_module(BACKENDS[backend_name]).BACKEND


@dataclass
class Fresh:
    """A new database of one backend, set up as its opener sets it up, and the ways in that the
    tests need besides the parts."""

    location: Any
    """What `checks.open_read_only` takes: a file, a URL."""
    connect: Callable[[], Any]
    """A connection of its own, as another process would have."""
    writer_blocked: Callable[[], bool]
    """Whether another writer, asking now, would have to wait for the write lock."""
    saver: Callable[[], contextlib.AbstractContextManager[Any]]
    """The backend's synchronous checkpointer on the database."""
    store: Callable[[], contextlib.AbstractContextManager[Any]]
    """LangGraph's synchronous store of the backend on the database."""
    read_only: tuple[type[Exception], str]
    """What a write on a read-only connection raises, and words of its message."""
    junk: Any
    """A location that holds no database of this backend."""


@contextlib.contextmanager
def sqlite_saver(db_path: Path) -> Iterator[Any]:
    db = open_database(db_path)
    try:
        yield db.checkpointer()
    finally:
        db.close()


def sqlite_fresh(db_path: Path) -> Fresh:
    from langgraph.store.sqlite import SqliteStore

    open_database(db_path, create=True).close()
    junk = db_path.with_name("junk.db")
    junk.write_bytes(b"not a database at all" * 100)

    def writer_blocked() -> bool:
        probe = sqlite3.connect(db_path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        finally:
            probe.close()

    return Fresh(
        db_path, lambda: connect(db_path), writer_blocked, lambda: sqlite_saver(db_path),
        lambda: SqliteStore.from_conn_string(str(db_path)), (sqlite3.OperationalError, "readonly"), junk,
    )  # fmt: skip


def postgres_fresh(url: str) -> Fresh:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from runtime.store.postgres.connect import connect as pg_connect
    from runtime.store.postgres.transaction import LOCK_KEY

    def writer_blocked() -> bool:
        with pg_connect(url) as probe:
            return not probe.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,)).fetchone()[0]

    missing = make_conninfo(url, dbname=conninfo_to_dict(url)["dbname"] + "_missing")
    return Fresh(
        url, lambda: pg_connect(url), writer_blocked, lambda: PostgresSaver.from_conn_string(url),
        lambda: PostgresStore.from_conn_string(url), (psycopg.errors.ReadOnlySqlTransaction, "read-only transaction"), missing,
    )  # fmt: skip


@pytest.fixture
def fresh(backend_name: str, db_path: Path) -> Iterator[Fresh]:
    if backend_name == "sqlite":
        yield sqlite_fresh(db_path)
        return
    with set_up_database() as url:
        yield postgres_fresh(url)


@pytest.fixture
def two(fresh: Fresh):
    """Two connections to one new database, as two processes would have."""
    first, second = fresh.connect(), fresh.connect()
    yield first, second
    first.close()
    second.close()


def in_transaction(conn: Any) -> bool:
    if isinstance(conn, sqlite3.Connection):
        return conn.in_transaction
    from runtime.store.postgres.transaction import in_transaction as open_on

    return open_on(conn)


def test_every_part_is_provided(backend: Backend) -> None:
    for name, part in Backend.__annotations__.items():
        implementation = getattr(backend, name)
        protocol = getattr(seam, part)
        assert isinstance(implementation, protocol), name
        assert seam.differences(implementation, protocol) == [], name


def test_the_checkpointer_and_the_store_are_provided(db_path: Path) -> None:
    db = open_database(db_path, create=True)

    async def opened() -> tuple[object, object]:
        async with db.open_async() as (saver, store):
            return saver, store

    try:
        saver, store = asyncio.run(opened())
        for checkpointer in (db.checkpointer(), saver):
            assert isinstance(checkpointer, seam.Checkpointer)
            assert seam.differences(checkpointer, seam.Checkpointer) == []
        assert isinstance(store, seam.Store)
        assert seam.differences(store, seam.Store) == []
    finally:
        db.close()


def test_differences_names_what_is_missing_or_named_otherwise() -> None:
    class Partial:
        def get(self, conn, thread):  # a parameter named otherwise
            return None

    found = seam.differences(Partial(), seam.SpendLedger)
    assert "get(conn, thread): expected (conn, thread_id)" in found
    assert "by_thread: missing" in found and "add: missing" in found


# -- leases --------------------------------------------------------------------------------------


def test_a_lease_is_taken_with_the_write_lock_held_from_the_first_read(backend: Backend, fresh: Fresh, two) -> None:
    first, second = two
    threads, immediate = backend.threads, backend.transactions.immediate
    assert not fresh.writer_blocked()
    with immediate(first):
        assert threads.get(first, "t") is None
        assert fresh.writer_blocked()  # before a single write, another writer cannot begin
        assert threads.insert(first, "t", "g", "1", {"a": 1}, A, 10.0)
    with immediate(second):
        row = threads.get(second, "t")
        assert (row.owner_pid, row.owner_host, row.status, row.settings) == (A.pid, A.host, "running", {"a": 1})
        assert not threads.insert(second, "t", "g", "1", {}, B, 11.0)  # the id is taken; the transaction goes on
        assert threads.get(second, "t").owner_pid == A.pid


def test_of_many_takers_at_once_one_finds_the_thread_free(backend: Backend, fresh: Fresh) -> None:
    takers = 6
    found_free: list[int] = []
    start = threading.Barrier(takers)

    def take(pid: int) -> None:
        conn = fresh.connect()
        try:
            start.wait()
            with backend.transactions.immediate(conn):
                if backend.threads.get(conn, "t") is None:
                    found_free.append(pid)
                    assert backend.threads.insert(conn, "t", "g", "1", {}, Owner(pid, "h"), 1.0)
        finally:
            conn.close()

    workers = [threading.Thread(target=take, args=(pid,)) for pid in range(takers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(found_free) == 1
    conn = fresh.connect()
    assert backend.threads.get(conn, "t").owner_pid == found_free[0]
    conn.close()


def test_heartbeat_and_release_change_the_row_only_for_the_holder(backend: Backend, two) -> None:
    first, second = two
    threads = backend.threads
    assert threads.insert(first, "t", "g", "1", {}, A, 1.0)
    assert not threads.heartbeat(second, "t", B.pid, 2.0, 5)
    assert threads.heartbeat(first, "t", A.pid, 3.0, 5)
    assert not threads.release(second, "t", B.pid, "failed", "no", None, 4.0)
    row = threads.get(second, "t")
    assert (row.heartbeat_at, row.steps, row.status) == (3.0, 5, "running")
    assert threads.release(first, "t", A.pid, "completed", None, None, 5.0)
    row = threads.get(second, "t")
    assert (row.status, row.steps, row.owner_pid, row.heartbeat_at) == ("completed", 5, None, None)
    threads.take_lease(second, "t", {"b": 2}, B, 6.0)
    row = threads.get(first, "t")
    assert (row.status, row.settings, row.owner_pid, row.owner_host, row.owner_since, row.heartbeat_at) == ("running", {"b": 2}, B.pid, B.host, 6.0, 6.0)
    assert [r.thread_id for r in threads.running(first)] == ["t"]
    threads.end_unowned(first, "t", "cancelled", "by someone", 7.0)
    row = threads.get(second, "t")
    assert (row.status, row.error, row.owner_pid) == ("cancelled", "by someone", None)
    assert threads.running(first) == [] and [r.thread_id for r in threads.list_all(first)] == ["t"]


def test_a_thread_is_claimed_and_taken_over_by_one_taker(backend: Backend, two) -> None:
    first, second = two
    threads = backend.threads
    assert threads.insert_queued(first, "t", "g", "1", {"q": 1}, 1.0)
    assert not threads.insert_queued(second, "t", "g", "1", {}, 2.0) and threads.get(second, "t").settings == {"q": 1}
    lease = threads.claim(first, "t", A, 3.0)
    assert lease == 1 and threads.claim(second, "t", B, 3.5) is None  # running: nobody else claims it
    assert threads.leases_held(first, A, 4.0) == {"t": lease} and threads.leases_held(second, B, 4.0) == {}
    assert threads.take_over(second, "t", lease, B, 5.0)
    assert not threads.take_over(first, "t", lease, A, 5.0)  # of two takers of one lease, one wins
    row = threads.get(first, "t")
    assert (row.owner_pid, row.lease, row.resumes, row.heartbeat_at) == (B.pid, lease + 1, 1, 5.0)
    threads.mark_queued(first, "t", 6.0)  # running: left as it is
    assert threads.get(second, "t").status == "running"
    assert threads.release(second, "t", B.pid, "completed", None, 3, 7.0)
    threads.mark_queued(first, "t", 8.0)
    threads.reuse(second, "t", "g2", "2", {"r": 2}, A, 9.0)
    row = threads.get(first, "t")
    assert (row.graph, row.status, row.settings, row.steps, row.owner_pid, row.lease, row.resumes) == ("g2", "running", {"r": 2}, 0, A.pid, lease + 2, 0)


def test_a_failed_step_inside_another_is_undone_alone(backend: Backend, two) -> None:
    first, second = two
    threads, immediate = backend.threads, backend.transactions.immediate
    with immediate(first):
        assert threads.insert(first, "kept", "g", "1", {}, A, 1.0)
        with pytest.raises(RuntimeError):
            with immediate(first):  # a savepoint of the transaction around it
                assert threads.insert(first, "undone", "g", "1", {}, A, 1.0)
                raise RuntimeError("the inner step fails")
        assert threads.get(second, "kept") is None  # nothing is seen before the outer commit
    assert [row.thread_id for row in threads.list_all(second)] == ["kept"]


# -- occurrences -------------------------------------------------------------------------------


def _schedule(name: str) -> seam.ScheduleRow:
    return seam.ScheduleRow(name, "g", "0 9 * * *", "UTC", {"x": 1}, {}, "skip", "skip", 3, "active", None, 0, 100.0, 1.0, 1.0)


def test_an_occurrence_is_claimed_once(backend: Backend, two) -> None:
    first, second = two
    schedules, immediate = backend.schedules, backend.transactions.immediate
    schedules.insert(first, _schedule("s"))
    with immediate(first):
        claimed = schedules.insert_run(first, "s", 100.0, "s@100", "running", None, "w1", 100.5)
        schedules.advance(first, "s", 200.0, 100.5)
    with pytest.raises(OccurrenceTaken):
        with immediate(second):
            schedules.advance(second, "s", 999.0, 101.0)  # undone with the claim that failed
            schedules.insert_run(second, "s", 100.0, "s@100-again", "running", None, "w2", 101.0)
    assert not in_transaction(second)
    assert schedules.get(second, "s").next_fire == 200.0
    assert [(r.id, r.thread_id, r.worker) for r in schedules.running_runs(second, "s")] == [(claimed, "s@100", "w1")]
    skipped = schedules.insert_run(second, "s", 200.0, None, "skipped", "busy", "w2", 201.0)
    assert schedules.last_runs(first)["s"][:5] == (skipped, "s", 200.0, None, "skipped")
    assert schedules.last_runs(first)["s"].ended_at == 201.0


def test_names_are_listed_in_byte_order(backend: Backend, two) -> None:
    first, second = two
    names = ["b", "B", "a", "Z", "é"]
    for name in names:
        backend.schedules.insert(first, _schedule(name))
        assert backend.threads.insert(first, name, "g", "1", {}, A, 1.0)
    in_order = sorted(names)  # code point order, as SQLite compares text, whatever the server's locale
    assert [row.name for row in backend.schedules.list_all(second)] == in_order
    assert [name for name, _graph in backend.schedules.graphs(second)] == in_order
    assert backend.schedules.due(second, 100.0) == in_order  # one fire time: by name
    assert [row.thread_id for row in backend.threads.running(second)] == in_order


def test_a_run_is_taken_over_by_one_worker(backend: Backend, two) -> None:
    first, second = two
    schedules = backend.schedules
    schedules.insert(first, _schedule("s"))
    run_id = schedules.insert_run(first, "s", 100.0, "s@100", "running", None, "w1", 100.0)
    assert [r.id for r in schedules.unfinished_runs(second)] == [run_id]
    assert schedules.claim_resume(first, run_id, 0, "running", "w1")
    assert not schedules.claim_resume(second, run_id, 0, "running", "w2")
    assert schedules.end_run(second, run_id, "completed", None, 150.0)
    assert not schedules.end_run(first, run_id, "failed", "late", 160.0)  # its end is recorded once
    assert schedules.unfinished_runs(first) == [] and schedules.fire_time(first, run_id) == 100.0
    backend.spend.add(first, "s@100", SpendRow(3, 4, 0.25, 1), 150.0)
    [(run, cost, tokens)] = schedules.runs_with_spend(second, "s", None, None)
    assert (run.resumes, run.status, cost, tokens) == (1, "completed", 0.25, 7)


def test_failures_pause_a_schedule_and_resume_clears_them(backend: Backend, two) -> None:
    first, second = two
    schedules = backend.schedules
    schedules.insert(first, _schedule("s"))
    schedules.set_failures(first, "s", 2, None, 5.0)
    assert schedules.failures(second, "s") == (2, 3, "active")
    schedules.set_failures(second, "s", 3, "three in a row", 6.0)
    paused = schedules.get(first, "s")
    assert (paused.status, paused.pause_reason, paused.failures) == ("paused", "three in a row", 3)
    schedules.resume(first, "s", 300.0, 7.0)
    assert schedules.get(second, "s")[9:13] == ("active", None, 0, 300.0)
    assert schedules.due(second, 299.0) == [] and schedules.due(second, 300.0) == ["s"]
    schedules.insert_run(first, "s", 300.0, "s@300", "running", None, "w", 300.0)
    assert schedules.delete(second, "s") == 1 and schedules.get(first, "s") is None and schedules.count(first) == 0


# -- spend, control, namespaces, checks ----------------------------------------------------------


def test_spend_added_from_many_connections_is_never_lost(backend: Backend, fresh: Fresh) -> None:
    def add() -> None:
        conn = fresh.connect()
        for _ in range(20):
            backend.spend.add(conn, "t", SpendRow(1, 2, 0.5, 1), 1.0)
        conn.close()

    adders = [threading.Thread(target=add) for _ in range(4)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    conn = fresh.connect()
    assert backend.spend.get(conn, "t") == SpendRow(80, 160, 40.0, 80)
    assert backend.spend.by_thread(conn) == {"t": SpendRow(80, 160, 40.0, 80)} and backend.spend.get(conn, "u") is None
    conn.close()


def test_reservations_of_two_processes_queue_behind_each_other_and_the_bucket_drains_with_time(backend: Backend, two) -> None:
    """Two per second, holding one: the waits of both connections add up to one queue; time
    passed in leaks the bucket, and a clock that goes back leaks nothing."""
    first, second = two
    reserve = backend.rates.reserve
    assert reserve(first, "m", 2.0, 1.0, 100.0) == 0.0
    assert reserve(second, "m", 2.0, 1.0, 100.0) == 0.5
    assert reserve(first, "m", 2.0, 1.0, 100.0) == 1.0
    assert reserve(second, "other", 2.0, 1.0, 100.0) == 0.0  # keys are apart
    assert reserve(second, "m", 2.0, 1.0, 100.5) == pytest.approx(1.0)  # 4 reserved, 1 leaked
    assert reserve(first, "m", 2.0, 1.0, 100.0) == pytest.approx(1.5)  # an earlier clock leaks nothing
    assert reserve(second, "m", 2.0, 1.0, 110.0) == 0.0  # drained: at once again
    assert reserve(first, "m", 2.0, 3.0, 110.0) == 0.0  # a larger capacity lets a burst through
    assert reserve(first, "m", 2.0, 3.0, 110.0) == 0.0
    assert reserve(first, "m", 2.0, 3.0, 110.0) == 0.5


def test_reservations_from_many_connections_at_once_are_never_lost(backend: Backend, fresh: Fresh) -> None:
    """80 reservations at one instant from four connections: their waits are 0, 1/r, ..., 79/r,
    each once, whatever the order they came in."""
    waits: list[float] = []

    def reserve() -> None:
        conn = fresh.connect()
        mine = [backend.rates.reserve(conn, "m", 4.0, 1.0, 100.0) for _ in range(20)]
        conn.close()
        waits.extend(mine)

    reservers = [threading.Thread(target=reserve) for _ in range(4)]
    for reserver in reservers:
        reserver.start()
    for reserver in reservers:
        reserver.join()
    assert sorted(waits) == [i / 4.0 for i in range(80)]

def test_a_control_request_is_one_per_thread(backend: Backend, two) -> None:
    first, second = two
    control = backend.control
    control.put(first, "t", "pause", A, "me", 1.0)
    control.put(second, "t", "cancel", A, "you", 2.0)
    assert control.get(first, "t") == seam.ControlRow("cancel", A.pid, A.host, "you", 2.0)
    control.clear(first, "t", B.pid)  # addressed to another runner: it stays
    assert control.get(second, "t") is not None
    control.clear(second, "t", A.pid)
    assert control.get(first, "t") is None
    control.put(first, "t", "pause", A, "me", 3.0)
    control.delete(second, "t")
    assert control.get(first, "t") is None


def test_a_threads_namespaces_are_found_copied_and_counted(backend: Backend, fresh: Fresh, two) -> None:
    first, second = two
    namespaces = backend.namespaces
    assert namespaces.prefixes(first) == [] and namespaces.copy(first, "a", "b") == 0
    with fresh.store() as store:  # the rows as LangGraph's own store writes them
        for key, status in (("0", "done"), ("1", "failed")):
            store.put(("results", "a"), key, {"status": status, "input_tokens": 2, "output_tokens": 3})
    assert namespaces.of_thread(second, "a") == ["results.a"] and namespaces.of_thread(second, "b") == []
    assert namespaces.copy(second, "a", "b") == 2
    assert sorted(namespaces.prefixes(first)) == ["results.a", "results.b"]
    counts = sorted(namespaces.result_counts(first, "results.b", 1, 0.0))
    assert counts == [("done", 1, 1, 2, 3, 1), ("failed", 1, 1, 2, 3, 1)]


def test_items_are_read_and_written_with_their_times(backend: Backend, two) -> None:
    first, second = two
    namespaces = backend.namespaces
    items = [StoreItem("000000001", {"status": "done", "output": "é"}, 1767225600.0, 1767225661.0), StoreItem("000000000", {"item": "a"}, 1767225600.0, 1767225600.0)]
    with backend.transactions.immediate(first):
        assert namespaces.put_items(first, "results.a", items) == 2
    assert list(namespaces.items(second, "results.a")) == sorted(items)  # by key
    assert list(namespaces.items(second, "results.none")) == []


def test_many_items_come_back_all_in_byte_order_while_the_connection_does_other_work(backend: Backend, two) -> None:
    first, second = two
    namespaces = backend.namespaces
    keys = [f"{n:05d}" for n in range(1201)] + ["B", "a", "é", "Z", "ä"]  # more than a page of reads or writes
    with backend.transactions.immediate(first):
        assert namespaces.put_items(first, "items.a", (StoreItem(key, {"n": key}, 1.0, 2.0) for key in keys)) == len(keys)
    seen = []
    for item in namespaces.items(second, "items.a"):
        seen.append(item.key)
        if len(seen) == 600:
            assert namespaces.prefixes(second) == ["items.a"]  # the connection is free between reads
    assert seen == sorted(keys)  # code point order, UTF-8's byte order, whatever the server's locale


def test_a_snapshot_sees_the_database_as_it_was_at_its_first_read(backend: Backend, two) -> None:
    first, second = two
    registry = backend.threads
    assert registry.insert(first, "t1", "g", "1", {}, A, 1.0)
    with backend.transactions.snapshot(second):
        assert [row.thread_id for row in registry.list_all(second)] == ["t1"]
        assert registry.insert(first, "t2", "g", "1", {}, A, 2.0)  # a writer goes on meanwhile
        assert [row.thread_id for row in registry.list_all(second)] == ["t1"]
    assert sorted(row.thread_id for row in registry.list_all(second)) == ["t1", "t2"]


def test_the_checks_read_without_writing(backend: Backend, backend_name: str, fresh: Fresh) -> None:
    checks = backend.checks
    conn = checks.open_read_only(fresh.location)
    try:
        assert checks.integrity(conn) == [] and checks.schema_version(conn) == importlib.import_module(SCHEMAS[backend_name]).SCHEMA_VERSION
        assert {"agent_threads", "checkpoints", "store"} <= checks.tables(conn)
        assert checks.orphaned_writes(conn) == [] and checks.orphaned_blobs(conn) == []
        assert checks.latest_checkpoints(conn, "t", 2) == []
        error, words = fresh.read_only
        with pytest.raises(error, match=words):
            conn.execute("CREATE TABLE x (y integer)")
    finally:
        conn.close()
    with pytest.raises(StorageUnreadable):
        checks.open_read_only(fresh.junk)


def test_checkpoints_are_seen_by_the_registry_and_the_checks(backend: Backend, fresh: Fresh, two) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    first, _ = two
    with fresh.saver() as saver:  # the backend's own checkpointer writes them
        saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, empty_checkpoint(), {"source": "input", "step": -1}, {})
        saver.put_writes({"configurable": {"thread_id": "u", "checkpoint_ns": "", "checkpoint_id": "1f0-none"}}, [("ch", 1)], "task")
    assert backend.threads.has_checkpoints(first, "t") and not backend.threads.has_checkpoints(first, "u")
    checks = backend.checks
    [(source, metadata, _next)] = checks.latest_checkpoints(first, "t", 2)
    assert source == "input" and json.loads(metadata) == {"source": "input", "step": -1}
    assert checks.orphaned_writes(first) == [("u", 1)]


# -- the run queue, workers, progress ----------------------------------------------------------------


def test_the_queue_holds_one_request_per_thread(backend: Backend, two) -> None:
    first, second = two
    queue, threads = backend.queue, backend.threads
    for thread_id in ("low", "high", "busy"):
        assert threads.insert_queued(first, thread_id, "g", "1", {}, 1.0)
    assert queue.put(first, QueueRow("low", "run", {"input": {"x": 1}}, 0, 1.0, "me"))
    assert not queue.put(second, QueueRow("low", "resume", {}, 9, 2.0, "you"))  # one per thread: the first stays
    assert queue.put(second, QueueRow("high", "run", {}, 5, 3.0, None))
    assert queue.put(second, QueueRow("busy", "run", {}, 9, 0.5, None))
    assert threads.claim(first, "busy", A, 4.0) == 1  # its runner holds it: not ready
    assert queue.get(first, "low") == QueueRow("low", "run", {"input": {"x": 1}}, 0, 1.0, "me")
    assert [row.thread_id for row in queue.list_all(second)] == ["busy", "high", "low"]
    assert [row.thread_id for row in queue.ready(second, 10)] == ["high", "low"]
    assert [row.thread_id for row in queue.ready(second, 1)] == ["high"]
    assert queue.delete(first, "high") == 1 and queue.delete(first, "high") == 0 and queue.get(second, "high") is None


def test_workers_and_progress_are_one_row_each(backend: Backend, two) -> None:
    first, second = two
    workers, progress = backend.workers, backend.progress
    workers.register(first, WorkerRow("w1", 11, "h", 1.0, 1.0, 4, 0, "running"))
    workers.register(second, WorkerRow("w2", 12, "h", 2.0, 2.0, 2, 0, "running"))
    workers.register(second, WorkerRow("w1", 13, "h2", 3.0, 3.0, 8, 0, "running"))  # registered again: replaced
    workers.beat(first, "w2", 2, "stopping", 4.0)
    assert workers.list_all(second) == [WorkerRow("w1", 13, "h2", 3.0, 3.0, 8, 0, "running"), WorkerRow("w2", 12, "h", 2.0, 4.0, 2, 2, "stopping")]
    assert progress.get(first, "t") is None
    progress.put(first, "t", {"done": 1, "total": 3}, 5.0)
    progress.put(second, "t", {"done": 2, "total": 3, "note": "é"}, 6.0)
    assert progress.get(first, "t") == ({"done": 2, "total": 3, "note": "é"}, 6.0)
    assert progress.delete(second, "t") == 1 and progress.get(first, "t") is None
