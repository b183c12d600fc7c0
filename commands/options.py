"""The options the `agent` commands share, declared once: the database, thread, output and
debug options, and the run settings that run, resume and retry-failed take (`run_settings`).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

MODEL_HELP = (
    "offline (the default), offline:OPTIONS (offline:latency=0.1,fail_first=1; options latency, fail_first, fail_on, "
    "reject_on, reply_chars, rate_limit_first, retry_after) or openai:NAME (OPENAI_API_KEY, OPENAI_BASE_URL)."
)
"""The forms of a model, as runtime/policy/models.py reads them."""

DbOpt = Annotated[
    str, typer.Option("--db", envvar="AGENT_DB", metavar="PATH|URL", help="SQLite database file, or a postgresql:// URL.", show_default=True)
]
ThreadOpt = Annotated[str, typer.Option("--thread", "-t", metavar="THREAD", help="Thread id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DebugOpt = Annotated[bool, typer.Option("--debug", envvar="AGENT_DEBUG", help="Show tracebacks (AGENT_DEBUG=1).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary.")]
CheckpointOpt = Annotated[
    Optional[str], typer.Option("--checkpoint", "-c", metavar="CHECKPOINT", help="Checkpoint: full id, unique id prefix, or step number.")
]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", envvar="AGENT_MODEL", metavar="MODEL", help=MODEL_HELP)
]
MaxAttemptsOpt = Annotated[
    Optional[int], typer.Option("--max-attempts", metavar="N", help="Attempts per model call or operation, the first included [default: 3].")
]
BackoffOpt = Annotated[
    Optional[str], typer.Option("--backoff", metavar="DURATION", help="Wait before the first retry, e.g. 500ms, 2s; doubling after each; 0 retries at once [default: 0.5s].")
]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", metavar="N", help="Queue items processed side by side [default: 8].")]
RpmOpt = Annotated[Optional[int], typer.Option("--rpm", metavar="N", help="Model requests a minute, for the whole run; 0 for no limit [default: none].")]
TpmOpt = Annotated[
    Optional[int], typer.Option("--tpm", metavar="N", help="Model tokens a minute (prompt and reply), for the whole run; 0 for no limit [default: none].")
]
NodeTimeoutOpt = Annotated[
    Optional[str], typer.Option("--node-timeout", metavar="DURATION", help="Longest one attempt of a node may take, e.g. 90s; 0 for none [default: 5m].")
]
DeadlineOpt = Annotated[
    Optional[str], typer.Option("--deadline", metavar="DURATION", help="Longest the run may take, e.g. 2h; it then stops at a node boundary [default: none].")
]
MaxTokensOpt = Annotated[
    Optional[int], typer.Option("--max-tokens", metavar="N", help="Tokens the thread may spend over all its runs; it then stops (budget_exceeded); 0 for no limit.")
]
MaxCostOpt = Annotated[
    Optional[float],
    typer.Option("--max-cost", metavar="USD", help="Estimated USD the thread may spend over all its runs, at most AGENT_MAX_COST_CEILING; 0 for no limit."),
]
CheapModelOpt = Annotated[
    Optional[str], typer.Option("--cheap-model", metavar="MODEL", help="A cheaper model for routine steps, and for all once under 20% of the budget is left.")
]
BackgroundOpt = Annotated[
    Optional[bool],
    typer.Option("--background/--foreground", help="Nobody at the terminal: sensitive actions always wait for agent approve [default: foreground]."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Approve this run's sensitive actions up front, in your name (not with --background).")]
DEFAULT_DB = str(Path("checkpoints") / "agent.db")


ResumeModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", metavar="MODEL", help="Use another model from now on: " + MODEL_HELP)]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Queue it for a worker (agent worker) and return at once; a running thread's turn comes when it stops.")
]
WaitOpt = Annotated[Optional[str], typer.Option("--wait", metavar="DURATION", help="If another process runs the thread, wait this long for it (e.g. 10m).")]

_RUN_SETTINGS: dict[str, Any] = {
    "model": ModelOpt,
    "max_attempts": MaxAttemptsOpt,
    "backoff": BackoffOpt,
    "concurrency": ConcurrencyOpt,
    "node_timeout": NodeTimeoutOpt,
    "deadline": DeadlineOpt,
    "rpm": RpmOpt,
    "tpm": TpmOpt,
    "max_tokens": MaxTokensOpt,
    "max_cost": MaxCostOpt,
    "cheap_model": CheapModelOpt,
    "background": BackgroundOpt,
}
"""The run settings as options, in the order `--help` lists them; each is a field of RunSettings."""


def run_settings(model: Any = ModelOpt) -> Callable[[Callable], Callable]:
    """Give a command the run settings as options, declared here once: the command declares a
    parameter `settings` where they go and receives a `RunSettings` in it. `model` replaces the
    `--model` option (resume says "from now on")."""
    annotations = {**_RUN_SETTINGS, "model": model}

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func, eval_str=True)
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name != "settings":
                params.append(param)
                continue
            params.extend(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind) for name, kind in annotations.items())

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            from runtime import RunSettings
            from runtime.policy.settings import parse_duration

            given = {name: kwargs.pop(name) for name in annotations}
            if given["backoff"] is not None:  # a duration like the others; 0 (or none) retries at once
                given["backoff"] = parse_duration(given["backoff"], "backoff") or 0.0
            kwargs["settings"] = RunSettings(**given)
            return func(*args, **kwargs)

        hints = {p.name: p.annotation for p in params}
        command.__signature__ = signature.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])  # type: ignore[attr-defined]
        command.__annotations__ = {**hints, "return": None}
        return command

    return decorate


def parse_input(text: str, option: str = "--input") -> Any:
    """A run's input: JSON, or @path to a file of JSON."""
    from runtime.errors import BadInput
    from runtime.policy.inputs import parse_json, read_text_file

    if text.startswith("@"):
        try:
            text = read_text_file(text[1:], "input file")
        except BadInput as exc:
            raise BadInput(exc.problem, f"give {option} JSON or @path/to/input.json") from None
    return parse_json(text, option, f"quote it for the shell, e.g. {option} '{{\"items\": [\"a\"], \"prompt\": \"Summarize: {{item}}\"}}'")


def check_thread_id(thread: str) -> None:
    """The runtime's rule for a new thread id, before the database is opened (or created)."""
    from runtime.threads.registry import check_thread_id as check

    check(thread)


def queued(thread: str, kind: str, as_json: bool) -> None:
    """What a command that queued a request prints: the thread id (stdout), and how to follow it."""
    from commands.output import err, out, print_json

    if as_json:
        print_json({"thread_id": thread, "queued": kind})
    else:
        out(thread)
        err(f"Queued ({kind}); a worker runs it (agent worker). Follow it: agent status --thread {thread}")


def check_detach(yes: bool, wait: str | None) -> None:
    """--detach queues a background run: nobody is there to approve up front, and a queued
    request waits for a running thread anyway."""
    from runtime.errors import BadInput

    if yes:
        raise BadInput("--yes cannot approve the actions of a queued run: nobody is at its terminal", "leave out --yes; answer each action with agent approve --detach")
    if wait:
        raise BadInput("--wait does nothing with --detach: a queued request waits for a running thread by itself", "leave out --wait")
