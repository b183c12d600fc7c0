"""Connections to a PostgreSQL database: the one factory, and how a database is named to a user.

Connections are in autocommit mode, so that a statement outside `transaction.immediate` commits
at once, as SQLite's do; a transaction is begun explicitly where one is wanted. Rows come back
as tuples, JSONB columns as Python values.
"""

from __future__ import annotations

import os

import psycopg


def lease_seconds() -> float:
    """AGENT_LEASE_SECONDS, as the registry reads it (runtime/threads/registry.py checks it)."""
    try:
        return max(1.0, float(os.environ.get("AGENT_LEASE_SECONDS") or 30))
    except ValueError:
        return 30.0


def session_options() -> dict[str, object]:
    """What every connection of the project is opened with: its name in pg_stat_activity
    (`agent PID`), and what makes sure that a process cut off from the
    server, or stopped (SIGSTOP), cannot hold rows or locks past its lease:

    - `tcp_user_timeout` and keepalives: a statement whose packets go unanswered for the lease
      fails on the client, instead of waiting for TCP to give up after many minutes;
    - `idle_in_transaction_session_timeout` (set by `configure`): the server ends a session
      that sits in a transaction for longer than the lease, releasing what it locked (a runner's
      fenced put holds its thread's row FOR SHARE, which a takeover must update).
    """
    lease_ms = int(lease_seconds() * 1000)
    return {
        "application_name": f"agent {os.getpid()}",
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": max(1, lease_ms // 3000),
        "keepalives_interval": max(1, lease_ms // 6000),
        "keepalives_count": 3,
        "tcp_user_timeout": lease_ms,
        "options": f"-c idle_in_transaction_session_timeout={lease_ms}",
    }


def connect(url: str) -> psycopg.Connection:
    """A connection to the database at `url` (a postgresql:// URL or a libpq conninfo)."""
    return psycopg.connect(url, autocommit=True, **session_options())  # type: ignore[arg-type]


def describe(conn: psycopg.Connection) -> str:
    """The database as a message names it: never with its password, which a URL may carry."""
    info = conn.info
    return f"the PostgreSQL database {info.dbname} on {info.host}:{info.port}"
