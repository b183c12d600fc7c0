"""What every `agent` command shares: the app, the shared options, output helpers and the
one place where the runtime's errors become a message, a hint and an exit code.

The command modules (cli.py, cli_storage.py) import from here and register on `app`.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run LangGraph graphs durably: every node is checkpointed in SQLite, and any thread "
    "can be inspected and resumed from its latest checkpoint or from an older one.",
)

DbOpt = Annotated[Path, typer.Option("--db", envvar="AGENT_DB", help="SQLite database file [env AGENT_DB].", show_default=True)]
ThreadOpt = Annotated[str, typer.Option("--thread", "-t", help="Thread id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DebugOpt = Annotated[bool, typer.Option("--debug", envvar="AGENT_DEBUG", help="Show tracebacks.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
CheckpointOpt = Annotated[
    Optional[str], typer.Option("--checkpoint", "-c", help="Checkpoint: full id, unique id prefix, or step number.")
]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", envvar="AGENT_MODEL", help="offline (default) or openai:<name> [env AGENT_MODEL].")
]
MaxAttemptsOpt = Annotated[
    Optional[int], typer.Option("--max-attempts", help="Attempts per model call or operation, the first included [default: 3].")
]
BackoffOpt = Annotated[
    Optional[float], typer.Option("--backoff", help="Seconds before the first retry, doubling after each; 0 retries at once [default: 0.5].")
]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="Queue items processed side by side [default: 8].")]
RpmOpt = Annotated[Optional[int], typer.Option("--rpm", help="Model requests a minute, for the whole run; 0 for no limit [default: none].")]
TpmOpt = Annotated[
    Optional[int], typer.Option("--tpm", help="Model tokens a minute (prompt and reply), for the whole run; 0 for no limit [default: none].")
]
NodeTimeoutOpt = Annotated[
    Optional[str], typer.Option("--node-timeout", help="Longest one attempt of a node may take, e.g. 90s; 0 for none [default: 5m].")
]
DeadlineOpt = Annotated[
    Optional[str], typer.Option("--deadline", help="Longest the run may take, e.g. 2h; it then stops at a node boundary [default: none].")
]
MaxTokensOpt = Annotated[
    Optional[int], typer.Option("--max-tokens", help="Tokens the thread may spend over all its runs; it then stops (budget_exceeded); 0 for no limit.")
]
MaxCostOpt = Annotated[
    Optional[float],
    typer.Option("--max-cost", help="Estimated USD the thread may spend over all its runs, at most AGENT_MAX_COST_CEILING; 0 for no limit."),
]
CheapModelOpt = Annotated[
    Optional[str], typer.Option("--cheap-model", help="A cheaper model for routine steps, and for all once under 20% of the budget is left.")
]
BackgroundOpt = Annotated[
    Optional[bool],
    typer.Option("--background/--foreground", help="Nobody at the terminal: sensitive actions always wait for agent approve [default: foreground]."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve this run's sensitive actions up front, in your name (not with --background).")]
DEFAULT_DB = Path("checkpoints") / "agent.db"


def printable(text: str) -> str:
    """`text` safe for a terminal: each character that is not printable (a control character a
    terminal reads as an escape sequence, a bidi override or invisible format character that
    reorders or hides what is shown, a line separator) becomes a `\\uXXXX` escape; newlines and
    tabs stay. JSON keeps its meaning: such characters only occur inside its strings, where the
    escape is the same character."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a UTF-16 surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _err(text: str) -> None:
    sys.stderr.write(printable(text) + "\n")
    sys.stderr.flush()


def _out(text: str) -> None:
    sys.stdout.write(printable(text) + "\n")


def _jsonable(value: Any) -> Any:
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


def _print_json(value: Any) -> None:
    _out(json.dumps(value, default=_jsonable, ensure_ascii=False, indent=2))


def _table(title: str | None, columns: list[str], rows: list[list[Any]], keep: tuple[str, ...] = ()) -> None:
    """A rich table on stdout; columns named in `keep` never wrap (ids to copy). Cells are plain
    text (never rich markup: a thread id `[/x]` is shown, not parsed), made printable."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)) if title is not None else None, show_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in keep)
    for row in rows:
        table.add_row(*[Text("" if v is None else printable(str(v))) for v in row])
    Console().print(table)


def handles_errors(func: Callable) -> Callable:
    """Map the runtime's errors to one line, a hint and an exit code; tracebacks only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from runtime.errors import AgentError

        debug = kwargs.get("debug") or os.environ.get("AGENT_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except AgentError as exc:
            if debug:
                traceback.print_exc()
            _err(f"Error: {_message(exc)}")
            if exc.hint:
                _err(f"Hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("Interrupted.")
            raise typer.Exit(130) from None
        except sqlite3.DatabaseError as exc:
            if debug:
                traceback.print_exc()
            _err(f"Error: the database cannot be used: {exc}")
            _err("Hint: check --db, free disk space and permissions; what was committed before is intact")
            raise typer.Exit(2) from None
        except Exception as exc:
            from runtime.redact import redact

            if debug:
                traceback.print_exc()
            _err(f"Error: {redact(f'{type(exc).__name__}: {exc}')}")
            _err("Hint: rerun with --debug for the traceback")
            raise typer.Exit(1) from None

    return wrapper


def _message(exc: Any) -> str:
    """The error's message, with a setting named as its option: `max_cost` -> `--max-cost`."""
    from runtime.errors import InvalidNumber

    if isinstance(exc, InvalidNumber) and exc.name.isidentifier() and exc.name.islower():
        return exc.message_for("--" + exc.name.replace("_", "-"))
    return exc.message


def _open(db: Path, create: bool = False):
    from runtime import open_database

    return open_database(db, create=create)
