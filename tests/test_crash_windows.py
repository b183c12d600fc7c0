"""Every multi-step operation is all or nothing: a `kill -9` at an exact point of a fork, of a
run's start, of a resume from an older checkpoint, and a resume while the disk is full, each
leave a state that is whole, or that `agent doctor` names a working command for.

The exact point is a SQL statement: tests/stop_at_sql.py stops the process (SIGSTOP) just before
it executes the statement, the test waits for that stop (waitpid), then kills it (SIGKILL).
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import ROOT, agent_env, db_snapshot, queue_input, results_of, status_of
from tests.test_failures import _can_mount

CHECKPOINT_ROW = r"INSERT\b[^(]*\bINTO\s+checkpoints\b"
STORE_COPY = r"INSERT\s+INTO\s+store\b"


@pytest.fixture
def kill_at(db_path: Path, tmp_path: Path):
    """`kill_at(REGEX, *agent_args)`: run the CLI, SIGKILL it just before its first statement
    that matches REGEX."""

    def kill(pattern: str, *args: str) -> None:
        out = tmp_path / "stopped.out"  # a file, not a pipe: a full pipe would block the process before it gets there
        with out.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.stop_at_sql", pattern, "1", *args],
                cwd=ROOT, env=agent_env(db_path), stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            pytest.fail(f"agent {' '.join(args)} ended before {pattern!r}: {out.read_text()}")
        proc.kill()
        proc.wait()

    return kill


def doctor_fix(cli) -> str:
    """The fix `agent doctor` names for threads whose runner is gone."""
    result = cli("doctor", "--json")
    assert result.exit_code == 1, result.output
    runners = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "runners")
    assert not runners["ok"]
    return runners["fix"]


def run_named(cli, command: str, **fill: str):
    """Run a command as doctor names it (`agent ...`), its placeholders filled in."""
    args = shlex.split(command)
    assert args[0] == "agent", command
    return cli(*[fill.get(arg, arg) for arg in args[1:]])


def test_a_fork_killed_half_way_leaves_no_trace_and_can_be_made_again(cli, db_path, kill_at):
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(4), "--quiet").exit_code == 0
    before = db_snapshot(db_path)

    # After the new thread and its checkpoint are written, before its items are copied.
    kill_at(STORE_COPY, "fork", "--thread", "q", "--checkpoint", "1", "--new-thread", "q2")

    assert db_snapshot(db_path) == before
    assert cli("doctor").exit_code == 0
    forked = cli("fork", "--thread", "q", "--checkpoint", "1", "--new-thread", "q2")
    assert forked.exit_code == 0, forked.output
    assert cli("resume", "--thread", "q2", "--quiet").exit_code == 0
    assert results_of(cli, "q2") == results_of(cli, "q")


def test_a_half_made_fork_left_by_an_older_agent_is_named_by_doctor_with_a_fix_that_works(cli, db_path):
    """What a fork killed between its checkpoint and its items left before forks were one
    transaction: a thread leased to a dead process, whose items are missing."""
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(4), "--quiet").exit_code == 0
    assert cli("fork", "--thread", "q", "--checkpoint", "1", "--new-thread", "q2").exit_code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("DELETE FROM store WHERE prefix LIKE '%.q2'")
        conn.execute(
            "UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, heartbeat_at = 0 WHERE thread_id = 'q2'",
            (dead.pid, socket.gethostname()),
        )

    fix = doctor_fix(cli)

    assert "agent delete --thread q2, then agent fork --thread q" in fix
    delete, fork = fix.split(" (")[0].split(", then ")
    assert run_named(cli, delete).exit_code == 0
    assert run_named(cli, fork).exit_code == 0
    assert cli("resume", "--thread", "q2", "--quiet").exit_code == 0
    assert results_of(cli, "q2") == results_of(cli, "q")
    assert cli("doctor").exit_code == 0


def test_a_run_killed_before_its_first_checkpoint_is_not_called_completed_and_runs_again(cli, db_path, kill_at):
    items = queue_input(3)
    kill_at(CHECKPOINT_ROW, "run", "task_queue", "--thread", "t", "--input", items)

    assert status_of(cli, "t")["status"] == "stale"
    resumed = cli("resume", "--thread", "t")
    assert resumed.exit_code == 2
    assert "has no checkpoint" in resumed.stderr and "completed" not in resumed.stderr
    assert "agent run task_queue --thread t --input JSON" in resumed.stderr
    fix = doctor_fix(cli)
    assert fix.startswith("agent run task_queue --thread t --input JSON")

    rerun = run_named(cli, fix.split(" starts ")[0], JSON=items)

    assert rerun.exit_code == 0, rerun.output
    assert [r["status"] for r in results_of(cli, "t")] == ["done"] * 3
    assert status_of(cli, "t")["status"] == "completed"
    assert cli("doctor").exit_code == 0


def test_a_resume_from_an_older_checkpoint_killed_early_leaves_a_thread_that_resume_finishes(cli, db_path, kill_at):
    assert cli("run", "task_queue", "--thread", "t", "--input", queue_input(3), "--quiet").exit_code == 0
    history = cli("history", "--thread", "t", "--json").stdout

    # The finished thread is taken over from checkpoint 1; killed before it saves a step.
    kill_at(CHECKPOINT_ROW, "resume", "--thread", "t", "--checkpoint", "1")

    assert status_of(cli, "t")["status"] == "stale"
    fix = doctor_fix(cli)
    assert fix.startswith("agent resume --thread t records it completed")

    resumed = run_named(cli, fix.split(" records ")[0])

    assert resumed.exit_code == 0, resumed.output
    assert status_of(cli, "t")["status"] == "completed"
    assert cli("history", "--thread", "t", "--json").stdout == history
    assert cli("doctor").exit_code == 0
    # and the resume from the older checkpoint can be asked again
    assert cli("resume", "--thread", "t", "--checkpoint", "1", "--quiet").exit_code == 0


def _fill(disk: Path) -> None:
    """Take every byte left on the file system `disk` with a file of its own."""
    fd = os.open(disk / "filler", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def disk_fills_during_a_run(disk: str) -> None:
    """Run in a private mount namespace (see the test below); prints what happened as JSON."""
    disk_path = Path(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", disk], check=True)
    db = ["--db", f"{disk}/a.db"]
    env = agent_env(disk_path / "a.db")

    def agent(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from cli import main; main()", *args, *db], cwd=ROOT, env=env, capture_output=True, text=True)

    def status() -> str:
        return json.loads(agent("status", "--thread", "f", "--json").stdout)["status"]

    seen: dict[str, object] = {}
    # Stopped before its first step's checkpoint (its thread and input are saved), the run finds
    # the disk full when it goes on: the checkpoint does not fit, nor would the record of its end.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.stop_at_sql", CHECKPOINT_ROW, "2", "run", "task_queue", "--thread", "f", "--input", queue_input(3), "--quiet", *db],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, stopped = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(stopped)
    _fill(disk_path)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate()
    seen.update(run=proc.returncode, run_stderr=err, after_run=status())
    full = agent("resume", "--thread", "f", "--quiet")
    seen.update(full=full.returncode, full_stderr=full.stderr, after_full=status())
    (disk_path / "filler").unlink()
    resumed = agent("resume", "--thread", "f", "--quiet")
    seen.update(resume=resumed.returncode, resume_stderr=resumed.stderr, after_resume=status())
    seen["results"] = len(agent("results", "--thread", "f").stdout.splitlines())
    print(json.dumps(seen))


@pytest.mark.skipif(not _can_mount(), reason="needs a private mount namespace (unshare -m) for a small file system")
def test_a_run_that_finds_the_disk_full_and_a_resume_while_it_still_is_both_fail_cleanly(tmp_path):
    """A real full file system (a tmpfs), filled to the last byte while the run is stopped."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = f"from tests.test_crash_windows import disk_fills_during_a_run; disk_fills_during_a_run({str(disk)!r})"
    result = subprocess.run(["unshare", "-m", sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["run"], seen["after_run"]) == (1, "failed"), seen
    assert "database or disk is full" in seen["run_stderr"] and "Traceback" not in seen["run_stderr"]
    assert (seen["full"], seen["after_full"]) == (1, "failed"), seen
    assert "is full" in seen["full_stderr"] and "agent resume --thread f" in seen["full_stderr"]
    assert (seen["resume"], seen["after_resume"], seen["results"]) == (0, "completed", 3), seen
