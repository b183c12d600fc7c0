"""The PostgreSQL server the tests use: a new database on it for each test, dropped after.

The server is AGENT_TEST_POSTGRES (a postgresql:// URL of a role that may create databases,
connected to an existing database such as `postgres`), by default the local one with trust
authentication. A test that needs it and cannot reach it fails, naming the server, so that CI
notices a missing server; AGENT_TEST_POSTGRES=off leaves PostgreSQL's tests out on purpose.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any, Iterator

import pytest

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("AGENT_TEST_POSTGRES") or DEFAULT_SERVER


def postgres_off() -> bool:
    return server_url().strip().lower() == "off"


@contextlib.contextmanager
def empty_database() -> Iterator[str]:
    """A new, empty database on the server: its conninfo, dropped (with any connection left
    to it) when the block ends."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = server_url()
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        unreachable = " ".join(str(exc).split())
    else:
        unreachable = None
    if unreachable is not None:
        where = conninfo_to_dict(url)
        pytest.fail(
            f"no PostgreSQL server at {where.get('host', 'localhost')}:{where.get('port', 5432)} for the PostgreSQL tests "
            f"({unreachable}); start one, point AGENT_TEST_POSTGRES at yours, or set AGENT_TEST_POSTGRES=off to leave them out",
            pytrace=False,
        )
    name = f"agent_test_{secrets.token_hex(6)}"
    try:
        create(admin, name)
        try:
            yield make_conninfo(url, dbname=name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def create(admin: Any, name: str) -> None:
    """CREATE DATABASE, ordering text as English does where the server has ICU (PostgreSQL 15
    on), so that the byte order the backend promises is tested on a server whose own is not."""
    import psycopg

    try:
        admin.execute(f"CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0")
    except psycopg.Error:
        admin.execute(f"CREATE DATABASE {name}")


@contextlib.contextmanager
def set_up_database() -> Iterator[str]:
    """A new database with every table a run uses: ours, and those of LangGraph's PostgresSaver
    and PostgresStore, each made by its own setup() as a PostgreSQL opener would make them."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    from runtime.store.postgres.connect import connect
    from runtime.store.postgres.schema import create_tables

    with empty_database() as url:
        with connect(url) as conn:
            create_tables(conn)
        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()
        with PostgresStore.from_conn_string(url) as store:
            store.setup()
        yield url
