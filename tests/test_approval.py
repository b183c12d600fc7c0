"""Approval of sensitive actions: interrupts, decisions by id, who and when, --yes."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import getpass
import json
from pathlib import Path

import pytest

from tests.conftest import db_snapshot, nothing_written

PLAN = json.dumps({
    "request": "Close inactive accounts",
    "actions": [
        {"kind": "read_data", "target": "customers", "detail": "inactive accounts"},
        {"kind": "send_email", "target": "owners@example.com", "detail": "accounts will close"},
        {"kind": "delete_data", "target": "customers", "detail": "inactive rows"},
    ],
})  # fmt: skip


def _pending(cli, thread: str) -> list[dict]:
    listed = cli("approvals", "--thread", thread, "--json")
    assert listed.exit_code == 0, listed.output
    return json.loads(listed.stdout)


def _values(cli, thread: str) -> dict:
    return json.loads(cli("state", "--thread", thread, "--json").stdout)["values"]


def _status(cli, thread: str) -> str:
    return json.loads(cli("status", "--thread", thread, "--json").stdout)["status"]


def test_two_pending_approvals_are_listed_and_answered_by_id(cli):
    run = cli("run", "approval", "--thread", "a", "--input", PLAN, "--background", "--quiet")
    assert run.exit_code == 3, run.output
    assert "agent approvals --thread a" in run.stderr
    assert _status(cli, "a") == "interrupted"
    pending = _pending(cli, "a")
    assert sorted(p["action_id"] for p in pending) == ["a2", "a3"]
    by_action = {p["action_id"]: p for p in pending}
    assert by_action["a3"]["would"] == "delete from customers: inactive rows"
    assert _values(cli, "a")["performed"] == [{"action": _values(cli, "a")["plan"][0], "outcome": "done",
                                               "effect": "(simulated) read_data on customers: inactive accounts"}]  # fmt: skip

    unnamed = cli("approve", "--thread", "a")
    assert unnamed.exit_code == 2 and "--id" in unnamed.stderr

    approved = cli("approve", "--thread", "a", "--id", by_action["a2"]["id"][:8], "--quiet")
    assert approved.exit_code == 3, approved.output  # the other one still waits
    assert [p["action_id"] for p in _pending(cli, "a")] == ["a3"]

    rejected = cli("reject", "--thread", "a", "--reason", "keep the rows for the audit", "--quiet")
    assert rejected.exit_code == 0, rejected.output
    assert _status(cli, "a") == "completed" and _pending(cli, "a") == []

    values = _values(cli, "a")
    decisions = {d["action_id"]: d for d in values["decisions"]}
    user = getpass.getuser()
    assert decisions["a2"]["approved"] is True and decisions["a2"]["by"] == user and decisions["a2"]["via"] == "agent approve"
    assert decisions["a2"]["interrupt_id"] == by_action["a2"]["id"] and decisions["a2"]["action"] == "send an email to owners@example.com: accounts will close"
    assert decisions["a3"] == {**decisions["a3"], "approved": False, "by": user, "reason": "keep the rows for the audit", "via": "agent reject"}
    assert all(d["at"].endswith("Z") and d["at"][:2] == "20" for d in decisions.values())
    outcomes = {p["action"]["id"]: p["outcome"] for p in values["performed"]}
    assert outcomes == {"a1": "done", "a2": "done", "a3": "rejected"}
    assert "1 rejected" in values["report"]


def test_approve_all_and_a_rejection_needs_a_reason(cli):
    assert cli("run", "approval", "--thread", "a", "--input", PLAN, "--quiet").exit_code == 3  # foreground waits too
    no_reason = cli("reject", "--thread", "a", "--all", "--reason", " ")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.stderr
    unknown = cli("approve", "--thread", "a", "--id", "zzzz")
    assert unknown.exit_code == 2 and "no pending approval" in unknown.stderr
    assert cli("approve", "--thread", "a", "--all", "--quiet").exit_code == 0
    assert all(d["approved"] for d in _values(cli, "a")["decisions"])
    again = cli("approve", "--thread", "a")
    assert again.exit_code == 2 and "no pending approvals" in again.stderr


def test_yes_approves_up_front_in_the_users_name(cli):
    run = cli("run", "approval", "--thread", "y", "--input", PLAN, "--yes", "--quiet")
    assert run.exit_code == 0, run.output
    decisions = _values(cli, "y")["decisions"]
    assert [(d["action_id"], d["approved"], d["via"], d["by"]) for d in sorted(decisions, key=lambda d: d["action_id"])] == [
        ("a2", True, "--yes", getpass.getuser()),
        ("a3", True, "--yes", getpass.getuser()),
    ]


def test_yes_is_refused_for_a_background_run_and_nothing_is_written(cli, db_path: Path):
    refused = cli("run", "approval", "--thread", "b", "--input", PLAN, "--yes", "--background")
    assert refused.exit_code == 2 and "--background" in refused.stderr
    assert nothing_written(db_path)
    assert cli("run", "approval", "--thread", "b", "--background", "--quiet").exit_code == 3
    before = db_snapshot(db_path)
    again = cli("resume", "--thread", "b", "--yes")  # the thread is stored as background
    assert again.exit_code == 2 and db_snapshot(db_path) == before


def test_a_bad_plan_is_refused(cli, db_path: Path):
    result = cli("run", "approval", "--thread", "x", "--input", '{"actions": [{"target": "t"}]}')
    assert result.exit_code == 2 and '"kind"' in result.stderr
    assert nothing_written(db_path)


def test_nodes_directly_record_what_would_be_done():
    from nodes.approval import describe_action, plan, report

    planned = plan({"actions": [{"kind": "make_purchase", "target": "acme", "detail": "10 chairs"}, {"kind": "draft", "target": "memo"}]})["plan"]
    assert [(a["id"], a["sensitive"]) for a in planned] == [("a1", True), ("a2", False)]
    assert describe_action(planned[0]) == "buy from acme: 10 chairs"
    summary = report({"plan": planned, "performed": [{"action": planned[0], "outcome": "rejected", "effect": "not done", "reason": "no"}]})
    assert "0 action(s) done (simulated), 1 rejected" in summary["report"]


def _pending_kinds(cli, thread: str) -> list[str]:
    return sorted(p["kind"] for p in _pending(cli, thread))


@pytest.mark.parametrize("kind", ["delete_data", " Delete-Data "])
def test_a_state_edit_cannot_turn_approval_off(cli, kind: str):
    """`--set plan=[... "sensitive": false]` carried out a deletion with no decision: the kind decides."""
    assert cli("run", "approval", "--thread", "a", "--input", PLAN, "--background", "--quiet").exit_code == 3
    forged = json.dumps([{"id": "a1", "kind": kind, "target": "customers", "detail": "all rows", "sensitive": False}])
    edited = cli("resume", "--thread", "a", "--set", f"plan={forged}", "--quiet")
    assert edited.exit_code == 3, edited.output  # it waits for a person
    assert _pending_kinds(cli, "a") == [kind]
    values = _values(cli, "a")
    assert not any(p["outcome"] == "done" and "all rows" in p["effect"] for p in values.get("performed", []))
    assert values.get("decisions", []) == []
    rejected = cli("reject", "--thread", "a", "--reason", "not all of them", "--quiet")
    assert rejected.exit_code == 0, rejected.output
    decision = _values(cli, "a")["decisions"][0]
    assert (decision["approved"], decision["by"], decision["via"]) == (False, getpass.getuser(), "agent reject")
    assert decision["action"] == "delete from customers: all rows"


@pytest.mark.parametrize("key", ["decisions", "performed"])
def test_set_may_not_write_the_record_of_decisions(cli, db_path: Path, key: str):
    assert cli("run", "approval", "--thread", "a", "--input", PLAN, "--background", "--quiet").exit_code == 3
    before = db_snapshot(db_path)
    forged = json.dumps([{"action_id": "a3", "approved": True, "by": "the-ceo", "at": "2026-01-01T00:00:00Z", "via": "agent approve"}])
    refused = cli("resume", "--thread", "a", "--set", f"{key}={forged}")
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.startswith(f"Error: {key} of graph approval can only be written by the graph itself")
    assert "agent approve" in refused.stderr and "Traceback" not in refused.stderr
    assert db_snapshot(db_path) == before


def test_an_answer_that_is_not_a_decision_records_nothing_and_asks_again(cli, db_path: Path):
    """Only approve / reject (and --yes) record a decision, with who and when: an answer without them is none."""
    from langgraph.types import Command

    from runtime import open_database, resume_thread

    plan = json.dumps({"actions": [{"kind": "make_purchase", "target": "acme", "detail": "10 chairs"}]})
    assert cli("run", "approval", "--thread", "p", "--input", plan, "--background", "--quiet").exit_code == 3
    [waiting] = _pending(cli, "p")
    with open_database(db_path) as db:
        outcome = resume_thread(db, "p", command=Command(resume={waiting["id"]: {"approved": True}}))
    assert outcome.status == "interrupted"
    values = _values(cli, "p")
    assert values.get("decisions", []) == [] and values.get("performed", []) == []
    [again] = _pending(cli, "p")
    assert again["id"] != waiting["id"] and again["would"] == "buy from acme: 10 chairs"
    assert cli("approve", "--thread", "p", "--quiet").exit_code == 0
    [decision] = _values(cli, "p")["decisions"]
    assert (decision["approved"], decision["by"], decision["via"]) == (True, getpass.getuser(), "agent approve")


def test_the_policy_reads_the_kind_not_the_flag():
    from nodes.approval import needs_approval

    assert needs_approval({"kind": "delete_data", "sensitive": False})
    assert needs_approval({"kind": "SEND EMAIL"}) and needs_approval({"kind": "make-purchase"})
    assert needs_approval({"kind": ["delete_data"]}) and needs_approval({})  # unreadable kinds wait too
    assert not needs_approval({"kind": "read_data", "sensitive": True})
