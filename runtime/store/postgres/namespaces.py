"""LangGraph's PostgresStore rows (its table `store`), read and copied by thread namespace.

A thread keeps its data under namespaces stored dotted in `prefix` (state/storage.py), as on
SQLite (runtime/store/namespaces.py). The table is LangGraph's: made by PostgresStore.setup(),
with `value` JSONB and its times TIMESTAMPTZ (epoch seconds here, as the seam's StoreItem has
them). Before it is made there is nothing to find. Keys sort in byte order (COLLATE "C"), as
SQLite's do. Items are read in pages by key, each page one statement, so that the connection
stays free for other statements between them and a snapshot around them holds them together.

The times of rows the store writes are its server's clock (CURRENT_TIMESTAMP), which
`result_counts` compares with `since` from the caller's: on another machine, the two clocks
may differ by their skew.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice
from typing import Iterable, Iterator

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from runtime.store.seam import StoreItem

PAGE = 500
"""Items read, or written, per statement."""


def has_store(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT to_regclass('store')").fetchone()[0] is not None


def prefixes(conn: psycopg.Connection) -> list[str]:
    if not has_store(conn):
        return []
    return [prefix for (prefix,) in conn.execute("SELECT DISTINCT prefix FROM store").fetchall()]


def of_thread(conn: psycopg.Connection, label: str) -> list[str]:
    """The namespaces whose second part is the thread's label."""
    return [prefix for prefix in prefixes(conn) if prefix.split(".")[1:2] == [label]]


def copy(conn: psycopg.Connection, source_label: str, target_label: str) -> int:
    """Copy the source thread's rows under the target's namespaces (inside the caller's
    transaction), every column of the store's but the prefix as it is."""
    found = of_thread(conn, source_label)
    if not found:
        return 0
    names = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'store' "
        "AND column_name != 'prefix' ORDER BY ordinal_position"
    ).fetchall()
    listed = sql.SQL(", ").join(sql.Identifier(name) for (name,) in names)
    statement = sql.SQL("INSERT INTO store (prefix, {listed}) SELECT %s, {listed} FROM store WHERE prefix = %s").format(listed=listed)
    copied = 0
    for prefix in found:
        kind, _, rest = prefix.split(".", 2) + [""] * (3 - len(prefix.split(".", 2)))
        new_prefix = ".".join(part for part in (kind, target_label, rest) if part)
        copied += conn.execute(statement, (new_prefix, prefix)).rowcount
    return copied


def items(conn: psycopg.Connection, prefix: str) -> Iterator[StoreItem]:
    """The items under `prefix`, by key, read a page at a time as they are needed."""
    if not has_store(conn):
        return
    after: str | None = None
    while True:
        rows = conn.execute(
            "SELECT key, value, created_at, updated_at FROM store WHERE prefix = %s "
            'AND (%s::text IS NULL OR key COLLATE "C" > %s::text) ORDER BY key COLLATE "C" LIMIT %s',
            (prefix, after, after, PAGE),
        ).fetchall()
        for key, value, created_at, updated_at in rows:
            yield StoreItem(key, value, epoch(created_at), epoch(updated_at))
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def put_items(conn: psycopg.Connection, prefix: str, items: Iterable[StoreItem]) -> int:
    """Store items under `prefix` with their times (inside the caller's transaction), each
    replacing the item of its key, as the store's own put does, with no expiry."""
    statement = (
        "INSERT INTO store (prefix, key, value, created_at, updated_at, expires_at, ttl_minutes) "
        "VALUES (%s, %s, %s, %s, %s, NULL, NULL) ON CONFLICT (prefix, key) DO UPDATE SET value = excluded.value, "
        "created_at = excluded.created_at, updated_at = excluded.updated_at, expires_at = NULL, ttl_minutes = NULL"
    )
    count = 0
    pending = iter(items)
    with conn.cursor() as cursor:
        while page := list(islice(pending, PAGE)):
            cursor.executemany(
                statement, [(prefix, item.key, Jsonb(item.value), moment(item.created_at), moment(item.updated_at)) for item in page]
            )
            count += len(page)
    return count


