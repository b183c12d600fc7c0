"""The runtime's errors carry their meaning as data, and each face words it its own way: Python
(`str(exc)`, `exc.hint`) with keyword arguments and runtime calls, the CLI with flags and `agent`
command lines, HTTP with `exc.as_dict()`. No runtime message spells a CLI flag or command.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import math
import re
import sqlite3
import time
from pathlib import Path

import pytest

from commands.cli_face import CLI, FLAGS, POSITIONAL, duration_text, shell_word
from runtime.errors import CALLS, AgentError, Command, Duration, Message, OneOf, Placeholder, Setting, Verb, joined

ROOT = Path(__file__).resolve().parent.parent
QUESTION = {"question": "Why is the sky blue?", "steps": 1}


def raised(call, *args, **kwargs) -> AgentError:
    with pytest.raises(AgentError) as caught:
        call(*args, **kwargs)
    return caught.value


def cli_lines(exc: AgentError) -> list[str]:
    message, hint = exc.render(CLI)
    return [f"Error: {message}"] + ([f"Hint: {hint}"] if hint else [])


@pytest.fixture
def db(db_path: Path):
    from runtime import open_database

    with open_database(db_path, create=True) as database:
        yield database


def test_prune_with_a_bad_keep_in_three_faces(db, cli):
    from runtime.threads.retention import prune

    exc = raised(prune, db, keep=0)
    assert str(exc) == exc.message == "keep must be at least 1 (got 0): the latest checkpoint always stays"
    assert exc.hint == "e.g. keep=100"
    assert exc.render(CLI) == ("--keep must be at least 1 (got 0): the latest checkpoint always stays", "e.g. --keep 100")
    assert exc.as_dict() == {
        "error": "BadInput",
        "message": "keep must be at least 1 (got 0): the latest checkpoint always stays",
        "hint": "e.g. keep=100",
        "setting": "keep",
        "value": 0,
        "next": [],
        "exit_code": 2,
        "status": 400,
    }
    shown = cli("prune", "--keep", "0")
    assert shown.exit_code == 2 and shown.stderr.splitlines() == cli_lines(exc)


def test_prune_without_criteria_names_the_command_as_data(db):
    from runtime.threads.retention import prune

    exc = raised(prune, db)
    assert exc.message == "say what to prune: keep=N, older_than=DURATION or orphans"
    assert exc.hint == "e.g. prune(db, keep=100, dry_run=True)"
    assert exc.render(CLI) == ("say what to prune: --keep N, --older-than DURATION or --orphans", "e.g. agent prune --keep 100 --dry-run")
    assert exc.as_dict()["next"] == [{"verb": "prune", "args": {"keep": 100, "dry_run": True}}]
    one = raised(prune, db, thread="docs")  # the example names the thread given, never a placeholder
    assert one.render(CLI)[1] == "e.g. agent prune --thread docs --keep 100 --dry-run"


def test_resume_of_a_missing_thread_in_three_faces(db, cli):
    from runtime import resume_thread

    exc = raised(resume_thread, db, "nosuch")
    assert exc.message == f"no thread 'nosuch' in {db.path}"
    assert exc.hint == "list_threads(db) lists the threads"
    assert exc.render(CLI)[1] == "agent threads lists the threads"
    body = exc.as_dict()
    assert (body["error"], body["status"], body["exit_code"], body["next"]) == ("ThreadNotFound", 404, 2, [{"verb": "threads", "args": {}}])
    assert json.loads(json.dumps(body)) == body
    shown = cli("resume", "--thread", "nosuch")
    assert shown.exit_code == 2 and shown.stderr.splitlines() == cli_lines(exc)


def test_a_bad_cron_in_three_faces(cli):
    from runtime.schedules.calendar import check_cron

    exc = raised(check_cron, "* *")
    assert exc.message == "cron '* *' has 2 field(s); a schedule takes 5: minute hour day-of-month month day-of-week"
    assert exc.hint == 'e.g. cron="0 9 * * 1-5" (09:00 on weekdays)'
    assert exc.render(CLI) == (
        "--cron '* *' has 2 field(s); a schedule takes 5: minute hour day-of-month month day-of-week",
        'e.g. --cron "0 9 * * 1-5" (09:00 on weekdays)',
    )
    assert (exc.as_dict()["setting"], exc.as_dict()["value"]) == ("cron", "* *")
    shown = cli("schedule", "add", "s", "--graph", "research", "--cron", "* *", "--input", json.dumps(QUESTION))
    assert shown.exit_code == 2 and shown.stderr.splitlines() == cli_lines(exc)


def test_a_completed_thread_names_the_calls_that_go_on(db, cli):
    from runtime import resume_thread, run_thread

    assert run_thread(db, "research", "r", QUESTION).status == "completed"
    exc = raised(resume_thread, db, "r")
    assert exc.hint == 'to run again from an earlier point: resume_thread(db, "r", checkpoint="ID") (get_history(db, "r"))'
    assert exc.render(CLI)[1] == "to run again from an earlier point: agent resume --thread r --checkpoint ID (agent history --thread r)"
    assert exc.as_dict()["next"] == [
        {"verb": "resume", "args": {"thread_id": "r", "checkpoint": "ID"}},
        {"verb": "history", "args": {"thread_id": "r"}},
    ]
    shown = cli("resume", "--thread", "r")
    assert shown.exit_code == 2 and shown.stderr.splitlines() == cli_lines(exc)


def test_a_busy_thread_names_a_wait_in_each_face_s_unit(db, db_path):
    from runtime import resume_thread, run_thread

    run_thread(db, "research", "r", QUESTION)
    conn = sqlite3.connect(db_path)
    conn.execute(
        "UPDATE agent_threads SET status = 'running', owner_pid = 4242, owner_host = 'elsewhere', heartbeat_at = ? WHERE thread_id = 'r'", (time.time(),)
    )
    conn.commit()
    conn.close()
    exc = raised(resume_thread, db, "r")
    assert exc.hint == 'wait for it with resume_thread(db, "r", wait=600), or stop it (Ctrl-C in its terminal, or kill -TERM 4242)'
    assert exc.render(CLI)[1] == "wait for it with agent resume --thread r --wait 10m, or stop it (Ctrl-C in its terminal, or kill -TERM 4242)"
    assert exc.as_dict()["next"] == [{"verb": "resume", "args": {"thread_id": "r", "wait": 600}}]


def test_an_invalid_number_names_the_setting_as_each_face_spells_it(db):
    from runtime import RunSettings, run_thread

    exc = raised(run_thread, db, "research", "r", QUESTION, RunSettings(max_cost=math.nan))
    assert exc.message == "max_cost must be 0 or more US dollars (0: no limit), not nan"
    assert exc.render(CLI)[0] == "--max-cost must be 0 or more US dollars (0: no limit), not nan"
    body = exc.as_dict()
    assert (body["error"], body["setting"], body["value"]) == ("InvalidNumber", "max_cost", "nan")
    json.dumps(body, allow_nan=False)  # an HTTP body holds no NaN


def test_approve_or_reject_and_an_edit_key(db):
    from runtime import RunSettings, run_thread
    from runtime.threads.edit import parse_assignments

    exc = raised(run_thread, db, "approval", "a", {}, RunSettings(background=True), approve_all=True)
    assert exc.message == "approve_all cannot approve the actions of a background run: nobody is at the terminal"
    assert exc.hint.endswith('with decide(db, "a", ["ID"], approved=True) / decide(db, "a", ["ID"], approved=False)')
    assert exc.render(CLI) == (
        "--yes cannot approve the actions of a --background run: nobody is at the terminal",
        "leave out --yes and answer each action with agent approve / agent reject --thread a --id ID",
    )
    bad_json = raised(parse_assignments, ["names=[1"])
    assert bad_json.message.startswith('edits["names"]: the value is not valid JSON')
    assert bad_json.hint == 'e.g. edits={"names": ["a", "b"]}'  # no shell in Python
    assert bad_json.render(CLI)[1] == "quote it for the shell, e.g. --set 'names=[\"a\", \"b\"]'"


def test_the_cli_spells_values_for_the_shell():
    examples = {
        Setting("keep", 100): "--keep 100",
        Setting("force", True): "--force",
        Setting("ids", ["a", "b"]): "--id a --id b",
        Setting("cron", "0 9 * * 1-5"): '--cron "0 9 * * 1-5"',
        Setting("input", {"items": ["a"]}): "--input '{\"items\": [\"a\"]}'",
        Setting("edits", {"question": "Why?", "steps": 2, "names": ["a"]}): "--set question=Why? --set steps=2 --set 'names=[\"a\"]'",
        Setting("edits", {"q": "a b"}): '--set q="a b"',
        Setting("edits", key="steps"): "--set steps",
        Setting("older_than", Duration(30 * 86400)): "--older-than 30d",
        Setting("keep", Placeholder("N")): "--keep N",
        Command("run", graph="research", thread_id="x y", input=Placeholder("JSON")): 'agent run research --thread "x y" --input JSON',
        Command("schedule delete", name="digest"): "agent schedule delete digest",
        Verb("retry-failed"): "retry-failed",
    }
    assert [CLI.render(term) for term in examples] == list(examples.values())
    assert [duration_text(s) for s in (90, 600, 5400, 86400, 0.5)] == ["90s", "10m", "90m", "1d", "0.5s"]
    assert shell_word("it's $HOME") == "'it'\\''s $HOME'"


def test_python_wording_of_each_term():
    message = Message(
        "{} / {} / {} / {}",
        Setting("max_cost"),
        Command("fork", thread_id="a", checkpoint="3", new_thread_id="b"),
        Command("worker", once=True),
        OneOf(Command("approve", thread_id="t", ids=["i"]), Command("reject", thread_id="t", ids=["i"])),
    )
    assert str(message) == (
        'max_cost / fork_thread(db, "a", "3", "b") / FleetWorker(db).run(once=True) / '
        'decide(db, "t", ["i"], approved=True) / decide(db, "t", ["i"], approved=False)'
    )
    assert str(joined("; ", [Message("{}", Command("delete", thread_id="a")), "then rest"])) == 'delete_thread(db, "a"); then rest'


# -- the tables each face keeps -------------------------------------------------------------------


def cli_commands() -> dict[str, object]:
    """CLI verb (`schedule delete` for a subcommand) -> its click command."""
    import typer

    from cli import app

    found = {}
    for name, command in typer.main.get_command(app).commands.items():
        found[name] = command
        for sub, subcommand in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = subcommand
    return found


def test_every_verb_is_a_cli_command_and_a_runtime_function_with_those_parameters():
    commands = cli_commands()
    for verb, call in CALLS.items():
        assert verb in commands, verb
        owner, _, name = call.name.rpartition(".")
        target = getattr(importlib.import_module(call.module), owner or name)
        parameters = inspect.signature(getattr(target, name) if owner else target).parameters
        assert set(call.positional) | set(call.implied) <= set(parameters), verb
    for verb, names in POSITIONAL.items():
        assert verb in commands and set(names) <= {p.name for p in commands[verb].params}, verb


def test_every_renamed_flag_is_a_cli_option():
    options = {opt for command in cli_commands().values() for param in command.params for opt in getattr(param, "opts", ())}
    assert {"--" + flag for flag in FLAGS.values()} <= options


# -- no runtime message spells the CLI ------------------------------------------------------------

ERROR_NAMES = {"Message", "joined", "Finding", "GraphLoadError", "NotControllable", "PricesError"} | {
    name for name, value in vars(importlib.import_module("runtime.errors")).items() if isinstance(value, type) and issubclass(value, AgentError)
}


def message_constants(tree: ast.AST):
    """String constants inside raise statements, error constructors, messages and `hint = ...`."""
    for node in ast.walk(tree):
        called = isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
        hinted = isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "hint" for t in node.targets)
        if isinstance(node, ast.Raise) or called in ERROR_NAMES or hinted:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    yield inner


def test_no_runtime_message_is_built_from_a_flag_or_an_agent_command():
    verbs = sorted({verb.split()[0] for verb in cli_commands()}, key=len, reverse=True)
    cli_spelling = re.compile(r"--[a-z]|\bagent (?:" + "|".join(map(re.escape, verbs)) + r")\b")
    found = []
    for package in ("runtime", "graphs", "nodes"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for constant in message_constants(ast.parse(path.read_text(encoding="utf-8"))):
                if cli_spelling.search(constant.value):
                    found.append(f"{path.relative_to(ROOT)}:{constant.lineno}: {constant.value!r}")
    assert not found, "\n".join(found)


def test_every_command_a_runtime_message_names_has_a_python_call():
    named = set()
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Command", "Verb") and node.args:
                if isinstance(node.args[0], ast.Constant):
                    named.add(node.args[0].value)
    assert named and named <= set(CALLS), named - set(CALLS)
