"""The CLI as people use CLIs: pipes that close early, narrow terminals, one time format, errors
as JSON, durations and numbers in one form, hints that name commands that work, completion,
`--version`, conventional metavars, and every environment variable documented."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, agent_cmd, agent_env, queue_input, run_in_terminal

QUESTION = '{"question": "Why is the sea salty?", "steps": 3}'


def agent(db_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd(*args), cwd=ROOT, env=agent_env(db_path, **env), capture_output=True, text=True, timeout=120)


# -- 1. a pipe that closes early --------------------------------------------------------------


@pytest.mark.parametrize("form", [[], ["--format", "csv"]], ids=["jsonl", "csv"])
def test_results_into_a_reader_that_stops_after_one_line_end_quietly(cli, db_path, form):
    # Far more than a pipe holds (64 KiB), so the writer is still writing when `head` has gone.
    assert cli("run", "task_queue", "--thread", "big", "--input", queue_input(3000, "a document with a long name"), "--quiet").exit_code == 0
    writer = subprocess.Popen(agent_cmd("results", "--thread", "big", *form), cwd=ROOT, env=agent_env(db_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()  # only `head` reads the pipe now: when it exits, the pipe is closed
    first, _ = head.communicate(timeout=120)
    errors = writer.stderr.read().decode()
    assert writer.wait(timeout=120) == 0, errors
    assert errors == ""  # no "BrokenPipeError", no traceback, no "Exception ignored"
    assert first.decode().count("\n") == 1


# -- 2. tables at 80 columns, and the live bar --------------------------------------------------


@pytest.fixture
def threads_of_every_kind(cli) -> dict[str, str]:
    """Threads that are completed, failed (with a long error) and one with a long id."""
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(3)).exit_code == 0
    long_id = "nightly-digest-of-every-document-in-the-archive-2026-12-02"
    assert cli("run", "research", "--thread", long_id, "--input", QUESTION).exit_code == 0
    failed = cli("run", "research", "--thread", "r", "--input", QUESTION, "--model", "offline:reject_on=Plan", "--max-attempts", "1")
    assert failed.exit_code == 1
    return {"q": "completed", long_id: "completed", "r": "failed"}


def _table_lines(db_path: Path, *args: str) -> list[str]:
    result = agent(db_path, *args, COLUMNS="80")  # stdout is a pipe: rich takes its width from COLUMNS
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), "\n".join(lines)
    return lines


def test_tables_at_80_columns_keep_every_word_whole(db_path, threads_of_every_kind):
    lines = _table_lines(db_path, "threads")
    words = {word for line in lines for word in re.split(r"[\s│┃]+", line)}
    assert {"completed", "failed", "task_queue", "research"} <= words, lines
    rows = [line for line in lines if re.match(r" \S", line) and "┃" not in line]
    assert len([line for line in rows if "completed" in line]) == 2 and len([line for line in rows if " failed " in line]) == 1
    assert any("nightly-dig" in line and "…" in line for line in lines), "\n".join(lines)  # a long id is shortened, visibly

    history = _table_lines(db_path, "history", "--thread", "nightly-digest-of-every-document-in-the-archive-2026-12-02")
    cells = {word for line in history for word in re.split(r"[\s│┃,]+", line)}
    assert {"research_step", "synthesize", "__start__", "plan", "loop", "input"} <= cells, history

    graphs = _table_lines(db_path, "graphs")
    assert {"task_queue", "risky", "research", "approval"} <= {line.split()[0] for line in graphs if line.strip()}


def test_the_live_bar_is_one_line_at_80_columns():
    from rich.console import Console

    from commands.progress import BarLine
    from runtime.threads.progress import ProgressSnapshot

    big = ProgressSnapshot(total=1_000_000, done=123_456, failed=7_890, remaining=868_654, elapsed=7_384.0, rate=1_234.5,
                           eta=9_000.0, input_tokens=123_456_789, output_tokens=98_765_432, cost_usd=1_234.56)  # fmt: skip
    for width in (200, 80, 50):
        screen = io.StringIO()
        Console(file=screen, width=width, color_system=None).print(BarLine(big, "running"))
        lines = screen.getvalue().splitlines()
        assert len(lines) == 1 and len(lines[0]) < width, lines
        assert "131,346/1,000,000" in lines[0] and "7,890 failed" in lines[0]
    wide = io.StringIO()
    Console(file=wide, width=200, color_system=None).print(BarLine(big, "running"))
    assert "ETA 2h30m" in wide.getvalue() and "~$1,234.56" in wide.getvalue()


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)


def test_ctrl_c_on_an_80_column_terminal_leaves_no_broken_bar(db_path):
    """On a pseudo-terminal 80 columns wide, every frame of the bar fits one line, so a redraw
    (and the last one, after Ctrl-C) overwrites it whole instead of leaving half a bar behind."""
    env = {k: v for k, v in agent_env(db_path, TERM="xterm-256color").items() if k != "COLUMNS"}
    args = agent_cmd("run", "task_queue", "--thread", "tty", "--input", queue_input(2000), "--model", "offline:latency=0.02", "--concurrency", "4")
    interrupted: list[bool] = []

    def interrupt_once_drawn(output: bytes, proc: subprocess.Popen) -> None:
        if not interrupted and b"items/s" in output:  # the bar is drawn: the run is under way
            proc.send_signal(signal.SIGINT)
            interrupted.append(True)

    code, screen = run_in_terminal(args, env, columns=80, timeout=120, on_output=interrupt_once_drawn)
    assert interrupted and code == 130, screen
    frames = [frame for line in _strip_ansi(screen).split("\n") for frame in line.split("\r") if "━" in frame]
    assert frames and all(len(frame) < 80 for frame in frames), [f for f in frames if len(f) >= 80]
    assert "Thread tty stopped" in screen and "agent resume --thread tty" in screen


# -- 3. one time format -------------------------------------------------------------------------

TIME_KEYS = re.compile(r"(_at|_time|^since|_utc)$")


def _times(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every key of a JSON document that names an instant."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if TIME_KEYS.search(key) and not isinstance(item, (dict, list)):
                found.append((f"{path}.{key}", item))
            found += _times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _times(item, f"{path}[{i}]")
    return found


def _assert_iso_utc(document: Any, expected: int) -> None:
    times = [(path, value) for path, value in _times(document) if value is not None]
    assert len(times) >= expected, times
    for path, value in times:
        assert isinstance(value, str), f"{path} is {value!r}, not ISO 8601"
        parsed = datetime.fromisoformat(value)
        assert parsed.utcoffset() == timedelta(0) and value.endswith("+00:00") and "T" in value, f"{path}: {value}"


def test_every_time_in_json_is_iso_8601_utc(cli, db_path):
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(3)).exit_code == 0
    _assert_iso_utc(json.loads(cli("threads", "--json").stdout), 2)
    status = json.loads(cli("status", "--thread", "q", "--json").stdout)
    _assert_iso_utc(status, 2)
    _assert_iso_utc(json.loads(cli("history", "--thread", "q", "--json").stdout), 3)
    _assert_iso_utc(json.loads(cli("state", "--thread", "q", "--json").stdout), 1)

    added = cli("schedule", "add", "digest", "--graph", "task_queue", "--cron", "0 9 * * *", "--input", queue_input(2), "--json")
    assert added.exit_code == 0, added.output
    _assert_iso_utc(json.loads(added.stdout), 3)  # created_at, updated_at, next_run_utc
    assert "next_fire" not in json.loads(added.stdout)  # the epoch number is not shown beside it
    assert cli("schedule", "trigger", "digest", "--quiet").exit_code == 0
    _assert_iso_utc(json.loads(cli("schedule", "list", "--json").stdout), 4)  # ... and last_run.fire_time
    runs = json.loads(cli("schedule", "runs", "digest", "--json").stdout)
    _assert_iso_utc(runs, 3)  # fire_time, started_at, ended_at
    first = runs["runs"][0]
    assert first["started_at"] <= first["ended_at"]  # the same form sorts as time does


def test_a_running_threads_runner_times_are_iso_and_its_age_is_named_in_seconds(cli, db_path):
    """A runner's row, as a crashed one leaves it: `since` is an instant, the heartbeat an age."""
    import sqlite3
    import time

    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(2)).exit_code == 0
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "UPDATE agent_threads SET status = 'running', owner_pid = 999999, owner_host = 'elsewhere', owner_since = ?, heartbeat_at = ? WHERE thread_id = 'q'",
            (time.time() - 60, time.time() - 30),
        )
    conn.close()
    status = json.loads(cli("status", "--thread", "q", "--json").stdout)
    runner = status["runner"]
    _assert_iso_utc(runner, 1)
    assert "heartbeat_age" not in runner and runner["heartbeat_age_seconds"] >= 0


