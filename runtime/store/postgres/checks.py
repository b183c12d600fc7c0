"""What `agent doctor` reads of a PostgreSQL database: its tables, schema version, and rows
that lost their owner (as SQLite's, runtime/store/checks.py).

Everything here reads, on a connection whose transactions are read only
(default_transaction_read_only), so that a database of another schema version is examined as it
is. The checkpoint tables are LangGraph's PostgresSaver's: `checkpoint_writes` where SQLite has
`writes`, and no plain `source` or `next` columns (the source is read from the metadata).

What does not carry over from SQLite:
- `integrity`: PostgreSQL has no whole-database check a client can run (amcheck is an extension
  that needs installing and rights); damaged pages surface as errors on the reads that meet them,
  so it finds nothing to report.
- `latest_checkpoints`: the next tasks are not recorded by PostgresSaver; always None.
"""

from __future__ import annotations

import psycopg

from runtime.store.postgres.schema import stored_version
from runtime.store.seam import Layout, StorageUnreadable


def open_read_only(path: str) -> psycopg.Connection:
    """A read-only connection to the database at `path` (a postgresql:// URL or conninfo)."""
    try:
        conn = psycopg.connect(path, autocommit=True, options="-c default_transaction_read_only=on")
    except psycopg.Error as exc:
        raise StorageUnreadable(str(exc).strip()) from None
    try:
        conn.execute("SELECT count(*) FROM pg_catalog.pg_class").fetchone()
    except psycopg.Error as exc:
        conn.close()
        raise StorageUnreadable(str(exc).strip()) from None
    return conn


def layout(conn: psycopg.Connection) -> Layout:
    from runtime.store.postgres.schema import SCHEMA_VERSION

    return Layout("PostgreSQL", SCHEMA_VERSION, ("agent_threads", "checkpoints", "checkpoint_blobs", "checkpoint_writes", "store"), "checkpoint_writes")


def integrity(conn: psycopg.Connection) -> list[str]:
    """Nothing found: see the module's docstring."""
    return []


def tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()
    return {r[0] for r in rows}


def schema_version(conn: psycopg.Connection) -> int:
    return stored_version(conn)


def has_table(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None


def orphaned_writes(conn: psycopg.Connection) -> list[tuple[str, int]]:
    if not has_table(conn, "checkpoint_writes"):
        return []
    return conn.execute(
        "SELECT thread_id, count(*) FROM checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
        "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id) GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()


def orphaned_blobs(conn: psycopg.Connection) -> list[tuple[str, int]]:
    if not has_table(conn, "checkpoint_blobs"):
        return []
    return conn.execute(
        "SELECT thread_id, count(*) FROM checkpoint_blobs b WHERE NOT EXISTS "
        "(SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns) "
        "GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()


def latest_checkpoints(conn: psycopg.Connection, thread_id: str, limit: int) -> list[tuple[str | None, str | None, str | None]]:
    if not has_table(conn, "checkpoints"):
        return []
    return conn.execute(
        "SELECT metadata->>'source', metadata::text, NULL::text FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id DESC LIMIT %s",
        (thread_id, limit),
    ).fetchall()


RECLAIMED_TABLES = (
    "checkpoints", "checkpoint_blobs", "checkpoint_writes", "store", "agent_threads", "agent_spend", "agent_control",
    "agent_progress", "agent_schedules", "agent_schedule_runs", "agent_queue", "agent_workers", "agent_rates",
)  # fmt: skip
"""The tables `reclaim` rewrites: the project's and LangGraph's, never another's in the database."""


def storage_bytes(conn: psycopg.Connection) -> int:
    """The bytes the database takes on the server (pg_database_size)."""
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def reclaimable_bytes(conn: psycopg.Connection) -> int:
    """An estimate of what `reclaim` gives back: each table's size times its share of dead rows
    (PostgreSQL's statistics, as of its last analysis)."""
    row = conn.execute(
        "SELECT COALESCE(SUM(pg_total_relation_size(relid) * n_dead_tup / NULLIF(n_live_tup + n_dead_tup, 0)), 0) "
        "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
        (list(RECLAIMED_TABLES),),
    ).fetchone()
    return int(row[0] or 0)


def reclaim(conn: psycopg.Connection) -> None:
    """VACUUM (FULL, ANALYZE) of the project's and LangGraph's tables: PostgreSQL's own way of
    giving their free space back to the file system (each table is locked while it is rewritten)."""
    from psycopg import sql

    present = [name for name in RECLAIMED_TABLES if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None]
    for name in present:
        conn.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(name)))
