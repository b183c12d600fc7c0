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


def table(title: str | None, columns: list[str], rows: list[list[Any]], keep: tuple[str, ...] = ()) -> None:
    """A rich table on stdout; columns named in `keep` never wrap (ids to copy). Cells are plain
    text (never rich markup: a thread id `[/x]` is shown, not parsed), made printable."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=Text(printable(title)) if title is not None else None, show_edge=False, header_style="bold")
    for col in columns:
        grid.add_column(col, overflow="fold", no_wrap=col in keep)
    for row in rows:
        grid.add_row(*[Text("" if v is None else printable(str(v))) for v in row])
    Console().print(grid)


def handles_errors(func: Callable) -> Callable:
    """Map the runtime's errors to one line, a hint and an exit code, in the CLI's wording
    (commands/cli_face.py); tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from commands.cli_face import CLI
        from runtime.errors import AgentError

        debug = kwargs.get("debug") or os.environ.get("AGENT_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except AgentError as exc:
            if debug:
                traceback.print_exc()
            message, hint = exc.render(CLI)
            err(f"Error: {message}")
            if hint:
                err(f"Hint: {hint}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("Interrupted.")
            raise typer.Exit(130) from None
        except sqlite3.DatabaseError as exc:
            if debug:
                traceback.print_exc()
            err(f"Error: the database cannot be used: {exc}")
            err("Hint: check --db, free disk space and permissions; what was committed before is intact")
            raise typer.Exit(2) from None
        except Exception as exc:
            from runtime.redact import redact

            if debug:
                traceback.print_exc()
            err(f"Error: {redact(f'{type(exc).__name__}: {exc}')}")
            err("Hint: rerun with --debug for the traceback")
            raise typer.Exit(1) from None

    return wrapper


def open_db(db: Path, create: bool = False):
    from runtime import open_database

    return open_database(db, create=create)


def progress_display(quiet: bool, as_json: bool):
    """The run's progress display on stderr: a live bar on a terminal, plain lines otherwise,
    JSON events with --json, warnings only with --quiet (commands.progress renders them all)."""
    from commands.progress import ProgressDisplay, progress_mode

    return ProgressDisplay(progress_mode(quiet, as_json))


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
        line = f"Thread {outcome.thread_id} {outcome.status} after {outcome.steps} steps in {outcome.seconds:.1f}s"
        if "items" in summary:
            line += " ({done} done, {failed} failed of {total} items)".format(**summary["items"])
        if progress is not None:
            from commands.progress import cost_text

            line += f", {progress.input_tokens + progress.output_tokens:,} tokens" + (f" {cost_text(progress)}" if cost_text(progress) else "")
        out(line)
        if outcome.answer:
            out(outcome.answer)
        if progress is not None and progress.failed:
            err(f"Failed items: agent results --thread {outcome.thread_id} --status failed; send them again: agent retry-failed --thread {outcome.thread_id}")
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
