"""agent: run LangGraph graphs durably, inspect their history, resume any thread.

Each command parses its options, calls one `runtime` function and renders the result.
Data goes to stdout, messages to stderr; `--json` gives stable JSON on every read command.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Any, Optional

import typer

from cli_common import (
    DEFAULT_DB,
    BackgroundOpt,
    BackoffOpt,
    CheapModelOpt,
    CheckpointOpt,
    ConcurrencyOpt,
    DbOpt,
    DeadlineOpt,
    DebugOpt,
    JsonOpt,
    MaxAttemptsOpt,
    MaxCostOpt,
    MaxTokensOpt,
    ModelOpt,
    NodeTimeoutOpt,
    QuietOpt,
    RpmOpt,
    ThreadOpt,
    TpmOpt,
    YesOpt,
    _err,
    _jsonable,
    _open,
    _out,
    _print_json,
    _table,
    app,
    handles_errors,
)

def _parse_input(text: str) -> Any:
    from runtime.errors import BadInput
    from runtime.inputs import parse_json, read_text_file

    if text.startswith("@"):
        try:
            text = read_text_file(text[1:], "input file")
        except BadInput as exc:
            raise BadInput(exc.message, "give --input JSON or @path/to/input.json") from None
    return parse_json(text, "--input", 'quote it for the shell, e.g. --input \'{"items": ["a"], "prompt": "Summarize: {item}"}\'')


def _settings_from(options: dict[str, Any]):
    """The run settings among a command's options (run, resume and retry-failed share them)."""
    from dataclasses import fields

    from runtime import RunSettings

    return RunSettings(**{f.name: options[f.name] for f in fields(RunSettings) if f.name in options})


def _check_thread_id(thread: str) -> None:
    """The runtime's rule for a new thread id, before the database is opened (or created)."""
    from runtime.threads import check_thread_id

    check_thread_id(thread)


def _progress(quiet: bool, as_json: bool):
    """The run's progress display on stderr: a live bar on a terminal, plain lines otherwise,
    JSON events with --json, warnings only with --quiet (cli_progress renders them all)."""
    from cli_progress import ProgressDisplay, progress_mode

    return ProgressDisplay(progress_mode(quiet, as_json))


def _finish(outcome, as_json: bool) -> None:
    """Print how a run ended and exit with its code."""
    summary = {
        "thread_id": outcome.thread_id,
        "graph": outcome.graph,
        "status": outcome.status,
        "steps": outcome.steps,
        "checkpoint_id": outcome.checkpoint_id,
        "seconds": round(outcome.seconds, 3),
        "error": outcome.error,
    }
    values, progress = outcome.values, outcome.progress
    if progress is not None:
        summary["items"] = {"total": progress.total, "done": progress.done, "failed": progress.failed}
        summary["progress"] = progress.as_dict()
    elif "total" in values:
        summary["items"] = {k: values.get(k, 0) for k in ("total", "done", "failed")}
    if as_json:
        _print_json(summary)
    else:
        line = f"Thread {outcome.thread_id} {outcome.status} after {outcome.steps} steps in {outcome.seconds:.1f}s"
        if "items" in summary:
            line += " ({done} done, {failed} failed of {total} items)".format(**summary["items"])
        if progress is not None:
            from cli_progress import cost_text

            line += f", {progress.input_tokens + progress.output_tokens:,} tokens" + (f" {cost_text(progress)}" if cost_text(progress) else "")
        _out(line)
        if progress is not None and progress.failed:
            _err(f"Failed items: agent results --thread {outcome.thread_id} --status failed; send them again: agent retry-failed --thread {outcome.thread_id}")
        if outcome.error:
            _err(f"Error: {outcome.error}")
    if outcome.status in ("stopped", "failed", "timeout", "paused"):
        _err(f"Resume with: agent resume --thread {outcome.thread_id}")
    elif outcome.status == "budget_exceeded":
        _err(f"Raise the budget and continue: agent resume --thread {outcome.thread_id} --max-cost USD (or --max-tokens N)")
    elif outcome.status == "cancelled":
        _err(f"Cancelled; to continue it anyway: agent resume --thread {outcome.thread_id} --force")
    elif outcome.status == "interrupted":
        _err(f"Waiting for input; see: agent approvals --thread {outcome.thread_id} (or agent state --thread {outcome.thread_id})")
    raise typer.Exit(outcome.exit_code)


