"""Rate limits for a whole run: requests and tokens a minute, and a 429 slowing every item.

Times are only ever lower bounds of what the limiter allows (a slow machine can only make
them longer), or counts of what got through in a window (a slow machine can only lower them).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from langchain_core.messages import AIMessage
from langgraph.store.memory import InMemoryStore

from nodes.errors import OperationError
from nodes.queue import load_items, process_items
from runtime.limits import RequestLimiter
from runtime.models import make_model


async def _admit(limiter: RequestLimiter, n: int, tokens: int = 1, hold: float = 0.0) -> list[float]:
    """Start n requests at once; return when each was let through (loop time)."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        async with limiter.request(tokens) as ticket:
            times.append(loop.time())
            await asyncio.sleep(hold)
            await ticket.settle(tokens)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(times)


def test_requests_a_minute_are_spread_evenly():
    async def scenario() -> tuple[int, int]:
        limiter = RequestLimiter(concurrency=100, rpm=600)  # 10 a second, a second's worth at once
        loop = asyncio.get_running_loop()
        start = loop.time()
        times = await _admit(limiter, 16)
        return sum(1 for t in times if t < start + 0.3), len(times)

    in_first_window, total = asyncio.run(scenario())
    assert total == 16
    assert in_first_window <= 10 + 3 + 1  # a second's worth at once, then 10 a second


def test_tokens_a_minute_count_what_the_model_reported():
    async def scenario() -> int:
        limiter = RequestLimiter(concurrency=100, tpm=12000)  # 200 tokens a second
        start = asyncio.get_running_loop().time()
        times = await _admit(limiter, 8, tokens=50)
        return sum(1 for t in times if t < start + 0.25)

    assert asyncio.run(scenario()) <= 4 + 1 + 1  # 200 tokens at once, then 50 every quarter second


def test_a_429_pauses_every_request_and_halves_those_in_flight():
    async def scenario() -> tuple[list[float], float, RequestLimiter]:
        limiter = RequestLimiter(concurrency=8)
        loop = asyncio.get_running_loop()
        limiter.rate_limited(0.3)
        limiter.rate_limited(0.3)  # 429s arriving together halve the limit once
        limited_at = loop.time()
        times = await _admit(limiter, 6, hold=0.05)
        return times, limited_at, limiter

    times, limited_at, limiter = asyncio.run(scenario())
    assert all(t >= limited_at + 0.29 for t in times)  # nobody went during the Retry-After
    assert limiter.rate_limits == 2
    assert 4 <= limiter.limit < 8  # halved once, then growing back with each success


def test_the_limit_in_flight_grows_back_one_at_a_time():
    async def scenario() -> list[float]:
        limiter = RequestLimiter(concurrency=8)
        limiter.rate_limited(0)
        seen = [limiter.limit]
        for _ in range(40):
            async with limiter.request(1) as ticket:
                await ticket.settle(1)
            seen.append(limiter.limit)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == 4 and seen[-1] == 8
    assert all(0 <= b - a <= 0.26 for a, b in zip(seen, seen[1:]))  # additive: about one per `limit` successes


class _RecordingModel:
    """Answers at once; the first call gets a 429 with a Retry-After. Records when each call began."""

    def __init__(self, retry_after: float) -> None:
        self.starts: list[tuple[float, str]] = []
        self.retry_after = retry_after

    async def ainvoke(self, prompt):
        self.starts.append((time.monotonic(), prompt))
        if len(self.starts) == 1:
            exc = OperationError("rate limited", 429)
            exc.retry_after = self.retry_after
            raise exc
        await asyncio.sleep(0.01)
        return AIMessage(content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4})


def test_a_429_on_one_item_slows_the_whole_queue():
    from langgraph.runtime import Runtime

    from state.context import RunContext

    model = _RecordingModel(retry_after=0.3)
    limiter = RequestLimiter(concurrency=4)
    runtime = Runtime(
        context=RunContext(model=model, concurrency=4, backoff=0, max_attempts=3, limiter=limiter),
        store=InMemoryStore(),
        stream_writer=lambda event: None,
    )
    config = {"configurable": {"thread_id": "rl"}}
    state = {"prompt": "{item}", **asyncio.run(load_items({"items": [f"i{n}" for n in range(12)]}, runtime, config))}
    update = asyncio.run(process_items(state, runtime, config))

    assert update["done"] == 12 and update["cursor"] == 12
    limited_at = model.starts[0][0]
    # The three calls already in flight went ahead; every call after them waited out the 429's
    # Retry-After, the rate-limited item's retry included.
    after = [t for t, _ in model.starts[4:]]
    assert len(after) == 9 and all(t >= limited_at + 0.29 for t in after)
    assert limiter.rate_limits == 1 and limiter.limit < 4 + 1e-9


def test_offline_model_can_simulate_a_429_and_a_fixed_reply_length():
    model = make_model("offline:rate_limit_first=1,retry_after=2.5,reply_chars=500")
    with pytest.raises(OperationError) as info:
        model.invoke("hello")
    assert info.value.status_code == 429 and info.value.retry_after == 2.5
    a, b = model.invoke("Summarize: x").content, model.invoke("Summarize: x").content
    assert len(a) == 500 and a == b


@pytest.mark.parametrize("option, value", [("--rpm", "-1"), ("--tpm", "-5")])
def test_negative_rate_limits_exit_2(cli, db_path, option, value):
    result = cli("run", "task_queue", "--thread", "x", "--input", '{"items": ["a"], "prompt": "{item}"}', option, value)
    assert result.exit_code == 2 and f"{option} must be" in result.stderr
    assert not db_path.exists()


def test_rate_limits_and_the_default_concurrency_are_stored_with_the_thread(cli):
    run = cli("run", "task_queue", "--thread", "s", "--input", '{"items": ["a", "b"], "prompt": "{item}"}', "--rpm", "6000", "--tpm", "100000", "--quiet")
    assert run.exit_code == 0, run.output
    settings = json.loads(cli("status", "--thread", "s", "--json").stdout)["settings"]
    assert (settings["rpm"], settings["tpm"], settings["concurrency"]) == (6000, 100000, 8)
