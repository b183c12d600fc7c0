"""Every number a user or the environment gives is held to one rule (runtime/policy/numbers.py): NaN,
infinities and negatives are refused, exit 2 with one line, nothing written; a malformed
environment variable is an error, never "unset"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import db_snapshot

QUESTION = json.dumps({"question": "Why is the sky blue?", "steps": 2})
FOREVER = "9" * 400 + "s"
"""A duration whose number of seconds is too large for a float: infinite."""

BAD_RUN_NUMBERS = [
    (["--max-cost", "nan"], {}, "--max-cost must be 0 or more US dollars"),
    (["--max-cost", "inf"], {}, "--max-cost must be 0 or more US dollars"),
    (["--backoff", "nan"], {}, "--backoff 'nan' is not a duration"),
    (["--backoff", "inf"], {}, "--backoff 'inf' is not a duration"),
    (["--backoff", FOREVER], {}, "is too long to be a duration"),
    (["--deadline", FOREVER], {}, "is too long to be a duration"),
    (["--node-timeout", FOREVER], {}, "is too long to be a duration"),
    ([], {"AGENT_MAX_COST_CEILING": "nan"}, "AGENT_MAX_COST_CEILING must be a number above 0"),
    ([], {"AGENT_MAX_COST_CEILING": "inf"}, "AGENT_MAX_COST_CEILING must be a number above 0"),
    ([], {"AGENT_MAX_COST_CEILING": "0"}, "AGENT_MAX_COST_CEILING must be a number above 0"),
    ([], {"AGENT_MAX_TOKENS_CEILING": "nan"}, "AGENT_MAX_TOKENS_CEILING must be a whole number above 0"),
    ([], {"AGENT_MAX_TOKENS_CEILING": "2.5"}, "AGENT_MAX_TOKENS_CEILING must be a whole number above 0"),
    ([], {"AGENT_PROGRESS_EVERY": "soon"}, "AGENT_PROGRESS_EVERY must be 0 or more seconds"),
    (["--model", "offline:latency=nan"], {}, "offline model option latency must be"),
    (["--model", "offline:retry_after=-1"], {}, "offline model option retry_after must be"),
]


@pytest.mark.parametrize("args, env, message", BAD_RUN_NUMBERS, ids=[" ".join(a) or next(iter(e.items()))[0] + "=" + next(iter(e.values())) for a, e, _ in BAD_RUN_NUMBERS])
def test_a_bad_number_is_refused_before_anything_is_written(cli, db_path: Path, monkeypatch, args, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("run", "research", "--thread", "r", "--input", QUESTION, *args)
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: ") and message in first and "Traceback" not in result.stderr, result.stderr
    assert not db_path.exists()


def test_nan_cannot_pass_a_tiny_ceiling(cli, db_path: Path, monkeypatch):
    """The issue's case: `--max-cost nan` under a tiny ceiling spent without limit and exited 0."""
    monkeypatch.setenv("AGENT_MAX_COST_CEILING", "0.000001")
    refused = cli("run", "research", "--thread", "r", "--input", QUESTION, "--max-cost", "nan")
    assert refused.exit_code == 2 and not db_path.exists()
    held = cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet")
    assert held.exit_code == 4, held.output  # without a budget of its own, the ceiling stops it


def test_a_prices_file_with_a_nan_price_is_refused(cli, db_path: Path, tmp_path: Path, monkeypatch):
    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {"offline": {"input": NaN, "output": 1}}}')
    monkeypatch.setenv("AGENT_PRICES", str(prices))
    result = cli("run", "research", "--thread", "r", "--input", QUESTION, "--max-cost", "1")
    assert result.exit_code == 2 and "the input price of 'offline' must be a number of USD, 0 or more, not NaN" in result.stderr, result.output
    assert not db_path.exists()


def test_a_stored_nan_budget_is_refused_on_resume(cli, db_path: Path):
    """A database written before the rule may hold one: resume refuses it and names the fix."""
    import sqlite3

    assert cli("run", "research", "--thread", "r", "--input", QUESTION, "--deadline", "1ms", "--quiet").exit_code == 1
    conn = sqlite3.connect(db_path)
    settings = json.loads(conn.execute("SELECT settings FROM agent_threads WHERE thread_id = 'r'").fetchone()[0])
    conn.execute("UPDATE agent_threads SET settings = ? WHERE thread_id = 'r'", (json.dumps({**settings, "max_cost": float("nan")}),))
    conn.commit()
    conn.close()
    before = db_snapshot(db_path)
    refused = cli("resume", "--thread", "r")
    assert refused.exit_code == 2 and "--max-cost must be 0 or more US dollars" in refused.stderr
    assert db_snapshot(db_path) == before
    assert cli("resume", "--thread", "r", "--max-cost", "5", "--deadline", "0", "--quiet").exit_code == 0


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_history_limit_must_be_at_least_1(cli, db_path: Path, limit: str):
    assert cli("run", "risky", "--thread", "r", "--quiet").exit_code == 0
    result = cli("history", "--thread", "r", "--limit", limit)
    assert result.exit_code == 2 and result.stderr.startswith("Error: --limit must be at least 1"), result.output


@pytest.mark.parametrize("max_cost", ["nan", "inf"])
def test_schedule_add_refuses_a_non_finite_budget(cli, db_path: Path, max_cost: str):
    result = cli("schedule", "add", "s", "--graph", "risky", "--cron", "0 9 * * *", "--max-cost", max_cost)
    assert result.exit_code == 2 and "--max-cost must be 0 or more US dollars" in result.stderr, result.output
    assert not db_path.exists()


def test_from_python_the_same_rule_holds():
    from runtime import RunSettings
    from runtime.errors import InvalidNumber

    for settings in (RunSettings(max_cost=float("nan")), RunSettings(deadline=float("inf")), RunSettings(backoff=-0.5), RunSettings(concurrency=True)):
        with pytest.raises(InvalidNumber):
            settings.resolve()
