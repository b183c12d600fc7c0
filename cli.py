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
    schedule ..., worker                          commands/schedule.py
"""

from __future__ import annotations

import typer

from commands import control, edit, read, run, schedule, storage, transfer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run LangGraph graphs durably: every node is checkpointed in SQLite, and any thread "
    "can be inspected and resumed from its latest checkpoint or from an older one.",
)
for group in (run, read, storage, control, edit, transfer, schedule):
    app.add_typer(group.app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
