"""How the `agent` commands write: data to stdout, messages to stderr, made printable; JSON and
tables; how a run's end is reported; and the one place where the runtime's errors become a
message, a hint and an exit code (`handles_errors`).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import typer

from commands.terminal import printable


def err(text: str) -> None:
    sys.stderr.write(printable(text) + "\n")
    sys.stderr.flush()


def out(text: str) -> None:
    sys.stdout.write(printable(text) + "\n")


def jsonable(value: Any) -> Any:
    for attr in ("model_dump", "dict"):
        if callable(getattr(value, attr, None)):
            try:
                return getattr(value, attr)()
            except Exception:
                pass
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def print_json(value: Any) -> None:
    out(json.dumps(value, default=jsonable, ensure_ascii=False, indent=2))


IDS = ("thread", "checkpoint", "id", "schedule")
"""Columns of ids to copy, in every table."""
FREE_TEXT = ("error", "description", "would")
"""Columns of free text (a message, a description), in every table."""


def table(title: str | None, columns: list[str], rows: list[list[Any]], keep: tuple[str, ...] = (), free: tuple[str, ...] = ()) -> None:
    """A rich table on stdout that fits the console's width (COLUMNS when piped). Columns named in
    IDS or `keep` are ids to copy: never wrapped, shortened with an ellipsis only when nothing
    else gives. Columns named in FREE_TEXT or `free` hold free text: they give way first and
    wrap, breaking a word only when it is longer than the column. Every other column wraps between words and never
    becomes narrower than its longest word, so a status such as `completed` is always whole.
    Cells are plain text (never rich markup: a thread id `[/x]` is shown, not parsed), made printable."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    keep, free = (*IDS, *keep), (*FREE_TEXT, *free)
    cells = [["" if v is None else printable(str(v)) for v in row] for row in rows]
    widths = column_widths(columns, cells, console.width, keep, free)
    grid = Table(title=Text(printable(title)) if title is not None else None, show_edge=False, header_style="bold")
    for col, width in zip(columns, widths):
        if col in keep:
            grid.add_column(col, width=width, no_wrap=True, overflow="ellipsis")
        else:
            grid.add_column(col, width=width, overflow="fold" if col in free else "ellipsis")
    for row in cells:
        grid.add_row(*[Text(v) for v in row])
    console.print(grid)


def column_widths(columns: list[str], cells: list[list[str]], total: int, keep: tuple[str, ...], free: tuple[str, ...]) -> list[int]:
    """Each column's width for a table `total` characters wide (each column takes two characters
    of padding and one of rule). Natural widths when they fit; else the free-text columns give
    way down to 10 characters (or their longest word, up to 20), then the other columns down to
    their longest word, then the id columns down to 12; on a console narrower still, the free
    text and the ids go down to 6, and only then a word longer than 16 characters (a path) is
    shortened. Words in the other columns are never cut: a status is always whole."""
    from rich.cells import cell_len

    def lines(i: int) -> list[str]:
        return [columns[i]] + [line for row in cells for line in row[i].splitlines() or [""]]

    def longest_word(i: int) -> int:
        return max((cell_len(word) for line in lines(i) for word in line.split()), default=1)

    natural = [max(cell_len(line) for line in lines(i)) or 1 for i in range(len(columns))]
    floors = [
        min(natural[i], 12) if col in keep else min(natural[i], max(10, min(longest_word(i), 20))) if col in free else longest_word(i)
        for i, col in enumerate(columns)
    ]
    last_resort = [min(natural[i], 6) if col in keep or col in free else min(floors[i], 16) for i, col in enumerate(columns)]
    free_cols = [i for i, c in enumerate(columns) if c in free]
    id_cols = [i for i, c in enumerate(columns) if c in keep]
    word_cols = [i for i, c in enumerate(columns) if c not in keep and c not in free]
    widths = list(natural)
    excess = sum(widths) + 3 * len(columns) - 1 - total
    for givers, limits in ((free_cols, floors), (word_cols, floors), (id_cols, floors), (free_cols, last_resort), (id_cols, last_resort), (word_cols, last_resort)):
        while excess > 0:
            room = [i for i in givers if widths[i] > limits[i]]
            if not room:
                break
            widths[max(room, key=lambda i: widths[i])] -= 1
            excess -= 1
    return widths


def quiet_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so the interpreter's last flush does
    not fail again (the way Python's documentation gives for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file behind stdout (a test's capture): nothing to quiet
        pass
    finally:
        os.close(devnull)


