"""The storage seam (runtime/store/seam.py): each backend provides every part, and keeps its guarantees.

Parametrised over the backends: a new one is a new implementation plus these same tests. Two
processes are played by two connections on one real file, each with an owner of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from runtime.store import seam, sqlite_backend
from runtime.store.database import connect, open_database
from runtime.store.schema import SCHEMA_VERSION
from runtime.store.seam import Backend, OccurrenceTaken, Owner, SpendRow, StorageUnreadable, StoreItem

BACKENDS = {"sqlite": sqlite_backend.BACKEND}
A, B = Owner(101, "host-a"), Owner(202, "host-b")


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def two(db_path: Path):
    """Two connections to one new database file, as two processes would have."""
    open_database(db_path, create=True).close()
    first, second = connect(db_path), connect(db_path)
    yield first, second
    first.close()
    second.close()


def test_every_part_is_provided(backend: Backend, db_path: Path) -> None:
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


def test_a_lease_is_taken_with_the_write_lock_held_from_the_first_read(backend: Backend, two, db_path: Path) -> None:
    first, second = two
    threads, immediate = backend.threads, backend.transactions.immediate
    with immediate(first):
        assert threads.get(first, "t") is None
        if isinstance(first, sqlite3.Connection):  # before a single write, another writer cannot begin
            probe = sqlite3.connect(db_path, timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                probe.execute("BEGIN IMMEDIATE")
            probe.close()
        assert threads.insert(first, "t", "g", "1", {"a": 1}, A, 10.0)
    with immediate(second):
        row = threads.get(second, "t")
        assert (row.owner_pid, row.owner_host, row.status, row.settings) == (A.pid, A.host, "running", {"a": 1})
        assert not threads.insert(second, "t", "g", "1", {}, B, 11.0)  # the id is taken; the transaction goes on
        assert threads.get(second, "t").owner_pid == A.pid


def test_of_many_takers_at_once_one_finds_the_thread_free(backend: Backend, db_path: Path) -> None:
    open_database(db_path, create=True).close()
    takers = 6
    found_free: list[int] = []
    start = threading.Barrier(takers)

    def take(pid: int) -> None:
        conn = connect(db_path)
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
    conn = connect(db_path)
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
    assert not second.in_transaction
    assert schedules.get(second, "s").next_fire == 200.0
    assert [(r.id, r.thread_id, r.worker) for r in schedules.running_runs(second, "s")] == [(claimed, "s@100", "w1")]
    skipped = schedules.insert_run(second, "s", 200.0, None, "skipped", "busy", "w2", 201.0)
    assert schedules.last_runs(first)["s"][:5] == (skipped, "s", 200.0, None, "skipped")
    assert schedules.last_runs(first)["s"].ended_at == 201.0


def test_a_run_is_taken_over_by_one_worker(backend: Backend, two) -> None:
    first, second = two
    schedules = backend.schedules
    schedules.insert(first, _schedule("s"))
    run_id = schedules.insert_run(first, "s", 100.0, "s@100", "running", None, "w1", 100.0)
    assert [r.id for r in schedules.unfinished_runs(second)] == [run_id]
    assert schedules.claim_resume(first, run_id, 0, "running", "w1")
    assert not schedules.claim_resume(second, run_id, 0, "running", "w2")
    schedules.end_run(second, run_id, "completed", None, 150.0)
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


def test_spend_added_from_many_connections_is_never_lost(backend: Backend, db_path: Path) -> None:
    open_database(db_path, create=True).close()

    def add() -> None:
        conn = connect(db_path)
        for _ in range(20):
            backend.spend.add(conn, "t", SpendRow(1, 2, 0.5, 1), 1.0)
        conn.close()

    adders = [threading.Thread(target=add) for _ in range(4)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    conn = connect(db_path)
    assert backend.spend.get(conn, "t") == SpendRow(80, 160, 40.0, 80)
    assert backend.spend.by_thread(conn) == {"t": SpendRow(80, 160, 40.0, 80)} and backend.spend.get(conn, "u") is None


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


def test_a_threads_namespaces_are_found_copied_and_counted(backend: Backend, two) -> None:
    first, second = two
    namespaces = backend.namespaces
    assert namespaces.prefixes(first) == [] and namespaces.copy(first, "a", "b") == 0
    for key, status in (("0", "done"), ("1", "failed")):
        first.execute(
            "INSERT INTO store (prefix, key, value) VALUES ('results.a', ?, json(?))",
            (key, f'{{"status": "{status}", "input_tokens": 2, "output_tokens": 3}}'),
        )
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


def test_a_snapshot_sees_the_database_as_it_was_at_its_first_read(backend: Backend, two) -> None:
    first, second = two
    registry = backend.threads
    assert registry.insert(first, "t1", "g", "1", {}, A, 1.0)
    with backend.transactions.snapshot(second):
        assert [row.thread_id for row in registry.list_all(second)] == ["t1"]
        assert registry.insert(first, "t2", "g", "1", {}, A, 2.0)  # a writer goes on meanwhile
        assert [row.thread_id for row in registry.list_all(second)] == ["t1"]
    assert sorted(row.thread_id for row in registry.list_all(second)) == ["t1", "t2"]


def test_the_checks_read_without_writing(backend: Backend, db_path: Path, tmp_path: Path) -> None:
    open_database(db_path, create=True).close()
    checks = backend.checks
    conn = checks.open_read_only(db_path)
    try:
        assert checks.integrity(conn) == [] and checks.schema_version(conn) == SCHEMA_VERSION
        assert {"agent_threads", "checkpoints", "store"} <= checks.tables(conn)
        assert checks.orphaned_writes(conn) == [] and checks.orphaned_blobs(conn) == []
        assert checks.latest_checkpoints(conn, "t", 2) == []
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE x (y)")
    finally:
        conn.close()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageUnreadable):
        checks.open_read_only(junk)
