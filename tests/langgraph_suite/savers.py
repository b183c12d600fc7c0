"""The savers the upstream tests get: agent's savers, opened as the project opens them, or, for
the baselines, the savers LangGraph's own suite uses. (Copied into the upstream tree as
`agent_suite_savers`, beside the swapped conftest files that import it.)

By AGENT_SUITE_SAVER:
- `agent`: AgentSaver on a new SQLite database file (`runtime.open_database`);
- `agent-postgres`: the PostgreSQL savers on a database as new, from `runtime.open_database(url)`:
  its `checkpointer()` on the sync path, its `open_async()` on the async path;
- `memory`, `stock`, `stock-postgres`: LangGraph's InMemorySaver, its stock SQLite savers, its
  stock PostgresSaver and AsyncPostgresSaver (baselines).

On PostgreSQL every test runs on the run's database (made by server.py and set up by
`runtime.open_database`, named by AGENT_SUITE_POSTGRES_DATABASE), put back first in the state of
a new one: the connections an earlier test left to it are ended and every row written since the
set-up is deleted. That takes a few hundredths of a second, where a new database per test (a copy
of a set-up template, dropped after it) took about 0.4 s, and the whole run three times as long.

Serialisation is the project's: agent's savers get the serializer `runtime.open_database` gives
them, and the run sets LANGGRAPH_STRICT_MSGPACK=true, as importing `runtime` does in production.
Under it LangGraph's own conftest gives its savers a strict serializer too, and so do the
baselines here, so both sides of the comparison read checkpoints back with the same allowlist (the
graph's own types, which LangGraph adds when it compiles a graph, and its known-safe ones).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncContextManager, AsyncIterator, Callable, ContextManager, Iterator

SAVER = os.environ.get("AGENT_SUITE_SAVER", "agent")
"""Which saver the checkpointer fixtures give: `agent`, `agent-postgres`, or a baseline."""

_KEEP: list[tempfile.TemporaryDirectory] = []


def strict() -> bool:
    return os.getenv("LANGGRAPH_STRICT_MSGPACK", "false").lower() in ("1", "true", "yes")


def upstream_serde() -> Any:
    """The serializer LangGraph's conftest gives its own savers (None: the saver's default)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=None) if strict() else None


# -- SQLite ---------------------------------------------------------------------------------


@functools.cache
def _new_database_file() -> Path:
    """A database as `runtime.open_database(create=True)` makes it, made once per run: each test
    opens a copy (creating the tables takes longer than most tests)."""
    folder = tempfile.TemporaryDirectory(prefix="agent-suite-")
    _KEEP.append(folder)  # removed when the run ends
    path = Path(folder.name) / "new.db"
    from runtime import open_database

    open_database(path, create=True).close()
    return path


@contextmanager
def agent_database() -> Iterator[object]:
    """A new database file of its own, opened with `runtime.open_database` (tables, WAL, the
    project's serializer)."""
    from runtime import open_database

    with tempfile.TemporaryDirectory(prefix="agent-suite-") as tmp:
        path = Path(tmp) / "agent.db"
        shutil.copy(_new_database_file(), path)
        db = open_database(path)
        try:
            yield db
        finally:
            db.close()


@contextmanager
def agent_saver_sync() -> Iterator[object]:
    """AgentSaver on a connection of its own (queued writes joined into the step's row),
    the synchronous form of what a run uses."""
    from runtime.store.saver import open_saver

    with agent_database() as db:
        saver = open_saver(str(db.path), serde=db.checkpointer().serde, fast_async=False)
        try:
            yield saver
        finally:
            saver.flush()
            saver.conn.close()


@contextmanager
def agent_saver_of_database() -> Iterator[object]:
    """AgentSaver on the database's own connection (`Database.checkpointer()`), as history,
    state edits and forks use it: writes are stored at once, not queued."""
    with agent_database() as db:
        yield db.checkpointer()


@asynccontextmanager
async def agent_saver_async() -> AsyncIterator[object]:
    """AgentSaver exactly as a run opens it: `Database.open_async` (async calls on the event loop)."""
    with agent_database() as db:
        async with db.open_async() as (saver, _store):
            yield saver


