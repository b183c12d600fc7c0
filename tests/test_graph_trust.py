"""A graph spec stored in the database is imported only when the one running the command trusts
it (runtime/policy/trust.py): commands that read a thread never import an untrusted spec, commands that
run it refuse (exit 2, nothing written), and unattended processes import built-in and listed
graphs only. Each graph here leaves a mark in a file every time it is imported."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import db_snapshot

MARKED_GRAPH = textwrap.dedent(
    '''
    """One step, which fails while FAIL_STEP is set; importing the module appends to IMPORT_MARK."""

    import os
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    if os.environ.get("IMPORT_MARK"):
        with open(os.environ["IMPORT_MARK"], "a", encoding="utf-8") as mark:
            mark.write("imported\\n")


    class State(TypedDict, total=False):
        n: int


    def step(state: State) -> dict:
        if os.environ.get("FAIL_STEP"):
            raise RuntimeError("asked to fail")
        return {"n": state.get("n", 0) + 1}


    def build() -> StateGraph:
        graph = StateGraph(State)
        graph.add_node("step", step)
        graph.add_edge(START, "step")
        graph.add_edge("step", END)
        return graph
    '''
)


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def _imports(mark: Path) -> int:
    return len(mark.read_text().splitlines()) if mark.exists() else 0


def _failed_thread(run_agent, spec: str, mark: Path, **env: str) -> None:
    """Thread `u` of `spec`, failed at its one step (so resumable); the mark file reset."""
    failed = run_agent("run", spec, "--thread", "u", "--input", '{"n": 1}', FAIL_STEP="1", IMPORT_MARK=str(mark), **env)
    assert failed.returncode == 1, failed.stderr
    mark.unlink()


READS = [["state", "--thread", "u", "--json"], ["diff", "--thread", "u"], ["approvals", "--thread", "u"], ["history", "--thread", "u"]]
"""The commands that read a thread through its graph when they may import it."""


def test_a_file_others_can_change_is_read_without_importing_and_not_run(run_agent, db_path: Path, tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may replace what is in it
    (shared / "graph.py").write_text(MARKED_GRAPH)
    mark = tmp_path / "imports.log"
    _failed_thread(run_agent, f"{shared}/graph.py:build", mark)

    for args in READS:
        read = run_agent(*args, IMPORT_MARK=str(mark))
        assert read.returncode == 0, (args, read.stderr)
    assert _imports(mark) == 0
    state = json.loads(run_agent("state", "--thread", "u", "--json").stdout)
    assert state["values"] == {"n": 1} and state["next"] == ["step"] and "asked to fail" in state["tasks"][0]["error"]

    before = db_snapshot(db_path)
    for args in (["resume", "--thread", "u"], ["fork", "--thread", "u", "--checkpoint", "-1", "--new-thread", "v"]):
        refused = run_agent(*args, IMPORT_MARK=str(mark))
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stderr.startswith(f"Error: thread 'u' runs the graph {shared}/graph.py:build, which is not trusted here")
        assert f"AGENT_TRUSTED_GRAPHS={shared}/graph.py" in refused.stderr and "Traceback" not in refused.stderr
    assert _imports(mark) == 0 and db_snapshot(db_path) == before

    trusted = run_agent("resume", "--thread", "u", "--quiet", IMPORT_MARK=str(mark), AGENT_TRUSTED_GRAPHS=str(shared))
    assert trusted.returncode == 0, trusted.stderr
    assert _imports(mark) == 1


def test_a_module_spec_runs_again_only_when_listed(run_agent, tmp_path: Path):
    package = tmp_path / "site" / "marked"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "graph.py").write_text(MARKED_GRAPH)
    site, mark = str(tmp_path / "site"), tmp_path / "imports.log"
    _failed_thread(run_agent, "marked.graph:build", mark, PYTHONPATH=site)

    state = run_agent("state", "--thread", "u", "--json", IMPORT_MARK=str(mark), PYTHONPATH=site)
    assert state.returncode == 0 and json.loads(state.stdout)["values"] == {"n": 1}
    refused = run_agent("resume", "--thread", "u", IMPORT_MARK=str(mark), PYTHONPATH=site)
    assert refused.returncode == 2 and "AGENT_TRUSTED_GRAPHS=marked.graph" in refused.stderr, refused.stderr
    assert _imports(mark) == 0
    listed = run_agent("resume", "--thread", "u", "--quiet", IMPORT_MARK=str(mark), PYTHONPATH=site, AGENT_TRUSTED_GRAPHS="marked")
    assert listed.returncode == 0, listed.stderr
    assert _imports(mark) == 1


def test_a_database_from_someone_else_cannot_make_a_read_call_code(run_agent, db_path: Path):
    """A thread whose stored spec is `os:abort`: reading it called os.abort() (the spec's
    attribute is called as a graph builder), killing the reader."""
    assert run_agent("run", "risky", "--thread", "u", "--input", '{"fail_times": -1, "failure": "fatal"}').returncode == 0
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE agent_threads SET graph = 'os:abort' WHERE thread_id = 'u'")
    conn.commit()
    conn.close()
    for args in READS:
        read = run_agent(*args)
        assert read.returncode == 0, (args, read.returncode, read.stderr)
    refused = run_agent("resume", "--thread", "u", "--checkpoint", "0")
    assert refused.returncode == 2 and "runs the graph os:abort, which is not trusted here" in refused.stderr, refused.stderr


def test_unattended_only_listed_graphs_run(db_path: Path, tmp_path: Path, monkeypatch):
    """The worker imports built-in graphs and those in AGENT_TRUSTED_GRAPHS only, even a file of
    the user it runs as: the schedules and threads it runs were written by whoever could write
    the database."""
    from runtime import open_database
    from runtime.schedules.clock import ManualClock
    from runtime.schedules.calendar import check_schedule, add_schedule, get_schedule
    from runtime.schedules.worker import Worker

    graph = tmp_path / "graph.py"
    graph.write_text(MARKED_GRAPH)
    mark = tmp_path / "imports.log"
    monkeypatch.setenv("IMPORT_MARK", str(mark))
    with open_database(db_path, create=True) as db:
        add_schedule(db, check_schedule("nightly", "risky", "0 9 * * *", "UTC", {}), now=0)
        db.conn.execute("UPDATE agent_schedules SET graph = ? WHERE name = 'nightly'", (f"{graph}:build",))
        worker = Worker(db, ManualClock(get_schedule(db, "nightly").next_fire))
        [fired] = [e for e in worker.tick() if e.kind == "finished"]
        assert fired.status == "failed" and "not trusted here" in fired.message, fired
        assert _imports(mark) == 0

        monkeypatch.setenv("AGENT_TRUSTED_GRAPHS", str(tmp_path))
        worker.clock.set(get_schedule(db, "nightly").next_fire)
        [fired] = [e for e in worker.tick() if e.kind == "finished"]
        assert fired.status == "completed", fired
        assert _imports(mark) == 1


def test_schedule_add_refuses_a_graph_the_worker_would_not_import(cli, db_path: Path, tmp_path: Path, monkeypatch):
    graph = tmp_path / "graph.py"
    graph.write_text(MARKED_GRAPH)
    refused = cli("schedule", "add", "s", "--graph", f"{graph}:build", "--cron", "0 9 * * *")
    assert refused.exit_code == 2 and "schedule 's' runs the graph" in refused.stderr and "AGENT_TRUSTED_GRAPHS" in refused.stderr, refused.output
    assert not db_path.exists()
    monkeypatch.setenv("AGENT_TRUSTED_GRAPHS", str(graph))
    added = cli("schedule", "add", "s", "--graph", f"{graph}:build", "--cron", "0 9 * * *", "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["graph"] == f"{graph}:build"


def test_doctor_looks_for_a_schedules_graph_without_importing_it(cli, db_path: Path, tmp_path: Path, monkeypatch):
    graph = tmp_path / "graph.py"
    graph.write_text(MARKED_GRAPH)
    mark = tmp_path / "imports.log"
    monkeypatch.setenv("IMPORT_MARK", str(mark))
    assert cli("schedule", "add", "s", "--graph", "risky", "--cron", "0 9 * * *").exit_code == 0
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE agent_schedules SET graph = ? WHERE name = 's'", (f"{graph}:build",))
    conn.commit()
    conn.close()
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "1 schedule(s) name a graph the worker will not import" in doctor.stdout, doctor.output
    assert _imports(mark) == 0
