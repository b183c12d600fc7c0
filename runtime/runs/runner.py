"""Running a thread: the public functions the CLI, the worker and notebooks call.

`run_thread`, `resume_thread` and `retry_failed` each prepare a plan (runtime/runs/plan.py)
and run it. A face that checks a run before it opens the database prepares the plan itself
(`prepare_run`) and hands it to `run_plan`. Running a plan takes the thread's lease, drives the
graph to its end or a stop (runtime/runs/drive.py), and returns how it ended (runtime/runs/outcome.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from runtime.errors import Command, Message, StorageFull
from runtime.policy.settings import RunSettings
from runtime.runs.drive import drive
from runtime.runs.outcome import EventHandler, RunEvent, RunOutcome
from runtime.runs.plan import ResumeOptions, RunPlan, prepare_resume, prepare_retry, prepare_run, validate_run
from runtime.store.database import Database, is_full
from runtime.threads import registry as threads

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["RunEvent", "RunOutcome", "RunPlan", "RunSettings", "resume_thread", "retry_failed", "run_plan", "run_thread", "validate_run"]


def run_thread(
    db: Database,
    graph: str,
    thread_id: str,
    input: dict[str, Any],
    settings: RunSettings | None = None,
    *,
    on_event: EventHandler | None = None,
    handle_signals: bool = False,
    approve_all: bool = False,
) -> RunOutcome:
    """Start a new thread of `graph` with `input`, run it to the end (or a stop), and return how it ended."""
    plan = prepare_run(graph, thread_id, input, settings, approve_all=approve_all)
    return run_plan(db, plan, on_event=on_event, handle_signals=handle_signals)


def resume_thread(
    db: Database,
    thread_id: str,
    checkpoint: str | None = None,
    settings: RunSettings | None = None,
    *,
    handle_signals: bool = False,
    **options: Unpack[ResumeOptions],
) -> RunOutcome:
    """Continue a thread from its latest checkpoint (input None), or fork it from `checkpoint`.

    A cancelled thread is refused unless `force`. `command` (a LangGraph `Command(resume=...)`,
    from runtime/runs/approvals.py) answers the thread's pending interrupts; `approve_all` (`--yes`)
    approves its sensitive actions up front.

    `settings` override what the thread recorded, from now on. With `wait` (seconds), a thread
    that another live process is running is waited for instead of refused. `edits` (state key ->
    value) are applied first, as a checkpoint of their own (runtime/threads/edit.py). The thread's graph
    is imported only when trusted (runtime/policy/trust.py); `attended` is False for the worker.
    These keyword arguments are `ResumeOptions` (runtime/runs/plan.py); `on_event` receives the
    run's events.
    """
    plan = prepare_resume(db, thread_id, checkpoint, settings, **options)
    return run_plan(db, plan, on_event=options.get("on_event"), handle_signals=handle_signals)


def retry_failed(
    db: Database,
    thread_id: str,
    settings: RunSettings | None = None,
    *,
    wait: float | None = None,
    force: bool = False,
    on_event: EventHandler | None = None,
    handle_signals: bool = False,
    attended: bool = True,
) -> RunOutcome:
    """Send a queue's given-up items (its dead-letter list) through the queue again.

    Items whose result is `done` are not touched. The queue must have finished its pass; the
    retry is a new round of the same thread (the `round` in its state), checkpointed like any
    run, so a crash or Ctrl-C during it is continued with `resume_thread`. `settings` override
    the thread's from now on, as with `resume_thread`; a cancelled thread is refused unless `force`.
    """
    plan = prepare_retry(db, thread_id, settings, wait=wait, on_event=on_event, force=force, attended=attended)
    return run_plan(db, plan, on_event=on_event, handle_signals=handle_signals)


def run_plan(db: Database, plan: RunPlan, *, on_event: EventHandler | None = None, handle_signals: bool = False) -> RunOutcome:
    """Run a prepared plan: take the thread's lease (a new thread is registered with it), drive
    the graph to its end or a stop, and return how it ended. `handle_signals`: Ctrl-C and SIGTERM
    stop the run at a step boundary (in the main thread only)."""
    if plan.completed_state is not None:
        return _record_completed(db, plan, on_event)
    if plan.record is None:
        spec = plan.spec
        record = _take_lease(db, lambda: threads.create_thread(db, plan.thread_id, spec.spec, spec.version, plan.settings.as_dict()), plan.lease_hint)
    else:
        record = _take_lease(db, lambda: threads.acquire(db, plan.thread_id, plan.settings.as_dict()), plan.lease_hint)
    plan = replace(plan, lease=record.lease)
    if on_event:
        for notice in plan.notices:
            on_event(notice)
    return _run_sync(drive(db, plan, on_event, handle_signals))


def _take_lease(db: Database, lease: Callable[[], Any], hint: str) -> Any:
    """Take a thread's lease (`lease()`) for a run, once the database's reserve is in place.

    The reserve is what lets a run stopped by a full disk still record how it ended
    (runtime/runs/drive.py); with no room for it, or for the lease, the run does not start:
    StorageFull, with nothing written.
    """
    db.keep_reserve(hint)
    try:
        return lease()
    except sqlite3.OperationalError as exc:
        if is_full(exc):
            raise StorageFull(f"the disk that holds {db.path} is full", hint) from None
        raise


def _record_completed(db: Database, plan: RunPlan, on_event: EventHandler | None) -> RunOutcome:
    """A stale thread whose latest checkpoint has nothing left to run: its last runner died before
    it saved a step (a `resume --checkpoint` killed early, say), so the thread stands completed
    as its checkpoints are. That is recorded, and the lease the dead runner left is let go."""
    thread_id, state = plan.thread_id, plan.completed_state
    step = (state.metadata or {}).get("step", plan.record.steps)
    values = state.values if isinstance(state.values, dict) else {}
    error = values.get("give_up_reason")
    _take_lease(db, lambda: threads.acquire(db, thread_id), Message("free some space, then: {}", Command("resume", thread_id=thread_id)))
    threads.release(db, thread_id, "completed", step, error)
    if on_event:
        on_event(RunEvent("notice", message=f"thread {thread_id}: its last run stopped before it saved a step, and nothing is left to run; recorded as completed"))
    return RunOutcome(thread_id, plan.spec.spec, "completed", max(step, 0), state.config["configurable"]["checkpoint_id"], 0.0, error, values)


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="agent-run")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
