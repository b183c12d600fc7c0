"""Opening a PostgreSQL database: what `runtime.open_database` gives for a postgresql:// URL.

`PostgresDatabase` has the face of SQLite's `Database` (runtime/store/database.py): `conn` is
the calling thread's connection, `checkpointer()` the synchronous saver on it,
`checkpoint_columns()` the plain reads, `open_async()` the async saver and store that runs
write through. The savers are LangGraph's PostgresSaver and AsyncPostgresSaver with the seam's
members (runtime/store/postgres/saver.py); the store is LangGraph's AsyncPostgresStore. Runs
share one connection pool per process.

Opening makes what is missing, once, under the migration lock (runtime/store/postgres/schema.py):
our tables, then LangGraph's, whose own `setup()` runs statements (CREATE INDEX CONCURRENTLY)
that cannot run inside a transaction and is not safe to race by itself. A database written by a
newer version is refused; one that cannot be reached, or where the role may not create tables,
is refused with what to do, and nothing is left half made (each setup is idempotent and is
completed by the next opener).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import psycopg
from psycopg.conninfo import conninfo_to_dict

from runtime.errors import DatabaseMissing, DatabaseUnusable, Message, Setting
from runtime.store.postgres.connect import connect, session_options
from runtime.store.postgres.schema import SCHEMA_VERSION, create_tables, refuse_newer, setup_lock, stored_version
from runtime.store.postgres.transaction import in_transaction
from runtime.store.serde import redacting_serializer

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
"""The pool's own warnings (a connection attempt that failed, a worker slow to stop) are about
outages the runs handle and report themselves (runtime/runs/host.py): not for the terminal."""

IDLE_CHECK_SECONDS = 2.0
"""A connection unused for longer than this is tried (SELECT 1) before it is used again: after a
lost network, a restarted server or a partition healed, a connection can be dead without
knowing it, and a run's first statement on it would fail the run. In steady work connections are
reused within milliseconds and pay nothing."""
POOL_SIZE = int(os.environ.get("AGENT_PG_POOL", "10"))
"""Connections a process's runs share (AGENT_PG_POOL): a worker driving hundreds of threads
sends their statements through these."""
CONNECT_TIMEOUT = 10


def display_name(url: str) -> str:
    """The database as messages name it: its URL without the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database (a URL that cannot be read)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class PostgresDatabase:
    """An open PostgreSQL database, with the face of `Database`."""

    backend = "postgres"

    def __init__(self, url: str, conn: psycopg.Connection) -> None:
        self.url = url
        self.path = display_name(url)
        """What messages name it by (SQLite's `Database.path` is its file)."""
        self._local = threading.local()
        self._local.conn = self._first = conn
        self._conns: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        self._jobs: Any = None

    @property
    def conn(self) -> psycopg.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is not None and not conn.closed and now - getattr(local, "used", now) > IDLE_CHECK_SECONDS and not in_transaction(conn):
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError:
                conn.close()
        local.used = now
        if conn is None or conn.closed:  # a lost connection is replaced on next use
            conn = local.conn = connect(self.url)
            with self._conns_lock:
                self._conns.add(conn)
        return conn

    def checkpointer(self) -> Any:
        saver = getattr(self._local, "saver", None)
        if saver is None or saver.conn is not self.conn:
            from runtime.store.postgres.saver import AgentPostgresSaver

            self._langgraph_set_up()
            saver = self._local.saver = AgentPostgresSaver(self.conn, serde=redacting_serializer())
        return saver

    def checkpoint_columns(self) -> Any:
        from runtime.store.postgres.columns import ColumnReader

        return ColumnReader(self.conn)

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[tuple[object, object]]:
        """The async saver and store of runs, over one connection pool."""
        from langgraph.store.postgres.aio import AsyncPostgresStore
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        from runtime.store.postgres.saver import AsyncAgentPostgresSaver

        await asyncio.to_thread(self._langgraph_set_up)
        returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

        async def note_return(conn: Any) -> None:
            returned[conn] = time.monotonic()

        async def check_idle(conn: Any) -> None:
            if time.monotonic() - returned.get(conn, 0.0) > IDLE_CHECK_SECONDS:
                await conn.execute("SELECT 1")  # raises on a dead one, which the pool replaces

        pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=max(1, POOL_SIZE),
            check=check_idle,
            reset=note_return,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, **session_options()},
            open=False,
            name="agent",
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        try:
            saver = AsyncAgentPostgresSaver(pool, reader=lambda: self.conn, serde=redacting_serializer())
            store = AsyncPostgresStore(pool)
            yield saver, store
        finally:
            await pool.close()

    def _langgraph_set_up(self) -> None:
        """LangGraph's tables at the migrations of the installed langgraph-checkpoint-postgres
        (an upgrade may bring new ones), checked once per process before its savers are used,
        so that commands which only read our tables never import LangGraph."""
        if self.url in _LANGGRAPH_READY:
            return
        with connect(self.url) as conn:
            if not _langgraph_tables_made(conn):
                _set_up(conn, self.url)
        _LANGGRAPH_READY.add(self.url)

    def job_queue(self) -> Any:
        """Procrastinate's dispatch of queued runs on this database (runtime/store/postgres/jobs.py)."""
        if self._jobs is None:
            from runtime.store.postgres.jobs import JobQueue

            self._jobs = JobQueue(self.url)
        return self._jobs

    def keep_reserve(self, hint: str) -> None:
        """Nothing to keep: the server keeps its own room (a full disk is its administrator's)."""

    def give_up_reserve(self) -> bool:
        return False

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.close()
        with self._conns_lock:
            conns = [self._first, *self._conns]
        for conn in conns:
            conn.close()

    def __enter__(self) -> "PostgresDatabase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_postgres(url: str, *, create: bool = False) -> PostgresDatabase:
    """Open the database at `url`, making its tables when they are missing (whatever `create`
    says: a server's database is made by its administrator, the tables by whoever opens it
    first). Raises DatabaseMissing, DatabaseUnusable with what to do."""
    name = display_name(url)
    try:
        port = str(conninfo_to_dict(url).get("port") or "5432")
        if not all(part.isdigit() for part in port.split(",")):
            raise psycopg.ProgrammingError("the port is not a number")
    except psycopg.ProgrammingError:  # its message quotes the URL, password and all
        raise DatabaseUnusable(
            "the PostgreSQL URL cannot be read", Message("give {} as postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME", Setting("path"))
        ) from None
    try:
        conn = psycopg.connect(url, autocommit=True, **session_options())  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        raise _unreachable(name, exc) from None
    try:
        version = stored_version(conn)
        refuse_newer(conn, version)
        if version < SCHEMA_VERSION:
            _set_up(conn, url)
    except psycopg.errors.InsufficientPrivilege as exc:
        conn.close()
        raise DatabaseUnusable(
            f"{name}: the role may not create the tables agent needs ({_first_line(exc)})",
            "grant it CREATE on the database's schema (GRANT CREATE ON SCHEMA public TO USER), or let an owner open it once",
        ) from None
    except BaseException:
        conn.close()
        raise
    return PostgresDatabase(url, conn)


