"""A prices file (AGENT_PRICES) that cannot be used is bad input: every run checks it before it
writes anything, and says in one line which file and what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import db_snapshot, queue_input

QUESTION = json.dumps({"question": "Why is the sky blue?", "steps": 1})

BROKEN = {
    "a price that is no number": ('{"models": {"offline": {"input": "cheap", "output": 1}}}', "the input price of 'offline'"),
    "a missing price": ('{"models": {"offline": {"input": 1}}}', "the output price of 'offline'"),
    "a negative price": ('{"models": {"offline": {"input": -1, "output": 1}}}', "0 or more, not -1"),
    "a price of NaN": ('{"models": {"offline": {"input": NaN, "output": 1}}}', "not NaN"),
    "no models object": ('{"models": ["offline"]}', 'no "models" object'),
    "not JSON": ('{"models": {', "it is not JSON"),
}


def broken_prices(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(text)
    monkeypatch.setenv("AGENT_PRICES", str(path))
    return path


def assert_one_line_naming(result, path: Path, problem: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: ") and str(path) in lines[0] and problem in lines[0], lines
    assert [line for line in lines if not line.startswith("Hint: ")] == lines[:1], lines
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_run_refuses_a_broken_prices_file_before_it_writes_anything(cli, tmp_path, db_path, monkeypatch, case):
    text, problem = BROKEN[case]
    path = broken_prices(tmp_path, text, monkeypatch)

    result = cli("run", "research", "--thread", "r", "--input", QUESTION)  # no cost budget: the run still prices its calls

    assert_one_line_naming(result, path, problem)
    assert not db_path.exists()


def test_a_missing_prices_file_is_named(cli, tmp_path, db_path, monkeypatch):
    missing = tmp_path / "nowhere.json"
    monkeypatch.setenv("AGENT_PRICES", str(missing))

    result = cli("run", "task_queue", "--thread", "q", "--input", queue_input(2))

    assert_one_line_naming(result, missing, "cannot read the prices file")
    assert not db_path.exists()


def test_resume_refuses_a_broken_prices_file_and_changes_nothing(cli, tmp_path, db_path, monkeypatch):
    failed = cli("run", "research", "--thread", "r", "--input", QUESTION, "--model", "offline:fail_on=Plan", "--backoff", "0", "--quiet")
    assert failed.exit_code == 1, failed.output
    before = db_snapshot(db_path)
    path = broken_prices(tmp_path, BROKEN["a price that is no number"][0], monkeypatch)

    result = cli("resume", "--thread", "r", "--model", "offline")

    assert_one_line_naming(result, path, "the input price of 'offline'")
    assert db_snapshot(db_path) == before


def test_retry_failed_refuses_a_broken_prices_file_and_changes_nothing(cli, tmp_path, db_path, monkeypatch):
    done = cli("run", "task_queue", "--thread", "q", "--input", queue_input(3), "--model", "offline:reject_on=doc 1", "--quiet")
    assert done.exit_code == 0, done.output
    before = db_snapshot(db_path)
    path = broken_prices(tmp_path, BROKEN["a missing price"][0], monkeypatch)

    result = cli("retry-failed", "--thread", "q", "--model", "offline")

    assert_one_line_naming(result, path, "the output price of 'offline'")
    assert db_snapshot(db_path) == before