# -- 4. errors under --json ---------------------------------------------------------------------


def _json_error(stderr: str) -> dict[str, Any]:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    error = json.loads(lines[0])
    assert set(error) == {"error", "hint", "code"} and error["error"], error
    return error


def test_bad_input_under_json_is_one_json_object_on_stderr(db_path):
    assert agent(db_path, "run", "task_queue", "--thread", "q", "--input", queue_input(2), "--quiet").returncode == 0
    missing = agent(db_path, "state", "--thread", "nope", "--json")
    assert missing.returncode == 2 and missing.stdout == ""
    error = _json_error(missing.stderr)
    assert error["code"] == 2 and "no thread 'nope'" in error["error"] and error["hint"]

    bad_run = agent(db_path, "run", "task_queue", "--thread", "t", "--input", "{bad", "--json")
    assert bad_run.returncode == 2 and _json_error(bad_run.stderr)["code"] == 2
    for args in (["--limit", "abc"], ["--bogus"]):  # refused by the parser, before the command runs
        refused = agent(db_path, "history", "--thread", "q", *args, "--json")
        assert refused.returncode == 2 and _json_error(refused.stderr)["hint"] == "agent history --help describes its options"
    plain = agent(db_path, "state", "--thread", "nope")
    assert plain.stderr.startswith("Error: no thread 'nope'") and "\nHint: " in plain.stderr  # without --json, as before


