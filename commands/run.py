"""Running threads: run, resume and retry-failed (runtime/runs/runner.py, runtime/runs/plan.py).

All three take the run settings (commands/options.py); progress goes to stderr and the end of
the run is reported by `finish` (commands/output.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from commands.options import (
    DEFAULT_DB,
    CheckpointOpt,
    DbOpt,
    DetachOpt,
    DebugOpt,
    JsonOpt,
    QuietOpt,
    ResumeModelOpt,
    ThreadOpt,
    WaitOpt,
    YesOpt,
    check_detach,
    check_thread_id,
    parse_input,
    queued,
    run_settings,
)
from commands.output import finish, handles_errors, open_db, progress_display

app = typer.Typer()


@app.command()
@handles_errors
@run_settings()
def run(
    graph: Annotated[str, typer.Argument(metavar="GRAPH", help="A built-in graph (agent graphs), or path/file.py:attr or package.module:attr.")],
    thread: ThreadOpt,
    input: Annotated[str, typer.Option("--input", "-i", metavar="JSON", help="The input: JSON, or @file.json.")] = "{}",
    settings: Any = None,
    yes: YesOpt = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Start a new thread of GRAPH and run it until it ends or is stopped.

    A queue's progress shows on stderr: a live bar on a terminal, a line every 10 s otherwise,
    JSON events with --json, nothing with --quiet.

    Example: agent run task_queue --thread docs --input '{"items": ["a", "b"], "prompt": "Summarize: {item}"}'
    """
    from runtime import prepare_run, run_plan

    check_thread_id(thread)
    data = parse_input(input)
    plan = prepare_run(graph, thread, data, settings, approve_all=yes)  # a bad graph, input or model fails here, before the database is touched
    with progress_display(quiet, as_json, thread) as display, open_db(db, create=True) as database:  # a bad AGENT_PROGRESS_EVERY fails before the file is made
        outcome = run_plan(database, plan, on_event=display, handle_signals=True)
    finish(outcome, as_json)


@app.command()
@handles_errors
@run_settings(model=ResumeModelOpt)
def resume(
    thread: ThreadOpt,
    checkpoint: CheckpointOpt = None,
    settings: Any = None,
    yes: YesOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Resume a cancelled thread anyway.")] = False,
    wait: WaitOpt = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", metavar="KEY=VALUE", help="Edit the state first: key=value, the value JSON or else a plain string (repeatable)."),
    ] = None,
    detach: DetachOpt = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Continue a thread from its latest checkpoint, or fork it from an older one with --checkpoint.

    Settings given here (model, attempts, timeouts, ...) replace the thread's from now on;
    a deadline starts afresh on every resume. --set edits the state (at --checkpoint, if given)
    before the run goes on; the edit is a checkpoint of its own in the history.

    Example: agent resume --thread docs --checkpoint 3

    Example: agent resume --thread q --checkpoint 1 --set steps=2 --set question="Why is the sea salty?"
    """
    from runtime import resume_thread
    from runtime.threads.edit import parse_assignments
    from runtime.policy.settings import parse_duration

    edits = parse_assignments(set_ or [])
    wait_seconds = parse_duration(wait, "wait")
    if detach:
        check_detach(yes, wait)
        from runtime.fleet.queue import submit_resume

        with open_db(db) as database:
            submit_resume(database, thread, checkpoint, settings, edits=edits or None, force=force)
        queued(thread, "resume", as_json)
        return
    with open_db(db) as database, progress_display(quiet, as_json, thread) as display:
        outcome = resume_thread(
            database, thread, checkpoint, settings, edits=edits or None, wait=wait_seconds, on_event=display, handle_signals=True, force=force, approve_all=yes
        )
    finish(outcome, as_json)


@app.command("retry-failed")
@handles_errors
@run_settings(model=ResumeModelOpt)
def retry_failed(
    thread: ThreadOpt,
    settings: Any = None,
    wait: WaitOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Retry a cancelled thread's failed items anyway.")] = False,
    detach: DetachOpt = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Send a finished queue's failed items (its dead-letter list) through the queue again.

    Items that succeeded are not touched. The failed items, with their errors, are listed by
    agent results --thread THREAD --status failed. Each item gets --max-attempts more attempts;
    settings given here replace the thread's from now on, as with resume.

    Example: agent retry-failed --thread docs --max-attempts 5
    """
    from runtime import retry_failed as send_failed_again
    from runtime.policy.settings import parse_duration

    wait_seconds = parse_duration(wait, "wait")
    if detach:
        check_detach(False, wait)
        from runtime.fleet.queue import submit_retry

        with open_db(db) as database:
            submit_retry(database, thread, settings, force=force)
        queued(thread, "retry", as_json)
        return
    with open_db(db) as database, progress_display(quiet, as_json, thread) as display:
        outcome = send_failed_again(database, thread, settings, wait=wait_seconds, force=force, on_event=display, handle_signals=True)
    finish(outcome, as_json)
