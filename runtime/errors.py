"""The runtime's domain errors, and what they say as data that each face renders its own way.

An error carries what went wrong (`problem`) and what to do about it (`fix`), each a `Message`:
a template whose fields may be plain values or these terms, never a face's spelling of them:

- `Setting("max_cost")`: a setting, by its runtime (Python) name; `Setting("keep", 100)` gives
  it a value (an example or the value to give), `Setting("edits", key="steps")` names one key.
- `Command("resume", thread_id=T, checkpoint="ID")`: the next command, a verb and its arguments
  by the runtime's parameter names; `OneOf(...)` offers verbs that take the same arguments;
  `Verb("retry-failed")` names a command in passing.
- `Duration(600)`: seconds, as a face writes a time span; `Placeholder("N")`: a value the user
  chooses; `ForShell(text)`: advice that holds only where a shell reads what is typed; a
  `Message` may be a field of another.

A face renders each term; the message is the template filled with the renderings:

- Python (the default: `str(exc)`, `exc.message`, `exc.hint`; `PythonFace` below): a setting as
  its keyword argument (`max_cost`, `keep=100`), a command as the runtime call that does it
  (`resume_thread(db, "T", checkpoint="ID")`, from the table `CALLS`, verb -> function).
- The CLI (commands/cli_face.py, applied by `handles_errors` in commands/output.py): a setting as
  its flag (`--max-cost`, `--keep 100`), a command as `agent resume --thread T --checkpoint ID`.
- HTTP (`exc.as_dict()`): the error's type, message and hint (Python wording unless another face
  is given), the setting concerned and the value refused (the field `value` of the problem), the
  next commands as data (`{"verb": ..., "args": {...}}`), the exit code and the HTTP status.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass, field
from typing import Any, Iterator

_NO_VALUE: Any = object()


class Setting:
    """A setting (an option) by its runtime name; with a value or one key of it (see above)."""

    __slots__ = ("name", "value", "key")

    def __init__(self, name: str, value: Any = _NO_VALUE, key: str | None = None) -> None:
        self.name, self.value, self.key = name, value, key

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    def __repr__(self) -> str:
        extra = (f", {self.value!r}" if self.has_value else "") + (f", key={self.key!r}" if self.key is not None else "")
        return f"Setting({self.name!r}{extra})"


class Command:
    """A command to run next: a verb (as the CLI names it: `resume`, `schedule delete`) and its
    arguments by the runtime's parameter names (`thread_id`, `checkpoint`, `force=True`)."""

    __slots__ = ("verb", "args")

    def __init__(self, verb: str, **args: Any) -> None:
        self.verb, self.args = verb, args

    def as_dict(self) -> dict[str, Any]:
        return {"verb": self.verb, "args": {name: plain(value) for name, value in self.args.items()}}

    def __repr__(self) -> str:
        return f"Command({self.verb!r}{''.join(f', {k}={v!r}' for k, v in self.args.items())})"


class Verb:
    """A command named in passing, without arguments (`retry-failed works on task_queue threads`)."""

    __slots__ = ("verb",)

    def __init__(self, verb: str) -> None:
        self.verb = verb


class OneOf:
    """Commands of which the user runs one (`approve` or `reject`), taking the same arguments."""

    __slots__ = ("commands",)

    def __init__(self, *commands: Command) -> None:
        self.commands = commands


