"""The durable machinery, as plain functions for the CLI and for notebooks.

    from runtime import open_database, run_thread, get_history, resume_thread
    db = open_database("checkpoints/agent.db", create=True)
    outcome = run_thread(db, "task_queue", "docs", {"items": ["a", "b"], "prompt": "Summarize: {item}"})
    for row in get_history(db, "docs"):
        print(row.step, row.writers, row.checkpoint_id)
    resume_thread(db, "docs", checkpoint="3")   # fork from step 3
"""

import os

# Checkpoints are read back with only known-safe types (plus those the graph's own schemas name),
# so a tampered database cannot make the runner construct arbitrary objects. This must be set
# before LangGraph's serializer is imported; set LANGGRAPH_STRICT_MSGPACK=false to opt out.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

from runtime.db import Database, default_db_path, open_database
from runtime.errors import AgentError
from runtime.history import get_history, get_state, iter_results, resolve_checkpoint, thread_status
from runtime.models import make_model
from runtime.runner import RunEvent, RunOutcome, RunSettings, resume_thread, run_thread, validate_run
from runtime.threads import ThreadRecord, get_thread, list_threads

__all__ = [
    "AgentError",
    "Database",
    "RunEvent",
    "RunOutcome",
    "RunSettings",
    "ThreadRecord",
    "default_db_path",
    "get_history",
    "get_state",
    "get_thread",
    "iter_results",
    "list_graphs",
    "list_threads",
    "make_model",
    "open_database",
    "resolve_checkpoint",
    "resume_thread",
    "run_thread",
    "thread_status",
    "validate_run",
]


def list_graphs() -> list[dict[str, str]]:
    """The built-in graphs: name, version and one-line description."""
    from graphs import builtin_names, load_graph

    return [
        {"name": name, "version": spec.version, "description": spec.description}
        for name in builtin_names()
        for spec in [load_graph(name)]
    ]
