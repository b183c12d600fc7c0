"""agent: run LangGraph graphs durably, inspect their history, resume any thread.

The composition root of the CLI: the `agent` app, made of the command groups in `commands/`
(one module a group, named for what its verbs do). Data goes to stdout, messages to stderr;
`--json` gives stable JSON on every read command.

    run, resume, retry-failed                     commands/run.py
    graphs, threads, status, history, state,      commands/read.py
      results
    prune, delete, vacuum, doctor                 commands/storage.py
    pause, cancel, approvals, approve, reject     commands/control.py
    fork, diff, graph show                        commands/edit.py
    export, import                                commands/transfer.py
    schedule ...                                  commands/schedule.py
    submit, worker, workers                       commands/fleet.py
    serve                                         commands/serve.py

Beside them, what belongs to `agent` itself: `--version`, shell completion
(`--install-completion`), the environment variables its help lists, and the console script's
edge: a closed stdout ends quietly, and under --json even the parser's refusals are JSON.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from commands import control, edit, fleet, read, run, schedule, serve, storage, transfer

ENVIRONMENT = {
    "AGENT_DB": "the database (--db): a file or postgresql:// URL [checkpoints/agent.db]",
    "AGENT_MODEL": "a new run's model (--model) [offline]",
    "AGENT_DEBUG": "1: tracebacks on errors (--debug)",
    "AGENT_PRICES": "a JSON file of prices, USD a million tokens",
    "AGENT_MAX_COST_CEILING": "the most any --max-cost may be (USD)",
    "AGENT_MAX_TOKENS_CEILING": "the most any --max-tokens may be",
    "AGENT_MODEL_TIMEOUT": "seconds a model request may take [60]",
    "AGENT_MODEL_RPM": "requests a minute per model, shared by every worker",
    "AGENT_PROGRESS_EVERY": "seconds between progress lines [10]",
    "AGENT_TRUSTED_GRAPHS": "graph files/packages a thread may import",
    "AGENT_LEASE_SECONDS": "a runner silent this long is taken over [30]",
    "AGENT_SCHEDULE_MIN_INTERVAL": "least time between a schedule's runs [60m]",
    "AGENT_MAX_SCHEDULES": "schedules a database may hold [100]",
    "AGENT_API_TOKEN": "the token `agent serve` requires (bearer auth)",
    "AGENT_PG_POOL": "PostgreSQL connections a process's runs share [10]",
    "OPENAI_API_KEY": "the key of an openai:NAME model",
    "OPENAI_BASE_URL": "another OpenAI-compatible endpoint",
}
"""Every environment variable `agent` reads, each named once in `agent --help` (and in README.md)."""

app = typer.Typer(
    no_args_is_help=True,
    epilog="\b\nEnvironment:\n" + "\n".join(f"  {name:<28} {text}" for name, text in ENVIRONMENT.items()),
    rich_markup_mode=None,
    help="Run LangGraph graphs durably: every node is checkpointed in SQLite, and any thread "
    "can be inspected and resumed from its latest checkpoint or from an older one.",
)
for group in (run, read, storage, control, edit, transfer, schedule, fleet, serve):
    app.add_typer(group.app)


def show_version(given: bool) -> None:
    if given:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("agent")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown"
        typer.echo(f"agent {number}")
        raise typer.Exit()


@app.callback()
def agent(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=show_version)
    ] = False,
) -> None:
    """The options of `agent` itself; its help is the app's."""


def main() -> None:
    """The `agent` console script. A reader of stdout that goes away early (`| head -1`) ends the
    command quietly with code 0 (commands/output.py); what is still buffered when the app exits
    is flushed here, the same way."""
    from commands.output import quiet_stdout

    try:
        code: int | str | None = json_main() if "--json" in sys.argv[1:] else app(prog_name="agent")
    except SystemExit as exc:
        code = exc.code
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
        code = 0
    sys.exit(code)


def json_main() -> int:
    """The app under --json: a command line the parser refuses (an unknown option, `--limit
    abc`) is reported as every other error is under --json, one JSON object on stderr."""
    from commands.output import report_error

    try:
        result = app(prog_name="agent", standalone_mode=False)
    except typer.TyperException as exc:  # the parser's own errors (click's ClickException)
        context = getattr(exc, "ctx", None)
        hint = f"{context.command_path} --help describes its options" if context is not None else None
        code = getattr(exc, "exit_code", 2)
        report_error(exc.format_message(), hint, code, as_json=True)
        return code
    except typer.Abort:
        report_error("aborted", None, 1, as_json=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    main()
