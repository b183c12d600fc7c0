"""Opening the database: the one place where the checkpointer and the store are opened.

One SQLite file holds LangGraph's checkpoints and writes (our `AgentSaver`, runtime/store/saver.py,
tables in runtime/store/schema.py), the LangGraph store (per-item data, runtime/store/item_store.py)
and this project's thread registry. Nothing from LangGraph is imported here at module level, so
that commands which only read the registry or the history columns start fast.

Connections come from runtime/store/connect.py (the one factory, its PRAGMAs and the rule by
which writers take turns at the write lock); a `Database` gives each Python thread a connection
of its own, so that one thread's transaction never takes in another thread's statements.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import weakref
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator

from runtime.errors import Command, DatabaseMissing, DatabaseUnusable, Message, Placeholder, Setting, StorageFull
from runtime.store.columns import ColumnReader
from runtime.store.connect import connect, is_full, use_wal
from runtime.store.parts import server_location
from runtime.store.item_store import create_item_store_tables, open_item_store
from runtime.store.schema import RATES_TABLE, SCHEMA_VERSION, create_control_tables, create_fleet_tables, create_schedule_tables, ensure_checkpoint_tables
from runtime.store.serde import redacting_serializer
from runtime.store.transaction import immediate

if TYPE_CHECKING:
    from runtime.store.saver import AgentSaver

DEFAULT_DB = Path("checkpoints") / "agent.db"
RESERVE_BYTES = 128 * 1024
"""Disk space a run keeps beside the database (`<file>-reserve`) while the disk has room, and
gives up when it is full, so that it can still record how it ended (a few pages of the WAL)."""

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
    and for reads); `checkpointer()` the calling thread's synchronous saver on it, and
    `checkpoint_columns()` the reads of the checkpoints' plain columns, on it too."""

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

            saver = self._local.saver = AgentSaver(self.conn, serde=redacting_serializer())
        return saver

    def checkpoint_columns(self) -> ColumnReader:
        """The checkpoint table's plain columns on this thread's connection (history, branches,
        next tasks), read without importing LangGraph; the saver has the same reads."""
        return ColumnReader(self.conn)

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[tuple[object, object]]:
        """The async checkpointer and store that runs write through, on their own connections."""
        from runtime.store.saver import open_saver

        # The saver's own sqlite3 connection, used from the event loop (see AgentSaver._arun).
        saver = open_saver(str(self.path), serde=redacting_serializer(), fast_async=True)
        try:
            async with open_item_store(self.path) as store:
                yield saver, store
        finally:
            # Writes still queued (a task that finished beside one stopped by an error, a pause
            # or a signal) are stored before the connection goes (the store, whose transactions
            # need the loop, is closed by now).
            saver.close()

    def job_queue(self) -> None:
        """A job queue that dispatches queued runs across machines: none for a file (a worker
        reads the run queue itself, runtime/fleet/worker.py)."""
        return None

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


def open_database(path: str | os.PathLike | None = None, *, create: bool = False) -> Database:
    """Open (and with `create`, make) the database; raise a domain error a user can act on.

    A postgresql:// URL opens that PostgreSQL database (runtime/store/postgres/database.py)."""
    location = path if path is not None else (os.environ.get("AGENT_DB") or DEFAULT_DB)
    if server_location(location):
        from runtime.store.postgres.database import open_postgres

        return open_postgres(str(location), create=create)  # type: ignore[return-value]
    path = Path(location)
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
        conn = connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise DatabaseUnusable(
                f"{path} was written by a newer version of agent (schema {version}, this one reads {SCHEMA_VERSION})",
                Message("upgrade agent (pip install -U agent) or use another {}", Setting("path")),
            )
        use_wal(conn)
        if version < SCHEMA_VERSION:
            _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from None
    return Database(path, conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older (or new, empty) file to SCHEMA_VERSION in one transaction.

    The transaction takes the write lock as it begins, so concurrent openers take turns; the
    second finds the work done.
    """
    with immediate(conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.execute(_REGISTRY)
            ensure_checkpoint_tables(conn, redacting_serializer)
            create_item_store_tables(conn)
            create_control_tables(conn)
            create_schedule_tables(conn)
            create_fleet_tables(conn)
            conn.execute(RATES_TABLE)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


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
