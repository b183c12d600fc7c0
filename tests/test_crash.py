"""Crash recovery with real processes: SIGKILL a queue mid-run, then resume it to the end.

The durability contract: a crash loses only the items in flight. The fake endpoint's request
log is the witness: every item is requested once, except those in flight at the kill, which are
requested twice. The endpoint holds the run at the point of the kill (`kill_after` answers given,
`--concurrency` requests waiting), so the kill lands there whatever the machine's speed.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ENDPOINT_MODEL, wait_for_results
from tests.fake_openai import reply_for

ITEMS = [f"doc-{i:02d}" for i in range(40)]
PROMPT = "Summarize: {item}"
CONCURRENCY = 4


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


def thread_json(cli, thread: str) -> dict:
    result = cli("threads", "--json")
    assert result.exit_code == 0, result.output
    return next(t for t in json.loads(result.stdout) if t["thread_id"] == thread)


@pytest.mark.parametrize("kill_after", [1, 14, 30], ids=["early", "middle", "late"])
def test_sigkill_mid_run_then_resume_redoes_only_items_in_flight(
    spawn_agent, run_agent, cli, endpoint, db_path: Path, kill_after: int
):
    server, env = endpoint.server, endpoint.env
    server.hold(after=kill_after)
    proc = spawn_agent(
        "run", "task_queue", "--thread", "T", "--input", json.dumps({"items": ITEMS, "prompt": PROMPT}),
        "--model", ENDPOINT_MODEL, "--concurrency", str(CONCURRENCY), **env,
    )
    wait_for_results(proc, db_path, "T", kill_after)
    server.wait_held(CONCURRENCY, proc)
    in_flight = set(server.held_prompts())
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, so its pid is gone and the lease's holder is seen dead

    assert proc.returncode == -signal.SIGKILL
    assert results_written(db_path) == kill_after
    assert thread_json(cli, "T")["status"] == "stale"

    server.release()
    resumed = run_agent("resume", "--thread", "T", "--quiet", **env)

    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in cli("results", "--thread", "T").stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(len(ITEMS)))
    assert all(r["status"] == "done" for r in rows)
    assert [r["output"] for r in rows] == [reply_for(PROMPT.replace("{item}", item)) for item in ITEMS]
    assert thread_json(cli, "T")["status"] == "completed"
    per_prompt = Counter(r.prompt for r in server.log())
    assert len(per_prompt) == len(ITEMS)
    # Exactly the items in flight at the kill were asked again, once.
    assert {prompt for prompt, times in per_prompt.items() if times > 1} == in_flight, per_prompt
    assert sum(per_prompt.values()) == len(ITEMS) + CONCURRENCY and max(per_prompt.values()) == 2, per_prompt