@contextmanager
def memory_saver() -> Iterator[object]:
    """What LangGraph's conftest gives for its `memory` parameter."""
    from tests.memory_assert import MemorySaverAssertImmutable

    yield MemorySaverAssertImmutable(serde=upstream_serde())


# -- PostgreSQL -----------------------------------------------------------------------------


@functools.cache
def _run_database() -> tuple[str, Any, tuple[str, ...]]:
    """The run's database: its URL, a connection that resets it, and the tables to empty (those
    `runtime.open_database` left empty when it set the database up; the others record which
    migrations ran)."""
    import psycopg

    url = os.environ["AGENT_SUITE_POSTGRES_DATABASE"]
    conn = psycopg.connect(url, autocommit=True)
    names = [name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
    empty = tuple(name for name in names if conn.execute(f'SELECT NOT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0])
    return url, conn, empty


@contextmanager
def postgres_database() -> Iterator[str]:
    """The run's database in the state of a new one (every connection an earlier test left to
    it ended, every row it wrote gone): its URL."""
    url, conn, tables = _run_database()
    # Each is told to end and waited for; one that is false was gone already (a closed
    # connection's server process ends a moment after the client). A process told to end runs
    # no further statement, and the deletes wait for any lock it still holds.
    conn.execute(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with conn.transaction():
        for name in tables:
            conn.execute(f'DELETE FROM "{name}"')
    yield url


@contextmanager
def agent_postgres_database() -> Iterator[Any]:
    """The run's database, as new, opened with `runtime.open_database(url)`."""
    from runtime import open_database

    with postgres_database() as url:
        db = open_database(url)
        try:
            yield db
        finally:
            db.close()


@contextmanager
def agent_postgres_saver_sync() -> Iterator[object]:
    """The synchronous PostgreSQL saver, `PostgresDatabase.checkpointer()` (history, state
    edits, forks)."""
    with agent_postgres_database() as db:
        yield db.checkpointer()


@asynccontextmanager
async def agent_postgres_saver_async() -> AsyncIterator[object]:
    """The async PostgreSQL saver over the connection pool, exactly as a run opens it:
    `PostgresDatabase.open_async`."""
    with agent_postgres_database() as db:
        async with db.open_async() as (saver, _store):
            yield saver


@contextmanager
def stock_postgres_saver_sync() -> Iterator[object]:
    """What LangGraph's conftest gives for its `postgres` parameter (on the run's database, whose
    LangGraph tables are those the stock saver's own `setup()` makes)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with postgres_database() as url, PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        _upstream_strictness(saver)
        yield saver


@asynccontextmanager
async def stock_postgres_saver_async() -> AsyncIterator[object]:
    """What LangGraph's conftest gives for its `postgres_aio` parameter."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    with postgres_database() as url:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            _upstream_strictness(saver)
            yield saver


def _upstream_strictness(saver: Any) -> None:
    serde = upstream_serde()
    if serde is not None:
        saver.serde = serde


# -- by name --------------------------------------------------------------------------------


@asynccontextmanager
async def _async_form(opener: Callable[[], ContextManager]) -> AsyncIterator[object]:
    with opener() as saver:
        yield saver


SYNC_SAVERS: dict[str, dict[str, Callable[[], ContextManager]]] = {
    # The sync path twice on SQLite: a saver on its own connection (as a run has it) and the
    # database's (as history, edits and forks have it).
    "agent": {"agent": agent_saver_sync, "agent_db": agent_saver_of_database},
    "agent-postgres": {"agent-postgres": agent_postgres_saver_sync},
    "memory": {"memory": memory_saver},
    "stock-postgres": {"stock-postgres": stock_postgres_saver_sync},
}
"""For each AGENT_SUITE_SAVER: the sync savers LangGraph's suite gets, by fixture parameter."""

ASYNC_SAVERS: dict[str, dict[str, Callable[[], AsyncContextManager]]] = {
    "agent": {"agent": agent_saver_async},
    "agent-postgres": {"agent-postgres": agent_postgres_saver_async},
    "memory": {"memory": lambda: _async_form(memory_saver)},
    "stock-postgres": {"stock-postgres": stock_postgres_saver_async},
}
"""For each AGENT_SUITE_SAVER: the async savers LangGraph's suite gets, by fixture parameter."""
