"""The fleet: submit (queue a run), worker (drive queued runs, fire schedules), workers (list them).

Each command parses, calls one runtime function (runtime/fleet/queue.py, runtime/fleet/worker.py,
runtime/fleet/workers.py) and renders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt, JsonOpt, ThreadOpt, check_thread_id, parse_input, queued, run_settings
from commands.output import err, handles_errors, open_db, out, print_json, table

app = typer.Typer()

PriorityOpt = Annotated[int, typer.Option("--priority", metavar="N", help="Higher runs first; equal priorities run oldest first [default: 0].")]


@app.command()
@handles_errors
@run_settings()
def submit(
    graph: Annotated[str, typer.Argument(metavar="GRAPH", help="A built-in graph (agent graphs), or path/file.py:attr or package.module:attr.")],
    thread: ThreadOpt,
    input: Annotated[str, typer.Option("--input", "-i", metavar="JSON", help="The input: JSON, or @file.json.")] = "{}",
    settings: Any = None,
    priority: PriorityOpt = 0,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Queue a new thread of GRAPH for a worker to run, and return at once.

    Everything agent run checks is checked here (bad input: exit 2, nothing written); the thread
    is recorded as queued with its settings. Queued runs are background runs: sensitive actions
    wait for agent approve. Start workers with agent worker.

    Example: agent submit task_queue --thread docs --input @docs.json --max-cost 5
    """
    from runtime.fleet.queue import prepare_submit, queue_plan

    check_thread_id(thread)
    data = parse_input(input)
    plan = prepare_submit(graph, thread, data, settings)  # a bad graph, input or model fails here, before the database is made
    with open_db(db, create=True) as database:
        queue_plan(database, plan, priority=priority)
    queued(thread, "run", as_json)


@app.command()
@handles_errors
def worker(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", metavar="N", help="Threads driven at once, in this one process.")] = 8,
    item_parts: Annotated[Optional[int], typer.Option("--item-parts", metavar="N", help="On PostgreSQL: parts of queue threads' items held at once [default: as --concurrency].")] = None,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit once nothing is queued or left to take over and no thread runs.")] = False,
    grace: Annotated[str, typer.Option("--grace", metavar="DURATION", help="On SIGTERM, how long threads may take to reach a node boundary.")] = "30s",
    max_resumes: Annotated[int, typer.Option("--max-resumes", metavar="N", help="Times a dead runner's thread is taken over before it fails.")] = 3,
    stats: Annotated[Optional[Path], typer.Option("--stats", metavar="PATH", help="On exit, write what the worker did as JSON (steps, save latency, CPU).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Fire the schedules that are due, run what is queued, then exit.")] = False,
    now: Annotated[
        Optional[str], typer.Option("--now", metavar="TIME", help="With --once: act as if it were this instant (ISO 8601; UTC unless it names a zone).")
    ] = None,
    poll: Annotated[str, typer.Option("--poll", metavar="DURATION", help="How often to look for due schedules, e.g. 15s.")] = "15s",
    missed_after: Annotated[
        str, typer.Option("--missed-after", metavar="DURATION", help="How late a scheduled run may start before it counts as missed (--missed).")
    ] = "15m",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run queued threads, up to --concurrency at once, and fire due schedules, in the foreground
    (let a service manager keep it alive). Threads whose runner died are taken over from their
    latest checkpoint. SIGTERM or Ctrl-C: nothing new starts, every thread stops at its next node
    boundary and is queued again, and the worker exits 0 (a second signal stops at once). Start
    more workers on one database for more at once: none runs a thread another one runs.

    Example: agent worker --concurrency 100
    """
    from runtime.schedules.serve import serve_worker
    from runtime.policy.settings import parse_duration
    from runtime.schedules.clock import ManualClock, SystemClock
    from runtime.errors import BadInput

    _check_worker_counts(concurrency, item_parts, max_resumes)
    clock = SystemClock()
    if now is not None:
        if not once:
            raise BadInput("--now needs --once: a worker that runs on cannot stand still in time", "agent worker --once --now 2026-11-23T09:00Z")
        clock = ManualClock(_instant(now))
    options = {
        "concurrency": concurrency,
        "item_parts": item_parts,
        "max_resumes": max_resumes,
        "grace": parse_duration(grace, "grace") or 0.0,
        "until_idle": until_idle or once,
        "poll": parse_duration(poll, "poll") or 1.0,
        "missed_after": parse_duration(missed_after, "missed_after") or 0.0,
        "once": once,
    }
    with open_db(db, create=True) as database:
        if not once:
            err(f"Worker started (pid {os.getpid()}, {concurrency} at once); stop it with Ctrl-C or SIGTERM.")
        report = serve_worker(database, clock, on_event=_show(as_json), **options)
    if stats is not None:
        stats.write_text(json.dumps(report, indent=2) + "\n")
    if not once:
        err("Worker stopped.")


def _check_worker_counts(concurrency: int, item_parts: int | None, max_resumes: int) -> None:
    """BadInput for a count a worker cannot run with (and for a malformed AGENT_MODEL_RPM), before it takes any run."""
    from runtime.errors import BadInput
    from runtime.policy.shared_rates import model_limits

    model_limits()
    if concurrency < 1:
        raise BadInput(f"--concurrency must be 1 or more, not {concurrency}", "e.g. agent worker --concurrency 100")
    if item_parts is not None and item_parts < 1:
        raise BadInput(f"--item-parts must be 1 or more, not {item_parts}", "e.g. agent worker --item-parts 4")
    if max_resumes < 0:
        raise BadInput(f"--max-resumes must be 0 or more, not {max_resumes}", "0 fails a dead runner's thread at once; the default is 3")


def _show(as_json: bool):
    def show(event: Any) -> None:
        if as_json:
            out(json.dumps(event.as_dict(), ensure_ascii=False))
            return
        parts = [event.kind] + [str(p) for p in (getattr(event, "schedule", None), event.thread_id, event.status, event.message) if p]
        err(" ".join(parts))

    return show


@app.command()
@handles_errors
def workers(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the workers: pid, host, when started, threads running, heartbeat age, concurrency.

    A worker whose heartbeat stopped (or whose process is gone) is shown as stale; its threads
    are taken over by a live worker.

    Example: agent workers --json
    """
    from runtime.fleet.workers import list_workers

    with open_db(db) as database:
        rows = list_workers(database)
    if as_json:
        print_json(rows)
        return
    table(
        None,
        ["worker", "pid", "host", "status", "running", "concurrency", "heartbeat", "started"],
        [[r["worker_id"], r["pid"], r["host"], r["status"], r["running"], r["concurrency"], f"{r['heartbeat_age_seconds']:.0f}s ago", r["started_at"][:19]] for r in rows],
    )


def _instant(text: str) -> float:
    from datetime import datetime, timezone

    from runtime.errors import BadInput

    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--now {text!r} is not an ISO 8601 time", "e.g. --now 2026-11-23T09:00Z") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
