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

# Names resolve on first use (PEP 562), so that `agent --help`, `agent threads` and
# `agent history` do not import LangGraph, the graphs or the model factory they never use.
_LAZY = {
    "Database": "runtime.db",
    "default_db_path": "runtime.db",
    "open_database": "runtime.db",
    "AgentError": "runtime.errors",
    "diff_checkpoints": "runtime.diff",
    "draw_graph": "runtime.diagram",
    "graph_structure": "runtime.diagram",
    "parse_assignments": "runtime.edit",
    "fork_thread": "runtime.fork",
    "get_history": "runtime.history",
    "get_state": "runtime.history",
    "iter_results": "runtime.history",
    "resolve_checkpoint": "runtime.history",
    "thread_status": "runtime.history",
    "make_model": "runtime.models",
    "ProgressSnapshot": "runtime.progress",
    "RunEvent": "runtime.runner",
    "RunOutcome": "runtime.runner",
    "RunSettings": "runtime.runner",
    "resume_thread": "runtime.runner",
    "retry_failed": "runtime.runner",
    "run_thread": "runtime.runner",
    "validate_run": "runtime.runner",
    "add_schedule": "runtime.schedules",
    "check_schedule": "runtime.schedules",
    "list_schedules": "runtime.schedules",
    "schedule_runs": "runtime.schedules",
    "Worker": "runtime.worker",
    "ThreadRecord": "runtime.threads",
    "get_thread": "runtime.threads",
    "list_threads": "runtime.threads",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AgentError",
    "Database",
    "ProgressSnapshot",
    "RunEvent",
    "RunOutcome",
    "RunSettings",
    "ThreadRecord",
    "Worker",
    "add_schedule",
    "check_schedule",
    "default_db_path",
    "diff_checkpoints",
    "draw_graph",
    "fork_thread",
    "get_history",
    "graph_structure",
    "parse_assignments",
    "get_state",
    "get_thread",
    "iter_results",
    "list_graphs",
    "list_schedules",
    "list_threads",
    "make_model",
    "open_database",
    "resolve_checkpoint",
    "resume_thread",
    "retry_failed",
    "run_thread",
    "schedule_runs",
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