class Duration:
    """A span of time in seconds, written as each face writes one (`10m`, `600`)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Placeholder(str):
    """A stand-in for a value the user chooses (`N`, `JSON`), written as it is, never quoted."""


class ForShell:
    """Advice that only holds where a shell reads what the user types (quoting); other faces omit it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Message:
    """A template (`str.format` syntax) and its fields, by position (`{}`) or by name; plain
    values keep their format spec (`{value!r}`, `{ceiling:g}`), terms are rendered by the face."""

    __slots__ = ("template", "args", "fields")

    def __init__(self, template: str, *args: Any, **fields: Any) -> None:
        self.template, self.args, self.fields = template, args, fields

    def render(self, face: "Face") -> str:
        def shown(value: Any) -> Any:
            return face.render(value) if isinstance(value, TERMS) else value

        return self.template.format(*map(shown, self.args), **{name: shown(value) for name, value in self.fields.items()})

    def terms(self) -> Iterator[Any]:
        """The terms in the order the template uses them, nested messages' included."""
        position = 0
        for _, name, _, _ in string.Formatter().parse(self.template):
            if name is None:
                continue
            if name == "" or name.isdigit():
                index, position = (position, position + 1) if name == "" else (int(name), position)
                value = self.args[index]
            else:
                value = self.fields.get(name)
            if isinstance(value, Message):
                yield from value.terms()
            elif isinstance(value, TERMS):
                yield value

    def __str__(self) -> str:
        return self.render(PYTHON)

    def __repr__(self) -> str:
        shown = [repr(v) for v in self.args] + [f"{k}={v!r}" for k, v in self.fields.items()]
        return f"Message({', '.join([repr(self.template), *shown])})"


TERMS = (Setting, Command, Verb, OneOf, Duration, ForShell, Message)


def joined(separator: str, parts: list[Any]) -> Message:
    """One message of `parts` (messages or text) with `separator` between them."""
    return Message(separator.join("{}" for _ in parts), *parts)


def setting_or_text(name: str) -> Any:
    """A name a message shows: a runtime setting (`deadline`) as a Setting, anything else (an
    environment variable, a phrase) as it is."""
    return Setting(name) if name.isidentifier() and name.islower() else name


def plain(value: Any) -> Any:
    """A value as JSON can hold it: seconds for a Duration, text for a non-finite number."""
    if isinstance(value, Duration):
        value = value.seconds
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


# -- faces ---------------------------------------------------------------------------------------


class Face:
    """How one face writes the terms of a message."""

    def render(self, term: Any) -> str:
        if isinstance(term, Message):
            return term.render(self)
        if isinstance(term, Setting):
            return self.setting(term)
        if isinstance(term, Command):
            return self.command(term)
        if isinstance(term, Verb):
            return self.verb(term)
        if isinstance(term, OneOf):
            return self.one_of(term)
        if isinstance(term, Duration):
            return self.value(term)
        if isinstance(term, ForShell):
            return self.for_shell(term)
        return str(term)

    def setting(self, setting: Setting) -> str:
        raise NotImplementedError

    def command(self, command: Command) -> str:
        raise NotImplementedError

    def verb(self, verb: Verb) -> str:
        raise NotImplementedError

    def one_of(self, choice: OneOf) -> str:
        return " / ".join(self.command(c) for c in choice.commands)

    def value(self, value: Any) -> str:
        raise NotImplementedError

    def for_shell(self, advice: ForShell) -> str:
        return ""


@dataclass(frozen=True)
class Call:
    """The runtime function a verb names: `module:name` (`Class.method` for a method of an object
    made with the database), its leading parameters passed by position after `db`, and the
    arguments the verb itself implies (`approve`: `approved=True`)."""

    module: str
    name: str
    positional: tuple[str, ...] = ()
    implied: dict[str, Any] = field(default_factory=dict)
    db: bool = True


