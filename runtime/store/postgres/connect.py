"""Connections to a PostgreSQL database: the one factory, and how a database is named to a user.

Connections are in autocommit mode, so that a statement outside `transaction.immediate` commits
at once, as SQLite's do; a transaction is begun explicitly where one is wanted. Rows come back
as tuples, JSONB columns as Python values.
"""

from __future__ import annotations

import psycopg


def connect(url: str) -> psycopg.Connection:
    """A connection to the database at `url` (a postgresql:// URL or a libpq conninfo)."""
    return psycopg.connect(url, autocommit=True)


def describe(conn: psycopg.Connection) -> str:
    """The database as a message names it: never with its password, which a URL may carry."""
    info = conn.info
    return f"the PostgreSQL database {info.dbname} on {info.host}:{info.port}"
