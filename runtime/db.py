"""Opening the database: the one place where the checkpointer and the store are opened.

One SQLite file holds LangGraph's checkpoints and writes (our `AgentSaver`, runtime/saver.py,
tables in runtime/schema.py), the LangGraph store (per-item data) and this project's thread
registry. Nothing from LangGraph is imported here at module level, so that commands which only
read the registry or the history columns start fast. WAL mode lets readers
run beside a writer; `synchronous=NORMAL` commits each checkpoint without an fsync per step
(a power cut may lose the last steps, a crashed process loses nothing that was committed).
"""

from __future__ import annotations

import contextlib

import functools
import os
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from runtime.errors import DatabaseMissing, DatabaseUnusable
from runtime.redact import redact
from runtime.schema import SCHEMA_VERSION, create_control_tables, create_schedule_tables, ensure_checkpoint_tables

if TYPE_CHECKING:
    from runtime.saver import AgentSaver

DEFAULT_DB = Path("checkpoints") / "agent.db"
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
        self._saver: AgentSaver | None = None

    def checkpointer(self) -> AgentSaver:
        """The synchronous saver on the registry's connection, for reading history and state."""
        if self._saver is None:
            from runtime.saver import AgentSaver

            self._saver = AgentSaver(self.conn, serde=_redacting_serializer())
        return self._saver

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[tuple[object, object]]:
        """The async checkpointer and store that runs write through, on their own connections."""
        from runtime.saver import open_saver

        # The saver's own sqlite3 connection, used from the event loop (see AgentSaver._arun).
        saver = open_saver(str(self.path), serde=_redacting_serializer(), fast_async=True)
        try:
            async with _store_class().from_conn_string(str(self.path)) as store:
                await _tune_async(store.conn)
                await store.setup()
                yield saver, store
        finally:
            # Writes still queued (a task that finished beside one stopped by an error, a pause
            # or a signal) are stored before the connection goes; if the database refuses them
            # now, the run has already failed and the task runs again on resume.
            with contextlib.suppress(sqlite3.Error):
                saver.flush()
            saver.conn.close()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _redacting_serializer() -> Any:
    return _redacting_serializer_class()()


@functools.cache
def _redacting_serializer_class() -> type:
    """LangGraph's serializer, keeping secrets out of the errors it stores (built on first use:
    importing LangGraph is slow, and read-only commands do without it)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    class _RedactingSerializer(JsonPlusSerializer):
        """A failed task's exception is saved (as its repr) among the thread's writes, and an HTTP
        error can echo a masked API key (OpenAI's 401 does); it is redacted before it is written.
        """

        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            if isinstance(obj, BaseException):
                obj = redact(repr(obj))  # what JsonPlusSerializer stores for an exception, redacted
            return super().dumps_typed(obj)

    return _RedactingSerializer


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
            _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    return Database(path, conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older (or new, empty) file to SCHEMA_VERSION in one transaction.

    BEGIN IMMEDIATE makes concurrent openers take turns; the second finds the work done.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.execute(_REGISTRY)
            ensure_checkpoint_tables(conn, _redacting_serializer)
            _store_tables(conn)
            create_control_tables(conn)
            create_schedule_tables(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _store_tables(conn: sqlite3.Connection) -> None:
    """Apply LangGraph's store migrations here, inside the migration transaction.

    The store's own setup applies them without a transaction: two processes opening a new file at
    once both try, and one fails on `store_migrations`' primary key. Done here first, each
    process's setup finds them applied.
    """
    from langgraph.store.sqlite.base import MIGRATIONS

    conn.execute("CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY)")
    row = conn.execute("SELECT v FROM store_migrations ORDER BY v DESC LIMIT 1").fetchone()
    start = -1 if row is None else row[0]
    for version, sql in enumerate(MIGRATIONS[start + 1 :], start=start + 1):
        conn.execute(sql)
        conn.execute("INSERT INTO store_migrations (v) VALUES (?)", (version,))


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
    """Create the file, and the directories it needs, for its owner only (0600, directories
    0700), whatever the umask, before SQLite opens it (SQLite gives its -wal and -shm files the
    database's mode)."""
    try:
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process made it first
    except OSError as exc:
        raise DatabaseUnusable(f"cannot create {path}: {exc.strerror}", "choose a writable --db path") from None
    try:
        os.fchmod(fd, 0o600)  # the mode given to open() is masked by the umask
    finally:
        os.close(fd)


def make_private_dirs(directory: Path) -> None:
    """Create the missing directories down to `directory`, each 0700 whatever the umask (mkdir's
    mode is masked by it, and `mkdir -p` gives the parents the default mode). Directories that
    exist, or that another process makes meanwhile, are left as they are."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(new, 0o700)