CALLS: dict[str, Call] = {
    "run": Call("runtime.runs.runner", "run_thread", ("graph", "thread_id", "input")),
    "resume": Call("runtime.runs.runner", "resume_thread", ("thread_id",)),
    "retry-failed": Call("runtime.runs.runner", "retry_failed", ("thread_id",)),
    "graphs": Call("runtime", "list_graphs", db=False),
    "threads": Call("runtime.threads.registry", "list_threads"),
    "status": Call("runtime.threads.history", "thread_status", ("thread_id",)),
    "history": Call("runtime.threads.history", "get_history", ("thread_id",)),
    "state": Call("runtime.threads.history", "get_state", ("thread_id",)),
    "results": Call("runtime.threads.history", "iter_results", ("thread_id",)),
    "fork": Call("runtime.threads.fork", "fork_thread", ("thread_id", "checkpoint", "new_thread_id")),
    "prune": Call("runtime.threads.retention", "prune"),
    "delete": Call("runtime.threads.retention", "delete_thread", ("thread_id",)),
    "vacuum": Call("runtime.threads.retention", "vacuum"),
    "pause": Call("runtime.threads.control", "request_pause", ("thread_id",)),
    "cancel": Call("runtime.threads.control", "request_cancel", ("thread_id",)),
    "approvals": Call("runtime.runs.approvals", "pending_approvals", ("thread_id",)),
    "approve": Call("runtime.runs.approvals", "decide", ("thread_id", "ids"), {"approved": True}),
    "reject": Call("runtime.runs.approvals", "decide", ("thread_id", "ids"), {"approved": False}),
    "schedule list": Call("runtime.schedules.calendar", "list_schedules"),
    "schedule delete": Call("runtime.schedules.calendar", "delete_schedule", ("name",)),
    "schedule runs": Call("runtime.schedules.calendar", "schedule_runs", ("name",)),
    "worker": Call("runtime.fleet.worker", "FleetWorker.run"),
    "submit": Call("runtime.fleet.queue", "submit_run", ("graph", "thread_id", "input")),
    "workers": Call("runtime.fleet.workers", "list_workers"),
    "export": Call("runtime.threads.bundle", "export_thread", ("thread_id", "output")),
    "import": Call("runtime.threads.bundle", "import_thread", ("source",)),
}
"""Verb -> the runtime function a Python caller calls for it (the Python face's only table)."""


def _call(verb: str) -> Call:
    return CALLS.get(verb) or Call("", verb.replace("-", "_").replace(" ", "_"))


class PythonFace(Face):
    """The wording for a Python caller: settings as keyword arguments, commands as runtime calls."""

    def setting(self, setting: Setting) -> str:
        if setting.key is not None:
            return f"{setting.name}[{self.value(setting.key)}]"
        return f"{setting.name}={self.value(setting.value)}" if setting.has_value else setting.name

    def verb(self, verb: Verb) -> str:
        return _call(verb.verb).name

    def command(self, command: Command) -> str:
        call = _call(command.verb)
        args = dict(command.args)
        shown = ["db"] if call.db and "." not in call.name else []
        for name in call.positional:
            if name not in args:
                break
            shown.append(self.value(args.pop(name)))
        shown += [f"{name}={self.value(value)}" for name, value in {**call.implied, **args}.items()]
        owner, _, method = call.name.rpartition(".")
        return f"{owner}(db).{method}({', '.join(shown)})" if owner else f"{call.name}({', '.join(shown)})"

    def value(self, value: Any) -> str:
        """A Python literal: strings in double quotes, a Duration as its seconds."""
        if isinstance(value, Duration):
            value = int(value.seconds) if float(value.seconds).is_integer() else value.seconds
        if isinstance(value, Placeholder):
            return str(value)
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.value(k)}: {self.value(v)}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self.value(v) for v in value) + "]"
        return repr(value)


PYTHON = PythonFace()


# -- the errors ----------------------------------------------------------------------------------


