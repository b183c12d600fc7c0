"""No secret at rest, whatever the endpoint says: an endpoint that echoes the API key in every
kind of error (some proxies do) never gets it into the database, the output or an error.

Each test runs the real CLI as a process against the fake endpoint, then reads the thread back
with every command that shows it, and searches the database file (and its WAL) and everything
printed for the key: whole, in parts, masked, and as its Authorization header.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI, masked

PROMPT = "Summarize: {item}"
FAILURES = {
    "400": {"status": 400},
    "401": {"status": 401},
    "429": {"status": 429},
    "500": {"status": 500},
    "malformed": {"malformed": True},
    "dropped": {"reset": True},
}
"""Every kind of error an endpoint gives, as rules of the fake endpoint."""
PER_ITEM = ["400", "429", "500", "malformed", "dropped"]
"""The failures that give one queue item up (a 401 fails the whole run)."""


@pytest.fixture
def api_key() -> str:
    """Made up per test; not in the `sk-` shape, so only knowing the key can find it."""
    return "tk-" + secrets.token_urlsafe(30)


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def model_env(server: FakeOpenAI, api_key: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1", "AGENT_MODEL": "openai:test-model"}


def forms_of(key: str) -> list[str]:
    """What must never be found: the key, any 10 characters of it, its masked form."""
    return [key, masked(key), *(key[i : i + 10] for i in range(len(key) - 9))]


def assert_nowhere(key: str, texts: dict[str, str], db_path: Path) -> None:
    forms = forms_of(key)
    for where, text in texts.items():
        found = [form for form in forms if form in text]
        assert not found, f"the key leaked into {where}: {found[:3]}"
    files = [p for p in db_path.parent.iterdir() if p.name.startswith(db_path.name)]
    assert db_path in files
    for path in files:
        data = path.read_bytes()
        found = [form for form in forms if form.encode() in data]
        assert not found, f"the key leaked into {path.name}: {found[:3]}"


def read_back(cli, thread: str, *, queue: bool) -> dict[str, str]:
    """Everything the CLI shows about a thread, as `where -> text` (in-process: these only read)."""
    commands = [
        ("status", "--thread", thread),
        ("status", "--thread", thread, "--json"),
        ("threads",),
        ("threads", "--json"),
        ("history", "--thread", thread),
        ("history", "--thread", thread, "--json"),
        ("state", "--thread", thread, "--json"),
        ("doctor",),
    ]
    if queue:
        commands += [("results", "--thread", thread), ("results", "--thread", thread, "--format", "csv")]
    return {" ".join(args): cli(*args).output for args in commands}


def echoing(server: FakeOpenAI, match: str, failure: str) -> None:
    server.on(match=match, echo_key=True, **FAILURES[failure])


def test_queue_items_given_up_on_an_echoing_endpoint_keep_no_key(run_agent, cli, server, model_env, api_key, db_path):
    items = [f"item-{kind}" for kind in PER_ITEM] + ["item-fine"]
    for kind in PER_ITEM:
        echoing(server, f"item-{kind}", kind)

    run = run_agent("run", "task_queue", "--thread", "q", "--input", json.dumps({"items": items, "prompt": PROMPT}),
                    "--max-attempts", "2", "--backoff", "0", "--json", **model_env)  # fmt: skip

    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in cli("results", "--thread", "q").stdout.splitlines()]
    assert [r["status"] for r in results] == ["failed"] * len(PER_ITEM) + ["done"]
    assert all(r["error"] for r in results[:-1])
    assert "[redacted]" in results[PER_ITEM.index("400")]["error"]  # the error is kept, without the key
    assert_nowhere(api_key, {"run (stdout)": run.stdout, "run (stderr)": run.stderr, **read_back(cli, "q", queue=True)}, db_path)


def test_a_queue_stopped_by_an_echoed_401_keeps_no_key(run_agent, cli, server, model_env, api_key, db_path):
    echoing(server, None, "401")

    run = run_agent("run", "task_queue", "--thread", "q", "--input", json.dumps({"items": ["a", "b"], "prompt": PROMPT}), **model_env)

    assert run.returncode == 1, run.stderr
    assert_nowhere(api_key, {"run (stdout)": run.stdout, "run (stderr)": run.stderr, **read_back(cli, "q", queue=True)}, db_path)


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_research_run_failed_by_an_echoing_endpoint_keeps_no_key(run_agent, cli, server, model_env, api_key, db_path, monkeypatch, failure):
    echoing(server, None, failure)

    run = run_agent("run", "research", "--thread", "r", "--input", '{"question": "Why?", "steps": 1}',
                    "--max-attempts", "2", "--backoff", "0", **model_env)  # fmt: skip
    for name, value in model_env.items():
        monkeypatch.setenv(name, value)
    debug = cli("resume", "--thread", "r", "--debug", "--max-attempts", "1")  # fails again, saying more
    for name in model_env:
        monkeypatch.delenv(name)  # what is read back is redacted by nobody: it must hold no key

    assert run.returncode == 1, run.stderr
    assert debug.exit_code == 1, debug.output
    status = json.loads(cli("status", "--thread", "r", "--json").stdout)
    assert status["status"] == "failed" and status["error"]
    shown = {"run (stdout)": run.stdout, "run (stderr)": run.stderr, "resume --debug": debug.output}
    assert_nowhere(api_key, {**shown, **read_back(cli, "r", queue=False)}, db_path)


@pytest.mark.parametrize(
    "shape",
    [
        "{key}",
        "Bearer {key}",
        "Authorization: Bearer {key}",
        '{{"api_key": "{key}"}}',
        "https://proxy.invalid/v1?api_key={key}&model=x",
        "https://proxy.invalid/v1?key={key}",
        "https://user:{key}@proxy.invalid/v1",
        "key begins {key12} and ends {tail12}",
        "masked {masked}",
        "cut short: {cut}...",
    ],
)
def test_redact_finds_the_key_in_every_shape(shape, api_key, monkeypatch):
    from runtime.redact import redact

    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    text = "the endpoint said: " + shape.format(key=api_key, cut=api_key[:-5], key12=api_key[:12], tail12=api_key[-12:], masked=masked(api_key))

    shown = redact(text)

    assert "[redacted]" in shown
    assert not [form for form in forms_of(api_key) if form in shown], shown
    assert shown.startswith("the endpoint said: ")


def test_redact_finds_a_bearer_token_and_a_key_parameter_it_was_not_told_about(monkeypatch):
    from runtime.redact import redact

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    other = secrets.token_urlsafe(24)

    shown = redact(f"sent Authorization: Bearer {other} to https://h.invalid/x?token={other}&n=1")

    assert other not in shown and shown == "sent Authorization: Bearer [redacted] to https://h.invalid/x?token=[redacted]&n=1"


def test_redact_leaves_ordinary_error_text_alone(monkeypatch):
    from runtime.redact import redact

    monkeypatch.setenv("OPENAI_API_KEY", "tk-" + secrets.token_urlsafe(30))
    text = "RateLimitError (429): Error code: 429 - {'error': {'message': 'simulated rate_limit_exceeded', 'code': None}}; max_tokens: 10"

    assert redact(text) == text


def test_a_failed_call_leaves_the_model_as_an_endpoint_error_without_the_client_exception(server, api_key, monkeypatch):
    """What the model factory's model raises holds the status, Retry-After and a redacted message,
    and nothing of the client's exception (its request carries the Authorization header)."""
    import asyncio
    import pickle

    from nodes.errors import EndpointError, classify
    from runtime.policy.models import make_model

    for name, value in {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    server.on(status=429, retry_after=7, echo_key=True)

    with pytest.raises(EndpointError) as raised:
        asyncio.run(make_model("openai:test-model").ainvoke("hello"))

    error = raised.value
    assert error.origin.endswith("RateLimitError")  # the client's class, as `describe` shows it
    assert (error.status_code, error.retry_after, classify(error)) == (429, 7.0, "retryable")
    assert error.__context__ is None and error.__cause__ is None
    assert "[redacted]" in str(error) and not [form for form in forms_of(api_key) if form in str(error)]
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.origin, copy.status_code, copy.retry_after) == (str(error), error.origin, 429, 7.0)

    async def streamed() -> None:
        async for _ in make_model("openai:test-model").astream("hello"):
            pass

    with pytest.raises(EndpointError) as raised:  # streaming fails the same way
        asyncio.run(streamed())
    assert (raised.value.origin, raised.value.status_code, raised.value.__context__) == (error.origin, 429, None)
