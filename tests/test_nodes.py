"""Nodes and their helpers, called directly."""

from __future__ import annotations

import asyncio
import json

import pytest

from nodes.errors import OperationError, classify, describe
from nodes.items import ItemsError, read_items, render_prompt
from nodes.queue import chunk_size, load_items, needs_work, process_items, route_after_chunk
from nodes.research import parse_plan
from nodes.risky import attempt, backoff_delay, give_up, route_after_attempt
from runtime.errors import BadInput
from runtime.policy.models import OfflineChatModel, make_model


class _Runtime:
    def __init__(self, **ctx):
        from state.context import RunContext

        self.context = RunContext(**ctx)


@pytest.mark.parametrize(
    "exc, kind",
    [
        (OperationError("rate limited", 429), "retryable"),
        (OperationError("bad gateway", 502), "retryable"),
        (OperationError("unauthorized", 401), "fatal"),
        (OperationError("forbidden", 403), "fatal"),
        (OperationError("no such model", 404), "fatal"),
        (OperationError("too long", 400), "item"),
        (TimeoutError("slow"), "retryable"),
        (ConnectionResetError("reset"), "retryable"),
        (KeyError("bug"), "fatal"),
    ],
)
def test_classify(exc, kind):
    assert classify(exc) == kind


def test_classify_by_class_name_without_importing_the_client():
    APITimeoutError = type("APITimeoutError", (Exception,), {})
    assert classify(APITimeoutError("timed out")) == "retryable"


def test_describe_is_one_bounded_line():
    text = describe(OperationError("line one\nline two " + "x" * 500, 503))
    assert "\n" not in text and text.startswith("OperationError (503): line one line two")
    assert len(text) < 340


def test_read_items_from_every_source(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["x", {"id": 2}]))
    (tmp_path / "a.jsonl").write_text('"x"\n\n{"id": 2}\n')
    (tmp_path / "a.csv").write_text("id,text\n1,hello\n2,world\n")
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.txt").write_text("second")
    (docs / "a.txt").write_text("first")
    assert read_items(items_file=str(tmp_path / "a.json")) == ["x", {"id": 2}]
    assert read_items(items_file=str(tmp_path / "a.jsonl")) == ["x", {"id": 2}]
    assert read_items(items_file=str(tmp_path / "a.csv")) == ["1", "2"]
    assert read_items(items_file=str(tmp_path / "a.csv"), items_column="text") == ["hello", "world"]
    assert read_items(items_file=str(tmp_path / "a.txt")) == ["one", "two"]
    assert read_items(items_file=str(docs)) == ["first", "second"]
    assert read_items(items=["a"]) == ["a"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs 'items'"),
        ({"items": ["a"], "items_file": "x"}, "not both"),
        ({"items": "a"}, "must be a JSON list"),
        ({"items_file": "/nonexistent/items.txt"}, "does not exist"),
    ],
)
def test_read_items_errors(kwargs, message):
    with pytest.raises(ItemsError, match=message):
        read_items(**kwargs)


def test_read_items_bad_files(tmp_path):
    (tmp_path / "bad.jsonl").write_text('"ok"\n{broken\n')
    (tmp_path / "bad.csv").write_text("id\n1\n")
    with pytest.raises(ItemsError, match="line 2"):
        read_items(items_file=str(tmp_path / "bad.jsonl"))
    with pytest.raises(ItemsError, match="no column 'text'"):
        read_items(items_file=str(tmp_path / "bad.csv"), items_column="text")


def test_render_prompt_leaves_other_braces():
    assert render_prompt('Tag {item} as {"a": 1}', "doc") == 'Tag doc as {"a": 1}'
    assert render_prompt("Item: {item}", {"id": 1}) == 'Item: {"id": 1}'


def test_route_after_chunk_and_what_needs_work():
    assert route_after_chunk({"cursor": 0, "total": 5}) == "process_items"
    assert route_after_chunk({"cursor": 5, "total": 5}) == "__end__"
    assert route_after_chunk({"total": 0}) == "__end__"
    assert needs_work(None, 0) and needs_work(None, 2)
    assert not needs_work({"status": "done"}, 0) and not needs_work({"status": "done"}, 1)
    assert not needs_work({"status": "failed"}, 0)  # the first pass gives up; only a retry round sends it again
    assert needs_work({"status": "failed"}, 1) and not needs_work({"status": "failed", "round": 1}, 1)
    assert chunk_size(1) == 256 and chunk_size(32) == 2048


def _queue_runtime(store, drain_after: int | None = None, **ctx):
    """A LangGraph Runtime for calling the queue's nodes directly; records the item events."""
    from langgraph.runtime import Runtime, RunControl

    from state.context import RunContext

    control = RunControl()
    events: list[dict] = []

    def write(event: dict) -> None:
        events.append(event)
        if drain_after is not None and len(events) >= drain_after:
            control.request_drain("test")

    ctx.setdefault("model", OfflineChatModel())
    return Runtime(context=RunContext(**ctx), store=store, stream_writer=write, control=control), events


