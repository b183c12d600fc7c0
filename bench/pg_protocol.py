"""What psycopg connections send, read from libpq's own protocol trace (bench/checkpointer_postgres.py
counts a step's round trips and statements with it)."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import psycopg


@contextlib.contextmanager
def traced_connections(folder: Path) -> Iterator[list[Path]]:
    """Every psycopg connection opened inside the block writes libpq's protocol trace to a file of
    its own in `folder` (flushed when the connection closes); the files."""
    from psycopg.pq import Trace

    files: list[Path] = []
    streams: list[Any] = []

    def trace(conn: Any) -> Any:
        path = folder / f"conn-{len(files)}.trace"
        stream = open(path, "w")
        files.append(path)
        streams.append(stream)
        conn.pgconn.trace(stream.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        return conn

    sync_connect, async_connect = psycopg.Connection.connect, psycopg.AsyncConnection.connect
    sync_close, async_close = psycopg.Connection.close, psycopg.AsyncConnection.close

    def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return trace(sync_connect.__func__(cls, *args, **kwargs))

    async def aconnect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return trace(await async_connect.__func__(cls, *args, **kwargs))

    def close(self: Any) -> None:
        if not self.closed:
            self.pgconn.untrace()  # libpq's trace is buffered: untrace flushes it
        sync_close(self)

    async def aclose(self: Any) -> None:
        if not self.closed:
            self.pgconn.untrace()
        await async_close(self)

    def module_connect(*args: Any, **kwargs: Any) -> Any:
        return psycopg.Connection.connect(*args, **kwargs)

    patches = {
        (psycopg, "connect"): module_connect,  # `psycopg.connect` is the class's method, bound at import
        (psycopg.Connection, "connect"): classmethod(connect),
        (psycopg.AsyncConnection, "connect"): classmethod(aconnect),
        (psycopg.Connection, "close"): close,
        (psycopg.AsyncConnection, "close"): aclose,
    }
    saved = {(cls, name): cls.__dict__[name] for cls, name in patches}
    for (cls, name), value in patches.items():
        setattr(cls, name, value)
    try:
        yield files
    finally:
        for (cls, name), value in saved.items():
            setattr(cls, name, value)
        for stream in streams:
            stream.close()


def messages(files: list[Path]) -> Counter:
    """From the trace files: round trips (the server's ReadyForQuery replies: one per Sync or
    simple Query; a pipeline sends one Sync for many statements), statements parsed, and the
    statements the server completed by kind (`SELECT`, `INSERT`, `BEGIN`, ...)."""
    counts: Counter = Counter()
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or parts[0] not in ("F", "B"):
                continue  # a continuation line of a statement's text
            message = parts[2].strip()
            if parts[0] == "B" and message == "ReadyForQuery":
                counts["round trips"] += 1
            elif parts[0] == "F" and message == "Parse":
                counts["parsed"] += 1
            elif parts[0] == "B" and message == "CommandComplete" and len(parts) > 3:
                counts[parts[3].strip().strip('"').split(" ")[0]] += 1
    return counts


STATEMENT_KINDS = ("SELECT", "INSERT", "UPDATE", "BEGIN", "COMMIT", "ROLLBACK")
