"""Shared fixtures: a database file in tmp_path, the CLI in-process and as a real subprocess."""

from __future__ import annotations

import json
import os

# As in production (runtime/__init__.py): strict checkpoint deserialization, set before LangGraph loads.
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import pytest
from typer.testing import CliRunner

from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent

ENDPOINT_MODEL = "openai:test-model"
"""The model spec of a run against the `endpoint` fixture's server."""


BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of a module that sets `BOTH_BACKENDS = True` runs once per backend: its `db_path` is
    a SQLite file, then a PostgreSQL URL (a database of its own; tests/postgres_server.py)."""
    if "storage_backend" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_BACKENDS", False):
        if metafunc.definition.get_closest_marker("postgres_only"):
            metafunc.parametrize("storage_backend", ["postgres"], indirect=True)
        elif not metafunc.definition.get_closest_marker("sqlite_only"):
            metafunc.parametrize("storage_backend", BACKENDS, indirect=True)


@pytest.fixture
def storage_backend(request: pytest.FixtureRequest) -> str:
    name = getattr(request, "param", "sqlite")
    if name == "postgres":
        from tests.postgres_server import postgres_off

        if postgres_off():
            pytest.skip("AGENT_TEST_POSTGRES=off leaves PostgreSQL out")
    return name


@pytest.fixture
def db_path(tmp_path: Path, storage_backend: str) -> Iterator[Any]:
    """The test's database: a file in tmp_path, or (in a BOTH_BACKENDS module's PostgreSQL run)
    the URL of a new PostgreSQL database, dropped after the test."""
    if storage_backend == "sqlite":
        yield tmp_path / "agent.db"
        return
    from tests.postgres_server import agent_database

    with agent_database() as url:
        yield url


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


def db_snapshot(db_path: Path | str) -> dict[str, list]:
    """Every row of every table, to prove a command changed nothing."""
    if isinstance(db_path, str):
        return _postgres_snapshot(db_path)
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
    finally:
        conn.close()


class _Qmarks:
    """A PostgreSQL connection that takes the tests' SQL as SQLite's (`?` placeholders)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), parameters)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "_Qmarks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_connection(db_path: Path | str) -> Any:
    """A plain connection to the test's database, for what a test reads or arranges by hand
    (autocommit; `?` placeholders on either backend)."""
    if isinstance(db_path, str):
        import psycopg

        return _Qmarks(psycopg.connect(db_path, autocommit=True))
    return sqlite3.connect(db_path, isolation_level=None)


def sql(db: Any) -> Any:
    """The calling thread's connection of an open Database, taking SQL with `?` placeholders on
    either backend (for what a test arranges or reads by hand)."""
    conn = db.conn
    return conn if isinstance(conn, sqlite3.Connection) else _Qmarks(conn)


def nothing_written(db_path: Path | str) -> bool:
    """Whether no command has stored anything: no SQLite file made, or (on PostgreSQL, whose
    database the test was given set up) every table but the schema records empty."""
    if not isinstance(db_path, str):
        return not db_path.exists()
    bookkeeping = {"agent_schema", "checkpoint_migrations", "store_migrations", "vector_migrations"}
    return all(not rows for table, rows in _postgres_snapshot(db_path).items() if table not in bookkeeping)


def _postgres_snapshot(url: str) -> dict[str, list]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}


def results_stored(db_path: Path | str, thread: str) -> int:
    """Results a run has stored so far, read through a read-only connection while it writes."""
    if isinstance(db_path, str):
        import psycopg

        with psycopg.connect(db_path, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM store WHERE prefix = %s", (f"results.{thread}",)).fetchone()[0]
    if not db_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM store WHERE prefix = ?", (f"results.{thread}",)).fetchone()[0]
    except sqlite3.OperationalError:  # the store is not there yet
        return 0
    finally:
        conn.close()


def wait_for_results(proc: subprocess.Popen, db_path: Path, thread: str, count: int = 2, timeout: float = 120) -> None:
    """Poll until a running process has stored `count` results; fail if it ends first.
    (`timeout` only bounds a test that would otherwise hang on a busy machine.)"""
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


@dataclass
class Endpoint:
    """The fake OpenAI-compatible server as a run's model endpoint (`--model ENDPOINT_MODEL`)."""

    server: FakeOpenAI
    env: dict[str, str]
    """Its environment (a key made up for the test): set in this process, passed to subprocesses."""


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """A run against it can be held mid-way (`endpoint.server.hold(after=N)`), so a test acts
    while the run is known to hold its thread, then lets it go (`endpoint.server.release()`)."""
    with FakeOpenAI() as server:
        env = {"OPENAI_API_KEY": "sk-test-" + secrets.token_hex(12), "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield Endpoint(server, env)


class LineReader:
    """A process's output read line by line in a thread: a test waits for the line a process
    prints at a known moment (an explicit signal, never a sleep) and still gets all of it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="line-reader", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> list[str]:
        """Block until `count` lines contain `text`, and return them; fail if the output ends
        first (`timeout` only bounds a test that would otherwise hang)."""

        def found() -> list[str]:
            return [line for line in self.lines if text in line]

        with self._changed:
            self._changed.wait_for(lambda: len(found()) >= count or self._ended, timeout)
            if len(found()) < count:
                pytest.fail(f"no {count} line(s) with {text!r} ({'output ended' if self._ended else f'after {timeout}s'}): {''.join(self.lines)}")
            return found()

    def text(self, timeout: float = 120) -> str:
        """Everything, once the output has ended (the process exited)."""
        self._thread.join(timeout)
        with self._changed:
            return "".join(self.lines)


def finish(proc: subprocess.Popen, stderr: LineReader, timeout: float = 120) -> tuple[str, str]:
    """Wait for a process whose stderr a LineReader follows; return its stdout and stderr."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.stdout.read() if proc.stdout else "", stderr.text()


UPSTREAM_RESULTS = pytest.StashKey[list]()
"""What each upstream suite run found (tests/test_langgraph_suite.py), for the summary below."""


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """CI shows the upstream suites' counts (passed / failed / skipped / deselected) in every run."""
    results = config.stash.get(UPSTREAM_RESULTS, [])
    if results:
        terminalreporter.section("LangGraph's own tests against agent's saver")
        for result in results:
            terminalreporter.write_line(result.summary())


def run_in_terminal(
    args: list[str], env: dict[str, str], *, columns: int = 200, timeout: float = 60, on_output: Callable[[bytes, subprocess.Popen], Any] | None = None
) -> tuple[int, str]:
    """Run a command on a pseudo-terminal `columns` wide (as a person at a terminal would) and
    return its exit code and what it drew; `on_output` sees the output so far after each read
    (to act once something is drawn: a signal, not a sleep)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if on_output is not None:
                    on_output(output, proc)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=timeout), output.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
