"""Reading threads: graphs, threads, status, history, state and results.

Each command opens the database, calls one runtime function and renders what it returns; none
of them imports LangGraph, so they start fast.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any, Callable, Optional

import typer

from commands.options import DEFAULT_DB, CheckpointOpt, DbOpt, DebugOpt, JsonOpt, ThreadOpt
from commands.output import err, handles_errors, jsonable, open_db, out, print_json, table

app = typer.Typer()


@app.command()
@handles_errors
def graphs(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the built-in graphs.

    Example: agent graphs --json
    """
    from runtime import list_graphs

    rows = list_graphs()
    if as_json:
        print_json(rows)
    else:
        table(None, ["graph", "description"], [[r["name"], r["description"]] for r in rows])


@app.command()
@handles_errors
def threads(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List every thread: graph, status, steps and last update.

    Example: agent threads --json
    """
    from runtime import list_threads
    from runtime.policy.budget import thread_budgets

    with open_db(db) as database:
        records = list_threads(database)
        spend = thread_budgets(database, records)
    if as_json:
        print_json([{**r.as_dict(), "spend": spend[r.thread_id]} for r in records])
        return
    table(
        None,
        ["thread", "graph", "status", "steps", "spent", "updated", "error"],
        [[r.thread_id, r.graph, _shown(r), r.steps, _spent(spend[r.thread_id]), _when(r.updated_at), r.error or ""] for r in records],
    )


def _shown(record: Any) -> str:
    """The status, and for a running thread the process that runs it: `running (pid 4242)`."""
    if record.shown_status == "running":
        return f"running (pid {record.owner_pid})"
    return record.shown_status


def _spent(view: dict[str, Any]) -> str:
    """`1,234 tok $0.0012 / $5` : the spend, and the budget where there is one."""
    if not view["calls"] and view["max_cost"] is None and view["max_tokens"] is None:
        return ""
    cost = f"${view['cost_usd']:.4f}" if view["cost_usd"] is not None else "cost unknown"
    text = f"{view['tokens']:,} tok {cost}"
    limits = [f"${view['max_cost']:g}" if view["max_cost"] is not None else "", f"{view['max_tokens']:,} tok" if view["max_tokens"] is not None else ""]
    return text + (" / " + ", ".join(filter(None, limits)) if any(limits) else "")


@app.command()
@handles_errors
def status(
    thread: ThreadOpt,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the thread live until it stops running (Ctrl-C to stop watching).")] = False,
    interval: Annotated[str, typer.Option("--interval", metavar="DURATION", help="Time between two reads with --watch, e.g. 1s, 500ms.")] = "1s",
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show one thread's status, its runner (pid, host, heartbeat), progress and last error.

    Works while another process runs the thread: a queue's figures (done, failed, items a
    second, ETA, tokens, cost) come from the database, the same as the run's own progress bar.
    With --watch they are followed live (one JSON object a line with --json).

    Example: agent status --thread docs --watch
    """
    from runtime import thread_status
    from runtime.policy.numbers import check_number
    from runtime.policy.settings import parse_duration

    seconds = check_number(parse_duration(interval, "interval") or 0.0, "interval", minimum=0.1, unit="seconds")
    with open_db(db) as database:
        if watch:
            from commands.progress import ProgressDisplay, progress_mode
            from commands.progress import watch as follow

            display = ProgressDisplay(progress_mode(False, as_json, sys.stdout), stream=sys.stdout, thread=thread)
            info = follow(lambda: thread_status(database, thread), display, seconds)
            if as_json:
                return
        else:
            info = thread_status(database, thread)
    if as_json:
        print_json(info)
        return
    lines = [
        ("thread", info["thread_id"]),
        ("graph", f"{info['graph']} (version {info['graph_version']})"),
        ("status", info["status"]),
        ("steps", info["steps"]),
        ("updated", _when(info["updated_at"])),
    ]
    if runner := info["runner"]:
        age = runner["heartbeat_age_seconds"]
        lines.append(("runner", f"pid {runner['pid']} on {runner['host']}, heartbeat {age}s ago" + ("" if runner["alive"] else " (gone)")))
    if waiting := info.get("queued"):
        lines.append(("queued", f"a {waiting['kind']} (priority {waiting['priority']}) since {_when(waiting['queued_at'])}, for a worker"))
    if info["progress"]:
        lines.extend(_progress_lines(info["progress"]))
    if info.get("spend") and _spent(info["spend"]):
        lines.append(("spent", _spent(info["spend"]) + f" over {info['spend']['calls']} model call(s)"))
    if info["error"]:
        lines.append(("error", info["error"]))
    settings = info["settings"]
    lines.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)))
    for key, value in lines:
        out(f"{key:>9}: {value}")


def _progress_lines(progress: dict[str, Any]) -> list[tuple[str, str]]:
    from commands.progress import cost_text, duration, rate_text, snapshot_from

    p = snapshot_from(progress)
    lines = [("items", f"{p.done} done, {p.failed} failed of {p.total} ({p.percent:.1f}%), {p.remaining} to go")]
    if p.elapsed is not None:
        lines.append(("rate", f"{rate_text(p)}, ETA {duration(p.eta)}, elapsed {duration(p.elapsed)}"))
    lines.append(("tokens", f"{p.input_tokens:,} in, {p.output_tokens:,} out" + (f", {cost_text(p)}" if cost_text(p) else "")))
    return lines


