"""LangGraph's store (the data a graph keeps per item: a queue's items and results), in the
same file: its tables, made inside the migration transaction, and the async store a run uses.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from contextlib import asynccontextmanager
from typing import AsyncIterator

from runtime.store.connect import connect_async


@asynccontextmanager
async def open_item_store(path: str | os.PathLike) -> AsyncIterator[object]:
    """LangGraph's async SQLite store, on its own connection (runtime.store.connect)."""
    async with connect_async(path) as conn:
        store = _store_class()(conn)
        await store.setup()
        yield store


def create_item_store_tables(conn: sqlite3.Connection) -> None:
    """Apply LangGraph's store migrations here, inside the migration transaction.

    The store's own setup applies them without a transaction: two processes opening a new file at
    once both try, and one fails on `store_migrations`' primary key. Done here first, each
    process's setup finds them applied.
    """
    from langgraph.store.sqlite.base import MIGRATIONS

    conn.execute("CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY)")
    row = conn.execute("SELECT v FROM store_migrations ORDER BY v DESC LIMIT 1").fetchone()
    start = -1 if row is None else row[0]
    for version, sql in enumerate(MIGRATIONS[start + 1 :], start=start + 1):
        conn.execute(sql)
        conn.execute("INSERT INTO store_migrations (v) VALUES (?)", (version,))


@functools.cache
def _store_class() -> type:
    """LangGraph's async SQLite store, with transactions that take the write lock as they begin.

    The stock store begins deferred transactions, and one batch may read (an item) before it
    writes (a result). In WAL mode, when the checkpointer's connection commits in between,
    SQLite cannot upgrade the transaction and fails at once with SQLITE_BUSY_SNAPSHOT
    ("database is locked"), never waiting out busy_timeout. BEGIN IMMEDIATE waits instead.
    """
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    class ImmediateSqliteStore(AsyncSqliteStore):
        # Written out rather than with runtime.store.transaction.immediate: the connection is
        # aiosqlite's, whose statements are awaited, and the store's lock is held around them.
        @asynccontextmanager
        async def _cursor(self, *, transaction: bool = True) -> AsyncIterator[object]:
            if not self.is_setup:
                await self.setup()
            async with self.lock:
                if transaction:
                    await self.conn.execute("BEGIN IMMEDIATE")
                async with self.conn.cursor() as cur:
                    try:
                        yield cur
                    except BaseException:
                        if transaction:
                            await self.conn.execute("ROLLBACK")
                        raise
                    if transaction:
                        await self.conn.execute("COMMIT")

    return ImmediateSqliteStore
