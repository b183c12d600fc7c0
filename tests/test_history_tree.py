"""`agent history` as a tree of branches: each fork starts a branch beside the one it left."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT, agent_env

RESEARCH = '{"question": "Why is the sky blue?", "steps": 2}'


def _history(cli, thread: str, *args: str) -> list[dict]:
    result = cli("history", "--thread", thread, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _drawn(cli, thread: str, *args: str) -> list[tuple[str, str]]:
    """(tree cell, checkpoint cell) of each line of the history table."""
    result = cli("history", "--thread", thread, *args)
    assert result.exit_code == 0, result.output
    cells = [line.split("│") for line in result.stdout.splitlines() if "│" in line]
    return [(row[0].strip(), row[2].strip()) for row in cells]


@pytest.fixture
def forked(cli, monkeypatch):
    """A research thread run once, then resumed from step 1 (a fork), then edited at step 2 of
    that new line (a second fork): three branches."""
    monkeypatch.setenv("COLUMNS", "250")  # one table line per row
    assert cli("run", "research", "--thread", "r", "--input", RESEARCH, "--quiet").exit_code == 0
    first = _history(cli, "r")
    assert cli("resume", "--thread", "r", "--checkpoint", "1", "--quiet").exit_code == 0
    second = _history(cli, "r")
    assert cli("resume", "--thread", "r", "--checkpoint", "2", "--set", 'plan=["One step"]', "--quiet").exit_code == 0
    return first, second, _history(cli, "r")


def test_each_fork_starts_a_branch_and_json_says_which(cli, forked):
    first, second, rows = forked
    by_id = {r["checkpoint_id"]: r for r in rows}
    assert all(r["parent_checkpoint_id"] == r["parent_id"] for r in rows)
    branches: dict[int, list[dict]] = {}
    for row in rows:
        branches.setdefault(row["branch"], []).append(row)
    assert sorted(branches) == [0, 1, 2]

    # Branch 0 is the latest checkpoint's line, back to the input: the line step numbers name.
    line, cursor = [], rows[0]["checkpoint_id"]
    while cursor:
        line.append(cursor)
        cursor = by_id[cursor]["parent_id"]
    assert [r["checkpoint_id"] for r in branches[0]] == line and branches[0][-1]["source"] == "input"
    # Branch 1: what the first resume ran, after the edit left it (from its fork checkpoint on).
    run_from_1 = {r["checkpoint_id"] for r in second} - {r["checkpoint_id"] for r in first}
    assert {r["checkpoint_id"] for r in branches[1]} < run_from_1
    assert by_id[branches[1][-1]["parent_id"]]["source"] == "fork" and by_id[branches[1][-1]["parent_id"]]["branch"] == 0
    # Branch 2: the first run's steps after step 1, which the first resume forked from.
    step1 = next(r for r in first if r["step"] == 1)
    assert [r["step"] for r in branches[2]] == [4, 3, 2] and branches[2][-1]["parent_id"] == step1["checkpoint_id"]
    assert by_id[step1["checkpoint_id"]]["branch"] == 0
    edit = next(r for r in rows if r["source"] == "update")
    assert edit["branch"] == 0 and by_id[edit["parent_id"]]["source"] == "fork"


def test_the_table_draws_the_tree(cli, forked):
    rows = forked[2]
    drawn = _drawn(cli, "r")
    # Branch 1 joins the fork checkpoint it grew from, branch 2 (in the column branch 1 freed) step 1.
    expected = ["*", "*", "*", "| *", "| *", "| *", "|/", "*", "| *", "| *", "| *", "|/", "*", "*", "*"]
    assert [tree for tree, _ in drawn] == expected
    assert [cid for _, cid in drawn if cid] == [r["checkpoint_id"] for r in rows]
    for (tree, cid), row in zip([d for d in drawn if d[1]], rows):
        assert tree.index("*") == 2 * row["lane"] and row["lane"] == (0 if row["branch"] == 0 else 1)
    shown = _drawn(cli, "r", "--show", "notes")
    assert [tree for tree, _ in shown] == expected


def test_limit_keeps_the_newest_rows_on_the_branches_of_the_whole_tree(cli, forked):
    rows = forked[2]
    for n in (1, 5, 8, len(rows)):
        limited = _history(cli, "r", "--limit", str(n))
        assert limited == rows[:n]  # same rows, same branch numbers and lanes
    # Cut before branch 1 joins: its column runs on to the end, no joining line.
    assert [tree for tree, _ in _drawn(cli, "r", "--limit", "5")] == ["*", "*", "*", "| *", "| *"]
    assert [tree for tree, _ in _drawn(cli, "r", "--limit", "8")] == ["*", "*", "*", "| *", "| *", "| *", "|/", "*", "| *"]


def test_the_tree_is_drawn_without_loading_a_checkpoint(forked, db_path):
    """Branches come from the ids and parents in the checkpoint table: nothing is deserialised,
    so LangGraph (whose serializer loading a checkpoint needs) is never imported."""
    probe = (
        "import sys\nsys.argv = ['agent', *sys.argv[1:]]\nfrom cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('langgraph', 'langchain_core') if m in sys.modules), file=sys.stderr)"
    )
    for args in (["--limit", "8"], ["--json"], []):
        result = subprocess.run(
            [sys.executable, "-c", probe, "history", "--thread", "r", *args], cwd=ROOT, env=agent_env(db_path), capture_output=True, text=True, timeout=60
        )
        assert result.stderr.strip().splitlines()[-1] == "[]", (args, result.stderr)
        assert "|/" in result.stdout or '"branch": 2' in result.stdout


@dataclass
class Row:
    checkpoint_id: str
    parent_id: str | None
    branch: int = 0
    lane: int = 0


def _tree(links: list[tuple[str, str | None]]) -> list[str]:
    """The drawing of checkpoints given oldest first as (id, parent); ids sort by age."""
    from runtime.threads.history_tree import assign_lanes, draw_tree, find_branches

    branch_of = find_branches(links)
    rows = [Row(cid, parent, branch_of[cid]) for cid, parent in sorted(links, reverse=True)]
    assign_lanes(rows)
    return [graph + (f" {row.checkpoint_id}" if row else "") for graph, row in draw_tree(rows)]


def test_branches_keep_their_column_down_to_where_they_forked():
    # a1-a2-a3-e1 is the latest line; b1-c1 forks at a1, b2 at b1 (a branch off a branch), d1 at a2.
    links = [("a1", None), ("a2", "a1"), ("a3", "a2"), ("b1", "a1"), ("b2", "b1"), ("c1", "b1"), ("d1", "a2"), ("e1", "a3")]
    assert _tree(links) == [
        "* e1",
        "| * d1",
        "| | * c1",
        "| | | * b2",
        "| | |/",
        "| | * b1",
        "* | | a3",
        "|/  |",
        "*   | a2",
        "|---'",
        "* a1",
    ]


def test_a_join_crosses_a_lane_between_and_two_forks_of_one_checkpoint_join_nearest_first():
    # Ids lead with their age. x forks at a1 and is drawn first; y forks at a2 beside it.
    links = [("1a1", None), ("2a2", "1a1"), ("3a3", "2a2"), ("4y1", "2a2"), ("5x1", "1a1"), ("6m", "3a3")]
    assert _tree(links) == ["* 6m", "| * 5x1", "| | * 4y1", "* | | 3a3", "|-|-'", "* | 2a2", "|/", "* 1a1"]
    # b and c both fork at a1, after d (forked at a2) joined and freed its column for c.
    links = [("1a1", None), ("2b1", "1a1"), ("3c1", "1a1"), ("4a2", "1a1"), ("5d1", "4a2"), ("6a3", "4a2")]
    assert _tree(links) == ["* 6a3", "| * 5d1", "|/", "* 4a2", "| * 3c1", "| | * 2b1", "|/  |", "|---'", "* 1a1"]
    assert _tree([("a1", None)]) == ["* a1"] and _tree([]) == []