def _when(when: str | float | None) -> str:
    """An instant (ISO 8601 as --json has it, or epoch seconds) in local time for people:
    `2026-12-02 09:41:48`."""
    from datetime import datetime

    if not when:
        return "-"
    moment = datetime.fromisoformat(when) if isinstance(when, str) else datetime.fromtimestamp(when).astimezone()
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@app.command()
@handles_errors
def history(
    thread: ThreadOpt,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", metavar="N", help="Show only the newest N checkpoints.")] = None,
    show: Annotated[
        Optional[str], typer.Option("--show", metavar="KEYS", help="State keys whose writes each step shows, comma-separated (e.g. models,decisions).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List a thread's checkpoints, newest first, as a tree of branches (like git log --graph).

    Resuming from an older checkpoint starts a branch beside the old one: `*` marks a checkpoint
    in its branch's column, `|/` where a branch joins the checkpoint it forked from. Branch 0 is
    the line of the latest checkpoint (the one step numbers name). --limit shows the newest N
    checkpoints, their branches numbered as in the whole history.

    With --show, each step also shows what its nodes wrote to those state keys: which model
    answered (models), what was decided (decisions).

    Example: agent history --thread docs --limit 20 --show models
    """
    from runtime import get_history

    keys = [k.strip() for k in show.split(",") if k.strip()] if show else None
    with open_db(db) as database:
        rows = get_history(database, thread, limit, keys)
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    if keys:  # the shown values take the place of next and time
        table(
            f"thread {thread}",
            ["tree", "step", "checkpoint", "written by", *keys],
            _tree_rows(rows, lambda r: [r.step, r.checkpoint_id, _names(r.writers), *[_compact(r.shown[k]) for k in keys]]),
            keep=("tree", "checkpoint"),
        )
        return
    table(
        f"thread {thread}",
        ["tree", "step", "checkpoint", "source", "written by", "next", "created"],
        _tree_rows(rows, lambda r: [r.step, r.checkpoint_id, r.source, _names(r.writers), _names(r.next), r.created_at[11:19]]),
        keep=("tree", "checkpoint", "source", "created"),
    )


def _tree_rows(rows: list[Any], cells: Callable[[Any], list[Any]]) -> list[list[Any]]:
    """Table rows under the history tree's drawing (runtime/threads/history_tree.py): each
    checkpoint's cells beside its `*`, and a line of its own where a branch joins the one it forked from."""
    from runtime.threads.history_tree import draw_tree

    lines = draw_tree(rows)
    width = len(cells(rows[0])) if rows else 0
    return [[graph, *(cells(row) if row is not None else [""] * width)] for graph, row in lines]


def _compact(values: Any) -> str:
    """Written values for a table cell: lists flattened, dicts as `key=value`, strings bare."""
    if isinstance(values, list):
        return "; ".join(filter(None, (_compact(v) for v in values)))
    if isinstance(values, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in values.items() if v not in (None, "", [], {}))
    return values if isinstance(values, str) else json.dumps(values, ensure_ascii=False, default=jsonable)


def _names(names: list[str]) -> str:
    """Node names with repeats counted: `process_item ×4, dispatch`."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(name + (f" ×{n}" if n > 1 else "") for name, n in counts.items())


@app.command()
@handles_errors
def state(
    thread: ThreadOpt,
    checkpoint: CheckpointOpt = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a thread's state at its latest checkpoint, or at --checkpoint.

    Example: agent state --thread docs --checkpoint 2 --json
    """
    from runtime import get_state

    with open_db(db) as database:
        view = get_state(database, thread, checkpoint)
    if as_json:
        print_json(view.as_dict())
        return
    err(f"thread {view.thread_id} ({view.graph}, {view.status}) at step {view.step}, checkpoint {view.checkpoint_id}")
    err(f"next: {', '.join(view.next) or '(end)'}")
    for task in view.tasks:
        if task["error"] or task["interrupts"]:
            err(f"task {task['name']}: {task['error'] or task['interrupts']}")
    out(json.dumps(view.values, default=jsonable, ensure_ascii=False, indent=2))


RESULT_FIELDS = ["index", "status", "item", "output", "error", "attempts", "input_tokens", "output_tokens", "round", "model"]
"""The columns of `agent results`, the keys of each JSONL line (runtime iter_results); a CSV
takes them from its first row, so a key the runtime adds is never dropped."""


@app.command()
@handles_errors
def results(
    thread: ThreadOpt,
    format: Annotated[Optional[str], typer.Option("--format", "-f", metavar="FORMAT", help="jsonl (one JSON object a line; the default) or csv.")] = None,
    status: Annotated[Optional[str], typer.Option(metavar="STATUS", help="Only items with this status: done or failed.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines (the same as --format jsonl).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Print a task queue's per-item results in item order, with status and error.

    JSON lines by default (--json says the same); CSV with --format csv, with the same columns.

    Example: agent results --thread docs --status failed
    """
    from runtime import iter_results
    from runtime.errors import BadInput

    if format not in (None, "jsonl", "csv"):
        raise BadInput(f"unknown --format {format!r}", "use --format jsonl or --format csv")
    if as_json and format == "csv":
        raise BadInput("--json and --format csv ask for two formats", "give one: --json (JSON lines) or --format csv")
    if status not in (None, "done", "failed"):
        raise BadInput(f"unknown --status {status!r}", "use --status done or --status failed")
    with open_db(db) as database:
        rows = iter_results(database, thread, status)
        if format != "csv":
            for row in rows:
                out(json.dumps(row, ensure_ascii=False, default=jsonable))
            return
        first = next(rows, None)
        writer = csv.DictWriter(sys.stdout, fieldnames=list(first) if first else RESULT_FIELDS)
        writer.writeheader()
        for row in [first, *rows] if first else ():
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in row.items()})