class AgentError(Exception):
    """A problem a user can fix: `problem` says what went wrong, `fix` (may be None) what to do,
    both Messages; `message` and `hint` are their Python wording, `render(face)` any face's."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str | Message, hint: str | Message | None = None) -> None:
        super().__init__(message)
        self.problem = message if isinstance(message, Message) else Message("{}", message)
        self.fix = hint if hint is None or isinstance(hint, Message) else Message("{}", hint)

    @property
    def message(self) -> str:
        return self.problem.render(PYTHON)

    @property
    def hint(self) -> str | None:
        return None if self.fix is None else self.fix.render(PYTHON)

    def __str__(self) -> str:
        return self.message

    def render(self, face: Face) -> tuple[str, str | None]:
        """(message, hint) as `face` words them."""
        return self.problem.render(face), None if self.fix is None else self.fix.render(face)

    def setting(self) -> Setting | None:
        """The setting the problem is about: the first one it names."""
        return next((term for term in self.problem.terms() if isinstance(term, Setting)), None)

    def next_commands(self) -> list[Command]:
        """The commands the fix names, in order."""
        found: list[Command] = []
        for term in self.fix.terms() if self.fix is not None else ():
            found.extend(term.commands if isinstance(term, OneOf) else [term] if isinstance(term, Command) else [])
        return found

    def as_dict(self, face: Face | None = None) -> dict[str, Any]:
        """The error as JSON can hold it (an HTTP body); message and hint in `face`'s wording."""
        message, hint = self.render(face or PYTHON)
        setting = self.setting()
        return {
            "error": type(self).__name__,
            "message": message,
            "hint": hint,
            "setting": None if setting is None else setting.name,
            "value": plain(self.problem.fields.get("value")),
            "next": [command.as_dict() for command in self.next_commands()],
            "exit_code": self.exit_code,
            "status": self.http_status,
        }


class BadInput(AgentError):
    """Malformed or invalid input, options or model spec."""


class InvalidNumber(BadInput):
    """A number a user or the environment gave that the rule refuses (NaN, infinite, negative,
    too small, not whole). `name` is the setting (`max_cost`) or the environment variable
    (`AGENT_MAX_COST_CEILING`); a face shows a setting as it spells it (the CLI: `--max-cost`)."""

    def __init__(self, name: str, value: object, rule: str, hint: str | Message | None = None) -> None:
        self.name = name
        self.value = value
        self.rule = rule
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(Message("{setting} must be {rule}, not {shown}", setting=setting_or_text(name), rule=rule, shown=shown, value=value), hint)


class UnknownGraph(AgentError):
    """A graph name or spec that names no graph."""

    http_status = 404


class GraphNotTrusted(AgentError):
    """A graph spec read from the database that this command may not import (runtime/policy/trust.py)."""

    http_status = 403


class DatabaseMissing(AgentError):
    """A read command named a database that does not exist."""

    http_status = 404


class DatabaseUnusable(AgentError):
    """The database cannot be opened, is damaged, or comes from a newer version."""

    http_status = 503


class StorageFull(AgentError):
    """The disk that holds the database is full: a run cannot start or go on (not bad input)."""

    exit_code = 1
    http_status = 507


class ThreadNotFound(AgentError):
    http_status = 404


class ThreadExists(AgentError):
    http_status = 409


class ThreadBusy(AgentError):
    """Another live process is running the thread."""

    http_status = 409


class BundleUnreadable(AgentError):
    """A file given to import that is not a thread bundle, is cut short or damaged, or is of a
    newer format than this version reads. Nothing is imported."""


class CheckpointNotFound(AgentError):
    http_status = 404


class AmbiguousCheckpoint(AgentError):
    pass


class CheckpointUnreadable(AgentError):
    """A stored checkpoint (or its writes) that cannot be read back: stored in a format agent
    refuses, or data that does not decode. Changed outside agent, or damaged; nothing is run."""

    http_status = 500


class NothingToResume(AgentError):
    http_status = 409


class NoResults(AgentError):
    http_status = 404


class CannotRetry(AgentError):
    """`retry-failed` on a thread with no queue, no failed items, or an unfinished pass."""

    http_status = 409


class ScheduleNotFound(AgentError):
    http_status = 404


class ScheduleExists(AgentError):
    http_status = 409


class ScheduleBusy(AgentError):
    """A schedule whose run is still going, with overlap `skip`."""

    http_status = 409
