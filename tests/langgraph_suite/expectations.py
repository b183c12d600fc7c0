"""Which upstream tests run, and the one list of those that do not run as they are against
agent's saver, each with its reason.

A key is `FILE::TEST` (every parametrisation of the test) or `FILE` (every test in it), FILE
relative to the suite's tests/ folder. A test that fails with our saver and passes with LangGraph's
own is a bug in our saver: it is fixed, never listed here (KNOWN_FAILURES holds such bugs only
while their fix is on its way, as strict expected failures). A `--baseline` run applies none of
these lists.
"""

from __future__ import annotations

CHECKPOINTER_FIXTURES = ("sync_checkpointer", "async_checkpointer")
"""LangGraph's suite (on SQLite, `langgraph`, and on PostgreSQL, `langgraph-postgres`): the tests
that take one of these run (both paths); the rest are deselected."""

SQLITE_SAVER_FILES = (
    "test_sqlite.py",
    "test_aiosqlite.py",
    "test_conformance_delta.py",
    "test_delta_parent_walk.py",
    "test_get_delta_channel_history.py",
    "test_delta_channel_migration.py",
    "test_writes_task_path_migration.py",
)
"""langgraph-checkpoint-sqlite's saver tests, in which `SqliteSaver` and `AsyncSqliteSaver` stand
for agent's saver. (Its store and TTL tests are about the store, which agent uses unchanged.)"""

_VERSIONLESS = (
    "fails with InMemorySaver too: puts a checkpoint whose values have no new version and expects them "
    "back, which only the stock SQLite saver (it stores every checkpoint whole) does"
)

_WALL_CLOCK = (
    "races the clock, whatever the saver: asserts on elapsed wall-clock time or on the order in "
    "which sleeps of a few milliseconds end, which a busy machine changes (seen failing under load)"
)

_LANGGRAPH_WALL_CLOCK = {
    "test_pregel.py::test_stream_subgraphs_during_execution": _WALL_CLOCK,
    "test_pregel_async.py::test_imp_nested": _WALL_CLOCK,
    "test_pregel_async.py::test_stream_subgraphs_during_execution": _WALL_CLOCK,
    "test_pregel.py::test_stream_buffering_single_node": _WALL_CLOCK,
    "test_pregel_async.py::test_stream_buffering_single_node": _WALL_CLOCK,
}

SKIP: dict[str, dict[str, str]] = {
    "langgraph": {**_LANGGRAPH_WALL_CLOCK},
    "langgraph-postgres": {**_LANGGRAPH_WALL_CLOCK},
    "langgraph-checkpoint-sqlite": {
        # Does not apply: the test is about the stock saver itself.
        "test_sqlite.py::TestSqliteSaver::test_informative_async_errors": (
            "does not apply: asserts that the stock sync saver refuses async calls; agent's saver is one "
            "class that serves both"
        ),
        "test_delta_parent_walk.py::test_walk_step_looks_up_the_parent_by_primary_key": (
            "does not apply: reads the query plan of the stock saver's private SQL over its own tables"
        ),
        "test_writes_task_path_migration.py": (
            "does not apply: migrates a `writes` table of the stock saver's old layout; agent's schema and "
            "its conversion are its own (tests/test_storage.py)"
        ),
        # Fails with LangGraph's own savers too.
        "test_conformance_delta.py": (
            "fails with the stock saver too: needs the conformance capability `delta_channel_history`, which "
            "no released langgraph-checkpoint-conformance has"
        ),
        "test_delta_parent_walk.py::test_sync_walk_reaches_parent_whatever_the_id_order": _VERSIONLESS,
        "test_delta_parent_walk.py::test_async_walk_reaches_parent_whatever_the_id_order": _VERSIONLESS,
        "test_delta_parent_walk.py::test_sync_empty_checkpoint_id_reads_from_the_latest_checkpoint": _VERSIONLESS,
        "test_delta_parent_walk.py::test_async_empty_checkpoint_id_reads_from_the_latest_checkpoint": _VERSIONLESS,
        "test_delta_parent_walk.py::test_walk_reaches_root_of_long_chain_with_descending_ids": _VERSIONLESS,
        "test_delta_parent_walk.py::test_walk_terminates_when_put_makes_the_parent_chain_cycle": (
            "never ends with InMemorySaver either: re-putting a checkpoint id under its own child makes the "
            "parent chain a cycle, and LangGraph's generic ancestor walk (which InMemorySaver and ours use; "
            "the stock SQLite saver has its own) follows it for ever"
        ),
    },
}

KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "langgraph": {},
    "langgraph-postgres": {},
    "langgraph-checkpoint-sqlite": {},
}
"""Real bugs of our saver, expected to fail (strictly) only until their fix is merged."""
