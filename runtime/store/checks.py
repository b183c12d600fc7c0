"""What `agent doctor` reads of a SQLite file: its integrity, schema, and rows that lost their owner.

Everything here reads; the file is opened read-only, so that a database of another schema
version is examined as it is (opening it as the runtime does would convert an older one).
What the facts mean, and the fix to suggest, is decided in runtime/doctor.py
(runtime/store/seam.py, `Maintenance`).
"""

from __future__ import annotations

import os
import sqlite3

from runtime.store.seam import Layout, StorageUnreadable


def open_read_only(path: str | os.PathLike) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.DatabaseError as exc:
        raise StorageUnreadable(str(exc)) from None
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StorageUnreadable(str(exc)) from None
    return conn


def integrity(conn: sqlite3.Connection) -> list[str]:
    """The first 20 problems SQLite's integrity check finds."""
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    return [] if rows == ["ok"] else rows


def layout(conn: sqlite3.Connection) -> Layout:
    from runtime.store.schema import EXPECTED_TABLES, SCHEMA_VERSION

    return Layout("SQLite", SCHEMA_VERSION, EXPECTED_TABLES, "writes")


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def orphaned_writes(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT thread_id, count(*) FROM writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id "
        "AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id) GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()


def orphaned_blobs(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT thread_id, count(*) FROM checkpoint_blobs b WHERE NOT EXISTS "
        "(SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns) "
        "GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()


def latest_checkpoints(conn: sqlite3.Connection, thread_id: str, limit: int) -> list[tuple[str | None, str | None, str | None]]:
    return conn.execute(
        "SELECT source, metadata, next FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT ?",
        (thread_id, limit),
    ).fetchall()


def storage_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the database takes on disk: its file and its WAL."""
    path = next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if path and os.path.exists(p))


def reclaimable_bytes(conn: sqlite3.Connection) -> int:
    """The bytes of free pages that `reclaim` would give back (after the WAL is copied in)."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn.execute("PRAGMA freelist_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]


def reclaim(conn: sqlite3.Connection) -> None:
    """Give the free pages back to the file system: VACUUM, with the WAL emptied before and after."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
