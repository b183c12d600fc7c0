"""Pause and cancel from a second process while the first runs the thread (real processes).

The first run is held mid-way by the fake model endpoint (two items done, two in flight): the
request is made while it is known to be running, and the held items are let go only once the
run has said it will stop, so exactly the two in flight finish. No step depends on timing.
"""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json
import subprocess
from pathlib import Path

from tests.conftest import ENDPOINT_MODEL, LineReader, finish, queue_input, results_of, status_of, wait_for_results

ITEMS = 30
STOPPING = "Stopping: "


def _start_held(spawn_agent, endpoint, db_path: Path, thread: str) -> tuple[subprocess.Popen, LineReader]:
    endpoint.server.hold(after=2)
    proc = spawn_agent("run", "task_queue", "--thread", thread, "--input", queue_input(ITEMS, "item"), "--model", ENDPOINT_MODEL,
                       "--concurrency", "2", "--quiet", **endpoint.env)  # fmt: skip
    stderr = LineReader(proc.stderr)
    wait_for_results(proc, db_path, thread, 2)
    endpoint.server.wait_held(2, proc)
    return proc, stderr


def _stop_held(endpoint, proc: subprocess.Popen, stderr: LineReader, request: str) -> str:
    """Once the run says it has seen the request, let its items in flight finish; return its stderr."""
    assert f"a {request} was requested from another process" in stderr.wait_for(STOPPING)[0]
    endpoint.server.release()
    return finish(proc, stderr)[1]


def test_pause_from_another_process_then_resume(spawn_agent, run_agent, cli, endpoint, db_path: Path) -> None:
    proc, stderr = _start_held(spawn_agent, endpoint, db_path, "T")
    asked = run_agent("pause", "--thread", "T", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["outcome"] == "requested"
    again = run_agent("pause", "--thread", "T", "--json")  # idempotent while the first is pending
    assert again.returncode == 0 and json.loads(again.stdout)["outcome"] == "already_requested"

    err = _stop_held(endpoint, proc, stderr, "pause")
    assert proc.returncode == 3, err
    assert "agent resume --thread T" in err and "Traceback" not in err
    assert status_of(cli, "T")["status"] == "paused"
    assert [r["index"] for r in results_of(cli, "T")] == [0, 1, 2, 3]  # the two in flight finished, no new one began

    third = cli("pause", "--thread", "T")
    assert third.exit_code == 0 and "already paused" in third.stderr

    resumed = cli("resume", "--thread", "T", "--model", "offline", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    rows = results_of(cli, "T")
    assert [r["index"] for r in rows] == list(range(ITEMS)) and all(r["status"] == "done" for r in rows)
    assert status_of(cli, "T")["spend"]["calls"] == ITEMS  # counted across the pause, none twice


def test_cancel_from_another_process_then_resume_is_refused_until_forced(spawn_agent, run_agent, cli, endpoint, db_path: Path) -> None:
    proc, stderr = _start_held(spawn_agent, endpoint, db_path, "T")
    asked = run_agent("cancel", "--thread", "T")
    assert asked.returncode == 0, asked.stderr
    err = _stop_held(endpoint, proc, stderr, "cancel")
    assert proc.returncode == 5, err
    assert status_of(cli, "T")["status"] == "cancelled"
    cancelled_with = len(results_of(cli, "T"))
    assert cancelled_with == 4

    again = cli("cancel", "--thread", "T")
    assert again.exit_code == 0 and "already cancelled" in again.stderr
    refused = cli("resume", "--thread", "T")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert len(results_of(cli, "T")) == cancelled_with

    forced = cli("resume", "--thread", "T", "--force", "--model", "offline", "--quiet")
    assert forced.exit_code == 0, forced.output
    assert len(results_of(cli, "T")) == ITEMS and status_of(cli, "T")["status"] == "completed"


def test_cancel_of_a_thread_that_is_not_running_marks_it(cli) -> None:
    run = cli("run", "research", "--thread", "r", "--input", '{"question": "q"}', "--max-tokens", "10", "--quiet")
    assert run.exit_code == 4
    paused = cli("pause", "--thread", "r", "--json")
    assert paused.exit_code == 0 and json.loads(paused.stdout)["outcome"] == "not_running"
    marked = cli("cancel", "--thread", "r", "--json")
    assert marked.exit_code == 0 and json.loads(marked.stdout)["outcome"] == "marked"
    assert status_of(cli, "r")["status"] == "cancelled"
    assert cli("cancel", "--thread", "r", "--json").exit_code == 0
    assert cli("pause", "--thread", "r").exit_code == 2  # cancelled: nothing to pause


def test_pause_and_cancel_of_a_completed_or_unknown_thread(cli) -> None:
    assert cli("run", "research", "--thread", "r", "--input", '{"question": "q", "steps": 1}', "--quiet").exit_code == 0
    for command in ("pause", "cancel"):
        done = cli(command, "--thread", "r")
        assert done.exit_code == 2 and "completed" in done.stderr
        assert cli(command, "--thread", "nope").exit_code == 2


def test_retry_failed_refuses_a_cancelled_thread_unless_forced(cli) -> None:
    items = json.dumps({"items": [f"doc {i}" for i in range(12)] + ["doc POISON"], "prompt": "Summarize: {item}"})
    stopped = cli("run", "task_queue", "--thread", "q", "--input", items, "--model", "offline:latency=0.2,fail_on=POISON",
                  "--concurrency", "2", "--deadline", "0.5s", "--backoff", "0", "--quiet")  # fmt: skip
    assert stopped.exit_code == 1 and status_of(cli, "q")["status"] == "timeout"
    assert cli("cancel", "--thread", "q").exit_code == 0
    refused = cli("retry-failed", "--thread", "q")
    assert refused.exit_code == 2 and "was cancelled" in refused.stderr and "retry-failed --thread q --force" in refused.stderr
    forced = cli("retry-failed", "--thread", "q", "--force")
    assert forced.exit_code == 2 and "has not finished its pass" in forced.stderr  # past the cancel check
