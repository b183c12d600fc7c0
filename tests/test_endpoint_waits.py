"""The model endpoint's Retry-After: a malformed one counts as absent, an HTTP-date is honoured,
and no wait outlives the run's deadline or a Ctrl-C / SIGTERM.

Processes synchronise on the fake endpoint, which tells when it has sent a 429; nothing here
asserts a duration (a subprocess timeout only guards against a hang: a Retry-After of an hour
is held to 600 s, far beyond it).
"""

from __future__ import annotations

import email.utils
import json
import secrets
import signal
import time
from types import SimpleNamespace

import pytest

from tests.fake_openai import FakeOpenAI

PROMPT = "Summarize: {item}"
ITEMS = ["item-0", "item-1", "item-2"]
QUEUE = json.dumps({"items": ITEMS, "prompt": PROMPT})
RESEARCH = json.dumps({"question": "Why is the sky blue?", "steps": 1})
HANG_GUARD = 120
"""Seconds a run may take before the test calls it hung (the bug waited 600 s)."""
AN_HOUR = 3600


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def model_env(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The model's environment, for subprocesses; the in-process CLI gets it too."""
    env = {
        "OPENAI_API_KEY": "tk-" + secrets.token_urlsafe(30),
        "OPENAI_BASE_URL": server.base_url,
        "NO_PROXY": "127.0.0.1",
        "AGENT_MODEL": "openai:test-model",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def limit_first_calls(server: FakeOpenAI, graph: str, retry_after: float | str) -> None:
    """A 429 for the first call of each queue item, or of the research plan only (the resumed
    run's later steps must get through; the plan prompt's line break is in no later prompt)."""
    server.on(match="\nReply with exactly" if graph == "research" else None, calls={1}, status=429, retry_after=retry_after)


def run_args(graph: str, thread: str) -> list[str]:
    return ["run", graph, "--thread", thread, "--input", QUEUE if graph == "task_queue" else RESEARCH, "--backoff", "0"]


def status_of(cli, thread: str) -> dict:
    result = cli("status", "--thread", thread, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_resumes_to_completion(cli, graph: str, thread: str) -> None:
    resumed = cli("resume", "--thread", thread, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert status_of(cli, thread)["status"] == "completed"
    if graph == "task_queue":
        rows = [json.loads(line) for line in cli("results", "--thread", thread).stdout.splitlines()]
        assert [(r["index"], r["status"]) for r in rows] == [(i, "done") for i in range(len(ITEMS))]
        values = json.loads(cli("state", "--thread", thread, "--json").stdout)["values"]
        assert (values["done"], values["failed"]) == (len(ITEMS), 0)  # the items stopped while waiting, counted once


@pytest.mark.parametrize("graph", ["task_queue", "research"])
def test_a_malformed_retry_after_counts_as_absent(cli, server, model_env, graph):
    limit_first_calls(server, graph, "soon")

    result = cli(*run_args(graph, "t"), "--quiet")

    assert result.exit_code == 0, result.output
    assert status_of(cli, "t")["status"] == "completed"
    assert 429 in [r.status for r in server.log()]


def retry_after_of(value: str, now: float) -> float | None:
    from nodes.model_call import retry_after

    error = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": value}))
    return retry_after(error, now=now)


@pytest.mark.parametrize("zone", ["GMT", "-0000"])
def test_an_http_date_retry_after_is_honoured_in_any_local_time_zone(monkeypatch, zone):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        date = f"Wed, 21 Oct 2015 07:28:00 {zone}"
        then = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()

        assert retry_after_of(date, now=then - 30) == 30
        assert retry_after_of(date, now=then + 30) == 0  # a date already past: no wait
        assert retry_after_of(date, now=then - 10 * AN_HOUR) == 600  # held to the longest wait
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("value", ["soon", "", "nan", "Wed, 99 Foo 2015 07:28:00 GMT", "-5"])
def test_a_retry_after_that_is_no_number_and_no_date_is_absent(value):
    assert retry_after_of(value, now=0) in (None, 0.0)


@pytest.mark.parametrize("graph", ["task_queue", "research"])
def test_a_long_retry_after_ends_at_the_deadline_and_the_run_resumes(run_agent, cli, server, model_env, graph):
    limit_first_calls(server, graph, AN_HOUR)

    run = run_agent(*run_args(graph, "t"), "--deadline", "5s", timeout=HANG_GUARD, **model_env)

    assert run.returncode == 1, run.stderr
    assert "deadline" in run.stderr + run.stdout
    assert status_of(cli, "t")["status"] == "timeout"
    assert_resumes_to_completion(cli, graph, "t")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("graph", ["task_queue", "research"])
def test_the_first_signal_ends_a_long_retry_after_at_once(spawn_agent, cli, server, model_env, graph, signum):
    limit_first_calls(server, graph, AN_HOUR)
    proc = spawn_agent(*run_args(graph, "t"), **model_env)
    assert server.wait_answered(429, timeout=HANG_GUARD), "the run never reached the endpoint"

    proc.send_signal(signum)
    out, err = proc.communicate(timeout=HANG_GUARD)

    assert proc.returncode == 130, err
    assert status_of(cli, "t")["status"] == "stopped"
    assert_resumes_to_completion(cli, graph, "t")


def test_a_queue_item_stopped_while_waiting_runs_again_on_resume_and_its_neighbours_do_not(cli, server, model_env):
    server.on(match="item-1", calls={1}, status=429, retry_after=AN_HOUR)

    run = cli(*run_args("task_queue", "q"), "--deadline", "3s", "--quiet")

    assert run.exit_code == 1, run.output
    assert status_of(cli, "q")["status"] == "timeout"
    rows = [json.loads(line) for line in cli("results", "--thread", "q").stdout.splitlines()]
    assert [(r["index"], r["status"]) for r in rows] == [(0, "done"), (2, "done")]  # item 1 has no result
    assert_resumes_to_completion(cli, "task_queue", "q")
    assert [server.calls(PROMPT.replace("{item}", item)) for item in ITEMS] == [1, 2, 1]
