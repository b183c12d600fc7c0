"""Editing state (resume --set), forking into a new thread, diffs, drawing graphs, langgraph.json."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json

import pytest

from tests.conftest import ROOT, db_snapshot

RESEARCH = '{"question": "Why is the sky blue?", "steps": 2}'
QUEUE = '{"items": ["a", "b", "c"], "prompt": "Summarize: {item}"}'


def _history(cli, thread: str) -> list[dict]:
    return json.loads(cli("history", "--thread", thread, "--json").stdout)


def _state(cli, thread: str, checkpoint: str | None = None) -> dict:
    args = ["state", "--thread", thread, "--json"] + (["--checkpoint", checkpoint] if checkpoint else [])
    return json.loads(cli(*args).stdout)


def test_set_edits_the_latest_checkpoint_and_the_run_continues_with_it(cli):
    failing = cli("run", "research", "--thread", "r", "--input", RESEARCH, "--model", "offline:fail_on=Now do step", "--max-attempts", "1")
    assert failing.exit_code == 1
    latest = _history(cli, "r")[0]
    assert latest["step"] == 1 and latest["next"] == ["research_step"]

    result = cli("resume", "--thread", "r", "--model", "offline", "--set", 'notes=["edited note"]', "--set", "question=Why is the sea salty?")
    assert result.exit_code == 0, result.output
    rows = _history(cli, "r")
    edit = next(r for r in rows if r["source"] == "update")
    assert edit["parent_id"] == latest["checkpoint_id"] and edit["step"] == 2 and edit["next"] == ["research_step"]
    assert [r["step"] for r in rows][:4] == [5, 4, 3, 2]  # the run went on from the edit
    values = _state(cli, "r")["values"]
    assert values["question"] == "Why is the sea salty?"
    # --set sets, also a list with a reducer: the edited note replaced the findings, and the steps after it read it.
    assert values["notes"][0] == "edited note" and len(values["notes"]) == 3
    assert "edited note" in values["notes"][1] and "sea salty" in values["notes"][1]


def test_set_on_an_older_checkpoint_forks_and_the_old_branch_stays(cli):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    before = _history(cli, "r")
    step1 = next(r for r in before if r["step"] == 1)

    result = cli("resume", "--thread", "r", "--checkpoint", "1", "--set", 'plan=["The one step"]', "--json")
    assert result.exit_code == 0, result.output
    rows = _history(cli, "r")
    assert {r["checkpoint_id"] for r in before} < {r["checkpoint_id"] for r in rows}  # nothing of the old branch went
    edit = next(r for r in rows if r["source"] == "update")
    assert edit["parent_id"] == step1["checkpoint_id"]
    values = _state(cli, "r")["values"]
    assert values["plan"] == ["The one step"] and len(values["notes"]) == 1 and "The one step" in values["notes"][0]


def test_set_on_the_input_checkpoint_edits_the_input_and_keeps_the_rest(cli):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    assert cli("resume", "--thread", "r", "--checkpoint", "-1", "--set", "question=Why is grass green?").exit_code == 0
    values = _state(cli, "r")["values"]
    assert values["question"] == "Why is grass green?" and values["steps"] == 2 and len(values["notes"]) == 2


def test_resume_thread_takes_edits_from_python(db_path):
    from runtime import get_history, open_database, resume_thread, run_thread

    with open_database(db_path, create=True) as db:
        run_thread(db, "risky", "k", {"fail_times": -1, "max_attempts": 2, "backoff": 0})
        outcome = resume_thread(db, "k", checkpoint="0", edits={"fail_times": 0})
        assert outcome.status == "completed" and outcome.values["outcome"] == "succeeded"
        assert "update" in [row.source for row in get_history(db, "k")]


@pytest.mark.parametrize(
    "edit, message",
    [
        ("nope=1", "unknown state key(s) nope"),
        ("steps=[1", "not valid JSON"),
        ('question={"a": }', "not valid JSON"),
        ("steps=abc", "steps: must be a whole number"),
        ("plan=3", "plan: must be a JSON list"),
        ("steps", "is not key=value"),
    ],
)
def test_bad_set_exits_2_and_writes_nothing(cli, db_path, edit, message):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    before = db_snapshot(db_path)
    result = cli("resume", "--thread", "r", "--checkpoint", "1", "--set", edit)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.startswith("Error: ") and "Hint: " in result.stderr
    assert db_snapshot(db_path) == before


def test_fork_into_a_new_thread_then_resume_both_independently(cli, db_path):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    original = _history(cli, "r")
    step2 = next(r for r in original if r["step"] == 2)

    forked = cli("fork", "--thread", "r", "--checkpoint", "2", "--new-thread", "r2", "--json")
    assert forked.exit_code == 0, forked.output
    info = json.loads(forked.stdout)
    assert set(info) == {"thread_id", "source_thread_id", "source_checkpoint_id", "checkpoint_id", "step", "status", "next", "store_items"}
    assert info["source_checkpoint_id"] == step2["checkpoint_id"] and info["status"] == "forked" and info["next"] == ["research_step"]
    threads = {t["thread_id"]: t for t in json.loads(cli("threads", "--json").stdout)}
    assert threads["r2"]["graph"] == "research" and threads["r2"]["graph_version"] == threads["r"]["graph_version"]
    assert threads["r2"]["settings"] == threads["r"]["settings"]
    start = _history(cli, "r2")
    assert [(r["step"], r["source"], r["next"]) for r in start] == [(2, "fork", ["research_step"])]
    assert _state(cli, "r2")["values"] == _state(cli, "r", "2")["values"]

    assert cli("resume", "--thread", "r2", "--set", "question=Why is grass green?").exit_code == 0
    assert _history(cli, "r") == original  # the old thread is untouched
    r2 = _state(cli, "r2")
    assert r2["status"] == "completed" and r2["values"]["question"] == "Why is grass green?"
    assert r2["values"]["notes"][0] == _state(cli, "r")["values"]["notes"][0]  # the first step came with the fork
    # and the old thread still forks and resumes on its own
    assert cli("resume", "--thread", "r", "--checkpoint", "2").exit_code == 0
    assert len(_history(cli, "r")) > len(original) and _state(cli, "r")["status"] == "completed"
    assert _history(cli, "r2")[0]["checkpoint_id"] == r2["checkpoint_id"]


def test_fork_of_a_queue_carries_its_items_and_results(cli):
    assert cli("run", "task_queue", "--thread", "q", "--input", QUEUE).exit_code == 0
    results = cli("results", "--thread", "q").stdout
    forked = cli("fork", "--thread", "q", "--checkpoint", "1", "--new-thread", "q.b")
    assert forked.exit_code == 0, forked.output
    assert "6 store item(s) copied" in forked.stdout and "agent resume --thread q.b" in forked.stderr
    assert cli("results", "--thread", "q.b").stdout == results
    resumed = cli("resume", "--thread", "q.b", "--json")
    assert resumed.exit_code == 0
    assert json.loads(resumed.stdout)["items"] == {"total": 3, "done": 3, "failed": 0}
    # The copies are the new thread's own: deleting it leaves the old thread's results.
    assert cli("delete", "--thread", "q.b").exit_code == 0
    assert cli("results", "--thread", "q").stdout == results


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "1", "--new-thread", "taken"], "already exists"),
        (["--checkpoint", "99", "--new-thread", "new"], "no step 99"),
        (["--checkpoint", "1", "--new-thread", "r"], "must differ"),
        (["--checkpoint", "1", "--new-thread", " "], "invalid thread id"),
    ],
)
def test_fork_refuses_bad_input_and_writes_nothing(cli, db_path, args, message):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    assert cli("run", "risky", "--thread", "taken", "--input", '{"backoff": 0}').exit_code == 0
    before = db_snapshot(db_path)
    result = cli("fork", "--thread", "r", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert db_snapshot(db_path) == before


def test_diff_defaults_to_the_last_step(cli):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    rows = _history(cli, "r")
    diff = json.loads(cli("diff", "--thread", "r", "--json").stdout)
    assert set(diff) == {"thread_id", "from", "to", "changes", "unchanged"}
    assert diff["to"]["checkpoint_id"] == rows[0]["checkpoint_id"] and diff["from"]["checkpoint_id"] == rows[1]["checkpoint_id"]
    assert set(diff["to"]) == {"checkpoint_id", "step", "created_at", "next"}
    assert all(set(c) == {"op", "path", "old", "new"} for c in diff["changes"])
    changes = {c["path"]: c for c in diff["changes"]}
    assert changes["answer"]["op"] == "added" and changes["answer"]["old"] is None
    assert changes["answer"]["new"] == _state(cli, "r")["values"]["answer"]  # in full
    assert "question" in diff["unchanged"] and [c["path"] for c in diff["changes"]] == sorted(changes)

    text = cli("diff", "--thread", "r")
    assert text.exit_code == 0 and "added   answer: " in text.stdout and "step 3" in text.stderr and "step 4" in text.stderr


def test_diff_between_chosen_checkpoints(cli):
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH).exit_code == 0
    diff = json.loads(cli("diff", "--thread", "r", "--from", "1", "--to", "3", "--json").stdout)
    assert (diff["from"]["step"], diff["to"]["step"]) == (1, 3)
    notes = _state(cli, "r", "3")["values"]["notes"]
    assert [c for c in diff["changes"] if c["path"].startswith("notes")] == [
        {"op": "added", "path": "notes[0]", "old": None, "new": notes[0]},
        {"op": "added", "path": "notes[1]", "old": None, "new": notes[1]},
    ]
    text = cli("diff", "--thread", "r", "--from", "1", "--to", "3").stdout
    assert "added   notes[0]: " in text and "changed step_index: 0 -> 2" in text
    first = json.loads(cli("diff", "--thread", "r", "--to", "-1", "--json").stdout)
    assert first["from"] is None  # before the first checkpoint: the empty state
    assert cli("diff", "--thread", "r", "--from", "nope").exit_code == 2
    assert cli("diff", "--thread", "missing").exit_code == 2


NESTED_GRAPH = """
from typing import TypedDict
from langgraph.graph import END, START, StateGraph