def epoch(value: datetime | None) -> float:
    return 0.0 if value is None else value.timestamp()


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def result_counts(conn: psycopg.Connection, prefix: str, round_: int, since: float | None) -> list[tuple]:
    """Per `status` of the results under `prefix`: (status, given up before round `round_`,
    count, input tokens, output tokens, written at or after `since`, None without one)."""
    if not has_store(conn):
        return []
    return conn.execute(
        "SELECT value->>'status', "
        "SUM((COALESCE((value->>'round')::numeric, 0) < %s)::int)::bigint, COUNT(*), "
        "SUM(COALESCE((value->>'input_tokens')::numeric, 0))::bigint, "
        "SUM(COALESCE((value->>'output_tokens')::numeric, 0))::bigint, "
        "SUM((updated_at >= %s)::int)::bigint "
        "FROM store WHERE prefix = %s GROUP BY 1",
        (round_, None if since is None else moment(since), prefix),
    ).fetchall()


def results(conn: psycopg.Connection, prefix: str, items_prefix: str, status: str | None) -> Iterator[tuple[str, dict, dict | None]]:
    """(key, result, item or None) of the results under `prefix` (of one status, if given), by
    key, each with the item of the same key under `items_prefix`, read a page at a time."""
    if not has_store(conn):
        return
    after: str | None = None
    while True:
        rows = conn.execute(
            "SELECT r.key, r.value, i.value FROM store r LEFT JOIN store i ON i.prefix = %s AND i.key = r.key "
            "WHERE r.prefix = %s AND (%s::text IS NULL OR r.value->>'status' = %s::text) "
            'AND (%s::text IS NULL OR r.key COLLATE "C" > %s::text) ORDER BY r.key COLLATE "C" LIMIT %s',
            (items_prefix, prefix, status, status, after, after, PAGE),
        ).fetchall()
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def has_items(conn: psycopg.Connection, prefix: str) -> bool:
    return has_store(conn) and conn.execute("SELECT 1 FROM store WHERE prefix = %s LIMIT 1", (prefix,)).fetchone() is not None


def delete_of_thread(conn: psycopg.Connection, label: str) -> int:
    """Delete the rows of every namespace of the thread (inside the caller's transaction); how many."""
    found = of_thread(conn, label)
    if not found:
        return 0
    vectors = conn.execute("SELECT to_regclass('store_vectors')").fetchone()[0] is not None
    removed = 0
    for prefix in found:
        removed += conn.execute("DELETE FROM store WHERE prefix = %s", (prefix,)).rowcount
        if vectors:
            conn.execute("DELETE FROM store_vectors WHERE prefix = %s", (prefix,))
    return removed


def put_result_once(conn: psycopg.Connection, prefix: str, key: str, value: dict, round_: int) -> bool:
    """Write a queue item's result where the item still needs work in round `round_` (no result,
    or one given up in an earlier round), in one statement; whether it was written. Two workers
    that finish the same item write one result: the first, and the second's is dropped."""
    return (
        conn.execute(
            "INSERT INTO store (prefix, key, value) VALUES (%s, %s, %s) ON CONFLICT (prefix, key) DO UPDATE "
            "SET value = excluded.value, updated_at = CURRENT_TIMESTAMP "
            "WHERE store.value->>'status' = 'failed' AND COALESCE((store.value->>'round')::int, 0) < %s",
            (prefix, key, Jsonb(value), round_),
        ).rowcount
        == 1
    )


def values_of(conn: psycopg.Connection, prefix: str, keys: list[str]) -> dict[str, dict]:
    """key -> value of those of `keys` that are under `prefix`, in one statement."""
    if not keys or not has_store(conn):
        return {}
    return dict(conn.execute("SELECT key, value FROM store WHERE prefix = %s AND key = ANY(%s)", (prefix, keys)).fetchall())


def get_value(conn: psycopg.Connection, prefix: str, key: str) -> dict | None:
    if not has_store(conn):
        return None
    row = conn.execute("SELECT value FROM store WHERE prefix = %s AND key = %s", (prefix, key)).fetchone()
    return None if row is None else row[0]


def put_value(conn: psycopg.Connection, prefix: str, key: str, value: dict) -> None:
    conn.execute(
        "INSERT INTO store (prefix, key, value) VALUES (%s, %s, %s) ON CONFLICT (prefix, key) DO UPDATE "
        "SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
        (prefix, key, Jsonb(value)),
    )


def delete_value(conn: psycopg.Connection, prefix: str, key: str) -> None:
    if has_store(conn):
        conn.execute("DELETE FROM store WHERE prefix = %s AND key = %s", (prefix, key))