def handles_errors(func: Callable) -> Callable:
    """Map the runtime's errors to one line, a hint and an exit code, in the CLI's wording
    (commands/cli_face.py); under --json, one JSON object on stderr instead:
    `{"error": ..., "hint": ..., "code": <exit code>}`. Tracebacks only with --debug. A closed
    stdout ends the command quietly with code 0, as other tools do."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug") or os.environ.get("AGENT_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:
            quiet_stdout()
            raise typer.Exit(0) from None
        except (Exception, KeyboardInterrupt) as exc:
            message, hint, code = error_report(exc, debug)
            report_error(message, hint, code, bool(kwargs.get("as_json")))
            raise typer.Exit(code) from None

    return wrapper


def error_report(exc: BaseException, debug: bool) -> tuple[str, str | None, int]:
    """(message, hint, exit code) for an error that ends a command, in the CLI's wording."""
    from commands.cli_face import CLI
    from runtime.errors import AgentError

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None, 130
    if debug:
        traceback.print_exc()
    if isinstance(exc, AgentError):
        message, hint = exc.render(CLI)
        return message, hint or help_hint(), exc.exit_code
    if isinstance(exc, sqlite3.DatabaseError):
        return f"the database cannot be used: {exc}", "check --db, free disk space and permissions; what was committed before is intact", 2
    if type(exc).__module__.startswith("psycopg"):  # the server went away, or refused a statement
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"the PostgreSQL database cannot be used: {text}", "check that the server is up and --db; what was committed before is intact", 2
    from runtime.redact import redact

    return redact(f"{type(exc).__name__}: {exc}"), "rerun with --debug for the traceback", 1


def help_hint() -> str | None:
    """`agent history --help describes its options`: the hint of an error that brings none."""
    try:  # the command line being run, from the parser typer ships (click before typer 0.29)
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover
        from click import get_current_context

    context = get_current_context(silent=True)
    return f"{context.command_path} --help describes its options" if context is not None else None


def report_error(message: str, hint: str | None, code: int, as_json: bool) -> None:
    if as_json:
        err(json.dumps({"error": message, "hint": hint, "code": code}, ensure_ascii=False))
        return
    if code == 130:
        err("Interrupted.")
        return
    err(f"Error: {message}")
    if hint:
        err(f"Hint: {hint}")


def open_db(db: str | Path, create: bool = False):
    from runtime import open_database

    return open_database(db, create=create)


def progress_display(quiet: bool, as_json: bool, thread: str):
    """The run's progress display on stderr: a live bar on a terminal, plain lines otherwise,
    JSON events with --json, warnings only with --quiet (commands.progress renders them all)."""
    from commands.progress import ProgressDisplay, progress_mode

    return ProgressDisplay(progress_mode(quiet, as_json), thread=thread)


def finish(outcome, as_json: bool) -> None:
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
    if outcome.status == "completed":
        summary["values"] = outcome.output
        summary["answer"] = outcome.answer
    if as_json:
        print_json(summary)
    else:
        line = f"Thread {outcome.thread_id} {outcome.status} {steps_text(outcome)} in {outcome.seconds:.1f}s"
        if "items" in summary:
            line += " ({done} done, {failed} failed of {total} items)".format(**summary["items"])
        if progress is not None:
            from commands.progress import cost_text

            line += f", {progress.input_tokens + progress.output_tokens:,} tokens" + (f" {cost_text(progress)}" if cost_text(progress) else "")
        out(line)
        if outcome.answer:
            out(outcome.answer)
        if progress is not None and progress.failed:
            err(failed_items_hint(outcome.thread_id, outcome.status))
        if outcome.error:
            err(f"Error: {outcome.error}")
    if outcome.status in ("stopped", "failed", "timeout", "paused"):
        err(f"Resume with: agent resume --thread {outcome.thread_id}")
    elif outcome.status == "budget_exceeded":
        err(f"Raise the budget and continue: agent resume --thread {outcome.thread_id} --max-cost USD (or --max-tokens N)")
    elif outcome.status == "cancelled":
        err(f"Cancelled; to continue it anyway: agent resume --thread {outcome.thread_id} --force")
    elif outcome.status == "interrupted":
        err(f"Waiting for input; see: agent approvals --thread {outcome.thread_id} (or agent state --thread {outcome.thread_id})")
    raise typer.Exit(outcome.exit_code)


def steps_text(outcome) -> str:
    """`after 3 steps`; for a failed run also the step that failed, numbered as the progress
    line of its node was (`failed at step 4 after 3 steps`): the steps are those saved."""
    saved = f"after {outcome.steps} step{'' if outcome.steps == 1 else 's'}"
    return f"at step {outcome.steps + 1} {saved}" if outcome.status == "failed" else saved


def failed_items_hint(thread_id: str, status: str) -> str:
    """Where a queue's failed items are, and what sends them again: retry-failed once the pass
    over the items has finished (it refuses before), else resume to finish the pass first."""
    listed = f"Failed items: agent results --thread {thread_id} --status failed"
    if status == "completed":
        return f"{listed}; send them again: agent retry-failed --thread {thread_id}"
    return f"{listed}; once the pass is finished (agent resume --thread {thread_id}), agent retry-failed sends them again"
