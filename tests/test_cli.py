"""The CLI in-process: JSON shapes, help texts, and every bad input (exit 2, nothing written)."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json

import pytest

from tests.conftest import ROOT, db_snapshot, nothing_written

QUEUE = '{"items": ["a", "b", "c"], "prompt": "Summarize: {item}"}'


def all_commands() -> list[str]:
    """Every command the app registers, sub-commands as `group name`: a new one is checked too."""
    import typer

    from cli import app

    def walk(group, prefix: str) -> list[str]:
        names = []
        for name, command in sorted(group.commands.items()):
            if hasattr(command, "commands"):  # a sub-app
                names += walk(command, f"{prefix}{name} ")
            else:
                names.append(prefix + name)
        return names

    return walk(typer.main.get_command(app), "")


COMMANDS = all_commands()


def test_every_command_has_help_with_an_example_and_is_in_the_readme(cli):
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        result = cli(*name.split(), "--help")
        assert result.exit_code == 0
        assert "Example: agent " + name in " ".join(result.stdout.split()), name
        assert f"agent {name}" in readme, f"README does not document agent {name}"


def test_graphs_json(cli):
    rows = json.loads(cli("graphs", "--json").stdout)
    assert [r["name"] for r in rows] == ["task_queue", "risky", "research", "approval"]
    assert all(set(r) == {"name", "version", "description"} and r["description"] for r in rows)


def test_run_then_read_commands(cli, db_path):
    result = cli("run", "task_queue", "--thread", "docs", "--input", QUEUE)
    assert result.exit_code == 0, result.output
    assert "Thread docs completed" in result.stdout
    assert "process_items" in result.stderr  # each finished node is shown
    assert "progress: 3/3 (100.0%), 3 done, 0 failed" in result.stderr  # not a terminal: plain lines

    # The queue takes its items a chunk at a time (here one chunk), not one step per batch.
    threads = json.loads(cli("threads", "--json").stdout)
    assert threads[0]["thread_id"] == "docs" and threads[0]["status"] == "completed"
    assert threads[0]["graph"] == "task_queue" and threads[0]["steps"] == 2
    assert {"created_at", "updated_at", "settings", "error", "graph_version"} <= set(threads[0])

    history = json.loads(cli("history", "--thread", "docs", "--json").stdout)
    assert [r["step"] for r in history] == [2, 1, 0, -1]
    assert history[0]["writers"] == ["process_items"] and history[1]["writers"] == ["load_items"]
    assert history[1]["next"] == ["process_items"]
    assert set(history[0]) == {"checkpoint_id", "parent_id", "parent_checkpoint_id", "step", "source", "writers", "next", "created_at", "branch", "lane"}
    assert len(json.loads(cli("history", "--thread", "docs", "--json", "--limit", "2").stdout)) == 2

    state = json.loads(cli("state", "--thread", "docs", "--json").stdout)
    assert state["values"]["done"] == 3 and state["next"] == [] and state["status"] == "completed"
    older = json.loads(cli("state", "--thread", "docs", "--checkpoint", "1", "--json").stdout)
    assert older["step"] == 1 and older["next"] == ["process_items"] and older["values"]["cursor"] == 0
    by_prefix = json.loads(cli("state", "--thread", "docs", "-c", history[2]["checkpoint_id"][:25], "--json").stdout)
    assert by_prefix["checkpoint_id"] == history[2]["checkpoint_id"]

    lines = cli("results", "--thread", "docs").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["index"], r["item"], r["status"]) for r in rows] == [(0, "a", "done"), (1, "b", "done"), (2, "c", "done")]
    csv_out = cli("results", "--thread", "docs", "--format", "csv").stdout.splitlines()
    assert csv_out[0].startswith("index,status,item,output,error") and len(csv_out) == 4


def test_run_json_summary_and_quiet(cli):
    result = cli("run", "task_queue", "--thread", "j", "--input", QUEUE, "--json")
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["items"] == {"total": 3, "done": 3, "failed": 0}
    events = [json.loads(line) for line in result.stderr.splitlines()]  # with --json, progress is JSON events
    assert {e["event"] for e in events} >= {"node", "progress"}
    quiet = cli("run", "risky", "--thread", "q", "--quiet", "--input", '{"backoff": 0}')
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_items_file_is_resolved_so_resume_works_from_anywhere(cli, tmp_path, monkeypatch):
    items = tmp_path / "items.csv"
    items.write_text("id,text\n1,alpha\n2,beta\n")
    monkeypatch.chdir(tmp_path)
    spec = json.dumps({"items_file": "items.csv", "items_column": "text", "prompt": "Tag: {item}"})
    assert cli("run", "task_queue", "--thread", "f", "--input", spec).exit_code == 0
    state = json.loads(cli("state", "--thread", "f", "--checkpoint", "-1", "--json").stdout)
    assert [json.loads(l)["item"] for l in cli("results", "--thread", "f").stdout.splitlines()] == ["alpha", "beta"]
    assert state["step"] == -1


def test_input_from_a_file(cli, tmp_path):
    path = tmp_path / "input.json"
    path.write_text(QUEUE)
    assert cli("run", "task_queue", "--thread", "x", "--input", f"@{path}").exit_code == 0


def test_failed_run_exits_1_and_resumes_after_the_fix(cli):
    # A 404 from the model is fatal: the run stops (exit 1) and is resumed once fixed.
    from nodes.errors import OperationError

    result = cli("run", "research", "--thread", "r", "--input", '{"question": "q"}', "--model", "offline:reject_on=Plan")
    # reject_on gives a 400, which for a single-step node is fatal to the run
    assert result.exit_code == 1, result.output
    assert "Error: OperationError (400)" in result.stderr and "agent resume --thread r" in result.stderr
    assert json.loads(cli("threads", "--json").stdout)[0]["status"] == "failed"
    fixed = cli("resume", "--thread", "r", "--model", "offline")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(cli("state", "--thread", "r", "--json").stdout)["values"]["answer"]
    assert OperationError  # imported for the reader: the offline model raises it


BAD_RUNS = [
    (["run", "nope", "--thread", "t", "--input", QUEUE], "unknown graph 'nope'"),
    (["run", "task_queue", "--thread", "t", "--input", "{bad json"], "--input is not valid JSON"),
    (["run", "task_queue", "--thread", "t", "--input", "[1, 2]"], "must be a JSON object"),
    (["run", "task_queue", "--thread", "t", "--input", '{"items": ["a"], "prompt": "no placeholder"}'], "{item}"),
    (["run", "task_queue", "--thread", "t", "--input", '{"items_file": "/nonexistent/x.txt", "prompt": "{item}"}'], "does not exist"),
    (["run", "task_queue", "--thread", "t", "--input", '{"items": ["a"], "prompt": "{item}", "colour": 1}'], "unknown input key(s) colour"),
    (["run", "task_queue", "--thread", "t", "--input", QUEUE, "--model", "gpt-9"], "unknown model"),
    (["run", "task_queue", "--thread", "t", "--input", QUEUE, "--concurrency", "0"], "--concurrency must be at least 1"),
    (["run", "task_queue", "--thread", "t", "--input", QUEUE, "--max-attempts", "0"], "--max-attempts must be at least 1"),
    (["run", "task_queue", "--thread", "", "--input", QUEUE], "invalid thread id"),
    (["run", "research", "--thread", "t", "--input", '{"question": "q", "steps": 99}'], '"steps" must be'),
    (["run", "risky", "--thread", "t", "--input", '{"fail_times": "x"}'], '"fail_times" must be'),
    (["run", "task_queue", "--thread", "t", "--input", "@/nonexistent/input.json"], "cannot read input file"),
]


@pytest.mark.parametrize("args, message", BAD_RUNS, ids=[m for _, m in BAD_RUNS])
def test_bad_run_input_exits_2_and_creates_nothing(cli, db_path, args, message):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert nothing_written(db_path)


BAD_READS = [
    (["history", "--thread", "nope"], "no thread 'nope'"),
    (["state", "--thread", "nope"], "no thread 'nope'"),
    (["resume", "--thread", "nope"], "no thread 'nope'"),
    (["results", "--thread", "nope"], "no thread 'nope'"),
    (["state", "--thread", "docs", "--checkpoint", "zzzz"], "has no checkpoint 'zzzz'"),
    (["state", "--thread", "docs", "--checkpoint", "77"], "has no step 77"),
    (["resume", "--thread", "docs", "--checkpoint", "zzzz"], "has no checkpoint 'zzzz'"),
    (["state", "--thread", "docs", "--checkpoint", "1f"], "matches 4"),
    (["resume", "--thread", "docs"], "nothing to resume"),
    (["run", "task_queue", "--thread", "docs", "--input", QUEUE], "agent resume --thread docs"),
    (["resume", "--thread", "docs", "--checkpoint", "1", "--concurrency", "-1"], "--concurrency must be at least 1"),
    (["results", "--thread", "docs", "--format", "xml"], "unknown --format"),
    (["results", "--thread", "r", "--status", "done"], "keeps no per-item results"),
]


@pytest.mark.parametrize("args, message", BAD_READS, ids=[m for _, m in BAD_READS])
def test_bad_reference_exits_2_and_changes_nothing(cli, db_path, args, message):
    assert cli("run", "task_queue", "--thread", "docs", "--input", QUEUE).exit_code == 0
    assert cli("run", "risky", "--thread", "r", "--input", '{"backoff": 0}').exit_code == 0
    before = db_snapshot(db_path)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert db_snapshot(db_path) == before


@pytest.mark.sqlite_only
def test_read_commands_without_a_database(cli, db_path):
    for args in (["threads"], ["history", "--thread", "x"], ["resume", "--thread", "x"]):
        result = cli(*args)
        assert result.exit_code == 2 and "no database at" in result.stderr
    assert nothing_written(db_path)


@pytest.mark.sqlite_only
def test_database_file_is_private(cli, db_path):
    cli("run", "risky", "--thread", "p", "--input", '{"backoff": 0}')
    assert db_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.sqlite_only
def test_not_a_database(cli, db_path):
    db_path.write_bytes(b"this is not sqlite" * 100)
    result = cli("threads")
    assert result.exit_code == 2 and "cannot use" in result.stderr and "Traceback" not in result.stderr
    assert db_path.read_bytes() == b"this is not sqlite" * 100


def test_history_shows_which_model_answered_and_what_was_decided(cli, monkeypatch):
    run = cli("run", "research", "--thread", "tiers", "--model", "offline", "--cheap-model", "offline:latency=0",
              "--input", '{"question": "q", "steps": 2}', "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.output
    rows = json.loads(cli("history", "--thread", "tiers", "--show", "models", "--json").stdout)
    by_writer = {r["writers"][0]: r["shown"]["models"] for r in rows if r["writers"] and r["shown"]["models"]}
    assert by_writer["plan"] == [[{"step": "plan", "model": "offline:latency=0"}]]
    assert by_writer["synthesize"] == [[{"step": "synthesize", "model": "offline"}]]
    assert all("shown" not in r for r in json.loads(cli("history", "--thread", "tiers", "--json").stdout))

    assert cli("run", "approval", "--thread", "ok", "--background", "--quiet").exit_code == 3
    assert cli("approve", "--thread", "ok", "--all", "--quiet").exit_code == 0
    rows = json.loads(cli("history", "--thread", "ok", "--show", "decisions", "--json").stdout)
    decided = [d for r in rows for batch in r["shown"]["decisions"] for d in batch]
    assert decided and all(d["approved"] and d["by"] and d["at"] and d["via"] == "agent approve" for d in decided)
    monkeypatch.setenv("COLUMNS", "250")  # one table line per row
    table = cli("history", "--thread", "ok", "--show", "decisions")
    assert "via=agent approve" in " ".join(table.stdout.split())