_LANGGRAPH_READY: set[str] = set()
"""The databases (by URL) whose LangGraph tables this process has found set up."""


def _langgraph_tables_made(conn: psycopg.Connection) -> bool:
    """Whether LangGraph's setups have run to their last migration."""
    from langgraph.checkpoint.postgres.base import MIGRATIONS as CHECKPOINT_MIGRATIONS
    from langgraph.store.postgres.base import MIGRATIONS as STORE_MIGRATIONS

    for table, wanted in (("checkpoint_migrations", len(CHECKPOINT_MIGRATIONS) - 1), ("store_migrations", len(STORE_MIGRATIONS) - 1)):
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return False
        if (conn.execute(f"SELECT max(v) FROM {table}").fetchone()[0] or -1) < wanted:
            return False
    return True


def _set_up(conn: psycopg.Connection, url: str) -> None:
    """LangGraph's savers' and store's tables, each by its own setup(), then ours, whose version
    row is written last (so a database at our version has LangGraph's tables too), under the
    migration lock: of several processes opening a new database at once, one sets it up and the
    others wait, then find it done."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg.rows import dict_row

    with setup_lock(conn):
        if not _langgraph_tables_made(conn):
            with psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as setup_conn:
                PostgresSaver(setup_conn).setup()
                PostgresStore(setup_conn).setup()
    create_tables(conn)  # under the migration lock


def _unreachable(name: str, exc: psycopg.OperationalError) -> DatabaseUnusable | DatabaseMissing:
    text = _first_line(exc)
    lowered = text.lower()
    if "does not exist" in lowered and "database" in lowered:
        return DatabaseMissing(f"{name} does not exist", "create it (createdb NAME, or CREATE DATABASE NAME), then try again")
    if "authentication" in lowered or "no password supplied" in lowered or ("role" in lowered and "does not exist" in lowered):
        return DatabaseUnusable(
            f"{name}: the server refused the credentials ({text})",
            "check the user and password in the URL (or PGPASSWORD / ~/.pgpass)",
        )
    return DatabaseUnusable(
        f"cannot reach {name}: {text}",
        "check that the server is running and the host and port are right (pg_isready -h HOST -p PORT tells)",
    )


def _first_line(exc: BaseException) -> str:
    """The driver's message, on one line; never the URL's password, which libpq does not echo."""
    return " ".join(str(exc).split()) or type(exc).__name__