def test_an_unexpected_error_under_json_is_code_1(cli, monkeypatch):
    import runtime

    def broken() -> list:
        raise RuntimeError("the registry is broken")

    monkeypatch.setattr(runtime, "list_graphs", broken)
    result = cli("graphs", "--json")
    assert result.exit_code == 1
    error = _json_error(result.stderr)
    assert error == {"error": "RuntimeError: the registry is broken", "hint": "rerun with --debug for the traceback", "code": 1}


# -- 5. results: one format, the same columns ----------------------------------------------------


def test_results_refuse_two_formats_and_csv_has_every_jsonl_key(cli):
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(3), "--cheap-model", "offline").exit_code == 0
    both = cli("results", "--thread", "q", "--json", "--format", "csv")
    assert both.exit_code == 2 and both.stdout == "" and len(both.stderr.splitlines()) == 1, both.stderr
    assert "--json and --format csv" in both.stderr

    jsonl = [json.loads(line) for line in cli("results", "--thread", "q").stdout.splitlines()]
    as_json = [json.loads(line) for line in cli("results", "--thread", "q", "--json").stdout.splitlines()]
    assert as_json == jsonl
    import csv

    rows = list(csv.DictReader(io.StringIO(cli("results", "--thread", "q", "--format", "csv").stdout)))
    assert list(rows[0]) == list(jsonl[0]) and {"round", "model"} <= set(rows[0])
    assert [r["item"] for r in rows] == [r["item"] for r in jsonl] and rows[0]["round"] == str(jsonl[0]["round"])


# -- 6. durations and numbers ------------------------------------------------------------------


def test_every_duration_option_takes_the_same_forms(cli):
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(2), "--backoff", "250ms", "--node-timeout", "90s", "--deadline", "1h").exit_code == 0
    settings = json.loads(cli("status", "--thread", "q", "--json").stdout)["settings"]
    assert (settings["backoff"], settings["node_timeout"], settings["deadline"]) == (0.25, 90.0, 3600.0)
    for interval in ("1s", "500ms", "2"):  # bare numbers are seconds, as before
        watched = cli("status", "--thread", "q", "--watch", "--interval", interval)
        assert watched.exit_code == 0, watched.output
    assert cli("run", "task_queue", "--thread", "r", "--input", queue_input(2), "--backoff", "0").exit_code == 0
    assert json.loads(cli("status", "--thread", "r", "--json").stdout)["settings"]["backoff"] == 0


