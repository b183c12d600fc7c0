"""The durable machinery, as plain functions for the CLI and for notebooks.

    from runtime import open_database, run_thread, get_history, resume_thread
    db = open_database("checkpoints/agent.db", create=True)
    outcome = run_thread(db, "task_queue", "docs", {"items": ["a", "b"], "prompt": "Summarize: {item}"})
    for row in get_history(db, "docs"):
        print(row.step, row.writers, row.checkpoint_id)
    resume_thread(db, "docs", checkpoint="3")   # fork from step 3

    plan = prepare_run("task_queue", "later", {"items": ["c"], "prompt": "Summarize: {item}"})  # checked, nothing written
    run_plan(db, plan)
"""

import os

# Checkpoints are read back with only known-safe types (plus those the graph's own schemas name),
# so a tampered database cannot make the runner construct arbitrary objects. This must be set
# before LangGraph's serializer is imported; set LANGGRAPH_STRICT_MSGPACK=false to opt out.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

# Names resolve on first use (PEP 562), so that `agent --help`, `agent threads` and
# `agent history` do not import LangGraph, the graphs or the model factory they never use.
_LAZY = {
    "Database": "runtime.store.database",
    "default_db_path": "runtime.store.database",
    "open_database": "runtime.store.database",
    "AgentError": "runtime.errors",
    "diff_checkpoints": "runtime.threads.diff",
    "draw_graph": "runtime.runs.diagram",
    "graph_structure": "runtime.runs.diagram",
    "parse_assignments": "runtime.threads.edit",
    "fork_thread": "runtime.threads.fork",
    "get_history": "runtime.threads.history",
    "get_state": "runtime.threads.history",
    "iter_results": "runtime.threads.history",
    "resolve_checkpoint": "runtime.threads.history",
    "thread_status": "runtime.threads.history",
    "make_model": "runtime.policy.models",
    "ProgressSnapshot": "runtime.threads.progress",
    "RunEvent": "runtime.runs.outcome",
    "RunOutcome": "runtime.runs.outcome",
    "RunPlan": "runtime.runs.plan",
    "RunSettings": "runtime.policy.settings",
    "prepare_resume": "runtime.runs.plan",
    "prepare_retry": "runtime.runs.plan",
    "prepare_run": "runtime.runs.plan",
    "validate_run": "runtime.runs.plan",
    "resume_thread": "runtime.runs.runner",
    "retry_failed": "runtime.runs.runner",
    "run_plan": "runtime.runs.runner",
    "run_thread": "runtime.runs.runner",
    "add_schedule": "runtime.schedules.calendar",
    "check_schedule": "runtime.schedules.calendar",
    "list_schedules": "runtime.schedules.calendar",
    "schedule_runs": "runtime.schedules.calendar",
    "Worker": "runtime.schedules.worker",
    "ThreadRecord": "runtime.threads.registry",
    "get_thread": "runtime.threads.registry",
    "list_threads": "runtime.threads.registry",
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
    "RunPlan",
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
    "prepare_resume",
    "prepare_retry",
    "prepare_run",
    "resolve_checkpoint",
    "resume_thread",
    "retry_failed",
    "run_plan",
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