def test_process_items_takes_a_chunk_and_counts_what_it_finished():
    from langgraph.store.memory import InMemoryStore

    store, config = InMemoryStore(), {"configurable": {"thread_id": "t"}}
    runtime, events = _queue_runtime(store, concurrency=2, model=make_model("offline:reject_on=BAD"))
    items = [f"doc {i}" for i in range(300)] + ["BAD doc"]
    state = {"items": items, "prompt": "{item}", **asyncio.run(load_items({"items": items}, runtime, config))}
    assert state["total"] == 301 and state["items"] is None

    first = asyncio.run(process_items(state, runtime, config))
    assert first["cursor"] == 256 and first["done"] == 256 and first["failed"] == 0
    assert sorted(e["queue_item"] for e in events) == list(range(256))
    second = asyncio.run(process_items({**state, "cursor": 256}, runtime, config))
    assert second["cursor"] == 301 and second["done"] == 44 and second["failed"] == 1
    bad = store.get(("results", "t"), "000000300").value
    assert bad["status"] == "failed" and "(400)" in bad["error"] and "output" not in bad


def test_process_items_stops_starting_items_on_a_drain_and_skips_finished_ones_after():
    from langgraph.store.memory import InMemoryStore

    store, config = InMemoryStore(), {"configurable": {"thread_id": "t"}}
    items = [f"doc {i}" for i in range(40)]
    runtime, events = _queue_runtime(store, drain_after=10, concurrency=4)
    state = {"prompt": "{item}", **asyncio.run(load_items({"items": items}, runtime, config))}
    stopped = asyncio.run(process_items(state, runtime, config))
    assert 10 <= stopped["cursor"] < 40 and stopped["done"] == stopped["cursor"]
    # The chunk runs again from the cursor (as after a crash, from the old one): stored results are skipped.
    again, redone = _queue_runtime(store, concurrency=4)
    rest = asyncio.run(process_items({**state, "cursor": 0}, again, config))
    assert rest["cursor"] == 40 and rest["done"] == 40
    assert sorted(e["queue_item"] for e in redone) == list(range(stopped["cursor"], 40))


def test_risky_attempt_records_failures_and_routes():
    runtime = _Runtime(max_attempts=3)
    state = {"fail_times": 1, "backoff": 0.0}
    first = asyncio.run(attempt(state, runtime))
    assert first["attempts"] == 1 and first["last_failure"] == "retryable"
    assert route_after_attempt({**state, **first}, runtime) == "backoff"
    second = asyncio.run(attempt({**state, **first}, runtime))
    assert second["outcome"] == "succeeded"
    assert route_after_attempt({**state, **second}, runtime) == "succeeded"


def test_risky_gives_up_after_max_attempts_or_fatal():
    runtime = _Runtime(max_attempts=2)
    state = {"fail_times": -1, "attempts": 1, "errors": ["e1"], "last_failure": "retryable"}
    failed = {**state, **asyncio.run(attempt(state, runtime))}
    assert failed["attempts"] == 2
    assert route_after_attempt(failed, runtime) == "give_up"
    assert "after 2 of 2 attempts" in give_up({**failed, "errors": ["e1", "e2"]}, runtime)["give_up_reason"]
    fatal = {"fail_times": -1, "failure": "fatal"}
    fatal = {**fatal, **asyncio.run(attempt(fatal, runtime))}
    assert route_after_attempt(fatal, runtime) == "give_up"
    assert give_up(fatal, runtime)["give_up_reason"].startswith("not retryable")


def test_risky_attempt_times_out_as_a_retryable_failure():
    runtime = _Runtime(max_attempts=2, node_timeout=0.05)
    state = {"duration": 5.0}
    update = asyncio.run(attempt(state, runtime))
    assert update["last_failure"] == "retryable" and "longer than 0.05s" in update["errors"][0]
    assert route_after_attempt({**state, **update}, runtime) == "backoff"


def test_backoff_grows_exponentially_and_is_capped():
    delays = [backoff_delay({"backoff": 1.0, "attempts": n}) for n in range(1, 12)]
    for n, delay in enumerate(delays, 1):
        ceiling = min(60.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_parse_plan_strips_numbering_and_pads():
    assert parse_plan("1. first\n2) second\n- third\n", 2, "q") == ["first", "second"]
    assert parse_plan("only one", 3, "q") == ["only one", "Examine aspect 2 of: q", "Examine aspect 3 of: q"]


def test_offline_model_is_deterministic_and_reports_usage():
    model = OfflineChatModel()
    a, b = model.invoke("Summarize: hello world"), model.invoke("Summarize: hello world")
    assert a.content == b.content and a.content.startswith("[offline ")
    assert a.usage_metadata["input_tokens"] > 0 and a.usage_metadata["output_tokens"] > 0
    lines = model.invoke("Reply with exactly 4 lines, one research step a line.").content.splitlines()
    assert len(lines) == 4


def test_offline_model_failure_injection():
    model = make_model("offline:fail_first=2,reject_on=BAD")
    for _ in range(2):
        with pytest.raises(OperationError) as info:
            asyncio.run(model.ainvoke("hello"))
        assert info.value.status_code == 503
    assert asyncio.run(model.ainvoke("hello")).content
    with pytest.raises(OperationError) as info:
        model.invoke("a BAD prompt")
    assert classify(info.value) == "item"


@pytest.mark.parametrize("spec", ["nope", "openai", "offline:speed=2", "offline:latency=fast"])
def test_make_model_rejects_bad_specs(spec, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    with pytest.raises(BadInput):
        make_model(spec)


def test_openai_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BadInput, match="OPENAI_API_KEY is not set"):
        make_model("openai:gpt-4o-mini")
