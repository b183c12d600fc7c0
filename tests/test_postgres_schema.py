"""PostgreSQL's own side of the storage seam: its tables made race-safely, a newer database
refused, and a failed statement never committed without a word. What every backend must do
alike is in tests/test_store_seam.py."""

from __future__ import annotations

import threading

import pytest

from tests.postgres_server import empty_database, postgres_off

pytestmark = pytest.mark.skipif(postgres_off(), reason="AGENT_TEST_POSTGRES=off leaves PostgreSQL out")


def test_two_processes_making_the_tables_at_once_take_turns() -> None:
    from runtime.store.postgres import checks
    from runtime.store.postgres.connect import connect
    from runtime.store.postgres.schema import SCHEMA_VERSION, create_tables

    with empty_database() as url:
        start = threading.Barrier(2)
        made: list[bool] = []
        failed: list[BaseException] = []

        def open_new() -> None:
            with connect(url) as conn:
                start.wait()
                try:
                    made.append(create_tables(conn))
                except BaseException as exc:  # reported below, not lost in the thread
                    failed.append(exc)

        openers = [threading.Thread(target=open_new) for _ in range(2)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()
        assert failed == [] and sorted(made) == [False, True]  # one made them, the other found them made
        with connect(url) as conn:
            assert checks.schema_version(conn) == SCHEMA_VERSION
            assert conn.execute("SELECT count(*) FROM agent_schema").fetchone()[0] == 1
            assert {"agent_threads", "agent_queue", "agent_schedule_runs", "agent_schema"} <= checks.tables(conn)
            assert create_tables(conn) is False  # an open of a made database changes nothing


def test_a_database_of_schema_7_gets_the_shared_rate_table() -> None:
    from runtime.store.postgres import checks
    from runtime.store.postgres.connect import connect
    from runtime.store.postgres.schema import MIGRATIONS, create_tables

    with empty_database() as url, connect(url) as conn:
        for statement in MIGRATIONS[7].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("CREATE TABLE agent_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO agent_schema (version) VALUES (7)")
        assert "agent_rates" not in checks.tables(conn)
        assert create_tables(conn) is True
        assert checks.schema_version(conn) == 8 and "agent_rates" in checks.tables(conn)
        assert conn.execute("SELECT count(*) FROM agent_schema").fetchone()[0] == 1

def test_a_database_of_a_newer_version_is_refused_and_left_as_it_is() -> None:
    from runtime.errors import DatabaseUnusable
    from runtime.store.postgres import checks
    from runtime.store.postgres.connect import connect
    from runtime.store.postgres.schema import SCHEMA_VERSION, create_tables
    from runtime.store.postgres.transaction import LOCK_KEY

    with empty_database() as url, connect(url) as conn:
        create_tables(conn)
        conn.execute("UPDATE agent_schema SET version = %s", (SCHEMA_VERSION + 1,))
        conn.execute("DROP TABLE agent_queue")  # a newer layout, which an older agent must not touch
        with pytest.raises(DatabaseUnusable) as refused:
            create_tables(conn)
        dbname = conn.info.dbname
        assert str(refused.value) == (
            f"the PostgreSQL database {dbname} on {conn.info.host}:{conn.info.port} was written by a newer version of agent "
            f"(schema {SCHEMA_VERSION + 1}, this one reads {SCHEMA_VERSION})"
        )
        assert checks.schema_version(conn) == SCHEMA_VERSION + 1 and "agent_queue" not in checks.tables(conn)
        # the session lock is let go: another connection takes the write lock at once
        with connect(url) as other:
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]


def test_a_step_whose_statement_failed_is_rolled_back_and_says_so() -> None:
    import psycopg

    from runtime.store.postgres import registry
    from runtime.store.postgres.connect import connect
    from runtime.store.postgres.schema import create_tables
    from runtime.store.postgres.transaction import immediate, in_transaction
    from runtime.store.seam import Owner

    with empty_database() as url, connect(url) as conn:
        create_tables(conn)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            with immediate(conn):
                assert registry.insert(conn, "t", "g", "1", {}, Owner(1, "h"), 1.0)
                with pytest.raises(psycopg.errors.UndefinedTable):
                    conn.execute("SELECT * FROM no_such_table")  # caught here, yet the transaction failed
        assert not in_transaction(conn) and registry.get(conn, "t") is None


def test_a_missing_server_fails_the_tests_that_need_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(pytest.fail.Exception, match=r"no PostgreSQL server at 127\.0\.0\.1:1 .*AGENT_TEST_POSTGRES=off"):
        with empty_database():
            pass
