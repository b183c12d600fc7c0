"""The LangGraph store's rows in SQLite (its `store` table), read and copied by thread namespace.

A thread keeps its data under namespaces (kind, thread label, ...), stored dotted in `prefix`:
`items.<label>`, `results.<label>` (state/storage.py). The store table is made when a database
is first set up; before that there is nothing to find (runtime/store/seam.py, `Namespaces`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from typing import Iterable, Iterator

from runtime.store.seam import StoreItem


def prefixes(conn: sqlite3.Connection) -> list[str]:
    try:
        return [prefix for (prefix,) in conn.execute("SELECT DISTINCT prefix FROM store").fetchall()]
    except sqlite3.OperationalError:  # no store table yet
        return []


def of_thread(conn: sqlite3.Connection, label: str) -> list[str]:
    """The namespaces whose second part is the thread's label."""
    return [prefix for prefix in prefixes(conn) if prefix.split(".")[1:2] == [label]]


def copy(conn: sqlite3.Connection, source_label: str, target_label: str) -> int:
    """Copy the source thread's rows under the target's namespaces (inside the caller's transaction)."""
    found = of_thread(conn, source_label)
    if not found:
        return 0
    columns = [row[1] for row in conn.execute("PRAGMA table_info(store)") if row[1] != "prefix"]
    listed = ", ".join(columns)
    copied = 0
    for prefix in found:
        kind, _, rest = prefix.split(".", 2) + [""] * (3 - len(prefix.split(".", 2)))
        new_prefix = ".".join(part for part in (kind, target_label, rest) if part)
        copied += conn.execute(
            f"INSERT INTO store (prefix, {listed}) SELECT ?, {listed} FROM store WHERE prefix = ?", (new_prefix, prefix)
        ).rowcount
    return copied


def items(conn: sqlite3.Connection, prefix: str) -> Iterator[StoreItem]:
    """The items under `prefix`, by key, read as they are needed."""
    try:
        cursor = conn.execute("SELECT key, value, created_at, updated_at FROM store WHERE prefix = ? ORDER BY key", (prefix,))
    except sqlite3.OperationalError:  # no store table yet
        return
    for key, value, created_at, updated_at in cursor:
        yield StoreItem(key, json.loads(value), _epoch(created_at), _epoch(updated_at))


def put_items(conn: sqlite3.Connection, prefix: str, items: Iterable[StoreItem]) -> int:
    """Store items under `prefix` with their times (inside the caller's transaction)."""
    count = 0
    for item in items:
        conn.execute(
            "INSERT OR REPLACE INTO store (prefix, key, value, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (prefix, item.key, json.dumps(item.value, ensure_ascii=False), _timestamp(item.created_at), _timestamp(item.updated_at)),
        )
        count += 1
    return count


def _epoch(text: str | None) -> float:
    """The store's times, SQLite's CURRENT_TIMESTAMP (UTC text), as epoch seconds."""
    if not text:
        return 0.0
    return datetime.fromisoformat(str(text)).replace(tzinfo=timezone.utc).timestamp()


def _timestamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "")


def result_counts(conn: sqlite3.Connection, prefix: str, round_: int, since: float | None) -> list[tuple]:
    """Per `status` of the results under `prefix`: (status, given up before round `round_`,
    count, input tokens, output tokens, written at or after `since`)."""
    # The store writes its times as SQLite's CURRENT_TIMESTAMP does: UTC text.
    since_text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since)) if since is not None else None
    try:
        return conn.execute(
            "SELECT json_extract(value, '$.status'), "
            "SUM(COALESCE(json_extract(value, '$.round'), 0) < ?), COUNT(*), "
            "SUM(COALESCE(json_extract(value, '$.input_tokens'), 0)), "
            "SUM(COALESCE(json_extract(value, '$.output_tokens'), 0)), "
            "SUM(updated_at >= ?) "
            "FROM store WHERE prefix = ? GROUP BY 1",
            (round_, since_text, prefix),
        ).fetchall()
    except sqlite3.OperationalError as exc:  # no store table yet: nothing was written
        if "no such table" in str(exc):
            return []
        raise


def results(conn: sqlite3.Connection, prefix: str, items_prefix: str, status: str | None) -> Iterator[tuple[str, dict, dict | None]]:
    """(key, result, item or None) of the results under `prefix` (of one status, if given), by
    key, each with the item of the same key under `items_prefix`, streamed."""
    query = (
        "SELECT r.key, r.value, i.value FROM store r LEFT JOIN store i ON i.prefix = ? AND i.key = r.key "
        "WHERE r.prefix = ?" + (" AND json_extract(r.value, '$.status') = ?" if status else "") + " ORDER BY r.key"
    )
    try:
        cursor = conn.execute(query, (items_prefix, prefix, *([status] if status else [])))
    except sqlite3.OperationalError:  # no store table yet: no graph has written results
        return
    for key, value, item in cursor:
        yield key, json.loads(value), json.loads(item) if item else None


def has_items(conn: sqlite3.Connection, prefix: str) -> bool:
    try:
        return conn.execute("SELECT 1 FROM store WHERE prefix = ? LIMIT 1", (prefix,)).fetchone() is not None
    except sqlite3.OperationalError:
        return False


def delete_of_thread(conn: sqlite3.Connection, label: str) -> int:
    """Delete the rows of every namespace of the thread (inside the caller's transaction); how many."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('store', 'store_vectors')")}
    if "store" not in tables:
        return 0
    removed = 0
    for prefix in of_thread(conn, label):
        removed += conn.execute("DELETE FROM store WHERE prefix = ?", (prefix,)).rowcount
        if "store_vectors" in tables:
            conn.execute("DELETE FROM store_vectors WHERE prefix = ?", (prefix,))
    return removed


def delete_value(conn: sqlite3.Connection, prefix: str, key: str) -> None:
    """Delete one item (inside the caller's transaction)."""
    conn.execute("DELETE FROM store WHERE prefix = ? AND key = ?", (prefix, key))
