"""Put in langgraph-checkpoint-sqlite's tests/ folder (it has no conftest of its own): in each of
its saver tests, `SqliteSaver.from_conn_string(":memory:")` and
`AsyncSqliteSaver.from_conn_string(":memory:")` give agent's saver on a new database file, opened
as the project opens it, instead of the stock saver. With AGENT_SUITE_SAVER=stock the stock
savers run, as a baseline. No test body is changed.
"""

from contextlib import asynccontextmanager, contextmanager

import pytest
from agent_suite_savers import SAVER, agent_saver_async, agent_saver_sync


def _in_memory_only(conn_string: str) -> None:
    # A test that opens a file of its own built it in the stock saver's layout: it is listed in
    # expectations.py as one that does not apply, and must not reach here.
    if conn_string != ":memory:":
        raise AssertionError(f"agent's saver stands in only for ':memory:' savers, not {conn_string!r}")


class AgentSaverForSqliteSaver:
    """Stands for `SqliteSaver` in its tests."""

    @staticmethod
    @contextmanager
    def from_conn_string(conn_string: str):
        _in_memory_only(conn_string)
        with agent_saver_sync() as saver:
            yield saver


class AgentSaverForAsyncSqliteSaver:
    """Stands for `AsyncSqliteSaver` in its tests."""

    @staticmethod
    @asynccontextmanager
    async def from_conn_string(conn_string: str):
        _in_memory_only(conn_string)
        async with agent_saver_async() as saver:
            yield saver


@pytest.fixture(autouse=True)
def agent_saver_in_place_of_the_stock_one(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if SAVER == "stock":
        return
    for name, stand_in in (("SqliteSaver", AgentSaverForSqliteSaver), ("AsyncSqliteSaver", AgentSaverForAsyncSqliteSaver)):
        if hasattr(request.module, name):
            monkeypatch.setattr(request.module, name, stand_in)
