"""Immediate transactions: the one way code above the saver takes SQLite's write lock."""

from __future__ import annotations

import sqlite3


class immediate:
    """BEGIN IMMEDIATE ... COMMIT: a read-check-write (a lease, a schedule's occurrence, a control
    request) as one atomic step, the write lock taken before the read.

    Inside a transaction already open on the connection it is a savepoint of that transaction,
    so that a step made of several of these (a fork: a new thread, its checkpoint and its data)
    commits as one.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> None:
        self.nested = self.conn.in_transaction
        self.conn.execute("SAVEPOINT agent_step" if self.nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.nested:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        elif exc_type is None:
            self.conn.execute("RELEASE agent_step")
        else:
            self.conn.execute("ROLLBACK TO agent_step")
            self.conn.execute("RELEASE agent_step")


class snapshot:
    """BEGIN ... COMMIT around reads only: every read inside sees the database as it was at the
    first one, while writers go on (WAL), so that what is read together fits together (a thread
    exported while it runs). Inside a transaction already open it adds nothing."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = False

    def __enter__(self) -> None:
        self.nested = self.conn.in_transaction
        if not self.nested:
            self.conn.execute("BEGIN DEFERRED")

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.nested and self.conn.in_transaction:
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
