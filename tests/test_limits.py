"""Rate limits for a whole run: requests and tokens a minute, and a 429 slowing every item.

The limiter runs on a clock of the test's (`SteppingClock`): nothing waits in real time, and
each request is admitted at an exact instant of that clock, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.messages import AIMessage
from langgraph.store.memory import InMemoryStore

from nodes.errors import OperationError
from nodes.queue import load_items, process_items
from runtime.policy.limits import RequestLimiter
from runtime.policy.models import make_model


class SteppingClock:
    """Virtual seconds: a sleep moves the clock on at once by its length, then lets the other
    tasks run (as runtime.schedules.clock.ManualClock does for the worker). Never goes back."""

    def __init__(self) -> None:
        self.current = 0.0

    def now(self) -> float:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += max(0.0, seconds)
        await asyncio.sleep(0)

    async def wait(self, seconds: float) -> None:
        await self.sleep(seconds)


async def _admit(limiter: RequestLimiter, clock: SteppingClock, n: int, tokens: int = 1, hold: float = 0.0) -> list[float]:
    """Start n requests at once; return when each was let through (on `clock`)."""
    times: list[float] = []

    async def one() -> None:
        async with limiter.request(tokens) as ticket:
            times.append(clock.now())
            await clock.sleep(hold)
            await ticket.settle(tokens)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(times)


def test_requests_a_minute_are_spread_evenly():
    clock = SteppingClock()
    limiter = RequestLimiter(concurrency=100, rpm=600, clock=clock)  # 10 a second, a second's worth at once
    times = asyncio.run(_admit(limiter, clock, 16))
    assert times == pytest.approx([0.0] * 10 + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_tokens_a_minute_count_what_the_model_reported():
    clock = SteppingClock()
    limiter = RequestLimiter(concurrency=100, tpm=12000, clock=clock)  # 200 tokens a second
    times = asyncio.run(_admit(limiter, clock, 8, tokens=50))
    assert times == pytest.approx([0.0] * 4 + [0.25, 0.5, 0.75, 1.0])  # 200 tokens at once, then 50 every quarter second


def test_a_reply_longer_than_reserved_is_paid_for_before_the_next_request():
    clock = SteppingClock()
    limiter = RequestLimiter(concurrency=100, tpm=6000, clock=clock)  # 100 tokens a second

    async def scenario() -> list[float]:
        times = []
        for _ in range(3):
            async with limiter.request(10) as ticket:  # 10 tokens estimated, 100 used
                times.append(clock.now())
                await ticket.settle(100)
        return times

    # The first reply's 90 unreserved tokens are paid before the next request goes (which would
    # otherwise go at 0.1 s); from then on each request reserves the mean reply too: 100 tokens.
    assert asyncio.run(scenario()) == pytest.approx([0.0, 1.0, 2.0])


def test_a_429_pauses_every_request_and_halves_those_in_flight():
    clock = SteppingClock()
    limiter = RequestLimiter(concurrency=8, clock=clock)

    async def scenario() -> list[float]:
        limiter.rate_limited(0.3)
        limiter.rate_limited(0.3)  # 429s arriving together halve the limit once
        return await _admit(limiter, clock, 6, hold=0.05)

    times = asyncio.run(scenario())
    assert times[0] == pytest.approx(0.3) and all(t >= 0.3 for t in times)  # nobody went during the Retry-After
    assert limiter.rate_limits == 2
    assert 4 <= limiter.limit < 8  # halved once, then growing back with each success


def test_the_limit_in_flight_grows_back_one_at_a_time():
    async def scenario() -> list[float]:
        limiter = RequestLimiter(concurrency=8, clock=SteppingClock())
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
    """Answers in 0.01 s of `clock`; the first call gets a 429 with a Retry-After. Records when
    each call began."""

    def __init__(self, retry_after: float, clock: SteppingClock) -> None:
        self.starts: list[tuple[float, str]] = []
        self.retry_after = retry_after
        self.clock = clock

    async def ainvoke(self, prompt):
        self.starts.append((self.clock.now(), prompt))
        if len(self.starts) == 1:
            exc = OperationError("rate limited", 429)
            exc.retry_after = self.retry_after
            raise exc
        await self.clock.sleep(0.01)
        return AIMessage(content="ok", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4})


def test_a_429_on_one_item_slows_the_whole_queue():
    from langgraph.runtime import Runtime

    from state.context import RunContext

    clock = SteppingClock()
    model = _RecordingModel(retry_after=0.3, clock=clock)
    limiter = RequestLimiter(concurrency=4, clock=clock)
    runtime = Runtime(
        context=RunContext(model=model, concurrency=4, backoff=0, max_attempts=3, limiter=limiter, clock=clock),
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
    assert len(after) == 9 and all(t >= limited_at + 0.3 for t in after)
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
