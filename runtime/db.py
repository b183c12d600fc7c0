"""Opening the database: the one place where the checkpointer and the store are opened.

One SQLite file holds LangGraph's checkpoints and writes (langgraph-checkpoint-sqlite), the
LangGraph store (per-item data) and this project's thread registry. WAL mode lets readers
run beside a writer; `synchronous=NORMAL` commits each checkpoint without an fsync per step
(a power cut may lose the last steps, a crashed process loses nothing that was committed).
"""

from __future__ import annotations

import functools
import os
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from langgraph.checkpoint.sqlite import SqliteSaver

from runtime.errors import DatabaseMissing, DatabaseUnusable

DEFAULT_DB = Path("checkpoints") / "agent.db"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_REGISTRY = """
CREATE TABLE IF NOT EXISTS agent_threads (
    thread_id     TEXT PRIMARY KEY,
    graph         TEXT NOT NULL,
    graph_version TEXT NOT NULL,
    status        TEXT NOT NULL,
    settings      TEXT NOT NULL DEFAULT '{}',
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    steps         INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    owner_pid     INTEGER,
    owner_host    TEXT,
    owner_since   REAL,
    heartbeat_at  REAL
);
"""


def default_db_path() -> Path:
    return Path(os.environ.get("AGENT_DB") or DEFAULT_DB)


class Database:
    """An open database file: a sqlite3 connection for the registry and for reads."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._saver: SqliteSaver | None = None

    def checkpointer(self) -> SqliteSaver:
        """The synchronous saver, for reading history and state."""
        if self._saver is None:
            self._saver = SqliteSaver(self.conn)
        return self._saver

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[tuple[object, object]]:
        """The async checkpointer and store that runs write through, on their own connections."""
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(self.path)) as saver:
            await _tune_async(saver.conn)
            async with _store_class().from_conn_string(str(self.path)) as store:
                await _tune_async(store.conn)
                await store.setup()
                await saver.setup()
                yield saver, store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _store_class() -> type:
    """LangGraph's async SQLite store, with transactions that take the write lock as they begin.

    The stock store begins deferred transactions, and one batch may read (an item) before it
    writes (a result). In WAL mode, when the checkpointer's connection commits in between,
    SQLite cannot upgrade the transaction and fails at once with SQLITE_BUSY_SNAPSHOT
    ("database is locked"), never waiting out busy_timeout. BEGIN IMMEDIATE waits instead.
    """
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    class ImmediateSqliteStore(AsyncSqliteStore):
        @asynccontextmanager
        async def _cursor(self, *, transaction: bool = True) -> AsyncIterator[object]:
            if not self.is_setup:
                await self.setup()
            async with self.lock:
                if transaction:
                    await self.conn.execute("BEGIN IMMEDIATE")
                async with self.conn.cursor() as cur:
                    try:
                        yield cur
                    except BaseException:
                        if transaction:
                            await self.conn.execute("ROLLBACK")
                        raise
                    if transaction:
                        await self.conn.execute("COMMIT")

    return ImmediateSqliteStore


async def _tune_async(conn) -> None:
    await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA synchronous=NORMAL")


def open_database(path: str | os.PathLike | None = None, *, create: bool = False) -> Database:
    """Open (and with `create`, make) the database; raise a domain error a user can act on."""
    path = Path(path) if path is not None else default_db_path()
    if not path.exists():
        if not create:
            raise DatabaseMissing(
                f"no database at {path}",
                "start a thread with: agent run GRAPH --thread ID --input JSON (or point --db / AGENT_DB at yours)",
            )
        _create_private_file(path)
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise DatabaseUnusable(
                f"{path} was written by a newer version of agent (schema {version}, this one reads {SCHEMA_VERSION})",
                "upgrade agent (pip install -U agent) or use another --db",
            )
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION:
            conn.executescript(_REGISTRY)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    return Database(path, conn)


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> DatabaseUnusable:
    if not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK):
        return DatabaseUnusable(
            f"cannot use {path}: it or its directory is read-only (SQLite writes a -wal and -shm file beside it)",
            "copy the database somewhere writable and point --db at the copy, or fix the permissions",
        )
    return DatabaseUnusable(
        f"cannot use {path}: {exc}",
        "check the path; if the file is damaged, restore it from a backup (agent never repairs in place)",
    )


def _create_private_file(path: Path) -> None:
    """Create the file readable by its owner only, before SQLite opens it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise DatabaseUnusable(f"cannot create {path}: {exc.strerror}", "choose a writable --db path") from None
