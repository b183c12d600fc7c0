"""Users' own graphs get what ours get: their chat model calls counted and held to budgets, their
progress shown, their answer printed. Through the real CLI, on examples/summarize.py (which
builds its own model: our offline one through LangChain's interfaces, or langchain-openai's
ChatOpenAI against the local fake endpoint) and on a graph that holds mid-way for `agent status`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from runtime.policy.models import OfflineChatModel
from runtime.policy.prices import price_for
from tests.conftest import LineReader, finish
from tests.fake_openai import FakeOpenAI, usage_for

EXAMPLE = "examples/summarize.py:graph"
DOCUMENTS = ["the first text about tides", "a second text about salt", "the third text about rain"]


def prompt(document: str) -> str:
    return f"Summarize in one line: {document}"


def offline_usage(documents: list[str]) -> tuple[int, int]:
    """What the offline model reports for these prompts, asked of the model itself."""
    model = OfflineChatModel()
    usages = [model.invoke(prompt(d)).usage_metadata for d in documents]
    return sum(u["input_tokens"] for u in usages), sum(u["output_tokens"] for u in usages)


def run_json(run_agent, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run_agent(*args, "--json", **env)
    return proc, json.loads(proc.stdout)


def status(run_agent, thread: str) -> dict:
    proc = run_agent("status", "--thread", thread, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_user_graph_is_counted_shows_progress_and_answers(run_agent):
    proc = run_agent("run", EXAMPLE, "--thread", "docs", "--input", json.dumps({"documents": DOCUMENTS}))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Thread docs completed")
    assert lines[1] == "Summarized 3 documents:" and lines[2].startswith("1. [offline ") and len(lines) == 5  # the last message, whole

    spend = status(run_agent, "docs")["spend"]
    tokens_in, tokens_out = offline_usage(DOCUMENTS)
    assert (spend["calls"], spend["input_tokens"], spend["output_tokens"]) == (3, tokens_in, tokens_out)
    price = price_for("offline")
    assert spend["cost_usd"] == pytest.approx((tokens_in * price.input + tokens_out * price.output) / 1e6, abs=1e-6)
    assert spend["unpriced_calls"] == 0

    progress = status(run_agent, "docs")["progress"]
    assert (progress["done"], progress["total"], progress["remaining"], progress["percent"]) == (3, 3, 0, 100.0)
    assert (progress["input_tokens"], progress["output_tokens"]) == (tokens_in, tokens_out)


def test_json_gives_the_whole_output_and_progress_events(run_agent):
    proc, summary = run_json(run_agent, "run", EXAMPLE, "--thread", "j", "--input", json.dumps({"documents": DOCUMENTS[:2]}))
    assert proc.returncode == 0, proc.stderr
    messages = summary["values"]["messages"]
    assert len(messages) == 1 and messages[0]["type"] == "ai" and messages[0]["content"] == summary["answer"]
    assert set(summary["values"]) == {"messages"}  # the graph's output schema, not its whole state
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    shown = [e for e in events if e.get("event") == "progress"]
    assert shown and shown[-1]["done"] == shown[-1]["total"] == 2


def test_a_user_graph_stops_at_its_token_budget_and_resumes_without_redoing_a_call(run_agent):
    tokens_in, tokens_out = offline_usage(DOCUMENTS[:1])
    limit = str(tokens_in + tokens_out)  # reached by the first call: the run stops after that node
    proc = run_agent("run", EXAMPLE, "--thread", "b", "--input", json.dumps({"documents": DOCUMENTS}), "--max-tokens", limit)
    assert proc.returncode == 4, proc.stderr
    assert "spent" in proc.stderr and f"of its {int(limit):,} tokens" in proc.stderr
    first = status(run_agent, "b")
    assert first["status"] == "budget_exceeded" and first["spend"]["calls"] == 1 and first["progress"]["done"] == 1

    proc = run_agent("resume", "--thread", "b", "--max-tokens", "100000")
    assert proc.returncode == 0, proc.stderr
    assert "Summarized 3 documents" in proc.stdout
    spend = status(run_agent, "b")["spend"]
    assert spend["calls"] == 3 and (spend["input_tokens"], spend["output_tokens"]) == offline_usage(DOCUMENTS)


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def openai(server: FakeOpenAI, model: str) -> dict[str, str]:
    key = "sk-test-" + secrets.token_hex(16)
    return {"SUMMARIZE_MODEL": model, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1"}


def test_an_openai_model_the_graph_builds_is_priced_by_the_model_that_answered(run_agent, server):
    proc, summary = run_json(
        run_agent, "run", EXAMPLE, "--thread", "o", "--input", json.dumps({"documents": DOCUMENTS}), "--max-cost", "1", **openai(server, "gpt-4o-mini")
    )
    assert proc.returncode == 0, proc.stderr
    assert summary["status"] == "completed" and "Summarized 3 documents" in summary["answer"]
    usages = [usage_for(prompt(d)) for d in DOCUMENTS]
    tokens_in, tokens_out = sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)
    price = price_for("gpt-4o-mini")
    spend = status(run_agent, "o")["spend"]
    assert [server.calls(prompt(d)) for d in DOCUMENTS] == [1, 1, 1]
    assert (spend["calls"], spend["input_tokens"], spend["output_tokens"]) == (3, tokens_in, tokens_out)
    assert spend["cost_usd"] == pytest.approx((tokens_in * price.input + tokens_out * price.output) / 1e6, abs=1e-6)


def test_a_model_without_a_price_is_counted_with_its_cost_unknown(run_agent, server):
    env = openai(server, "house-model-7b")
    proc = run_agent("run", EXAMPLE, "--thread", "u", "--input", json.dumps({"documents": DOCUMENTS}), **env)
    assert proc.returncode == 0, proc.stderr
    spend = status(run_agent, "u")["spend"]
    assert (spend["calls"], spend["unpriced_calls"], spend["cost_usd"]) == (3, 3, None) and spend["tokens"] > 0
    threads = run_agent("threads")
    assert "cost unknown" in threads.stdout


def test_a_cost_budget_stops_a_run_whose_model_has_no_price(run_agent, server):
    env = openai(server, "house-model-7b")
    proc = run_agent("run", EXAMPLE, "--thread", "c", "--input", json.dumps({"documents": DOCUMENTS}), "--max-cost", "1", **env)
    assert proc.returncode == 4, proc.stderr
    assert "price table has none for 'house-model-7b'" in proc.stderr and "AGENT_PRICES" in proc.stderr
    record = status(run_agent, "c")
    assert record["status"] == "budget_exceeded" and record["spend"]["calls"] == 1  # stopped at the first node boundary


def test_a_price_for_the_model_lets_the_cost_budget_hold(run_agent, server, tmp_path: Path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"house-model-7b": {"input": 1.0, "output": 2.0}}}))
    env = {**openai(server, "house-model-7b"), "AGENT_PRICES": str(prices)}
    proc = run_agent("run", EXAMPLE, "--thread", "p", "--input", json.dumps({"documents": DOCUMENTS}), "--max-cost", "1", **env)
    assert proc.returncode == 0, proc.stderr
    spend = status(run_agent, "p")["spend"]
    assert spend["unpriced_calls"] == 0 and spend["cost_usd"] == pytest.approx((spend["input_tokens"] * 1.0 + spend["output_tokens"] * 2.0) / 1e6, abs=1e-6)


HELD_GRAPH = textwrap.dedent(
    '''
    """Reports progress one step at a time; at step `hold_at` it writes `held` and waits for `gate`."""
    import asyncio
    import os
    from typing import TypedDict

    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph


    class State(TypedDict, total=False):
        total: int
        hold_at: int
        held: str
        gate: str
        count: int


    async def step(state: State) -> dict:
        count = state.get("count", 0) + 1
        get_stream_writer()({"progress": {"done": count, "total": state["total"]}})
        if count == state["hold_at"]:
            open(state["held"], "w").close()
            while not os.path.exists(state["gate"]):
                await asyncio.sleep(0.01)
        return {"count": count}


    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["count"] < s["total"] else END)
    '''
)


def test_agent_status_shows_a_running_user_graphs_progress(tmp_path: Path, spawn_agent, run_agent):
    graph_file = tmp_path / "held.py"
    graph_file.write_text(HELD_GRAPH)
    held, gate = tmp_path / "held", tmp_path / "gate"
    data = {"total": 5, "hold_at": 3, "held": str(held), "gate": str(gate)}
    proc = spawn_agent("run", f"{graph_file}:graph", "--thread", "h", "--input", json.dumps(data))
    stderr = LineReader(proc.stderr)
    try:
        deadline = time.monotonic() + 120
        while not held.exists():  # the graph's own signal: it is inside step 3
            assert proc.poll() is None and time.monotonic() < deadline, stderr.text()
            time.sleep(0.01)
        # The runner writes its figures with its heartbeat: wait for that row (a signal, not a time).
        progress = None
        while progress is None or progress["done"] < 3:
            assert time.monotonic() < deadline, stderr.text()
            record = status(run_agent, "h")
            progress = record["progress"]
        assert record["status"] == "running" and record["runner"]["alive"]
        assert (progress["done"], progress["total"], progress["remaining"]) == (3, 5, 2)
        assert progress["elapsed"] is not None
        # The registry's steps follow the run too (what `agent threads` lists), with the heartbeat.
        steps = -1
        while steps != record["steps"]:  # the latest checkpoint's step, while the run holds in the next
            assert time.monotonic() < deadline, stderr.text()
            listed = json.loads(run_agent("threads", "--json").stdout)
            steps = next(t["steps"] for t in listed if t["thread_id"] == "h")
        # ... and which process runs it, in the table as in --json.
        assert next(t["runner"] for t in listed if t["thread_id"] == "h")["pid"] == record["runner"]["pid"] == proc.pid
        assert f"running (pid {proc.pid})" in run_agent("threads").stdout
    finally:
        gate.touch()
    out, err = finish(proc, stderr)
    assert proc.returncode == 0, err
    final = status(run_agent, "h")["progress"]
    assert (final["done"], final["remaining"], final["rate"], final["eta"]) == (5, 0, None, 0.0)


@pytest.mark.parametrize(
    ("graph", "data", "expected"),
    [
        ("research", {"question": "Why is the sea salty?", "steps": 1}, "[offline "),
        ("risky", {"fail_times": 0}, "outcome: succeeded"),
    ],
)
def test_our_graphs_print_their_answer(run_agent, graph, data, expected):
    proc = run_agent("run", graph, "--thread", graph, "--input", json.dumps(data), "--backoff", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith(expected)


def test_a_queue_prints_its_counts_not_its_state(run_agent):
    proc = run_agent("run", "task_queue", "--thread", "q", "--input", json.dumps({"items": ["a", "b"], "prompt": "Summarize: {item}"}))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and "(2 done, 0 failed of 2 items)" in proc.stdout
