"""Which graph specs a command may import: importing a spec runs its code.

A thread stores the spec of its graph (`path/to/file.py:attr`, `package.module:attr` or a
built-in name), and so does a schedule. Whoever can write the database writes those specs: its
owner (the file is created 0600), anyone they give the file to or share it with, and the
clients of `agent serve` (who can name only the graphs the server was started with). So a spec read from the database is imported only when the one
running the command trusts it:

- a built-in graph is always imported (it is agent's own code);
- a spec given on the command itself (`agent run SPEC`, `agent graph show SPEC`,
  `agent schedule add --graph SPEC`) is trusted by being given;
- a spec read from the database is imported when it is listed in AGENT_TRUSTED_GRAPHS (entries
  separated by the path separator, ':' on POSIX: a .py file, a directory of them, or a module or
  package name), or, for a command a person starts (not the worker, not the server), when it
  names a file of theirs that nobody else can change: the file owned by them and writable by
  nobody else, and each directory above it owned by them or root and writable by nobody else
  (unless sticky, like /tmp).

Otherwise commands that only read a thread (state, diff, approvals, history) show what the
database holds without importing anything, and commands that would run it refuse with
GraphNotTrusted (exit 2). Unattended processes (`agent worker`, `agent schedule trigger`,
`agent serve`) import built-in and listed graphs only: nobody there can vouch for a file (the
server lists the graphs of its own langgraph.json).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from runtime.errors import Command, GraphNotTrusted, Message, UnknownGraph

TRUSTED_GRAPHS_ENV = "AGENT_TRUSTED_GRAPHS"


def is_trusted(spec: str, *, attended: bool) -> bool:
    """Whether a spec read from the database may be imported (the rule above)."""
    from graphs import split_spec

    if ":" not in spec:
        return True  # a name: a built-in graph, or none (then nothing is imported)
    path, module, _ = split_spec(spec)
    if _listed(path, module):
        return True
    return attended and path is not None and owned_by_you(path)


def require_trusted(spec: str, *, attended: bool, owner: str) -> None:
    """Raise GraphNotTrusted unless `spec` may be imported; `owner` says whose spec it is
    (`thread 'u'`, `schedule 'digest'`) for the message."""
    if is_trusted(spec, attended=attended):
        return
    from graphs import locate, split_spec

    if locate(spec) is None:  # looked for without importing: say what is wrong with it first
        raise UnknownGraph(f"{owner} runs the graph {spec}, which no longer exists", "restore the graph's code where it was")
    path, module, _ = split_spec(spec)
    entry = str(path) if path is not None else module
    why = "agent imports a graph named by the database only when it is trusted"
    if not attended:
        why = "unattended, agent imports only built-in graphs and those listed in " + TRUSTED_GRAPHS_ENV
    elif path is not None:
        why += ", and that file is not yours alone (owned by you, writable by nobody else)"
    raise GraphNotTrusted(
        f"{owner} runs the graph {spec}, which is not trusted here: {why}",
        f"if you trust that code, list it: {TRUSTED_GRAPHS_ENV}={entry} (a file, a directory or a package; in the worker's environment for schedules)",
    )


def _listed(path: Path | None, module: str | None) -> bool:
    for entry in filter(None, (e.strip() for e in os.environ.get(TRUSTED_GRAPHS_ENV, "").split(os.pathsep))):
        if _is_path(entry):
            if path is None:
                continue
            trusted = Path(entry).expanduser().resolve()
            if path == trusted or trusted in path.parents:
                return True
        elif module is not None and (module == entry or module.startswith(entry + ".")):
            return True
    return False


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or os.sep in entry or entry.startswith(".")


def owned_by_you(path: Path) -> bool:
    """The file and every directory above it can be changed by you (or root) alone."""
    if not hasattr(os, "getuid"):
        return False
    uid = os.getuid()
    try:
        real = path.resolve(strict=True)
        info = real.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022:
            return False
        for directory in real.parents:
            info = directory.stat()
            if info.st_uid not in (uid, 0) or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                return False
    except OSError:
        return False
    return True


def load_problem(exc: Any) -> Any:
    """What a GraphLoadError says, for an error of the runtime: an unknown built-in name comes
    with the command that lists the graphs."""
    if exc.unknown is None:
        return exc.message
    return Message(
        "unknown graph {spec!r}; choose one of {names} ({graphs} lists them) or name your own as path/to/file.py:attr or package.module:attr",
        spec=exc.unknown, names=", ".join(exc.choices), graphs=Command("graphs"),
    )
