"""Connections: the one place that opens SQLite connections and sets their PRAGMAs.

Every connection the project opens comes from here, so that all writers share one rule for
taking turns at SQLite's single write lock (`WaitingConnection`): the registry's and the
readers' (`connect`), the saver's own for a run (the same), the LangGraph store's
(`connect_async`) and the short-lived one that copies the WAL into the file (`checkpoint_wal`).
The file is in WAL mode (`use_wal`), so readers run beside a writer; `synchronous=NORMAL`
commits each checkpoint without an fsync per step (a power cut may lose the last steps, a
crashed process loses nothing that was committed).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

BUSY_TIMEOUT_MS = 250
"""How long SQLite's own busy handler waits in one attempt at the write lock. It polls often
only in its first quarter second (later every 100 ms, when a process that is running always
beats one that sleeps), so `WaitingConnection` retries short attempts instead of one long one."""
WORKER_BUSY_TIMEOUT_MS = 30_000
"""The busy handler's wait on a worker thread, where waiting holds up nothing else: a saver call
that found the database locked on the event loop and moved to a thread to wait for it, and the
connection of a background WAL checkpoint."""
NO_WAIT = 0
"""The busy timeout of a saver that runs calls on the event loop: a locked database answers at
once, and the call moves to a worker thread (waiting on the loop could deadlock)."""
LOCK_WAIT_SECONDS = 600.0
"""How long one write waits in all for its turn at the write lock before it fails with
"database is locked": long enough for dozens of processes writing one file at once, or for a
`vacuum` of a large one."""
_RETRY_FIRST, _RETRY_CAP = 0.002, 0.05
"""Seconds between two attempts: doubling from the first to the cap, with full jitter, so that
waiters that failed together do not all try again together."""


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection to a database file, as every part of the project opens one: autocommit
    (transactions are begun explicitly), usable from any thread, writes that wait their turn
    (`WaitingConnection`), `synchronous=NORMAL` (the file is in WAL mode)."""
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=WaitingConnection
    )
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@asynccontextmanager
async def connect_async(path: str | os.PathLike) -> AsyncIterator[Any]:
    """An aiosqlite connection (LangGraph's async store runs on one) made as `connect` makes one."""
    import aiosqlite

    async with aiosqlite.connect(
        str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, factory=WaitingConnection
    ) as conn:
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield conn


def use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so): readers then run beside the one writer. A file
    already in it is left alone, as switching takes the write lock."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")


def set_busy_timeout(conn: sqlite3.Connection, milliseconds: int) -> None:
    """How long the connection's busy handler waits in one attempt (BUSY_TIMEOUT_MS,
    WORKER_BUSY_TIMEOUT_MS or NO_WAIT)."""
    conn.execute(f"PRAGMA busy_timeout={int(milliseconds)}")


def stop_automatic_wal_checkpoints(conn: sqlite3.Connection) -> None:
    """No WAL checkpoint inside this connection's commits: `checkpoint_wal` does the work beside it."""
    conn.execute("PRAGMA wal_autocheckpoint=0")


def checkpoint_wal(path: str | os.PathLike) -> None:
    """Copy what the WAL holds into the database file (a PASSIVE checkpoint: it waits for no
    reader or writer), on a connection of its own. A plain connection: a checkpoint that finds
    the work taken gives up, and the next one catches up."""
    conn = sqlite3.connect(path, timeout=WORKER_BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


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


def _asked_not_to_wait(conn: sqlite3.Connection) -> bool:
    return sqlite3.Connection.execute(conn, "PRAGMA busy_timeout").fetchone()[0] == NO_WAIT


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY in any of its forms (a taken write lock, a changed snapshot, a recovery)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_BUSY
    return "database is locked" in str(exc)


def is_busy_or_locked(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY, or SQLITE_LOCKED (a table another statement of the same connection holds):
    either way the call must wait for someone else, which the event loop must not do."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk (or the file system's quota) has no room for the write."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc)