OUT_OF_RANGE = [
    ("history", "--thread", "q", "--limit", "0"),
    ("history", "--thread", "q", "--limit", "-1"),
    ("prune", "--keep", "-1"),
    ("prune", "--keep", "0"),
    ("status", "--thread", "q", "--interval", "0"),
    ("status", "--thread", "q", "--interval", "-1s"),
    ("run", "task_queue", "--thread", "n", "--input", '{"items": ["a"], "prompt": "{item}"}', "--concurrency", "0"),
    ("run", "task_queue", "--thread", "n", "--input", '{"items": ["a"], "prompt": "{item}"}', "--max-attempts", "-1"),
    ("run", "task_queue", "--thread", "n", "--input", '{"items": ["a"], "prompt": "{item}"}', "--rpm", "-1"),
    ("run", "task_queue", "--thread", "n", "--input", '{"items": ["a"], "prompt": "{item}"}', "--backoff", "-1"),
    ("worker", "--once", "--max-resumes", "-1"),
    ("worker", "--once", "--concurrency", "0"),
    ("worker", "--once", "--item-parts", "0"),
    ("schedule", "add", "x", "--graph", "research", "--cron", "0 9 * * *", "--max-failures", "0"),
]


@pytest.mark.parametrize("args", OUT_OF_RANGE, ids=[" ".join(a[:1] + a[-2:]) for a in OUT_OF_RANGE])
def test_an_out_of_range_number_is_exit_2_with_a_hint(cli, args):
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(2), "--quiet").exit_code == 0
    result = cli(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), result.stderr


# -- 7. hints that name commands that work; step counts that agree ------------------------------


def test_a_queue_stopped_mid_pass_suggests_resume_not_retry_failed(cli):
    # Every item with "doc 1" in it fails; the token budget stops the pass before the end.
    stopped = cli("run", "task_queue", "--thread", "q", "--input", queue_input(40), "--model", "offline:fail_on=doc 1",
                  "--max-attempts", "1", "--concurrency", "1", "--max-tokens", "120")  # fmt: skip
    assert stopped.exit_code != 0 and "budget_exceeded" in stopped.stdout, stopped.output
    assert "failed of 40 items" in stopped.stdout and "0 failed of" not in stopped.stdout
    assert "agent retry-failed --thread" not in stopped.stderr  # it would refuse: the pass has not finished
    assert "agent resume --thread q" in stopped.stderr
    refused = cli("retry-failed", "--thread", "q")
    assert refused.exit_code == 2 and "has not finished its pass" in refused.stderr  # why the hint must not name it

    finished = cli("resume", "--thread", "q", "--max-tokens", "0")
    assert finished.exit_code == 0, finished.output
    assert "agent retry-failed --thread q" in finished.stderr  # now it works
    assert cli("retry-failed", "--thread", "q", "--model", "offline").exit_code == 0


def test_live_messages_name_the_thread_not_a_placeholder(cli):
    failing = cli("run", "task_queue", "--thread", "all-fail", "--input", queue_input(12), "--model", "offline:fail_on=doc", "--max-attempts", "1")
    assert "agent results --thread all-fail --status failed lists them all" in failing.stderr, failing.stderr
    for text in (failing.stdout, failing.stderr):
        assert "--thread T " not in text and "--thread THREAD" not in text


def test_a_failed_runs_summary_names_the_step_its_last_progress_line_showed(cli):
    result = cli("run", "research", "--thread", "r", "--input", QUESTION, "--model", "offline:reject_on=step 2", "--max-attempts", "1")
    assert result.exit_code == 1, result.output
    steps = [int(m) for m in re.findall(r"^step\s+(\d+)\s", result.stderr, re.M)]
    assert steps == [1, 2, 3], result.stderr  # plan, research step 1, research step 2 (which failed)
    assert f"failed at step {steps[-1]} after {steps[-1] - 1} steps" in result.stdout, result.stdout
    assert json.loads(cli("history", "--thread", "r", "--json").stdout)[0]["step"] == steps[-1] - 1  # the steps saved

    completed = cli("run", "research", "--thread", "ok", "--input", QUESTION)
    last = int(re.findall(r"^step\s+(\d+)\s", completed.stderr, re.M)[-1])
    assert f"completed after {last} steps" in completed.stdout


# -- 8. completion, --version, metavars, environment ---------------------------------------------