class Work(TypedDict, total=False):
    plan: list
    items: list
    meta: dict
    note: str


def review(state: Work) -> dict:
    plan = [dict(task) for task in state["plan"]]
    plan[2]["status"] = "done"
    items = [x for x in state["items"] if x != "b"] + ["e"]
    meta = {**state["meta"], "owner": "bob", "reviewed": True, "tags": state["meta"]["tags"][1:]}
    return {"plan": plan, "items": items, "meta": meta, "note": "x" * 500}


def build() -> StateGraph:
    graph = StateGraph(Work)
    graph.add_node("review", review)
    graph.add_edge(START, "review")
    graph.add_edge("review", END)
    return graph
"""


def test_diff_names_nested_changes_by_path(cli, tmp_path):
    graph = tmp_path / "nested.py"
    graph.write_text(NESTED_GRAPH)
    plan = [{"task": t, "status": "todo"} for t in ("read", "write", "check")]
    start = {"plan": plan, "items": ["a", "b", "c", "d"], "meta": {"owner": "ann", "tags": ["x", "y"], "a b": 1}, "note": "short"}
    assert cli("run", f"{graph}:build", "--thread", "n", "--input", json.dumps(start)).exit_code == 0
    diff = json.loads(cli("diff", "--thread", "n", "--json").stdout)
    assert diff["changes"] == [
        {"op": "removed", "path": "items[1]", "old": "b", "new": None},
        {"op": "added", "path": "items[3]", "old": None, "new": "e"},
        {"op": "changed", "path": "meta.owner", "old": "ann", "new": "bob"},
        {"op": "added", "path": "meta.reviewed", "old": None, "new": True},
        {"op": "removed", "path": "meta.tags[0]", "old": "x", "new": None},
        {"op": "changed", "path": "note", "old": "short", "new": "x" * 500},
        {"op": "changed", "path": "plan[2].status", "old": "todo", "new": "done"},
    ]
    assert diff["unchanged"] == []
    lines = cli("diff", "--thread", "n").stdout.splitlines()
    assert 'changed plan[2].status: "todo" -> "done"' in lines and 'removed items[1]: "b"' in lines
    assert 'added   meta.reviewed: true' in lines
    long = next(line for line in lines if line.startswith("changed note:"))
    assert long.endswith("(502 chars)") and len(long) < 100  # shortened; --json has it in full


def test_nested_paths_quote_keys_that_are_not_names():
    from runtime.threads.diff import state_changes

    old = {"meta": {"a b": [1, {"x.y": 2}], "7": "seven"}, "rows": [[1, 2], [3, 4]]}
    new = {"meta": {"a b": [1, {"x.y": 3}], "7": "eight"}, "rows": [[1, 2], [3, 5]]}
    assert [(c.path, c.old, c.new) for c in state_changes(old, new)] == [
        ('meta["7"]', "seven", "eight"),
        ('meta["a b"][1]["x.y"]', 2, 3),
        ("rows[1][1]", 4, 5),
    ]


def test_graph_show_in_each_format(cli):
    ascii_ = cli("graph", "show", "task_queue")
    assert ascii_.exit_code == 0 and "| load_items |" in ascii_.stdout and "process_items -> process_items" in ascii_.stdout
    mermaid = cli("graph", "show", "research", "--format", "mermaid").stdout
    assert "graph TD;" in mermaid and "plan -.-> research_step;" in mermaid
    shape = json.loads(cli("graph", "show", "risky", "--json").stdout)
    assert {n["id"] for n in shape["nodes"]} == {"__start__", "attempt", "backoff", "succeeded", "give_up", "__end__"}
    assert {"source": "backoff", "target": "attempt", "conditional": False, "label": None} in shape["edges"]
    user = cli("graph", "show", str(ROOT / "tests" / "delta_graph.py") + ":build", "--json")
    assert user.exit_code == 0 and "step" in {n["id"] for n in json.loads(user.stdout)["nodes"]}
    assert cli("graph", "show", "nope").exit_code == 2
    assert cli("graph", "show", "risky", "--format", "png").exit_code == 2


def test_every_graph_langgraph_json_names_imports_and_compiles():
    import importlib.util
    import sys

    from langgraph.graph.state import CompiledStateGraph

    from graphs import builtin_names

    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    assert set(config["graphs"]) >= set(builtin_names())
    for name, target in config["graphs"].items():
        path, _, attr = target.rpartition(":")
        spec = importlib.util.spec_from_file_location(f"langgraph_json_{name}", ROOT / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as `langgraph dev` loads a graph file
        try:
            spec.loader.exec_module(module)
            graph = getattr(module, attr)
            assert isinstance(graph, CompiledStateGraph) and graph.checkpointer is None, name
            assert graph.get_graph().nodes
        finally:
            del sys.modules[spec.name]


def test_studio_graphs_run_on_the_offline_model_without_a_context():
    import asyncio

    import studio

    result = asyncio.run(studio.research.ainvoke({"question": "Why?", "steps": 1}))
    assert result["answer"].startswith("[offline")
    risky = asyncio.run(studio.risky.ainvoke({"fail_times": 1, "backoff": 0}, context={"max_attempts": 2}))
    assert risky["outcome"] == "succeeded"
