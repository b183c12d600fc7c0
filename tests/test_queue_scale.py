"""The task queue at scale: 2,000 items with a crash in the middle, the dead-letter list and
retry-failed, progress in every output mode, and status from a second process.

Nothing here asserts a wall-clock time: counts, states, orders and sets. A run that another
process must catch mid-way is held there by the fake model endpoint until the test lets it go.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from runtime import get_state, iter_results, open_database, resume_thread, retry_failed, run_thread
from runtime.errors import CannotRetry
from runtime.policy.settings import RunSettings
from tests.conftest import ENDPOINT_MODEL, ROOT, LineReader, agent_cmd, agent_env, finish, run_in_terminal, wait_for_results


def _queue(n: int, prefix: str = "doc", poison: set[int] = frozenset()) -> dict:
    items = [f"{prefix} {i}" + (" POISON" if i in poison else "") for i in range(n)]
    return {"items": items, "prompt": "Summarize: {item}"}


def _stored_keys(db_path: Path, thread: str) -> set[int]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return {int(k) for (k,) in conn.execute("SELECT key FROM store WHERE prefix = ?", (f"results.{thread}",))}
    finally:
        conn.close()


def _item_events(events) -> list[int]:
    return [e.item["queue_item"] for e in events if e.kind == "item"]


def test_2000_items_crash_in_the_middle_then_resume_redoes_only_what_was_in_flight(spawn_agent, cli, endpoint, db_path):
    total, concurrency, before_crash = 2000, 16, 500
    # On the endpoint, held after 500 answers with 16 items in flight: the kill lands mid-queue,
    # mid-chunk (1,024 items a chunk at this concurrency), whatever the machine's speed.
    endpoint.server.hold(after=before_crash)
    proc = spawn_agent(
        "run", "task_queue", "--thread", "big", "--input", json.dumps(_queue(total)),
        "--model", ENDPOINT_MODEL, "--concurrency", str(concurrency), "--quiet", **endpoint.env,
    )  # fmt: skip
    wait_for_results(proc, db_path, "big", before_crash)
    endpoint.server.wait_held(concurrency, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = _stored_keys(db_path, "big")
    assert len(stored) == before_crash
    assert json.loads(cli("status", "--thread", "big", "--json").stdout)["status"] == "stale"

    events: list = []
    with open_database(db_path) as db:
        # The rest on the offline model: as fast as the machine goes, no endpoint needed.
        outcome = resume_thread(db, "big", settings=RunSettings(model="offline"), on_event=events.append)
        redone = _item_events(events)
        values = get_state(db, "big").values
        rows = list(iter_results(db, "big"))

    assert outcome.status == "completed"
    # Every item stored before the kill is skipped; the resume sends each other item once.
    assert not set(redone) & stored
    assert sorted(redone) == sorted(set(range(total)) - stored)
    # The counters count the items finished by the killed process too, once each.
    assert (values["total"], values["done"], values["failed"]) == (total, total, 0)
    assert outcome.progress.done == total and outcome.progress.remaining == 0
    # State holds counters, never results: it is as small at the end as at the start.
    assert not any(isinstance(v, (list, dict)) for v in values.values())
    assert [r["index"] for r in rows] == list(range(total)) and {r["status"] for r in rows} == {"done"}
    assert [r["item"] for r in rows[:3]] == ["doc 0", "doc 1", "doc 2"]
    csv_lines = cli("results", "--thread", "big", "--format", "csv").stdout.splitlines()
    assert len(csv_lines) == total + 1 and csv_lines[1].startswith("0,done,doc 0,")


def test_dead_letter_list_and_retry_failed_touch_only_the_failed_items(cli, db_path):
    poison = {3, 17, 18, 40}
    settings = RunSettings(model="offline:fail_on=POISON", max_attempts=2, backoff=0, concurrency=4)
    with open_database(db_path, create=True) as db:
        first = run_thread(db, "task_queue", "dl", _queue(60, poison=poison), settings)
    assert first.status == "completed" and (first.progress.done, first.progress.failed) == (56, 4)

    listed = [json.loads(line) for line in cli("results", "--thread", "dl", "--status", "failed").stdout.splitlines()]
    assert [r["index"] for r in listed] == sorted(poison)
    assert all(r["status"] == "failed" and r["attempts"] == 2 and "(503)" in r["error"] and r["output"] is None for r in listed)

    def done_rows() -> list[tuple]:
        conn = sqlite3.connect(db_path)
        try:
            return conn.execute(
                "SELECT key, value, created_at, updated_at FROM store WHERE prefix = 'results.dl' "
                "AND json_extract(value, '$.status') = 'done' ORDER BY key"
            ).fetchall()
        finally:
            conn.close()

    before = done_rows()
    assert len(before) == 56

    # Still failing (the thread keeps its model): each failed item is sent again, and only those.
    events: list = []
    with open_database(db_path) as db:
        again = retry_failed(db, "dl", on_event=events.append)
    assert sorted(_item_events(events)) == sorted(poison)
    assert again.status == "completed" and (again.progress.done, again.progress.failed) == (56, 4)
    with open_database(db_path) as db:
        assert {r["attempts"] for r in iter_results(db, "dl", "failed")} == {4}

    # Fixed: the CLI sends them once more, and they succeed.
    fixed = cli("retry-failed", "--thread", "dl", "--model", "offline")
    assert fixed.exit_code == 0, fixed.output
    assert "(60 done, 0 failed of 60 items)" in fixed.stdout
    after = done_rows()
    assert len(after) == 60 and set(before) <= set(after)  # not one done row rewritten (same value, same updated_at)
    rows = [json.loads(line) for line in cli("results", "--thread", "dl").stdout.splitlines()]
    assert all(r["status"] == "done" for r in rows)
    assert [(r["attempts"], r["round"]) for r in rows if r["index"] in poison] == [(5, 2)] * 4
    state = json.loads(cli("state", "--thread", "dl", "--json").stdout)["values"]
    assert (state["done"], state["failed"], state["round"]) == (60, 0, 2)

    nothing = cli("retry-failed", "--thread", "dl")
    assert nothing.exit_code == 2 and "has no failed items" in nothing.stderr


def test_retry_failed_refuses_an_unfinished_queue_and_a_graph_without_one(cli, db_path):
    with open_database(db_path, create=True) as db:
        stopped = run_thread(db, "task_queue", "u", _queue(40), RunSettings(model="offline:latency=0.05", concurrency=2, deadline="0.2s"))
        assert stopped.status == "timeout"
        with pytest.raises(CannotRetry, match="has not finished"):
            retry_failed(db, "u")
        run_thread(db, "risky", "r", {"backoff": 0})
    other = cli("retry-failed", "--thread", "r")
    assert other.exit_code == 2 and "has no queue of items" in other.stderr


PROGRESS_LINE = re.compile(r"progress: (\d+)/(\d+) \(\d+\.\d%\), (\d+) done, (\d+) failed, [\d.-]+ items/s, ETA \S+, elapsed \S+, tokens .+ in, .+ out, ~\$[\d.]+$")


def test_progress_as_plain_lines_when_not_a_terminal(run_agent):
    proc = run_agent(
        "run", "task_queue", "--thread", "p", "--input", json.dumps(_queue(200)),
        "--model", "offline:latency=0.01", "--concurrency", "4", AGENT_PROGRESS_EVERY="0.1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [m for m in map(PROGRESS_LINE.search, proc.stderr.splitlines()) if m]
    assert len(lines) >= 3, proc.stderr
    finished = [int(m.group(1)) for m in lines]
    assert finished == sorted(finished) and finished[-1] == 200 and finished[0] < 200
    assert "\x1b[" not in proc.stderr  # no terminal codes in a log
    assert proc.stdout.startswith("Thread p completed") and "(200 done, 0 failed of 200 items)" in proc.stdout


def test_progress_as_json_events_and_nothing_with_quiet(cli):
    result = cli("run", "task_queue", "--thread", "j", "--input", json.dumps(_queue(30, poison={7})), "--json",
                 "--model", "offline:fail_on=POISON", "--backoff", "0", "--max-attempts", "2")  # fmt: skip
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is one JSON object
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and set(progress[-1]) >= {"total", "done", "failed", "remaining", "rate", "eta", "elapsed", "input_tokens", "output_tokens", "cost_usd", "percent"}
    assert (progress[-1]["done"], progress[-1]["failed"], progress[-1]["remaining"]) == (29, 1, 0)
    assert [e["index"] for e in events if e["event"] == "item_failed"] == [7]
    assert {e["node"] for e in events if e["event"] == "node"} == {"load_items", "process_items"}
    summary = json.loads(result.stdout)
    assert summary["progress"]["done"] == 29 and summary["progress"]["input_tokens"] > 0 and summary["progress"]["cost_usd"] > 0

    quiet = cli("run", "task_queue", "--thread", "q", "--input", json.dumps(_queue(30)), "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert len(quiet.stdout.splitlines()) == 1 and "(30 done, 0 failed of 30 items)" in quiet.stdout


def test_progress_as_a_live_bar_on_a_terminal(db_path):
    code, screen = run_in_terminal(
        agent_cmd("run", "task_queue", "--thread", "tty", "--input", json.dumps(_queue(300, poison={5})),
                  "--model", "offline:latency=0.01,fail_on=POISON", "--concurrency", "8", "--backoff", "0"),  # fmt: skip
        {**agent_env(db_path), "TERM": "xterm-256color"},
    )
    assert code == 0, screen
    assert "━" in screen and "\x1b[2K" in screen  # a bar, redrawn in place
    for figure in ("300/300", "299 done", "1 failed", "items/s", "ETA", "elapsed", "tokens", "~$"):
        assert figure in screen, figure
    assert "progress: " not in screen  # no plain lines on a terminal
    assert "item 5 failed: OperationError (503)" in screen
    assert "Thread tty completed" in screen and "agent retry-failed --thread tty" in screen


def test_status_from_a_second_process_follows_the_run(spawn_agent, cli, endpoint, db_path):
    total = 160
    endpoint.server.hold(after=8)  # the run waits there until the watcher has seen it running
    run = spawn_agent("run", "task_queue", "--thread", "w", "--input", json.dumps(_queue(total)),
                      "--model", ENDPOINT_MODEL, "--concurrency", "4", "--quiet", "--json", **endpoint.env)  # fmt: skip
    run_err = LineReader(run.stderr)
    wait_for_results(run, db_path, "w", 8)
    endpoint.server.wait_held(4, run)
    live = cli("status", "--thread", "w")
    assert live.exit_code == 0 and re.search(r"rate: [\d.]+ items/s, ETA \S+, elapsed \S+", live.stdout), live.stdout
    watcher = subprocess.Popen(
        agent_cmd("status", "--thread", "w", "--watch", "--json", "--interval", "0.2"),
        cwd=ROOT, env=agent_env(db_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watched = LineReader(watcher.stdout)
    watched.wait_for('"status": "running"', count=3)
    endpoint.server.release()
    out, err = finish(run, run_err)
    assert run.returncode == 0, err
    assert watcher.wait(timeout=120) == 0, watcher.stderr.read()

    reads = [json.loads(line) for line in watched.text().splitlines()]
    running = [r["progress"] for r in reads if r["status"] == "running"]
    assert len(running) >= 3
    finished = [p["done"] + p["failed"] for p in running]
    assert finished == sorted(finished) and 0 < finished[0] and finished[-1] <= total
    assert all(p["total"] == total and p["elapsed"] is not None for p in running)
    assert any(p["rate"] and p["eta"] is not None for p in running)
    last = reads[-1]
    assert last["status"] == "completed" and last["progress"]["remaining"] == 0
    # The status read from the database agrees with the run's own figures.
    own = json.loads(out)["progress"]
    for key in ("total", "done", "failed", "input_tokens", "output_tokens", "cost_usd"):
        assert last["progress"][key] == own[key], key
