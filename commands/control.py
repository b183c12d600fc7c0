"""The control commands of the `agent` CLI: pause, cancel, approvals, approve, reject.

Each command parses, calls one runtime function (runtime/threads/control.py, runtime/runs/approvals.py) and
renders; cli.py adds them to the `agent` app.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt, DetachOpt, JsonOpt, QuietOpt, ThreadOpt, queued
from commands.output import err, finish, handles_errors, open_db, print_json, progress_display, table

app = typer.Typer()

IdOpt = Annotated[
    Optional[list[str]], typer.Option("--id", metavar="ID", help="The approval (interrupt) id, or a unique prefix; repeatable. agent approvals lists them.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Answer every pending approval of the thread.")]


def _control(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
    else:
        err(result.message[0].upper() + result.message[1:] + ".")


@app.command()
@handles_errors
def pause(thread: ThreadOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Ask the process running a thread to stop at the next node boundary (status paused).

    The nodes in flight finish and are saved; the runner exits with code 3, and agent resume
    continues the thread. Pausing a paused thread, or one that is not running, changes nothing.

    Example: agent pause --thread docs
    """
    from runtime.threads.control import request_pause

    with open_db(db) as database:
        _control(request_pause(database, thread), as_json)


@app.command()
@handles_errors
def cancel(thread: ThreadOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Stop a thread for good (status cancelled): a running one at its next node boundary, one
    that is not running at once. agent resume then refuses it unless given --force.

    Example: agent cancel --thread docs
    """
    from runtime.threads.control import request_cancel

    with open_db(db) as database:
        _control(request_cancel(database, thread), as_json)


@app.command()
@handles_errors
def approvals(thread: ThreadOpt, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the approvals a thread waits for, each with the id that agent approve / reject take.

    Example: agent approvals --thread cleanup --json
    """
    from runtime.runs.approvals import pending_approvals

    with open_db(db) as database:
        pending = pending_approvals(database, thread)
    if as_json:
        print_json(pending)
        return
    if not pending:
        err(f"Thread {thread} has no pending approvals.")
        return
    table(
        f"thread {thread}: {len(pending)} pending",
        ["id", "action", "would"],
        [[p["id"], p.get("action_id", ""), p.get("would", p.get("value", ""))] for p in pending],
    )
    err(f"Answer with: agent approve --thread {thread} --id ID  /  agent reject --thread {thread} --id ID --reason TEXT")


def _decide(thread: str, ids: list[str] | None, every: bool, approved: bool, reason: str | None, db: Any, quiet: bool, as_json: bool, detach: bool) -> None:
    from runtime.runs.approvals import decide

    if detach:
        from runtime.fleet.queue import submit_decisions

        with open_db(db) as database:
            submit_decisions(database, thread, ids, approved, reason, every=every)
        queued(thread, "answer", as_json)
        return
    with open_db(db) as database, progress_display(quiet, as_json, thread) as display:
        outcome = decide(database, thread, ids, approved, reason, every=every, on_event=display, handle_signals=True)
    finish(outcome, as_json)


@app.command()
@handles_errors
def approve(
    thread: ThreadOpt,
    id: IdOpt = None,
    every: AllOpt = False,
    reason: Annotated[Optional[str], typer.Option("--reason", metavar="TEXT", help="Why (recorded with the decision).")] = None,
    detach: DetachOpt = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Approve pending actions of a thread and resume it. The decision is recorded in the
    thread's state with who (your OS user) and when. Without --id, the thread must have exactly
    one pending approval (or give --all); approvals not named keep waiting.

    Example: agent approve --thread cleanup --id 3f2a
    """
    _decide(thread, id, every, True, reason, db, quiet, as_json, detach)


@app.command()
@handles_errors
def reject(
    thread: ThreadOpt,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (required; recorded with the decision).")],
    id: IdOpt = None,
    every: AllOpt = False,
    detach: DetachOpt = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Reject pending actions of a thread and resume it: they are not done, and the decision,
    with who, when and why, is recorded in the thread's state.

    Example: agent reject --thread cleanup --id 3f2a --reason "keep the archive"
    """
    _decide(thread, id, every, False, reason, db, quiet, as_json, detach)
