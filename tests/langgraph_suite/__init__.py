"""LangGraph's own checkpointer tests, on agent's SQLite saver and on its PostgreSQL savers, and
langgraph-checkpoint-sqlite's saver tests, run against agent's saver: the pinned sources
(source.py), the conftest files that swap in our savers and the savers they get (savers.py), the
PostgreSQL server's database for a run (server.py), the plugin that selects and reports, the one
list of tests that do not apply (expectations.py), and the runner (run.py).
tests/test_langgraph_suite.py runs them in the project's test command."""
