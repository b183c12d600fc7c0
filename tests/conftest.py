"""Shared fixtures: a database file in tmp_path, the CLI in-process and as a real subprocess."""

from __future__ import annotations

import json
import os

# As in production (runtime/__init__.py): strict checkpoint deserialization, set before LangGraph loads.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agent.db"


@pytest.fixture
def cli(db_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the Typer app in-process against the test database."""
    from cli import app

    monkeypatch.setenv("AGENT_DB", str(db_path))
    monkeypatch.delenv("AGENT_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def agent_env(db_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    env.update({"AGENT_DB": str(db_path), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    env.update(extra)
    return env


def agent_cmd(*args: str) -> list[str]:
    """The `agent` console script, run as a real process with this interpreter."""
    return [sys.executable, "-c", "from cli import main; main()", *args]


@pytest.fixture
def run_agent(db_path: Path, tmp_path: Path):
    """Run the CLI as a subprocess to completion; returns CompletedProcess."""

    def run(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            agent_cmd(*args), cwd=ROOT, env=agent_env(db_path, **env), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def spawn_agent(db_path: Path):
    """Start the CLI as a subprocess and return the Popen (the test kills or waits for it)."""
    procs: list[subprocess.Popen] = []

    def spawn(*args: str, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            agent_cmd(*args), cwd=ROOT, env=agent_env(db_path, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def db_snapshot(db_path: Path) -> dict[str, list]:
    """Every row of every table, to prove a command changed nothing."""
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
    finally:
        conn.close()


def results_stored(db_path: Path, thread: str) -> int:
    """Results a run has stored so far, read through a read-only connection while it writes."""
    if not db_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM store WHERE prefix = ?", (f"results.{thread}",)).fetchone()[0]
    except sqlite3.OperationalError:  # the store is not there yet
        return 0
    finally:
        conn.close()


def wait_for_results(proc: subprocess.Popen, db_path: Path, thread: str, count: int = 2, timeout: float = 30) -> None:
    """Poll until a running process has stored `count` results; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while results_stored(db_path, thread) < count:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {count} results: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {count} results after {timeout}s")
        time.sleep(0.05)


def queue_input(n: int, prefix: str = "doc") -> str:
    """A task_queue input of `n` items as JSON: `"{prefix} 0"`, `"{prefix} 1"`, ..."""
    return json.dumps({"items": [f"{prefix} {i}" for i in range(n)], "prompt": "Summarize: {item}"})


def results_of(cli, thread: str) -> list[dict]:
    """`agent results --thread T`, one dict an item."""
    return [json.loads(line) for line in cli("results", "--thread", thread).stdout.splitlines()]


def status_of(cli, thread: str) -> dict:
    """`agent status --thread T --json`."""
    result = cli("status", "--thread", thread, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


UPSTREAM_RESULTS = pytest.StashKey[list]()
"""What each upstream suite run found (tests/test_langgraph_suite.py), for the summary below."""


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """CI shows the upstream suites' counts (passed / failed / skipped / deselected) in every run."""
    results = config.stash.get(UPSTREAM_RESULTS, [])
    if results:
        terminalreporter.section("LangGraph's own tests against agent's saver")
        for result in results:
            terminalreporter.write_line(result.summary())
