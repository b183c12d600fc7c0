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
    from psycopg.conninfo import make_conninfo

    url = server_url()
    admin = admin_connection()
    name = f"agent_test_{secrets.token_hex(6)}"
    try:
        create(admin, name)
        try:
            yield make_conninfo(url, dbname=name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def admin_connection() -> Any:
    """A connection to the server as AGENT_TEST_POSTGRES names it; the test fails, naming the
    server and what to do, when there is none."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    url = server_url()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        unreachable = " ".join(str(exc).split())
    where = conninfo_to_dict(url)
    pytest.fail(
        f"no PostgreSQL server at {where.get('host', 'localhost')}:{where.get('port', 5432)} for the PostgreSQL tests "
        f"({unreachable}); start one, point AGENT_TEST_POSTGRES at yours, or set AGENT_TEST_POSTGRES=off to leave them out",
        pytrace=False,
    )


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


_TEMPLATE: list[str] = []
"""The name of this process's set-up template database, made on first use, dropped at exit."""


def _template(admin: Any) -> str:
    """A database set up as `open_database` sets one up, made once per test process: each test's
    database is a copy of it (CREATE DATABASE ... TEMPLATE), far quicker than setting one up."""
    if _TEMPLATE:
        return _TEMPLATE[0]
    import atexit

    from runtime.store.database import open_database

    _drop_orphaned_templates(admin)
    name = f"agent_template_{os.getpid()}_{secrets.token_hex(4)}"
    create(admin, name)
    open_database(_as_url(server_url(), name)).close()
    _TEMPLATE.append(name)

    def drop() -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error), psycopg.connect(server_url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    atexit.register(drop)
    return name


def _drop_orphaned_templates(admin: Any) -> None:
    """Templates of test processes of this machine that are gone (killed before their exit
    handler ran): the pid is in the name."""
    from runtime.threads.registry import pid_alive

    for (name,) in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'agent\\_template\\_%'").fetchall():
        pid = name.split("_")[2]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def agent_database() -> Iterator[str]:
    """A new database with everything `open_database` makes (ours and LangGraph's tables), copied
    from this process's template: its URL, dropped when the block ends."""
    admin = admin_connection()
    name = f"agent_test_{secrets.token_hex(6)}"
    try:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {_template(admin)}")
        try:
            yield _as_url(server_url(), name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def _as_url(server: str, name: str) -> str:
    """The server's URL with another database name, as a postgresql:// URL (what --db takes)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(server)
    user = parts.get("user") or "postgres"
    password = f":{parts['password']}" if parts.get("password") else ""
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{name}"
