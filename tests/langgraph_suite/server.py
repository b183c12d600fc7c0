"""The PostgreSQL server of the suites that run on one (`langgraph-postgres`), on the side of the
process that starts the run: the run's database, made on the server and set up once by
`runtime.open_database`, as the project sets a database up, then dropped when the run ends, with
any connection a stopped run left to it. (Each upstream test gets it back in the state of a new
one: savers.py.)

The server is the one the project's own PostgreSQL tests use (tests/postgres_server.py):
AGENT_TEST_POSTGRES, by default the local one; `off` leaves these suites out, and a server that
cannot be reached fails the run, so that CI notices a missing one.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Iterator
from urllib.parse import urlsplit

from tests.postgres_server import create, postgres_off, server_url

LEFT_OUT = "AGENT_TEST_POSTGRES=off leaves PostgreSQL out"


class ServerUnreachable(Exception):
    """No PostgreSQL server for the run: one line that says what to do."""


def left_out() -> str | None:
    """Why the suites on a server do not run here (None: they run)."""
    return LEFT_OUT if postgres_off() else None


def database_url(server: str, name: str) -> str:
    """The postgresql:// URL of database `name` on the server of URL `server`."""
    return urlsplit(server)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def run_database() -> Iterator[dict[str, str]]:
    """A new database, set up by `runtime.open_database`, for one run; yields the environment
    that names it to the run's tests (savers.py)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from runtime import open_database

    url = server_url()
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        where = conninfo_to_dict(url)
        raise ServerUnreachable(
            f"no PostgreSQL server at {where.get('host', 'localhost')}:{where.get('port', 5432)} for the langgraph-postgres "
            f"suite ({' '.join(str(exc).split())}); start one, point AGENT_TEST_POSTGRES at yours, or set "
            "AGENT_TEST_POSTGRES=off to leave it out"
        ) from None
    name = f"agent_suite_{secrets.token_hex(6)}"
    try:
        create(admin, name)
        try:
            open_database(database_url(url, name)).close()
            yield {"AGENT_SUITE_POSTGRES_DATABASE": database_url(url, name)}
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()