def test_version_is_the_installed_one():
    from importlib.metadata import version

    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"agent {version('agent')}\n"


def test_shell_completion_is_shown_installed_and_completes(tmp_path, db_path):
    from typer.testing import CliRunner

    from cli import app

    shown = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="agent")
    assert shown.exit_code == 0 and "_AGENT_COMPLETE=complete_bash" in shown.stdout
    script = Path(os.environ.get("VIRTUAL_ENV", "") or Path(__import__("sys").executable).parent.parent) / "bin" / "agent"
    if not script.exists():
        pytest.skip("the agent console script is not installed beside this interpreter")
    env = {**agent_env(db_path), "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    installed = subprocess.run([str(script), "--install-completion", "bash"], env=env, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert "agent" in (tmp_path / ".bashrc").read_text()
    completed = subprocess.run([str(script)], env={**env, "_AGENT_COMPLETE": "complete_bash", "COMP_WORDS": "agent sta", "COMP_CWORD": "1"},
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert set(completed.stdout.split()) == {"status", "state"}, completed.stdout


METAVARS = {
    "--thread": "THREAD", "--new-thread": "THREAD", "--checkpoint": "CHECKPOINT", "--from": "CHECKPOINT", "--to": "CHECKPOINT",
    "--db": "PATH|URL", "--max-cost": "USD", "--model": "MODEL", "--cheap-model": "MODEL", "--input": "JSON", "--graph": "GRAPH",
    **{flag: "DURATION" for flag in ("--interval", "--poll", "--wait", "--node-timeout", "--deadline", "--grace", "--missed-after", "--older-than", "--backoff")},
    **{flag: "N" for flag in ("--limit", "--keep", "--concurrency", "--max-attempts", "--rpm", "--tpm", "--max-tokens", "--max-failures", "--max-resumes")},
}  # fmt: skip


def _commands() -> list[tuple[str, Any]]:
    import typer

    from cli import app

    def walk(group: Any, prefix: str) -> list[tuple[str, Any]]:
        found = []
        for name, command in sorted(group.commands.items()):
            found += walk(command, f"{prefix}{name} ") if hasattr(command, "commands") else [(prefix + name, command)]
        return found

    return walk(typer.main.get_command(app), "")


def test_every_option_has_a_conventional_metavar_in_help(cli):
    for name, command in _commands():
        shown = cli(*name.split(), "--help")
        assert shown.exit_code == 0, name
        text = " ".join(shown.stdout.split())
        for param in command.params:
            if param.param_type_name != "option" or param.is_flag or param.hidden:
                continue
            flag = max(param.opts, key=len)
            assert param.metavar and param.metavar.isupper(), f"agent {name} {flag} has no metavar"
            assert param.metavar == METAVARS.get(flag, param.metavar), f"agent {name} {flag}: {param.metavar}"
            assert f"{flag} {param.metavar}" in text, f"agent {name} --help does not show {flag} {param.metavar}"
        assert not re.search(r"--[a-z-]+ <(str|int|float)>", shown.stdout), f"agent {name}: {shown.stdout}"


def _environment_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "cli.py", *(ROOT / "commands").rglob("*.py"), *(ROOT / "runtime").rglob("*.py")]:
        names |= set(re.findall(r"\b((?:AGENT|OPENAI)_[A-Z_]+)\b", path.read_text()))
    return names


def test_every_environment_variable_is_in_help_once_and_in_the_readme(cli):
    names = _environment_read_by_the_code()
    assert {"AGENT_DB", "AGENT_MODEL", "AGENT_DEBUG", "AGENT_PRICES", "AGENT_MAX_COST_CEILING", "OPENAI_API_KEY", "OPENAI_BASE_URL"} <= names
    shown = cli("--help").stdout
    readme = (ROOT / "README.md").read_text()
    environment = readme[readme.index("### Environment") :]
    environment = environment[: environment.index("\n## ")]
    for name in names:
        assert len(re.findall(rf"\b{name}\b", shown)) == 1, f"{name} is not named once in agent --help"
        assert f"`{name}`" in environment, f"README's Environment table lacks {name}"
    model_help = " ".join(cli("run", "--help").stdout.split())
    assert "offline:OPTIONS" in model_help and all(option in model_help for option in ("latency", "fail_first", "reject_on"))
