"""Run an upstream suite against agent's saver, in a pytest process of its own (LangGraph's test
package is named `tests`, as ours is, so it needs its own rootdir and sys.path).

    python -m tests.langgraph_suite.run                       # every suite, agent's savers
    python -m tests.langgraph_suite.run --suite langgraph -- -k interrupt -x
    python -m tests.langgraph_suite.run --suite langgraph-postgres
    python -m tests.langgraph_suite.run --baseline            # each suite's own saver instead

`langgraph-postgres` is LangGraph's suite again, on agent's PostgreSQL savers, each test on a
database of its own on the server AGENT_TEST_POSTGRES (tests/langgraph_suite/server.py).
`--baseline` gives LangGraph's suite the in-memory saver of its own `memory` parameter,
`langgraph-postgres` LangGraph's stock PostgreSQL savers, and langgraph-checkpoint-sqlite's suite
the stock SQLite savers: what passes there must pass with ours. Arguments after `--` go to pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.langgraph_suite import expectations, server
from tests.langgraph_suite.source import HERE, SuiteSourceError, check_installed, load_pins, source_tree

RUN_TIMEOUT = 1200
"""Seconds an upstream run may take (a few minutes on a busy 2-core machine) before it counts as hung."""


@dataclass(frozen=True)
class Suite:
    """An upstream package whose tests run here, and how they are selected."""

    name: str
    baseline: str  # the saver its own suite uses, by the name the swapped conftest knows it
    conftest: str  # our file that becomes its tests/conftest.py
    files: tuple[str, ...] | None  # test files to run; None: those that take a checkpointer fixture
    fixtures: tuple[str, ...] | None  # keep only tests that take one of these; None: all
    pytest_args: tuple[str, ...] = ()
    saver: str = "agent"  # ours, by the name the swapped conftest knows it
    package: str = ""  # the pinned package whose tests these are; "": the suite's name
    on_server: bool = False  # each test on a new database of the PostgreSQL server (server.py)

    @property
    def pin(self) -> str:
        return self.package or self.name


SUITES = {
    "langgraph": Suite(
        name="langgraph",
        baseline="memory",
        conftest="langgraph_conftest.py",
        files=None,
        fixtures=expectations.CHECKPOINTER_FIXTURES,
        # LangGraph's own test environment has no pytest-asyncio (it runs async tests with anyio).
        pytest_args=("-p", "no:asyncio"),
    ),
    "langgraph-postgres": Suite(
        name="langgraph-postgres",
        baseline="stock-postgres",
        conftest="langgraph_conftest.py",
        files=None,
        fixtures=expectations.CHECKPOINTER_FIXTURES,
        pytest_args=("-p", "no:asyncio"),
        saver="agent-postgres",
        package="langgraph",
        on_server=True,
    ),
    "langgraph-checkpoint-sqlite": Suite(
        name="langgraph-checkpoint-sqlite",
        baseline="stock",
        conftest="sqlite_conftest.py",
        files=expectations.SQLITE_SAVER_FILES,
        fixtures=None,
    ),
}

SAVER_NAMES = {
    "agent": "agent's saver",
    "agent-postgres": "agent's PostgreSQL savers",
    "memory": "InMemorySaver (baseline)",
    "stock": "the stock SQLite savers (baseline)",
    "stock-postgres": "the stock PostgreSQL savers (baseline)",
}


@dataclass
class SuiteResult:
    """What one upstream run found (the plugin's report), and where its full output is."""

    suite: str
    saver: str
    version: str
    counts: dict[str, int]
    failed: list[str]
    fixed: list[str]  # known failures that passed
    seconds: float
    log: Path

    def summary(self) -> str:
        always = ("passed", "failed", "skipped", "deselected")
        shown = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n or k in always)
        return f"{self.suite} {self.version} with {SAVER_NAMES[self.saver]}: {shown} in {self.seconds:.0f} s"


    def failures(self) -> str:
        """The upstream run's short summary of what failed (one line per test, with its error)."""
        lines = self.log.read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if "short test summary info" in line]
        return "\n".join(line for line in lines[starts[-1] + 1 :] if line.startswith(("FAILED", "ERROR"))) if starts else ""


class SuiteRunError(Exception):
    """The upstream run did not get as far as a report (bad arguments, a crash): one line."""


def prepare(suite: Suite) -> tuple[Path, str]:
    """The suite's source tree with our conftest and plugin in place; returns it and its version."""
    pin = load_pins()[suite.pin]
    check_installed(pin)
    tree = source_tree(pin)
    install(HERE / suite.conftest, tree / "tests" / "conftest.py")
    install(HERE / "plugin.py", tree / "agent_suite_plugin.py")
    install(HERE / "savers.py", tree / "agent_suite_savers.py")
    return tree, pin.version


