"""The savers the upstream tests get: agent's AgentSaver, opened as the project opens it, or, for
the baseline, the InMemorySaver LangGraph's own suite uses. (Copied into the upstream tree as
`agent_suite_savers`, beside the swapped conftest files that import it.)

Serialisation is the project's: the saver gets the serializer `runtime.open_database` gives it,
and the run sets LANGGRAPH_STRICT_MSGPACK=true, as importing `runtime` does in production. Under
it LangGraph's own conftest gives its savers a strict serializer too, so both sides of the
comparison read checkpoints back with the same allowlist (the graph's own types, which LangGraph
adds when it compiles a graph, and its known-safe ones).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import AsyncIterator, Iterator

SAVER = os.environ.get("AGENT_SUITE_SAVER", "agent")
"""Which saver the checkpointer fixtures give: `agent`, or a baseline (`memory`, `stock`)."""

_KEEP: list[tempfile.TemporaryDirectory] = []


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

    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    strict = os.getenv("LANGGRAPH_STRICT_MSGPACK", "false").lower() in ("1", "true", "yes")
    yield MemorySaverAssertImmutable(serde=JsonPlusSerializer(allowed_msgpack_modules=None) if strict else None)
