"""Budgets, prices, the system-wide ceiling and model tiers, on the offline model's usage."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json
from pathlib import Path

import pytest

from tests.conftest import db_snapshot, queue_input, results_of, status_of, sql, raw_connection, nothing_written

QUESTION = json.dumps({"question": "Why is the sky blue?", "steps": 3})





def _values(cli, thread: str) -> dict:
    return json.loads(cli("state", "--thread", thread, "--json").stdout)["values"]


def test_a_queue_stops_at_its_token_budget_and_resumes_once_it_is_raised(cli):
    run = cli("run", "task_queue", "--thread", "q", "--input", queue_input(40), "--model", "offline:reply_chars=40",
              "--concurrency", "1", "--max-tokens", "100", "--quiet")  # fmt: skip
    assert run.exit_code == 4, run.output
    assert "budget" in run.stderr and "agent resume --thread q --max-cost" in run.stderr
    status = status_of(cli, "q")
    assert status["status"] == "budget_exceeded"
    done = len(results_of(cli, "q"))
    assert 1 <= done < 40
    spend = status["spend"]
    assert spend["tokens"] >= 100 and spend["max_tokens"] == 100 and spend["exceeded"]
    # The spend is what the stored results reported: no call went uncounted, none twice.
    assert spend["tokens"] == sum(r["input_tokens"] + r["output_tokens"] for r in results_of(cli, "q"))

    again = cli("resume", "--thread", "q", "--quiet")  # same budget: stops at once
    assert again.exit_code == 4 and len(results_of(cli, "q")) == done

    raised = cli("resume", "--thread", "q", "--max-tokens", "100000", "--quiet")
    assert raised.exit_code == 0, raised.output
    rows = results_of(cli, "q")
    assert len(rows) == 40 and all(r["status"] == "done" for r in rows)
    after = status_of(cli, "q")["spend"]
    assert after["tokens"] == sum(r["input_tokens"] + r["output_tokens"] for r in rows) > spend["tokens"]
    assert after["calls"] == 40


def test_a_cost_budget_uses_the_prices_file_merged_over_the_defaults(cli, tmp_path: Path, monkeypatch):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"offline": {"input": 1000, "output": 1000}}}))  # $0.001 a token
    monkeypatch.setenv("AGENT_PRICES", str(prices))
    run = cli("run", "research", "--thread", "r", "--input", QUESTION, "--max-cost", "0.05", "--quiet")
    assert run.exit_code == 4, run.output
    status = status_of(cli, "r")
    assert status["status"] == "budget_exceeded" and status["spend"]["max_cost"] == 0.05
    assert status["spend"]["cost_usd"] == pytest.approx(status["spend"]["tokens"] / 1000)
    values = _values(cli, "r")
    assert "answer" not in values  # stopped at a node boundary before the synthesis

    resumed = cli("resume", "--thread", "r", "--max-cost", "5", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    values = _values(cli, "r")
    spend = status_of(cli, "r")["spend"]
    assert values["answer"] and spend["tokens"] == values["input_tokens"] + values["output_tokens"]
    assert spend["calls"] == 5  # plan, three steps, synthesis: counted across the stop and the resume
    threads = json.loads(cli("threads", "--json").stdout)
    assert threads[0]["spend"]["cost_usd"] == spend["cost_usd"]
    assert "$" in cli("threads").stdout


def test_spend_is_kept_across_retry_failed_and_resume(cli):
    run = cli("run", "task_queue", "--thread", "q", "--input", queue_input(6), "--model", "offline:fail_on=doc 3",
              "--max-attempts", "1", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.output
    first = status_of(cli, "q")["spend"]
    assert first["calls"] == 5  # the failed call reported no usage
    retried = cli("retry-failed", "--thread", "q", "--model", "offline", "--quiet")
    assert retried.exit_code == 0, retried.output
    second = status_of(cli, "q")["spend"]
    assert second["calls"] == 6 and second["tokens"] > first["tokens"]
    forked = cli("resume", "--thread", "q", "--checkpoint", "0", "--quiet")  # a fork: every item has a result
    assert forked.exit_code == 0, forked.output
    assert status_of(cli, "q")["spend"] == second  # nothing re-sent, nothing reset


def test_a_budget_above_the_ceiling_is_refused_and_nothing_is_written(cli, db_path: Path, monkeypatch):
    monkeypatch.setenv("AGENT_MAX_COST_CEILING", "1")
    refused = cli("run", "research", "--thread", "r", "--input", QUESTION, "--max-cost", "5")
    assert refused.exit_code == 2
    assert "above the system-wide ceiling of 1 (AGENT_MAX_COST_CEILING)" in refused.stderr
    assert nothing_written(db_path)

    ok = cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet")
    assert ok.exit_code == 0
    assert status_of(cli, "r")["spend"]["max_cost"] == 1.0  # a run without a budget is held to the ceiling
    before = db_snapshot(db_path)
    again = cli("resume", "--thread", "r", "--checkpoint", "0", "--max-cost", "2")
    assert again.exit_code == 2 and "ceiling" in again.stderr
    assert db_snapshot(db_path) == before


@pytest.mark.parametrize("args", [["--max-cost", "-1"], ["--max-tokens", "-5"]])
def test_negative_budgets_exit_2(cli, db_path: Path, args):
    result = cli("run", "research", "--thread", "r", "--input", QUESTION, *args)
    assert result.exit_code == 2 and "must be" in result.stderr
    assert nothing_written(db_path)


def test_a_broken_prices_file_is_a_clear_error(cli, tmp_path: Path, db_path: Path, monkeypatch):
    bad = tmp_path / "prices.json"
    bad.write_text('{"models": {"offline": {"input": "cheap"}}}')
    monkeypatch.setenv("AGENT_PRICES", str(bad))
    result = cli("run", "research", "--thread", "r", "--input", QUESTION, "--max-cost", "1")
    assert result.exit_code == 2 and "not in the format of runtime/policy/prices.json" in result.stderr
    assert nothing_written(db_path)


def test_research_routine_steps_go_to_the_cheap_model_and_the_synthesis_to_the_strong_one(cli):
    run = cli("run", "research", "--thread", "r", "--input", QUESTION, "--model", "offline:reply_chars=200",
              "--cheap-model", "offline:reply_chars=20", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.output
    models = _values(cli, "r")["models"]
    cheap, strong = "offline:reply_chars=20", "offline:reply_chars=200"
    assert models == [
        {"step": "plan", "model": cheap},
        {"step": "step 1", "model": cheap},
        {"step": "step 2", "model": cheap},
        {"step": "step 3", "model": cheap},
        {"step": "synthesize", "model": strong},
    ]


def test_when_the_budget_runs_low_the_synthesis_goes_to_the_cheap_model_too(cli):
    # Plan and steps on the cheap model spend 137 tokens: over 80% of 165, under 165.
    run = cli("run", "research", "--thread", "r", "--input", QUESTION, "--model", "offline:reply_chars=200",
              "--cheap-model", "offline:reply_chars=20", "--max-tokens", "165", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.output
    models = _values(cli, "r")["models"]
    assert [m["step"] for m in models][-1] == "synthesize"
    assert {m["model"] for m in models} == {"offline:reply_chars=20"}


def test_a_queue_with_a_cheap_model_records_which_model_answered_each_item(cli):
    run = cli("run", "task_queue", "--thread", "q", "--input", queue_input(3), "--cheap-model", "offline:reply_chars=10", "--quiet")
    assert run.exit_code == 0, run.output
    assert [r["model"] for r in results_of(cli, "q")] == ["offline:reply_chars=10"] * 3
    plain = cli("run", "task_queue", "--thread", "p", "--input", queue_input(2), "--quiet")
    assert plain.exit_code == 0 and [r["model"] for r in results_of(cli, "p")] == [None, None]


@pytest.mark.sqlite_only
def test_a_schema_2_file_gets_the_control_tables(db_path: Path):
    from runtime import open_database
    from runtime.policy.budget import Spend, add_spend, get_spend
    from runtime.store.schema import SCHEMA_VERSION

    open_database(db_path, create=True).close()
    conn = raw_connection(db_path)
    conn.execute("DROP TABLE agent_spend")
    conn.execute("DROP TABLE agent_control")
    conn.execute("INSERT INTO agent_threads (thread_id, graph, graph_version, status, created_at, updated_at) VALUES ('t', 'research', '1', 'completed', 0, 0)")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    with open_database(db_path) as db:
        assert sql(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert sql(db).execute("SELECT status FROM agent_threads WHERE thread_id = 't'").fetchone() == ("completed",)
        add_spend(db, "t", Spend(1, 2, 0.5, 1))
        add_spend(db, "t", Spend(1, 2, 0.5, 1))
        assert get_spend(db, "t") == Spend(2, 4, 1.0, 2)
        assert sql(db).execute("SELECT count(*) FROM agent_progress").fetchone() == (0,)
        assert sql(db).execute("SELECT count(*) FROM agent_control").fetchone() == (0,)


def test_the_meter_prices_each_call_with_its_model_and_fires_once():
    from runtime.policy.budget import Limits, Spend, SpendMeter

    fired: list[int] = []
    meter = SpendMeter(Spend(100, 0, 0.0, 1), Limits(max_tokens=200, max_cost=None), on_exceeded=lambda: fired.append(1))
    assert not meter.running_low()
    meter.record("offline", 50, 20)  # 170 of 200: under 20% left
    assert meter.running_low() and not meter.exceeded and fired == []
    meter.record("openai:gpt-4o", 20, 20)
    meter.record("openai:gpt-4o", 20, 20)
    assert meter.exceeded and fired == [1]
    assert meter.total.calls == 4 and meter.total.cost_usd == pytest.approx((50 * 0.15 + 20 * 0.6 + 40 * 2.5 + 40 * 10) / 1e6)
    pending = meter.take_pending()
    assert (pending.tokens, pending.calls, meter.take_pending().calls) == (150, 3, 0)
    already = SpendMeter(Spend(300, 0, 0.0, 1), Limits(200, None), on_exceeded=lambda: fired.append(2))
    assert already.exceeded and fired == [1, 2]  # a thread already over its budget drains at once
