"""The parts of the storage seam that the rooms above use, taken from the backend in use.

The rooms import their parts from here (`from runtime.store.parts import threads`), never from a
backend's modules, so that the backend is chosen in this module and nowhere above it. Each name
is typed by its Protocol in runtime/store/seam.py, which says what it must do.

Every part's functions take the connection first (`Database.conn`), and the connection says
which backend's function runs: a sqlite3 connection SQLite's (runtime/store/sqlite_backend.py),
any other PostgreSQL's (runtime/store/postgres/backend.py, imported on first use, so that a
process on SQLite never loads the PostgreSQL driver). `checks.open_read_only` takes a location
instead: a postgresql:// URL is PostgreSQL's.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Callable, cast

from runtime.store.sqlite_backend import BACKEND as SQLITE

if TYPE_CHECKING:
    from runtime.store import seam


def backend_of(conn: Any) -> seam.Backend:
    """The backend whose connection `conn` is."""
    if isinstance(conn, sqlite3.Connection):
        return SQLITE
    from runtime.store.postgres.backend import BACKEND

    return BACKEND


def server_location(location: Any) -> bool:
    """Whether a --db value names a database on a server (postgresql://...) rather than a file."""
    return str(location).startswith(("postgresql://", "postgres://"))


def out_of_reach(exc: BaseException) -> bool:
    """Whether an error says the database server could not be reached (a lost connection, a
    partition, a pool that could not connect), as its driver or Procrastinate reports it: what a
    runner or worker waits out. A statement the server refused is not one: that is raised."""
    module = type(exc).__module__.split(".")[0]
    if module not in ("psycopg", "psycopg_pool", "procrastinate"):
        return False
    import psycopg

    cause = exc.__cause__ if module == "procrastinate" else exc  # Procrastinate wraps the driver's error
    return module == "psycopg_pool" or isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError))


def _location_backend(location: Any) -> seam.Backend:
    if server_location(location):
        from runtime.store.postgres.backend import BACKEND

        return BACKEND
    return SQLITE


class _Part:
    """One part of the seam, each of whose functions runs the backend's own for its first argument."""

    def __init__(self, name: str, choose: Callable[[Any], seam.Backend] = backend_of) -> None:
        self._name = name
        self._choose = choose

    def __getattr__(self, member: str) -> Callable[..., Any]:
        if member.startswith("_"):
            raise AttributeError(member)
        getattr(getattr(SQLITE, self._name), member)  # AttributeError for a name the part lacks
        name, choose = self._name, self._choose

        def call(first: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(getattr(choose(first), name), member)(first, *args, **kwargs)

        call.__name__ = call.__qualname__ = member
        setattr(self, member, call)  # found directly from now on
        return call


class _Checks(_Part):
    def __getattr__(self, member: str) -> Callable[..., Any]:
        if member == "open_read_only":
            call = _Part(self._name, _location_backend).__getattr__(member)
            setattr(self, member, call)
            return call
        return super().__getattr__(member)


transactions = cast("seam.Transactions", _Part("transactions"))
immediate = transactions.immediate
snapshot = transactions.snapshot
threads = cast("seam.ThreadRegistry", _Part("threads"))
spend = cast("seam.SpendLedger", _Part("spend"))
rates = cast("seam.SharedRates", _Part("rates"))
progress = cast("seam.ProgressBoard", _Part("progress"))
queue = cast("seam.RunQueue", _Part("queue"))
workers = cast("seam.WorkerRegistry", _Part("workers"))
control = cast("seam.ControlRequests", _Part("control"))
schedules = cast("seam.Schedules", _Part("schedules"))
namespaces = cast("seam.Namespaces", _Part("namespaces"))
checks = cast("seam.Maintenance", _Checks("checks"))
