"""Crash recovery with real processes: SIGKILL a queue mid-run, then resume it to the end.

The durability contract: a crash loses only the items in flight. The fake endpoint's request
log is the witness: every item is requested once, except those in flight at the kill (at most
one batch, `--concurrency` items), which are requested twice.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, reply_for

ITEMS = [f"doc-{i:02d}" for i in range(40)]
PROMPT = "Summarize: {item}"
CONCURRENCY = 4


@pytest.fixture
def server():
    with FakeOpenAI(latency=0.05) as fake:
        yield fake


def results_written(db_path: Path) -> int:
    """Results in the store so far, read the way a second process would (read-only)."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
    except sqlite3.OperationalError:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM store WHERE prefix LIKE 'results.%'").fetchone()[0]
    except sqlite3.OperationalError:  # no database or no store table yet
        return 0
    finally:
        conn.close()


def wait_for_results(proc, db_path: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while results_written(db_path) < at_least:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {at_least} results: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {at_least} results after {timeout}s")
        time.sleep(0.005)


def thread_json(cli, thread: str) -> dict:
    result = cli("threads", "--json")
    assert result.exit_code == 0, result.output
    return next(t for t in json.loads(result.stdout) if t["thread_id"] == thread)


@pytest.mark.parametrize("kill_after", [1, 14, 30], ids=["early", "middle", "late"])
def test_sigkill_mid_run_then_resume_redoes_only_items_in_flight(
    spawn_agent, run_agent, cli, server, db_path: Path, kill_after: int
):
    env = {"OPENAI_API_KEY": "sk-test-crash", "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1"}
    proc = spawn_agent(
        "run", "task_queue", "--thread", "T", "--input", json.dumps({"items": ITEMS, "prompt": PROMPT}),
        "--model", "openai:test-model", "--concurrency", str(CONCURRENCY), **env,
    )
    wait_for_results(proc, db_path, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, so its pid is gone and the lease's holder is seen dead

    assert proc.returncode == -signal.SIGKILL
    assert results_written(db_path) < len(ITEMS), "the run finished before the kill"
    assert thread_json(cli, "T")["status"] == "stale"

    resumed = run_agent("resume", "--thread", "T", "--quiet", **env)

    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in cli("results", "--thread", "T").stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(len(ITEMS)))
    assert all(r["status"] == "done" for r in rows)
    assert [r["output"] for r in rows] == [reply_for(PROMPT.replace("{item}", item)) for item in ITEMS]
    assert thread_json(cli, "T")["status"] == "completed"
    per_prompt = Counter(r.prompt for r in server.log())
    assert len(per_prompt) == len(ITEMS)
    assert sum(per_prompt.values()) <= len(ITEMS) + CONCURRENCY, per_prompt
    assert max(per_prompt.values()) <= 2, per_prompt