def install(source: Path, target: Path) -> None:
    """Put `source` at `target` unless it is there already, by an atomic rename: another run of
    the suite from the same checkout may be importing the file at that moment."""
    data = source.read_bytes()
    if target.exists() and target.read_bytes() == data:
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)


def files_to_collect(suite: Suite, tree: Path) -> list[str]:
    """The files to collect: only those that can hold a selected test (the others import
    Postgres, Redis or a running server at module level)."""
    if suite.files is not None:
        return [f"tests/{name}" for name in suite.files]
    names = sorted(p.name for p in (tree / "tests").glob("test_*.py") if any(f in p.read_text() for f in suite.fixtures))
    return [f"tests/{name}" for name in names]


def left_out(name: str) -> str | None:
    """Why suite `name` does not run here (None: it runs)."""
    return server.left_out() if SUITES[name].on_server else None


def run_suite(name: str, *, baseline: bool = False, pytest_args: tuple[str, ...] = (), echo: bool = False) -> SuiteResult:
    """Run one suite in its own pytest process; its output goes to a log in the cache (and to
    this process's stdout with `echo`)."""
    suite = SUITES[name]
    tree, version = prepare(suite)
    saver = suite.baseline if baseline else suite.saver
    log = tree.parent / f"last-run-{name}-{saver}.log"
    with tempfile.TemporaryDirectory(prefix="agent-suite-") as tmp, _server_of(suite) as server_env:
        report, plan, current = Path(tmp) / "report.json", Path(tmp) / "plan.json", Path(tmp) / "current"
        plan.write_text(json.dumps({
            "fixtures": suite.fixtures,
            "skip": {} if baseline else expectations.SKIP[name],
            "known_failures": {} if baseline else expectations.KNOWN_FAILURES[name],
            "report": str(report),
            "current": str(current),
        }))  # fmt: skip
        command = [sys.executable, "-m", "pytest", "-p", "agent_suite_plugin", "-p", "no:cacheprovider",
                   *suite.pytest_args, "-q", "-rfE", *files_to_collect(suite, tree), *pytest_args]  # fmt: skip
        finished = _run(command, tree, _environment(tree, plan, saver) | server_env, log, echo)
        if not finished:
            running = current.read_text() if current.exists() else "(none yet)"
            raise SuiteRunError(f"the {name} run did not end within {RUN_TIMEOUT} s, in {running}: see {log}")
        if not report.exists():
            raise SuiteRunError(f"the {name} run ended without a report: see {log}")
        data = json.loads(report.read_text())
    return SuiteResult(name, saver, version, data["counts"], data["failed"], data["fixed"], data["seconds"], log)


@contextlib.contextmanager
def _server_of(suite: Suite) -> Iterator[dict[str, str]]:
    """For a suite on the server, the run's database (the environment that names it)."""
    if not suite.on_server:
        yield {}
        return
    try:
        with server.run_database() as env:
            yield env
    except server.ServerUnreachable as exc:  # raised before the run starts
        raise SuiteRunError(str(exc)) from None


def _environment(tree: Path, plan: Path, saver: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") and k != "PYTEST_CURRENT_TEST"}
    env.update({
        "PYTHONPATH": str(tree),  # `tests` is theirs in this process
        "AGENT_SUITE_PLAN": str(plan),
        "AGENT_SUITE_SAVER": saver,
        # As in production (runtime/__init__.py), for both sides of the comparison.
        "LANGGRAPH_STRICT_MSGPACK": "true",
        "NO_DOCKER": "true",
        "COLUMNS": "240",  # the short summary's error messages, not cut at 80 columns
    })  # fmt: skip
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str], log: Path, echo: bool) -> bool:
    """Run to the end, or stop it after RUN_TIMEOUT (a hung test); returns whether it ended."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if echo:
                    sys.stdout.write(line)
            proc.wait()
        finally:
            watchdog.cancel()
    return proc.returncode != -signal.SIGKILL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), action="append", help="run only this suite (repeatable)")
    parser.add_argument("--baseline", action="store_true", help="run each suite with its own saver instead of agent's")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest")
    args = parser.parse_args(argv)
    failed = False
    for name in args.suite or list(SUITES):
        reason = left_out(name)
        if reason is not None:
            print(f"{name}: left out ({reason})", file=sys.stderr)
            continue
        try:
            result = run_suite(name, baseline=args.baseline, pytest_args=tuple(args.pytest_args), echo=True)
        except (SuiteSourceError, SuiteRunError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
        print(result.summary())
        for nodeid in result.fixed:
            print(f"{nodeid} passes now: remove its entry from KNOWN_FAILURES in tests/langgraph_suite/expectations.py")
        failed = failed or bool(result.failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
