"""The schedule commands of the `agent` CLI (`agent schedule ...`); `agent worker`, which fires
them, is in commands/fleet.py.

Each command parses, calls one runtime function (runtime/schedules/calendar.py, runtime/schedules/worker.py) and
renders; cli.py adds them to the `agent` app.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from commands.options import DEFAULT_DB, MODEL_HELP, DbOpt, DebugOpt, JsonOpt, QuietOpt, parse_input
from commands.output import err, finish, handles_errors, open_db, out, print_json, table

app = typer.Typer()

schedule_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run a graph on a cron schedule in a time zone; agent worker fires the runs.",
)
app.add_typer(schedule_app, name="schedule")

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


def _next_text(view: dict) -> tuple[str, str]:
    """The next run for people: `2026-12-03 18:00+09:00` in the schedule's zone, `2026-12-03 09:00Z`."""
    return ((view["next_run"] or "-").replace("T", " "), _clock(view["next_run_utc"]))


@schedule_app.command("add")
@handles_errors
def add(
    name: NameArg,
    graph: Annotated[str, typer.Option("--graph", "-g", metavar="GRAPH", help="The graph each run starts (agent graphs).")],
    cron: Annotated[str, typer.Option("--cron", metavar="CRON", help='Five cron fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * 1-5".')],
    tz: Annotated[str, typer.Option("--tz", metavar="ZONE", help="IANA time zone the pattern is read in, e.g. Asia/Tokyo.")] = "UTC",
    input: Annotated[str, typer.Option("--input", "-i", metavar="JSON", help="Each run's input: JSON, or @file.json.")] = "{}",
    max_cost: Annotated[
        Optional[float], typer.Option("--max-cost", metavar="USD", help="Estimated USD each run may spend, at most AGENT_MAX_COST_CEILING.")
    ] = None,
    deadline: Annotated[Optional[str], typer.Option("--deadline", metavar="DURATION", help="Longest each run may take, e.g. 10m.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="MODEL", help="The model of every run: " + MODEL_HELP)] = None,
    overlap: Annotated[str, typer.Option("--overlap", metavar="POLICY", help="skip: no run while the previous one still runs; allow: run anyway.")] = "skip",
    missed: Annotated[
        str, typer.Option("--missed", metavar="POLICY", help="When the worker was down: skip missed runs, or run-once (the latest, once).")
    ] = "skip",
    max_failures: Annotated[int, typer.Option("--max-failures", metavar="N", help="Consecutive failed runs after which the schedule pauses itself.")] = 3,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Add a schedule: run GRAPH with --input at every time of --cron, read in --tz.

    Everything is checked first (cron pattern, time zone, the minimum interval between runs,
    the number of schedules, the budget, the graph and its input); any problem exits 2 and
    nothing is stored. Runs are background runs, each a new thread NAME@FIRE-TIME.

    Example: agent schedule add digest --graph research --cron "0 9 * * 1-5" --tz Asia/Tokyo --input '{"question": "What changed?"}' --max-cost 2 --deadline 10m
    """
    from runtime.schedules.calendar import add_schedule, check_schedule

    new = check_schedule(
        name, graph, cron, tz, parse_input(input), max_cost=max_cost, deadline=deadline, model=model, overlap=overlap, missed=missed, max_failures=max_failures
    )  # every check that needs no database, before the file is created
    with open_db(db, create=True) as database:
        schedule = add_schedule(database, new)
    view = schedule.as_dict()
    if as_json:
        print_json(view)
    else:
        local, utc = _next_text(view)
        err(f"Schedule {name} added; next run {local} ({utc}). Start a worker to fire it: agent worker")


@schedule_app.command("list")
@handles_errors
def list_(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the schedules: pattern, next run in the schedule's zone and in UTC, status, last result.

    Example: agent schedule list --json
    """
    from runtime.schedules.calendar import last_runs, list_schedules

    with open_db(db) as database:
        schedules = list_schedules(database)
        last = last_runs(database)
    views = [{**s.as_dict(), "last_run": last.get(s.name)} for s in schedules]
    if as_json:
        print_json(views)
        return
    rows = []
    for v in views:
        local, utc = _next_text(v)
        status = v["status"] + (f" ({v['failures']} failed runs)" if v["pause_reason"] else "")
        run = v["last_run"]
        result = f"{run['status']} {_clock(run['fire_time'])}" if run else "-"
        rows.append([v["name"], v["graph"], f"{v['cron']} {v['tz']}", local, utc, status, result])
    table(None, ["schedule", "graph", "cron", "next run", "next run (UTC)", "status", "last run"], rows)
    for v in views:
        if v["pause_reason"]:
            err(f"{v['name']} {v['pause_reason']}; after fixing the cause: agent schedule resume {v['name']}")


@schedule_app.command("pause")
@handles_errors
def pause(name: NameArg, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Stop firing a schedule (a run in progress goes on). Pausing a paused schedule says so.

    Example: agent schedule pause digest
    """
    from runtime.schedules.calendar import pause_schedule

    with open_db(db) as database:
        schedule, changed = pause_schedule(database, name)
    if as_json:
        print_json({**schedule.as_dict(), "changed": changed})
    else:
        err(f"Schedule {name} paused." if changed else f"Schedule {name} was already paused; nothing changed.")


@schedule_app.command("resume")
@handles_errors
def resume(name: NameArg, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Fire a paused schedule again, from its next time after now; clears its failure count.

    Example: agent schedule resume digest
    """
    from runtime.schedules.calendar import resume_schedule

    with open_db(db) as database:
        schedule, changed = resume_schedule(database, name)
    view = schedule.as_dict()
    if as_json:
        print_json({**view, "changed": changed})
    else:
        local, utc = _next_text(view)
        err(f"Schedule {name} {'resumed' if changed else 'was already active'}; next run {local} ({utc}).")


@schedule_app.command("delete")
@handles_errors
def delete(name: NameArg, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Delete a schedule and its run history. The threads its runs made stay (agent delete).

    Example: agent schedule delete digest
    """
    from runtime.schedules.calendar import delete_schedule

    with open_db(db) as database:
        removed = delete_schedule(database, name)
    if as_json:
        print_json({"schedule": name, "deleted": True, "runs_removed": removed})
    else:
        err(f"Schedule {name} deleted ({removed} run record(s)); its threads stay.")


@schedule_app.command("trigger")
@handles_errors
def trigger(name: NameArg, db: DbOpt = DEFAULT_DB, quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Run a schedule once now, in this process, as a background run recorded in its history.
    Exit codes as agent run.

    Example: agent schedule trigger digest
    """
    from runtime.schedules.worker import Worker

    with open_db(db) as database:
        outcome = Worker(database, handle_signals=True).trigger(name)
    finish(outcome, as_json)


@schedule_app.command("runs")
@handles_errors
def runs(
    name: NameArg,
    since: Annotated[Optional[str], typer.Option("--since", metavar="TIME", help="Runs fired from then: 2026-11-01, 2026-11-01T09:00 (the schedule's zone) or 7d (ago).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", metavar="TIME", help="Runs fired before then, same forms.")] = None,
    by: Annotated[str, typer.Option("--by", metavar="PERIOD", help="Period of the cost totals: day, week or month (in the schedule's zone).")] = "day",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """A schedule's runs: thread, fire time, start, end, status, cost, error; and the total cost
    of the schedule and of each day (week, month).

    Example: agent schedule runs digest --since 7d --json
    """
    import time

    from runtime.schedules.calendar import get_schedule, parse_when, schedule_runs

    with open_db(db) as database:
        tz = get_schedule(database, name).tz
        now = time.time()
        history = schedule_runs(database, name, parse_when(since, tz, now, "since"), parse_when(until, tz, now, "until"), by)
    if as_json:
        print_json(history)
        return
    table(
        f"schedule {name}: {len(history['runs'])} run(s), ${history['total_cost_usd']:.4f}",
        ["fired (UTC)", "thread", "started", "ended", "status", "cost", "error"],
        [[_clock(r["fire_time"]), r["thread_id"] or "-", _clock(r["started_at"]), _clock(r["ended_at"]), r["status"], f"${r['cost_usd']:.4f}", r["error"] or ""]
         for r in history["runs"]],  # fmt: skip
    )
    for period in history["periods"]:
        out(f"{period['period']}: {period['runs']} run(s), ${period['cost_usd']:.4f}")


def _clock(iso: str | None) -> str:
    """An ISO 8601 UTC time from --json, to the minute for people: `2026-11-23 09:00Z`."""
    return f"{iso[:10]} {iso[11:16]}Z" if iso else "-"
