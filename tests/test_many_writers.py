"""Many writers on one file: every writer waits its turn at SQLite's write lock, none fails a run.

The processes are released together by one gate (tests/gated.py): each does its slow start-up,
says it is ready, and blocks on a lock the test holds until all are ready.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from tests.conftest import ROOT, agent_env, queue_input

READY_TIMEOUT = 900
"""Seconds the test waits, at most, for every process to be ready (a bound for a broken start, not a timing)."""


def start_together(tmp_path: Path, db_path: Path, commands: list[list[str]]) -> list[tuple[int, str, str]]:
    """Start `python -m tests.gated GATE READY *command` for each command, release them all at
    once when every one is ready, and return (exit code, stdout, stderr) of each."""
    gate, ready = tmp_path / "gate", tmp_path / "ready"
    gate.touch()
    ready.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    with open(gate, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = []
        for i, command in enumerate(commands):
            out, err = (logs / f"{i}.out").open("w"), (logs / f"{i}.err").open("w")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.gated", str(gate), str(ready / str(i)), *command],
                    cwd=ROOT, env=agent_env(db_path), stdout=out, stderr=err,
                )  # fmt: skip
            )
            out.close()
            err.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while len(list(ready.iterdir())) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(list(ready.iterdir())) == len(procs), [(p.poll(), (logs / f"{i}.err").read_text()[-500:]) for i, p in enumerate(procs)]
        fcntl.flock(held, fcntl.LOCK_UN)  # all go
    codes = [p.wait(timeout=1800) for p in procs]
    return [(code, (logs / f"{i}.out").read_text(), (logs / f"{i}.err").read_text()) for i, code in enumerate(codes)]


def statuses_and_results(db_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    with closing(sqlite3.connect(db_path)) as conn:
        statuses = dict(conn.execute("SELECT thread_id, status FROM agent_threads"))
        results = dict(conn.execute("SELECT substr(prefix, 9), count(*) FROM store WHERE prefix LIKE 'results.%' GROUP BY prefix"))
    return statuses, results


def test_64_agent_runs_started_at_the_same_moment_on_one_database_all_succeed(tmp_path, db_path):
    threads = [f"w{i}" for i in range(64)]
    commands = [["cli", "run", "task_queue", "--thread", t, "--input", queue_input(2, t), "--quiet"] for t in threads]

    finished = start_together(tmp_path, db_path, commands)

    failed = [(t, code, err[-300:]) for t, (code, _, err) in zip(threads, finished) if code != 0]
    assert not failed, f"{len(failed)} of 64 failed: {failed[:3]}"
    statuses, results = statuses_and_results(db_path)
    assert statuses == {t: "completed" for t in threads}
    assert results == {t: 2 for t in threads}


def test_8_processes_of_8_threads_sharing_a_database_all_run_from_python(tmp_path, db_path):
    commands = [["threads", str(db_path), "8", f"p{p}"] for p in range(8)]

    finished = start_together(tmp_path, db_path, commands)

    assert [code for code, _, _ in finished] == [0] * 8, [err[-500:] for _, _, err in finished]
    outcomes = {thread: status for _, out, _ in finished for thread, status in json.loads(out).items()}
    threads = [f"p{p}-{i}" for p in range(8) for i in range(8)]
    assert outcomes == {t: "completed" for t in threads}
    statuses, results = statuses_and_results(db_path)
    assert statuses == {t: "completed" for t in threads}
    assert results == {t: 2 for t in threads}