@app.command()
@handles_errors
def graphs(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List the built-in graphs.

    Example: agent graphs --json
    """
    from runtime import list_graphs

    rows = list_graphs()
    if as_json:
        _print_json(rows)
    else:
        _table(None, ["graph", "description"], [[r["name"], r["description"]] for r in rows])


@app.command()
@handles_errors
def run(
    graph: Annotated[str, typer.Argument(help="A built-in graph (agent graphs), or path/file.py:attr or package.module:attr.")],
    thread: ThreadOpt,
    input: Annotated[str, typer.Option("--input", "-i", help="The input: JSON, or @file.json.")] = "{}",
    model: ModelOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    backoff: BackoffOpt = None,
    concurrency: ConcurrencyOpt = None,
    node_timeout: NodeTimeoutOpt = None,
    deadline: DeadlineOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    cheap_model: CheapModelOpt = None,
    background: BackgroundOpt = None,
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
    from runtime import run_thread, validate_run

    _check_thread_id(thread)
    data = _parse_input(input)
    settings = _settings_from(locals())
    validate_run(graph, data, settings, yes)  # a bad graph, input or model fails here, before the database is touched
    with _progress(quiet, as_json) as display, _open(db, create=True) as database:  # a bad AGENT_PROGRESS_EVERY fails before the file is made
        outcome = run_thread(database, graph, thread, data, settings, on_event=display, handle_signals=True, approve_all=yes)
    _finish(outcome, as_json)


@app.command()
@handles_errors
def resume(
    thread: ThreadOpt,
    checkpoint: CheckpointOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Use another model from now on.")] = None,
    max_attempts: MaxAttemptsOpt = None,
    backoff: BackoffOpt = None,
    concurrency: ConcurrencyOpt = None,
    node_timeout: NodeTimeoutOpt = None,
    deadline: DeadlineOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    cheap_model: CheapModelOpt = None,
    background: BackgroundOpt = None,
    yes: YesOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Resume a cancelled thread anyway.")] = False,
    wait: Annotated[
        Optional[str], typer.Option("--wait", help="If another process runs the thread, wait this long for it (e.g. 10m).")
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option("--set", help="Edit the state first: key=value, the value JSON or else a plain string (repeatable)."),
    ] = None,
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
    from runtime.edit import parse_assignments
    from runtime.settings import parse_duration

    edits = parse_assignments(set_ or [])
    settings = _settings_from(locals())
    wait_seconds = parse_duration(wait, "--wait")
    with _open(db) as database, _progress(quiet, as_json) as display:
        outcome = resume_thread(
            database, thread, checkpoint, settings, edits=edits or None, wait=wait_seconds, on_event=display, handle_signals=True, force=force, approve_all=yes
        )
    _finish(outcome, as_json)


@app.command("retry-failed")
@handles_errors
def retry_failed(
    thread: ThreadOpt,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Use another model from now on.")] = None,
    max_attempts: MaxAttemptsOpt = None,
    backoff: BackoffOpt = None,
    concurrency: ConcurrencyOpt = None,
    node_timeout: NodeTimeoutOpt = None,
    deadline: DeadlineOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    cheap_model: CheapModelOpt = None,
    background: BackgroundOpt = None,
    wait: Annotated[
        Optional[str], typer.Option("--wait", help="If another process runs the thread, wait this long for it (e.g. 10m).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Retry a cancelled thread's failed items anyway.")] = False,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Send a finished queue's failed items (its dead-letter list) through the queue again.

    Items that succeeded are not touched. The failed items, with their errors, are listed by
    agent results --thread T --status failed. Each item gets --max-attempts more attempts;
    settings given here replace the thread's from now on, as with resume.

    Example: agent retry-failed --thread docs --max-attempts 5
    """
    from runtime import retry_failed as send_failed_again
    from runtime.settings import parse_duration

    settings = _settings_from(locals())
    wait_seconds = parse_duration(wait, "--wait")
    with _open(db) as database, _progress(quiet, as_json) as display:
        outcome = send_failed_again(database, thread, settings, wait=wait_seconds, force=force, on_event=display, handle_signals=True)
    _finish(outcome, as_json)


@app.command()
@handles_errors
def threads(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """List every thread: graph, status, steps and last update.

    Example: agent threads --json
    """
    from runtime import list_threads
    from runtime.budget import thread_budgets

    with _open(db) as database:
        records = list_threads(database)
        spend = thread_budgets(database, records)
    if as_json:
        _print_json([{**r.as_dict(), "spend": spend[r.thread_id]} for r in records])
        return
    _table(
        None,
        ["thread", "graph", "status", "steps", "spent", "updated", "error"],
        [[r.thread_id, r.graph, r.shown_status, r.steps, _spent(spend[r.thread_id]), _when(r.updated_at), r.error or ""] for r in records],
    )


def _spent(view: dict[str, Any]) -> str:
    """`1,234 tok $0.0012 / $5` : the spend, and the budget where there is one."""
    if not view["calls"] and view["max_cost"] is None and view["max_tokens"] is None:
        return ""
    text = f"{view['tokens']:,} tok ${view['cost_usd']:.4f}"
    limits = [f"${view['max_cost']:g}" if view["max_cost"] is not None else "", f"{view['max_tokens']:,} tok" if view["max_tokens"] is not None else ""]
    return text + (" / " + ", ".join(filter(None, limits)) if any(limits) else "")


@app.command()
@handles_errors
def status(
    thread: ThreadOpt,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the thread live until it stops running (Ctrl-C to stop watching).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between two reads with --watch.", min=0.1)] = 1.0,
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
    from runtime.numbers import check_number

    check_number(interval, "interval", minimum=0.1, unit="seconds")
    with _open(db) as database:
        if watch:
            from cli_progress import ProgressDisplay, progress_mode
            from cli_progress import watch as follow

            display = ProgressDisplay(progress_mode(False, as_json, sys.stdout), stream=sys.stdout)
            info = follow(lambda: thread_status(database, thread), display, interval)
            if as_json:
                return
        else:
            info = thread_status(database, thread)
    if as_json:
        _print_json(info)
        return
    lines = [
        ("thread", info["thread_id"]),
        ("graph", f"{info['graph']} (version {info['graph_version']})"),
        ("status", info["status"]),
        ("steps", info["steps"]),
        ("updated", _when(info["updated_at"])),
    ]
    if runner := info["runner"]:
        age = runner["heartbeat_age"]
        lines.append(("runner", f"pid {runner['pid']} on {runner['host']}, heartbeat {age}s ago" + ("" if runner["alive"] else " (gone)")))
    if info["progress"]:
        lines.extend(_progress_lines(info["progress"]))
    if info.get("spend") and _spent(info["spend"]):
        lines.append(("spent", _spent(info["spend"]) + f" over {info['spend']['calls']} model call(s)"))
    if info["error"]:
        lines.append(("error", info["error"]))
    settings = info["settings"]
    lines.append(("settings", ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)))
    for key, value in lines:
        _out(f"{key:>9}: {value}")


def _progress_lines(progress: dict[str, Any]) -> list[tuple[str, str]]:
    from cli_progress import cost_text, duration, rate_text, snapshot_from

    p = snapshot_from(progress)
    lines = [("items", f"{p.done} done, {p.failed} failed of {p.total} ({p.percent:.1f}%), {p.remaining} to go")]
    if p.elapsed is not None:
        lines.append(("rate", f"{rate_text(p)}, ETA {duration(p.eta)}, elapsed {duration(p.elapsed)}"))
    lines.append(("tokens", f"{p.input_tokens:,} in, {p.output_tokens:,} out" + (f", {cost_text(p)}" if cost_text(p) else "")))
    return lines


def _when(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@app.command()
@handles_errors
def history(
    thread: ThreadOpt,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="Show only the newest N checkpoints.")] = None,
    show: Annotated[
        Optional[str], typer.Option("--show", help="State keys whose writes each step shows, comma-separated (e.g. models,decisions).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List a thread's checkpoints, newest first (every branch of a fork included).

    With --show, each step also shows what its nodes wrote to those state keys: which model
    answered (models), what was decided (decisions).

    Example: agent history --thread docs --limit 20 --show models
    """
    from runtime import get_history

    keys = [k.strip() for k in show.split(",") if k.strip()] if show else None
    with _open(db) as database:
        rows = get_history(database, thread, limit, keys)
    if as_json:
        _print_json([r.as_dict() for r in rows])
        return
    if keys:  # the shown values take the place of next and time
        _table(
            f"thread {thread}",
            ["step", "checkpoint", "written by", *keys],
            [[r.step, r.checkpoint_id, _names(r.writers), *[_compact(r.shown[k]) for k in keys]] for r in rows],
            keep=("checkpoint",),
        )
        return
    _table(
        f"thread {thread}",
        ["step", "checkpoint", "source", "written by", "next", "created"],
        [[r.step, r.checkpoint_id, r.source, _names(r.writers), _names(r.next), r.created_at[11:19]] for r in rows],
        keep=("checkpoint", "source", "created"),
    )


def _compact(values: Any) -> str:
    """Written values for a table cell: lists flattened, dicts as `key=value`, strings bare."""
    if isinstance(values, list):
        return "; ".join(filter(None, (_compact(v) for v in values)))
    if isinstance(values, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in values.items() if v not in (None, "", [], {}))
    return values if isinstance(values, str) else json.dumps(values, ensure_ascii=False, default=_jsonable)


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

    with _open(db) as database:
        view = get_state(database, thread, checkpoint)
    if as_json:
        _print_json(view.as_dict())
        return
    _err(f"thread {view.thread_id} ({view.graph}, {view.status}) at step {view.step}, checkpoint {view.checkpoint_id}")
    _err(f"next: {', '.join(view.next) or '(end)'}")
    for task in view.tasks:
        if task["error"] or task["interrupts"]:
            _err(f"task {task['name']}: {task['error'] or task['interrupts']}")
    _out(json.dumps(view.values, default=_jsonable, ensure_ascii=False, indent=2))


@app.command()
@handles_errors
def results(
    thread: ThreadOpt,
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl (one JSON object a line) or csv.")] = "jsonl",
    status: Annotated[Optional[str], typer.Option(help="Only items with this status: done or failed.")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Print a task queue's per-item results in item order, with status and error.

    Example: agent results --thread docs --status failed
    """
    from runtime import iter_results
    from runtime.errors import BadInput

    if format not in ("jsonl", "csv"):
        raise BadInput(f"unknown --format {format!r}", "use --format jsonl or --format csv")
    if status not in (None, "done", "failed"):
        raise BadInput(f"unknown --status {status!r}", "use --status done or --status failed")
    with _open(db) as database:
        rows = iter_results(database, thread, status)
        if format == "jsonl" or as_json:
            for row in rows:
                _out(json.dumps(row, ensure_ascii=False, default=_jsonable))
            return
        fields = ["index", "status", "item", "output", "error", "attempts", "input_tokens", "output_tokens"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in row.items()})


import cli_storage  # noqa: E402,F401  (registers prune, delete, vacuum and doctor on the app)
import cli_control  # noqa: E402,F401  (registers pause, cancel, approvals, approve and reject on the app)
import cli_edit  # noqa: E402,F401  (registers fork, diff and graph show on the app)
import cli_schedule  # noqa: E402,F401  (registers the schedule sub-app and worker on the app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
