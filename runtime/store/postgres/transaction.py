"""Transactions on PostgreSQL: `immediate` (the write lock taken before the first read) and
`snapshot` (reads that fit together), as runtime/store/seam.py asks of every backend.

SQLite's write lock is one per file; here it is one transaction-level advisory lock per
database, LOCK_KEY, taken as the first statement of every `immediate` transaction, so that two
writers that read before they write (a lease, a schedule's occurrence) take turns as they do on
SQLite. Statements outside `immediate` do not take it: like SQLite's, they are atomic alone.
"""

from __future__ import annotations

import contextlib

import psycopg
from psycopg.pq import TransactionStatus

LOCK_KEY = 0x6167656E74
"""The advisory lock key that stands for the database's write lock ("agent" in ASCII). The
migration takes it too, at the session level (runtime/store/postgres/schema.py), so nothing
writes while the tables are being made."""


def in_transaction(conn: psycopg.Connection) -> bool:
    """Whether a transaction is open on the connection (failed or not)."""
    return conn.info.transaction_status != TransactionStatus.IDLE


class immediate:
    """BEGIN; SELECT pg_advisory_xact_lock(LOCK_KEY) ... COMMIT: a read-check-write as one step,
    the lock taken before the read and held until the transaction ends.

    Inside a transaction already open on the connection it is a savepoint of that transaction,
    so that a step made of several of these commits as one.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> None:
        self.nested = in_transaction(self.conn)
        if self.nested:
            self.conn.execute("SAVEPOINT agent_step")
            return
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        failed = self.conn.info.transaction_status == TransactionStatus.INERROR
        if not self.nested:
            # COMMIT of a failed transaction would roll it back without a word.
            self.conn.execute("COMMIT" if exc_type is None and not failed else "ROLLBACK")
        elif exc_type is None and not failed:
            self.conn.execute("RELEASE agent_step")
        else:
            self.conn.execute("ROLLBACK TO agent_step")
            self.conn.execute("RELEASE agent_step")
        if failed and exc_type is None:
            raise psycopg.errors.InFailedSqlTransaction("a statement failed inside the transaction, which was rolled back")


class snapshot:
    """BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY ... COMMIT around reads only: every read
    inside sees the database as it was at the first one, while writers go on. Inside a
    transaction already open it adds nothing."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> None:
        self.nested = in_transaction(self.conn)
        if not self.nested:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.nested and in_transaction(self.conn):
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
