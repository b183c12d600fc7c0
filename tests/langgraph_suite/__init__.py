"""LangGraph's own checkpointer tests, and langgraph-checkpoint-sqlite's saver tests, run against
agent's saver: the pinned sources (source.py), the conftest files that swap in our saver, the
plugin that selects and reports, the one list of tests that do not apply (expectations.py), and
the runner (run.py). tests/test_langgraph_suite.py runs them in the project's test command."""
