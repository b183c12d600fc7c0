"""Where the fleet benchmark's shapes keep their data, and the few reads the bench makes of it.

Every shape of bench/fleet.py runs on a database of its own: a new SQLite file in the bench's
folder (`SqliteFiles`), or with `--postgres` a new database with a random name on that server,
dropped after the shape (`PostgresServer`). The bench's SQL is the same on both but for two
things a backend fills in: the parameter marker (`{param}`), and where a checkpoint's step is
(`{step}`): a column of our SQLite saver's `checkpoints` table, the metadata of LangGraph's
PostgreSQL one (`(metadata->>'step')::int`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def default_server() -> str:
    """The server `--postgres` names when given no URL: AGENT_TEST_POSTGRES, else the local one."""
    return os.environ.get("AGENT_TEST_POSTGRES") or DEFAULT_SERVER


class SqliteFiles:
    """Each shape on a new SQLite file."""

    backend = "SQLite"
    stock = ("sqlite", "AsyncSqliteSaver")
    """The stock saver's gather: fleet_baselines.py's name for it, and the shape's."""
    progress = "SELECT coalesce(max(rowid), 0) FROM checkpoints"
    """Checkpoints stored so far. Rows are appended (a rowid table, nothing deleted), so
    max(rowid) is one B-tree descent where a count would scan the table every poll."""

    def __init__(self, work: Path) -> None:
        self.work = work

    @contextlib.contextmanager
    def fresh(self, name: str) -> Iterator[str]:
        yield str(self.work / f"{name}.db")

    def read_one(self, db: str, sql: str, *params: object) -> int:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql.format(param="?", step="step"), params).fetchone()[0]

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"


class PostgresServer:
    """Each shape on a new database of the server at `server`, whose role may create databases."""

    backend = "PostgreSQL"
    stock = ("postgres", "AsyncPostgresSaver")
    progress = "SELECT count(*) FROM checkpoints"
    """Checkpoints stored so far (a few thousand narrow rows a scan at the sizes this runs at)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._conns: dict[str, Any] = {}

    @contextlib.contextmanager
    def fresh(self, name: str) -> Iterator[str]:
        """A new database's URL; dropped after, with any session still on it."""
        import psycopg

        dbname = f"agent_bench_{name.replace('-', '_')}_{secrets.token_hex(4)}"
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {dbname}")
        url = urlunsplit(urlsplit(self.server)._replace(path="/" + dbname))
        try:
            yield url
        finally:
            conn = self._conns.pop(url, None)
            if conn is not None:
                conn.close()
            with psycopg.connect(self.server, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")

    def read_one(self, db: str, sql: str, *params: object) -> int:
        """One figure, on a connection kept for the database while it lives (the bench polls)."""
        import psycopg

        conn = self._conns.get(db)
        if conn is None:
            conn = self._conns[db] = psycopg.connect(db, autocommit=True)
        return conn.execute(sql.format(param="%s", step="(metadata->>'step')::int"), params).fetchone()[0]

    def describe(self) -> str:
        import importlib.metadata as md

        import psycopg

        with psycopg.connect(self.server, autocommit=True) as admin:
            version = admin.execute("SHOW server_version").fetchone()[0]
            settings = ", ".join(f"{k}={admin.execute(f'SHOW {k}').fetchone()[0]}" for k in ("synchronous_commit", "shared_buffers", "max_connections"))
        host = urlsplit(self.server).hostname or "localhost"
        names = ("langgraph-checkpoint-postgres", "psycopg", "psycopg-pool", "procrastinate")
        packages = ", ".join(f"{p} {md.version(p)}" for p in names)
        return f"PostgreSQL {version} on {host} ({settings}); {packages}"
