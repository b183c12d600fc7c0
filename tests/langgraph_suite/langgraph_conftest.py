"""Put in place of LangGraph's tests/conftest.py: the same fixtures, as LangGraph's conftest gives
them without Docker (NO_DOCKER=true: no Redis cache, no Postgres store), except that
`sync_checkpointer` and `async_checkpointer` give the savers AGENT_SUITE_SAVER names (savers.py):
agent's on SQLite or on PostgreSQL, or, for a baseline, LangGraph's own in-memory saver (its
`memory` parameter) or stock PostgreSQL savers (its `postgres` and `postgres_aio` parameters). No
test body is changed.
"""

from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import pytest
from agent_suite_savers import ASYNC_SAVERS, SAVER, SYNC_SAVERS
from langgraph.cache.base import BaseCache
from langgraph.cache.memory import InMemoryCache
from langgraph.cache.sqlite import SqliteCache
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from pytest_mock import MockerFixture

from langgraph.types import Durability

NO_DOCKER = True


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture()
def deterministic_uuids(mocker: MockerFixture) -> MockerFixture:
    side_effect = (UUID(f"00000000-0000-4000-8000-{i:012}", version=4) for i in range(10000))
    return mocker.patch("uuid.uuid4", side_effect=side_effect)


@pytest.fixture(params=["sync", "async", "exit"])
def durability(request: pytest.FixtureRequest) -> Durability:
    return request.param


@pytest.fixture(scope="function", params=["sqlite", "memory"])
def cache(request: pytest.FixtureRequest) -> Iterator[BaseCache]:
    if request.param == "sqlite":
        yield SqliteCache(path=":memory:")
    else:
        yield InMemoryCache()


@pytest.fixture(scope="function", params=["in_memory"])
def sync_store() -> Iterator[BaseStore]:
    yield InMemoryStore()


@pytest.fixture(scope="function", params=["in_memory"])
async def async_store() -> AsyncIterator[BaseStore]:
    yield InMemoryStore()


@pytest.fixture(scope="function", params=list(SYNC_SAVERS[SAVER]))
def sync_checkpointer(request: pytest.FixtureRequest) -> Iterator[BaseCheckpointSaver]:
    with SYNC_SAVERS[SAVER][request.param]() as checkpointer:
        yield checkpointer


@pytest.fixture(scope="function", params=list(ASYNC_SAVERS[SAVER]))
async def async_checkpointer(request: pytest.FixtureRequest) -> AsyncIterator[BaseCheckpointSaver]:
    async with ASYNC_SAVERS[SAVER][request.param]() as checkpointer:
        yield checkpointer
