"""Ctrl-C, SIGTERM and a second process, against real `agent` processes on one database."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import db_snapshot, wait_for_results

ITEMS = 30
SLOW_MODEL = "offline:latency=0.2"


def _queue_input(prefix: str = "item", count: int = ITEMS) -> str:
    return json.dumps({"items": [f"{prefix} {i}" for i in range(count)], "prompt": "Summarize: {item}"})


def _start_queue(spawn_agent, thread: str, prefix: str = "item", count: int = ITEMS) -> subprocess.Popen:
    return spawn_agent(
        "run", "task_queue", "--thread", thread, "--input", _queue_input(prefix, count),
        "--model", SLOW_MODEL, "--concurrency", "2",
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


# Reads go through the CLI in this process (the `cli` fixture): they are not what is tested here,
# and a subprocess each would double the time of every test.


def _thread_status(cli, thread: str) -> str:
    listed = cli("threads", "--json")
    assert listed.exit_code == 0, listed.stderr
    return {t["thread_id"]: t["status"] for t in json.loads(listed.stdout)}[thread]


def _result_items(cli, thread: str) -> list[str]:
    printed = cli("results", "--thread", thread)
    assert printed.exit_code == 0, printed.stderr
    rows = [json.loads(line) for line in printed.stdout.splitlines()]
    assert all(row["status"] == "done" for row in rows), rows
    return [row["item"] for row in rows]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_after_the_node_in_flight_and_resume_finishes(spawn_agent, run_agent, cli, db_path: Path, signum: int) -> None:
    proc = _start_queue(spawn_agent, "T")
    wait_for_results(proc, db_path, "T")
    proc.send_signal(signum)
    _, err = _finish(proc)

    assert proc.returncode == 130, err
    assert "agent resume --thread T" in err
    assert "Traceback" not in err
    assert _thread_status(cli, "T") == "stopped"
    stopped_with = len(_result_items(cli, "T"))
    assert 2 <= stopped_with < ITEMS
    assert stopped_with % 2 == 0, "an item in flight was dropped instead of finished"  # 2 items a step

    resumed = run_agent("resume", "--thread", "T", "--quiet", "--model", "offline")  # the rest without latency
    assert resumed.returncode == 0, resumed.stderr
    assert _thread_status(cli, "T") == "completed"
    assert _result_items(cli, "T") == [f"item {i}" for i in range(ITEMS)]


def test_a_second_ctrl_c_stops_at_once_and_resume_redoes_only_what_was_in_flight(
    spawn_agent, run_agent, cli, db_path: Path
) -> None:
    proc = _start_queue(spawn_agent, "T")
    wait_for_results(proc, db_path, "T")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = _finish(proc)

    assert proc.returncode == 130, err
    assert "agent resume --thread T" in err and "Traceback" not in err
    assert _thread_status(cli, "T") == "stopped"
    assert 2 <= len(_result_items(cli, "T")) < ITEMS

    resumed = run_agent("resume", "--thread", "T", "--quiet", "--model", "offline")
    assert resumed.returncode == 0, resumed.stderr
    assert _result_items(cli, "T") == [f"item {i}" for i in range(ITEMS)]


def test_a_second_runner_of_a_running_thread_is_refused(spawn_agent, run_agent, cli, db_path: Path) -> None:
    proc = _start_queue(spawn_agent, "T", count=20)
    wait_for_results(proc, db_path, "T")

    second = run_agent("resume", "--thread", "T")
    assert second.returncode == 2, second.stderr
    assert f"pid {proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert proc.poll() is None, "the refused resume stopped the running thread"

    _, err = _finish(proc)
    assert proc.returncode == 0, err
    assert _result_items(cli, "T") == [f"item {i}" for i in range(20)]


def test_run_on_an_existing_thread_is_refused_and_names_resume(run_agent, db_path: Path) -> None:
    first = run_agent("run", "task_queue", "--thread", "T", "--input", _queue_input(count=2))
    assert first.returncode == 0, first.stderr
    before = db_snapshot(db_path)

    again = run_agent("run", "task_queue", "--thread", "T", "--input", _queue_input("other", 2))
    assert again.returncode == 2, again.stderr
    assert "agent resume --thread T" in again.stderr
    assert "Traceback" not in again.stderr
    assert db_snapshot(db_path) == before


def test_two_threads_run_side_by_side_in_two_processes(spawn_agent, cli) -> None:
    """Both processes create the database, migrate it and write checkpoints at the same time."""
    procs = {thread: _start_queue(spawn_agent, thread, prefix=thread, count=12) for thread in ("A", "B")}
    for proc in procs.values():
        _, err = _finish(proc)
        assert proc.returncode == 0, err
        assert "locked" not in err
    for thread in procs:
        assert _thread_status(cli, thread) == "completed"
        assert _result_items(cli, thread) == [f"{thread} {i}" for i in range(12)]
