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
from typing import TYPE_CHECKING

# Checkpoints are read back with only known-safe types (plus those the graph's own schemas name),
# so a tampered database cannot make the runner construct arbitrary objects. This must be set
# before LangGraph's serializer is imported; set LANGGRAPH_STRICT_MSGPACK=false to opt out.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

# The public API, module by module: what notebooks, the CLI and later the HTTP API import. Names
# resolve on first use (PEP 562), so that `agent --help`, `agent threads` and `agent history` do
# not import LangGraph, the graphs or the model factory they never use; the block under
# TYPE_CHECKING names the same things for editors and type checkers (a test keeps the two equal).
_PUBLIC: dict[str, tuple[str, ...]] = {
    "runtime.store.database": ("Database", "default_db_path", "open_database"),
    "runtime.errors": ("AgentError",),
    "runtime.threads.diff": ("diff_checkpoints",),
    "runtime.runs.diagram": ("draw_graph", "graph_structure"),
    "runtime.threads.edit": ("parse_assignments",),
    "runtime.threads.fork": ("fork_thread",),
    "runtime.threads.bundle": ("export_thread", "import_thread"),
    "runtime.threads.history": ("get_history", "get_state", "iter_results", "resolve_checkpoint", "thread_status"),
    "runtime.policy.models": ("make_model",),
    "runtime.threads.progress": ("ProgressSnapshot",),
    "runtime.runs.outcome": ("RunEvent", "RunOutcome"),
    "runtime.runs.plan": ("prepare_resume", "prepare_retry", "prepare_run", "RunPlan", "validate_run"),
    "runtime.policy.settings": ("RunSettings",),
    "runtime.runs.runner": ("resume_thread", "retry_failed", "run_plan", "run_thread"),
    "runtime.schedules.calendar": ("add_schedule", "check_schedule", "list_schedules", "schedule_runs"),
    "runtime.schedules.worker": ("Worker",),
    "runtime.threads.registry": ("get_thread", "list_threads", "ThreadRecord"),
    "runtime.fleet.queue": ("submit_decisions", "submit_resume", "submit_retry", "submit_run", "wait_for_thread"),
    "runtime.fleet.worker": ("FleetWorker",),
    "runtime.fleet.workers": ("list_workers",),
}
_LAZY = {name: module for module, names in _PUBLIC.items() for name in names}

if TYPE_CHECKING:
    from runtime.store.database import Database, default_db_path, open_database
    from runtime.errors import AgentError
    from runtime.threads.diff import diff_checkpoints
    from runtime.runs.diagram import draw_graph, graph_structure
    from runtime.threads.edit import parse_assignments
    from runtime.threads.fork import fork_thread
    from runtime.threads.bundle import export_thread, import_thread
    from runtime.threads.history import get_history, get_state, iter_results, resolve_checkpoint, thread_status
    from runtime.policy.models import make_model
    from runtime.threads.progress import ProgressSnapshot
    from runtime.runs.outcome import RunEvent, RunOutcome
    from runtime.runs.plan import prepare_resume, prepare_retry, prepare_run, RunPlan, validate_run
    from runtime.policy.settings import RunSettings
    from runtime.runs.runner import resume_thread, retry_failed, run_plan, run_thread
    from runtime.schedules.calendar import add_schedule, check_schedule, list_schedules, schedule_runs
    from runtime.schedules.worker import Worker
    from runtime.threads.registry import get_thread, list_threads, ThreadRecord
    from runtime.fleet.queue import submit_decisions, submit_resume, submit_retry, submit_run, wait_for_thread
    from runtime.fleet.worker import FleetWorker
    from runtime.fleet.workers import list_workers


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted([*_LAZY, "list_graphs"])


def list_graphs() -> list[dict[str, str]]:
    """The built-in graphs: name, version and one-line description."""
    from graphs import builtin_names, load_graph

    return [
        {"name": name, "version": spec.version, "description": spec.description}
        for name in builtin_names()
        for spec in [load_graph(name)]
    ]
