"""The OpenAI-compatible model path, end to end: the real langchain-openai client, driven by the
CLI, against a local fake endpoint whose request log shows what actually went over the wire.

The graph's RetryPolicy is the only retry layer (the client's max_retries is 0), so the
server must see exactly one request per attempt.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, masked, reply_for, usage_for

PROMPT = "Summarize: {item}"
ITEMS = ["item-0 alpha", "item-1 beta", "item-2 gamma"]
BACKOFF = "0.05"  # LangGraph adds up to 1 s of jitter to each retry on top of this


def prompt_of(item: str) -> str:
    return PROMPT.replace("{item}", item)


def queue_input(items: list[str] = ITEMS) -> str:
    return json.dumps({"items": items, "prompt": PROMPT})


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def api_key() -> str:
    return "sk-test-" + secrets.token_hex(16)


@pytest.fixture
def openai_env(server: FakeOpenAI, api_key: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The model's environment, set for the in-process CLI and returned for subprocesses."""
    env = {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run_queue(cli, thread: str, *extra: str, items: list[str] = ITEMS):
    return cli("run", "task_queue", "--thread", thread, "--input", queue_input(items), "--model", "openai:test-model", "--quiet", *extra)


def results_of(cli, thread: str) -> list[dict]:
    result = cli("results", "--thread", thread)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def thread_record(cli, thread: str) -> dict:
    result = cli("threads", "--json")
    assert result.exit_code == 0, result.output
    return next(t for t in json.loads(result.stdout) if t["thread_id"] == thread)


def test_queue_completes_with_replies_and_token_counts(cli, server, openai_env):
    result = run_queue(cli, "q")

    assert result.exit_code == 0, result.output
    assert "(3 done, 0 failed of 3 items)" in result.stdout
    rows = results_of(cli, "q")
    assert [r["index"] for r in rows] == [0, 1, 2]
    for row, item in zip(rows, ITEMS):
        usage = usage_for(prompt_of(item))
        assert row["status"] == "done" and row["error"] is None and row["attempts"] == 1
        assert row["output"] == reply_for(prompt_of(item))
        assert (row["input_tokens"], row["output_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    log = server.log()
    assert sorted(r.prompt for r in log) == sorted(map(prompt_of, ITEMS))
    assert all(r.authorized and r.status == 200 for r in log)
    assert thread_record(cli, "q")["status"] == "completed"


def test_503_twice_then_success_is_retried_with_backoff(cli, server, openai_env):
    flaky = prompt_of(ITEMS[1])
    server.on(match=flaky, calls={1, 2}, status=503)

    result = run_queue(cli, "retry", "--backoff", BACKOFF)

    assert result.exit_code == 0, result.output
    row = results_of(cli, "retry")[1]
    assert row["status"] == "done" and row["attempts"] == 3
    assert row["output"] == reply_for(flaky)
    log = server.log(flaky)
    assert [r.status for r in log] == [503, 503, 200]  # one request per attempt: no client-side retries
    gaps = [b.at - a.at for a, b in zip(log, log[1:])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps  # exponential backoff's lower bounds
    assert all(server.calls(prompt_of(item)) == 1 for item in (ITEMS[0], ITEMS[2]))


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 429, "retry_after": 0},
        {"status": 500},
        {"status": 502},
        {"status": 504},
        {"reset": True},
        {"delay": 600.0},  # never answered while the client waits (AGENT_MODEL_TIMEOUT below)
    ],
    ids=["429", "500", "502", "504", "connection-reset", "timeout"],
)
def test_retryable_failures_are_retried_once_per_attempt(cli, server, openai_env, monkeypatch, failure):
    if "delay" in failure:
        # Long enough for the retry's answer to come back in time on a busy machine.
        monkeypatch.setenv("AGENT_MODEL_TIMEOUT", "3")
    flaky = prompt_of(ITEMS[0])
    server.on(match=flaky, calls={1}, **failure)

    result = run_queue(cli, "kinds", "--backoff", "0")

    assert result.exit_code == 0, result.output
    row = results_of(cli, "kinds")[0]
    assert (row["status"], row["attempts"]) == ("done", 2)
    assert server.calls(flaky) == 2


def test_429_waits_for_retry_after(cli, server, openai_env):
    limited = prompt_of(ITEMS[0])
    server.on(match=limited, calls={1}, status=429, retry_after=0.5)

    result = run_queue(cli, "limited", "--backoff", "0")

    assert result.exit_code == 0, result.output
    first, second = server.log(limited)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.5  # the server's Retry-After, though --backoff is 0


def test_item_that_always_fails_is_given_up_after_max_attempts(cli, server, openai_env):
    broken = prompt_of(ITEMS[1])
    server.on(match=broken, status=503)

    result = run_queue(cli, "give-up", "--max-attempts", "2", "--backoff", BACKOFF)

    assert result.exit_code == 0, result.output
    assert "(2 done, 1 failed of 3 items)" in result.stdout
    rows = results_of(cli, "give-up")
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert rows[1]["attempts"] == 2 and "503" in rows[1]["error"] and rows[1]["output"] is None
    assert server.calls(broken) == 2
    assert thread_record(cli, "give-up")["status"] == "completed"


def test_wrong_key_fails_fast_and_the_key_is_never_shown_or_stored(run_agent, server, openai_env, api_key, db_path: Path):
    server.on(status=401)
    items = [f"item-{i}" for i in range(10)]

    proc = run_agent("run", "task_queue", "--thread", "bad-key", "--input", queue_input(items), "--model", "openai:test-model", "--concurrency", "4", **openai_env)

    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "401" in errors[0] and "OPENAI_API_KEY is missing or wrong" in errors[0]
    assert "Traceback" not in proc.stderr
    log = server.log()
    assert log and all(r.status == 401 and r.authorized for r in log)
    assert all(r.call == 1 for r in log)  # not retried
    assert len(log) <= 4  # only the items already in flight (--concurrency 4): no new ones were started
    secrets_shown = [api_key, api_key[8:], masked(api_key), "****" + api_key[-4:]]
    for where, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert not [s for s in secrets_shown if s in text], f"key leaked into {where}"
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            data = path.read_bytes()
            assert not [s for s in secrets_shown if s.encode() in data], f"key leaked into {path.name}"
    listed = run_agent("threads", "--json")
    thread = next(t for t in json.loads(listed.stdout) if t["thread_id"] == "bad-key")
    assert thread["status"] == "failed" and "401" in thread["error"]


def test_missing_key_exits_2_before_creating_the_database(run_agent, server, db_path: Path):
    proc = run_agent("run", "task_queue", "--thread", "no-key", "--input", queue_input(), "--model", "openai:test-model", OPENAI_BASE_URL=server.base_url)

    assert proc.returncode == 2
    first, hint = proc.stderr.splitlines()[:2]
    assert first == "Error: OPENAI_API_KEY is not set" and hint.startswith("Hint: export OPENAI_API_KEY=")
    assert "Traceback" not in proc.stderr
    assert not db_path.exists()
    assert server.log() == []


def test_malformed_body_is_retried_then_the_item_given_up(cli, server, openai_env):
    server.on(match=prompt_of(ITEMS[0]), malformed=True)

    result = run_queue(cli, "garbled", "--backoff", "0")

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert server.calls(prompt_of(ITEMS[0])) == 3  # retried as a server fault, --max-attempts 3
    rows = [json.loads(line) for line in cli("results", "--thread", "garbled").stdout.splitlines()]
    assert rows[0]["status"] == "failed" and "malformed response" in rows[0]["error"]
    assert all(row["status"] == "done" for row in rows[1:])
