"""A model's requests a minute shared by a deployment (AGENT_MODEL_RPM, runtime/policy/shared_rates.py).

The value is parsed (and refused with exit 2), the run's limiter waits what the shared bucket
says (on a clock of the test's), and four real `agent worker` processes on one database keep to
the limit together: the fake endpoint's log of when each request arrived never holds more
requests in a window than the bucket lets through in it. That is an upper bound on counts, so a
slow machine can only make it easier; no elapsed time is asserted.
"""

from __future__ import annotations

BOTH_BACKENDS = True
"""The process test runs on SQLite (workers on one file) and on PostgreSQL (tests/conftest.py)."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import BadInput
from runtime.policy.limits import RequestLimiter
from runtime.policy.shared_rates import MODEL_RPM_ENV, model_limits, rate_key, shared_admission
from tests.conftest import ENDPOINT_MODEL
from tests.test_fleet import start_worker, submit  # noqa: F401  start_worker is a fixture
from tests.test_limits import SteppingClock


# -- the value ------------------------------------------------------------------------------------


def test_limits_are_read_by_model_and_offline_options_share_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_limits() == {}
    monkeypatch.setenv(MODEL_RPM_ENV, " openai:gpt-4o-mini=600 , offline:latency=0.1=120,")
    assert model_limits() == {"openai:gpt-4o-mini": 600, "offline": 120}
    assert rate_key("offline:latency=0.1,fail_first=1") == "offline" and rate_key("openai:gpt-4o") == "openai:gpt-4o"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("offline", "is not MODEL=REQUESTS_A_MINUTE"),
        ("=5", "is not MODEL=REQUESTS_A_MINUTE"),
        ("offline=0", "1 or more, not '0'"),
        ("offline=1.5", "whole number"),
        ("openai=60", "'openai', which is not a model"),
        ("gpt-4o=60", "'gpt-4o', which is not a model"),
        ("offline=60,offline:latency=1=30", "names the model offline twice"),
    ],
)
def test_a_malformed_value_is_refused_with_what_to_write(monkeypatch: pytest.MonkeyPatch, value: str, words: str) -> None:
    monkeypatch.setenv(MODEL_RPM_ENV, value)
    with pytest.raises(BadInput) as refused:
        model_limits()
    assert words in str(refused.value) and MODEL_RPM_ENV in str(refused.value)
    assert "openai:gpt-4o-mini=600" in str(refused.value.hint)


@pytest.mark.sqlite_only
def test_run_and_worker_refuse_a_malformed_value_with_exit_2(run_agent) -> None:
    for args in (("run", "research", "--thread", "t", "--input", '{"question": "q"}'), ("worker", "--once")):
        proc = run_agent(*args, AGENT_MODEL_RPM="offline=fast")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("Error: AGENT_MODEL_RPM: the limit of offline must be a whole number"), proc.stderr
        assert "Traceback" not in proc.stderr


# -- the limiter ----------------------------------------------------------------------------------


def test_the_limiter_waits_what_the_shared_hook_says_for_the_model_of_each_request() -> None:
    """The hook is given each request's model and awaited after the run's own bucket; its wait is
    slept on the limiter's clock, bounded by `until_stopped` as the run's other waits are."""
    clock = SteppingClock()
    waits, asked, bounded = [0.0, 0.5, 1.25], [], []

    async def shared(model: str | None, tokens: float) -> float:
        asked.append((model, clock.now()))
        return waits[len(asked) - 1]

    async def until_stopped(awaitable: Any) -> Any:
        bounded.append(awaitable)
        return await awaitable

    limiter = RequestLimiter(concurrency=1, rpm=60, clock=clock, until_stopped=until_stopped, shared=shared)
    admitted: list[float] = []

    async def requests() -> None:
        for model in (None, "offline:latency=1", None):
            async with limiter.request(1, model):
                admitted.append(clock.now())

    asyncio.run(requests())
    # the run's own 1 a second spaces the hook's calls; the hook's waits come on top
    assert asked == [(None, 0.0), ("offline:latency=1", 1.0), (None, 2.0)]
    assert admitted == [0.0, 1.5, 3.25]
    assert len(bounded) == 6  # the run's bucket and the shared wait, for each request


def test_the_hook_reserves_only_for_a_model_the_value_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runtime import open_database

    with open_database(tmp_path / "agent.db", create=True) as db:
        assert shared_admission(db, "offline") is None  # unset: no hook, no database call
        monkeypatch.setenv(MODEL_RPM_ENV, "openai:gpt-4o-mini=120")
        assert shared_admission(db, "offline") is None
        admit = shared_admission(db, "offline", "openai:gpt-4o-mini")
        assert admit is not None

        async def waits() -> list[float]:
            return [await admit(None), await admit("openai:gpt-4o-mini"), await admit("openai:gpt-4o-mini")]

        first, second, third = asyncio.run(waits())
        assert first == 0.0  # the run's own model is not named: no reservation
        assert second == 0.0 and 0.0 < third <= 0.5
        assert db.conn.execute("SELECT key FROM agent_rates").fetchall() == [("openai:gpt-4o-mini",)]


# -- four workers on one database -----------------------------------------------------------------

RPM = 120
CAPACITY = 1
DELIVERY = 1.0
"""Seconds a request may take from its admission in a worker to its arrival at the server, as
far as this test allows: a request that took longer might arrive next to a later one."""


def most_over_the_limit(times: list[float]) -> float:
    """The most that the requests of any window [t_i, t_j] exceed what the bucket lets through in
    it (capacity + rate x (its length + DELIVERY)); at most 0 when the limit held."""
    times, rate = sorted(times), RPM / 60
    return max((j - i + 1) - (CAPACITY + rate * (times[j] - times[i] + DELIVERY)) for i in range(len(times)) for j in range(i, len(times)))


def test_four_workers_together_keep_to_one_models_requests_a_minute(start_worker, endpoint, db_path: Any, tmp_path: Path) -> None:  # noqa: F811
    """Eight threads of two items each, both at once, on four workers of two threads each (on
    PostgreSQL each thread's two items are one part, and each worker holds two parts). The
    server holds every request until all sixteen are waiting (so all four workers are known to
    be sending at once), then answers them all."""
    threads = {f"t-{i}": {"items": [f"item-{i}-a", f"item-{i}-b"], "prompt": "Summarize: {item}"} for i in range(8)}
    submit(db_path, threads, graph="task_queue", model=ENDPOINT_MODEL, concurrency=2)
    endpoint.server.hold()
    env = {**endpoint.env, MODEL_RPM_ENV: f"{ENDPOINT_MODEL}={RPM}"}
    workers = [start_worker("--until-idle", concurrency=2, **env) for _ in range(4)]
    endpoint.server.wait_held(16)
    endpoint.server.release()
    for worker in workers:
        assert worker.finish() == 0, worker.output()

    started = {e["thread_id"]: w.pid for w in workers for e in w.events() if e["event"] == "started"}
    assert sorted(started) == sorted(threads) and len(set(started.values())) == 4
    finished = [e for w in workers for e in w.events() if e["event"] == "finished"]
    assert {e["status"] for e in finished} == {"completed"} and len(finished) == 8
    arrivals = [r.at for r in endpoint.server.log()]
    assert len(arrivals) == 16
    assert most_over_the_limit(arrivals) <= 0, sorted(round(t - min(arrivals), 3) for t in arrivals)
