"""How the CLI words what the runtime says (runtime/errors.py): a setting as its flag
(`max_cost` -> `--max-cost`, `Setting("keep", 100)` -> `--keep 100`), a command as the `agent`
command line that runs it (`agent resume --thread T --checkpoint ID`), values quoted for the
shell where they need it. `handles_errors` (commands/output.py) renders every error with it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runtime.errors import Command, Duration, Face, ForShell, Message, OneOf, Setting, Verb

FLAGS = {
    "thread_id": "thread",
    "new_thread_id": "new-thread",
    "ids": "id",
    "every": "all",
    "approve_all": "yes",
    "edits": "set",
    "path": "db",
}
"""Runtime names the CLI spells otherwise; any other `name` is `--name` with dashes for underscores."""

ASSIGNED = {"edits"}
"""Settings the CLI takes as `key=value` pairs, one flag each (`--set steps=2`)."""

POSITIONAL = {"run": ("graph",), "import": ("source",), "schedule delete": ("name",), "schedule runs": ("name",)}
"""Arguments a verb takes by position, before its flags (`agent run GRAPH --thread ID`)."""

_BARE = re.compile(r"[^\s\"'`$\\*;&|(){}!]+")
"""A word the shell takes as it is: no space, quote, or character it expands or splits on."""
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def flag(name: str) -> str:
    return "--" + FLAGS.get(name, name.replace("_", "-"))


def shell_word(text: str) -> str:
    """`text` as one word for the shell: bare when it can be, else in double or single quotes."""
    if _BARE.fullmatch(text):
        return text
    if not re.search(r'["$`\\!]', text):
        return f'"{text}"'
    return "'" + text.replace("'", "'\\''") + "'"


def duration_text(seconds: float) -> str:
    """Seconds in the largest unit that writes them whole: 600 -> `10m`, 2592000 -> `30d`."""
    for unit, size in _UNITS:
        if seconds and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


class CliFace(Face):
    def setting(self, setting: Setting) -> str:
        if setting.key is not None:
            return f"{flag(setting.name)} {setting.key}"
        return flag(setting.name) if not setting.has_value else self.option(setting.name, setting.value)

    def option(self, name: str, value: Any) -> str:
        """A flag with its value: `--keep 100`, `--force` for True, one flag per item of a list
        or per key of an assigned setting (`--set steps=2`)."""
        if value is True:
            return flag(name)
        if isinstance(value, (list, tuple)):
            return " ".join(self.option(name, item) for item in value)
        if name in ASSIGNED and isinstance(value, dict):
            return " ".join(f"{flag(name)} {_assignment(key, item)}" for key, item in value.items())
        return f"{flag(name)} {self.value(value)}"

    def command(self, command: Command) -> str:
        args = dict(command.args)
        words = ["agent", command.verb]
        words += [self.value(args.pop(name)) for name in POSITIONAL.get(command.verb, ()) if name in args]
        words += [self.option(name, value) for name, value in args.items()]
        return " ".join(words)

    def verb(self, verb: Verb) -> str:
        return verb.verb

    def one_of(self, choice: OneOf) -> str:
        """`agent approve / agent reject --thread T --id ID`: the verbs, then the arguments they share."""
        *others, last = choice.commands
        return " / ".join([f"agent {c.verb}" for c in others] + [self.command(last)])

    def value(self, value: Any) -> str:
        if isinstance(value, Duration):
            return duration_text(value.seconds)
        return shell_word(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))

    def for_shell(self, advice: ForShell) -> str:
        return advice.text


def _assignment(key: str, value: Any) -> str:
    """`key=value` for the shell: `steps=2`, `question="Why?"`, `'names=["a"]'`."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if _BARE.fullmatch(text):
        return f"{key}={text}"
    if '"' not in text:
        return f'{key}="{text}"'
    return shell_word(f"{key}={text}")


CLI = CliFace()


def cli_text(message: Message | str | None) -> str | None:
    """A runtime message (or plain text) in the CLI's wording."""
    return message.render(CLI) if isinstance(message, Message) else message
