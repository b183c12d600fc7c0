"""Opening the database: the one place where the checkpointer and the store are opened.

One SQLite file holds LangGraph's checkpoints and writes (our `AgentSaver`, runtime/store/saver.py,
tables in runtime/store/schema.py), the LangGraph store (per-item data) and this project's thread
registry. Nothing from LangGraph is imported here at module level, so that commands which only
read the registry or the history columns start fast. WAL mode lets readers
run beside a writer; `synchronous=NORMAL` commits each checkpoint without an fsync per step
(a power cut may lose the last steps, a crashed process loses nothing that was committed).

Every connection the project opens comes from `connect` here, so that all writers share one
rule for taking turns at SQLite's single write lock (`WaitingConnection`), and a `Database`
gives each Python thread a connection of its own, so that one thread's transaction never takes
in another thread's statements.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import random
import sqlite3
import threading
import time
import weakref
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from runtime.errors import Command, DatabaseMissing, DatabaseUnusable, Message, Placeholder, Setting, StorageFull
from runtime.redact import redact
from runtime.store.schema import SCHEMA_VERSION, create_control_tables, create_schedule_tables, ensure_checkpoint_tables

if TYPE_CHECKING:
    from runtime.store.saver import AgentSaver

DEFAULT_DB = Path("checkpoints") / "agent.db"
BUSY_TIMEOUT_MS = 250
"""How long SQLite's own busy handler waits in one attempt at the write lock. It polls often
only in its first quarter second (later every 100 ms, when a process that is running always
beats one that sleeps), so `WaitingConnection` retries short attempts instead of one long one."""
LOCK_WAIT_SECONDS = 600.0
"""How long one write waits in all for its turn at the write lock before it fails with
"database is locked": long enough for dozens of processes writing one file at once, or for a
`vacuum` of a large one."""
RESERVE_BYTES = 128 * 1024
"""Disk space a run keeps beside the database (`<file>-reserve`) while the disk has room, and
gives up when it is full, so that it can still record how it ended (a few pages of the WAL)."""
_RETRY_FIRST, _RETRY_CAP = 0.002, 0.05
"""Seconds between two attempts: doubling from the first to the cap, with full jitter, so that
waiters that failed together do not all try again together."""

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
    """An open database file. `conn` is the calling thread's sqlite3 connection (for the registry
    and for reads); `checkpointer()` the calling thread's synchronous saver on it."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._local = threading.local()
        self._local.conn = self._first = conn
        # The connections opened for other threads, closed with the database (or with their thread).
        self._conns: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._conns_lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            with self._conns_lock:
                self._conns.add(conn)
        return conn

    def checkpointer(self) -> AgentSaver:
        """The synchronous saver on this thread's connection, for reading history and state."""
        saver = getattr(self._local, "saver", None)
        if saver is None or saver.conn is not self.conn:
            from runtime.store.saver import AgentSaver

            saver = self._local.saver = AgentSaver(self.conn, serde=_redacting_serializer())
        return saver

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[tuple[object, object]]:
        """The async checkpointer and store that runs write through, on their own connections."""
        from runtime.store.saver import open_saver

        # The saver's own sqlite3 connection, used from the event loop (see AgentSaver._arun).
        saver = open_saver(str(self.path), serde=_redacting_serializer(), fast_async=True)
        try:
            async with _open_store(self.path) as store:
                yield saver, store
        finally:
            # Writes still queued (a task that finished beside one stopped by an error, a pause
            # or a signal) are stored before the connection goes, waiting their turn like any
            # write (the store, whose transactions need the loop, is closed by now); if the
            # database refuses them, the run has already failed and the task runs again on resume.
            with contextlib.suppress(sqlite3.Error):
                saver.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                saver.flush()
            saver.conn.close()

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + "-reserve")

    def keep_reserve(self, hint: str) -> None:
        """Make sure the reserve (RESERVE_BYTES beside the file) is there before a run starts;
        raise StorageFull, naming `hint`, when the disk has no room left for it."""
        reserve = self.reserve_path
        try:
            if reserve.stat().st_size >= RESERVE_BYTES:
                return
        except FileNotFoundError:
            pass
        try:
            fd = os.open(reserve, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.write(fd, bytes(RESERVE_BYTES))
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                return  # a place where it cannot be made (read-only, say) fails the run's first write instead
            with contextlib.suppress(OSError):
                reserve.unlink()
            raise StorageFull(f"the disk that holds {self.path} is full", hint) from None

    def give_up_reserve(self) -> bool:
        """Free the reserve's space for the writes that record how a run ended; False if there was none."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        with self._conns_lock:
            conns = [self._first, *self._conns]
        for conn in conns:
            conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection to an existing database file, as every part of the project opens one:
    autocommit (transactions are begun explicitly), usable from any thread, writes that wait
    their turn (`WaitingConnection`), `synchronous=NORMAL` (the file is in WAL mode)."""
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=WaitingConnection
    )
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class WaitingConnection(sqlite3.Connection):
    """A connection whose statements wait their turn at the write lock, within LOCK_WAIT_SECONDS.

    SQLite answers a write that finds the lock taken with SQLITE_BUSY once its busy handler
    gives up; with many processes writing one file, a waiter can lose every poll of a 30 s
    wait. A statement that found the database busy did nothing, so it is tried again, after a
    short sleep with jitter, until LOCK_WAIT_SECONDS have passed. Only a statement that begins
    its own transaction is retried (`BEGIN IMMEDIATE`, or one statement in autocommit): inside a
    transaction a statement cannot be repeated alone, which is why every write transaction
    begins IMMEDIATE. A connection whose busy timeout is 0 asked not to wait (the saver on the
    event loop, which moves a busy call to a thread): it gets SQLITE_BUSY at once, as asked.
    """

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return _in_turn(self, super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return _in_turn(self, super().executemany, sql, parameters)

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:
        return super().cursor(factory or WaitingCursor)


class WaitingCursor(sqlite3.Cursor):
    """A cursor of a WaitingConnection, whose statements wait their turn the same way."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return _in_turn(self.connection, super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return _in_turn(self.connection, super().executemany, sql, parameters)


def _in_turn(conn: sqlite3.Connection, run: Any, sql: str, parameters: Any) -> Any:
    if conn.in_transaction:
        return run(sql, parameters)
    deadline = None
    attempt = 0
    while True:
        try:
            return run(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or conn.in_transaction or _asked_not_to_wait(conn):
                raise
            now = time.monotonic()
            deadline = deadline or now + LOCK_WAIT_SECONDS
            if now >= deadline:
                raise
            time.sleep(random.uniform(0, min(_RETRY_CAP, _RETRY_FIRST * 2**attempt)))
            attempt += 1


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY in any of its forms (a taken write lock, a changed snapshot, a recovery)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_BUSY
    return "database is locked" in str(exc)


def is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk (or the file system's quota) has no room for the write."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc)


def _asked_not_to_wait(conn: sqlite3.Connection) -> bool:
    return sqlite3.Connection.execute(conn, "PRAGMA busy_timeout").fetchone()[0] == 0


@asynccontextmanager
async def _open_store(path: Path) -> AsyncIterator[object]:
    """LangGraph's async SQLite store, on an aiosqlite connection made as `connect` makes one."""
    import aiosqlite

    async with aiosqlite.connect(
        str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=WaitingConnection
    ) as conn:
        await conn.execute("PRAGMA synchronous=NORMAL")
        store = _store_class()(conn)
        await store.setup()
        yield store


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


def open_database(path: str | os.PathLike | None = None, *, create: bool = False) -> Database:
    """Open (and with `create`, make) the database; raise a domain error a user can act on."""
    path = Path(path) if path is not None else default_db_path()
    if not path.exists():
        if not create:
            raise DatabaseMissing(
                f"no database at {path}",
                Message(
                    "start a thread with: {run} (or point {db} / AGENT_DB at yours)",
                    run=Command("run", graph="GRAPH", thread_id="ID", input=Placeholder("JSON")), db=Setting("path"),
                ),
            )
        _create_private_file(path)
    try:
        conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=WaitingConnection
        )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise DatabaseUnusable(
                f"{path} was written by a newer version of agent (schema {version}, this one reads {SCHEMA_VERSION})",
                Message("upgrade agent (pip install -U agent) or use another {}", Setting("path")),
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


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> DatabaseUnusable | StorageFull:
    if is_full(exc):  # a new file, or one being converted, on a disk with no room left
        return StorageFull(f"the disk that holds {path} is full", "free some space, then try again (the file is left as it was)")
    if not os.access(path.parent, os.W_OK) or not os.access(path, os.W_OK):
        return DatabaseUnusable(
            f"cannot use {path}: it or its directory is read-only (SQLite writes a -wal and -shm file beside it)",
            Message("copy the database somewhere writable and point {} at the copy, or fix the permissions", Setting("path")),
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
        raise DatabaseUnusable(f"cannot create {path}: {exc.strerror}", Message("choose a writable {} path", Setting("path"))) from None
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
