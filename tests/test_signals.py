"""Ctrl-C, SIGTERM and a second process, against real `agent` processes on one database.

A run that a test signals or races is held mid-way by the fake model endpoint (two items done,
two in flight, every later request kept waiting): the test acts only once the run is known to be
there, and lets it go only once the run has said it is stopping. No step depends on timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ENDPOINT_MODEL, LineReader, db_snapshot, finish, wait_for_results

ITEMS = 30
SLOW_MODEL = "offline:latency=0.2"
STOPPING = "Stopping: "
"""How a run says it has seen a signal (or a pause or cancel) and will stop."""


def _queue_input(prefix: str = "item", count: int = ITEMS) -> str:
    return json.dumps({"items": [f"{prefix} {i}" for i in range(count)], "prompt": "Summarize: {item}"})


def _start_queue(spawn_agent, thread: str, prefix: str = "item", count: int = ITEMS) -> subprocess.Popen:
    return spawn_agent(
        "run", "task_queue", "--thread", thread, "--input", _queue_input(prefix, count),
        "--model", SLOW_MODEL, "--concurrency", "2",
    )  # fmt: skip


def _start_held_queue(spawn_agent, endpoint, db_path: Path, thread: str, count: int = ITEMS) -> tuple[subprocess.Popen, LineReader]:
    """A queue on the endpoint, two at a time, held with items 0 and 1 done and 2 and 3 in flight."""
    endpoint.server.hold(after=2)
    proc = spawn_agent(
        "run", "task_queue", "--thread", thread, "--input", _queue_input(count=count),
        "--model", ENDPOINT_MODEL, "--concurrency", "2", **endpoint.env,
    )  # fmt: skip
    stderr = LineReader(proc.stderr)
    wait_for_results(proc, db_path, thread, 2)
    endpoint.server.wait_held(2, proc)
    return proc, stderr


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
def test_a_signal_stops_after_the_node_in_flight_and_resume_finishes(spawn_agent, run_agent, cli, endpoint, db_path: Path, signum: int) -> None:
    proc, stderr = _start_held_queue(spawn_agent, endpoint, db_path, "T")
    proc.send_signal(signum)
    stderr.wait_for(STOPPING)
    endpoint.server.release()
    _, err = finish(proc, stderr)

    assert proc.returncode == 130, err
    assert "agent resume --thread T" in err
    assert "Traceback" not in err
    assert _thread_status(cli, "T") == "stopped"
    # The two items in flight were finished and kept; no new one was started.
    assert _result_items(cli, "T") == [f"item {i}" for i in range(4)]

    resumed = run_agent("resume", "--thread", "T", "--quiet", "--model", "offline")  # the rest without the endpoint
    assert resumed.returncode == 0, resumed.stderr
    assert _thread_status(cli, "T") == "completed"
    assert _result_items(cli, "T") == [f"item {i}" for i in range(ITEMS)]


def test_a_second_ctrl_c_stops_at_once_and_resume_redoes_only_what_was_in_flight(
    spawn_agent, run_agent, cli, endpoint, db_path: Path
) -> None:
    proc, stderr = _start_held_queue(spawn_agent, endpoint, db_path, "T")
    proc.send_signal(signal.SIGINT)
    stderr.wait_for(STOPPING)  # the first was seen: the second is a second, not merged into it
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc, stderr)

    assert proc.returncode == 130, err
    assert "agent resume --thread T" in err and "Traceback" not in err
    assert _thread_status(cli, "T") == "stopped"
    assert _result_items(cli, "T") == ["item 0", "item 1"]  # the two in flight were dropped, not finished

    endpoint.server.release()
    resumed = run_agent("resume", "--thread", "T", "--quiet", **endpoint.env)
    assert resumed.returncode == 0, resumed.stderr
    assert _result_items(cli, "T") == [f"item {i}" for i in range(ITEMS)]
    asked = Counter(r.prompt for r in endpoint.server.log())
    assert {prompt for prompt, times in asked.items() if times > 1} == {"Summarize: item 2", "Summarize: item 3"}
    assert sum(asked.values()) == ITEMS + 2


def test_a_second_runner_of_a_running_thread_is_refused(spawn_agent, run_agent, cli, endpoint, db_path: Path) -> None:
    proc, stderr = _start_held_queue(spawn_agent, endpoint, db_path, "T", count=20)

    second = run_agent("resume", "--thread", "T", **endpoint.env)
    assert second.returncode == 2, second.stderr
    assert f"pid {proc.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert proc.poll() is None, "the refused resume stopped the running thread"

    endpoint.server.release()
    _, err = finish(proc, stderr)
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
