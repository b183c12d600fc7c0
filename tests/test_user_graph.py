"""Users' own graphs, named as `path/to/file.py:attr` or `package.module:attr`, run as real processes.

The user graph counts to `n`, one node run per step; each run records its step number in the
state (so a step applied twice would show as a duplicate) and appends it to a log file outside
the state (so a redone node shows too). A run a test must stop mid-way is held there: the node
of step `hold_at` logs, then waits for the file `gate`, so the test acts while it is known to be
in that node.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import LineReader, agent_cmd, agent_env, db_snapshot, finish

USER_GRAPH = textwrap.dedent(
    '''
    """Counts to n, one step per node run."""

    from __future__ import annotations

    import asyncio
    import operator
    import os
    import time
    from typing import Annotated, TypedDict

    from langgraph.graph import END, START, StateGraph


    class LoopState(TypedDict, total=False):
        n: int
        """How many steps to take."""

        delay: float
        """Seconds each step sleeps, so a run can be stopped mid-way."""

        log: str
        """A file each node run appends its step number to."""

        count: int
        """Steps taken so far."""

        steps: Annotated[list[int], operator.add]
        """The step number of every node run applied to the state."""

        hold_at: int
        """The step whose node, once it has logged, waits until the file `gate` exists."""

        gate: str


    def _held(state: LoopState) -> bool:
        return bool(state.get("gate")) and state.get("count", 0) == state.get("hold_at") and not os.path.exists(state["gate"])


    def _record(state: LoopState) -> dict:
        step = state.get("count", 0)
        if state.get("log"):
            with open(state["log"], "a", encoding="utf-8") as log:
                log.write(f"{step}\\n")
        return {"count": step + 1, "steps": [step]}


    async def async_step(state: LoopState) -> dict:
        await asyncio.sleep(state.get("delay", 0))
        update = _record(state)
        while _held(state):
            await asyncio.sleep(0.01)
        return update


    def sync_step(state: LoopState) -> dict:
        time.sleep(state.get("delay", 0))
        update = _record(state)
        while _held(state):
            time.sleep(0.01)
        return update


    def route(state: LoopState) -> str:
        return "step" if state.get("count", 0) < state["n"] else END


    def _loop(node) -> StateGraph:
        graph = StateGraph(LoopState)
        graph.add_node("step", node)
        graph.add_edge(START, "step")
        graph.add_conditional_edges("step", route, ["step", END])
        return graph


    def build() -> StateGraph:
        return _loop(async_step)


    def build_sync() -> StateGraph:
        return _loop(sync_step)


    compiled = build_sync().compile()
    not_a_graph = 42


    def builds_no_graph():
        return {"nodes": []}
    '''
)

BUILDERS = {"async": "build", "sync": "build_sync"}


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "graph.py"
    path.write_text(USER_GRAPH, encoding="utf-8")
    return path


def _json(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a file graph in this process puts its folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def _thread(db_path: Path, thread: str) -> tuple[dict, list[int]]:
    """The thread's registry record and the steps in its latest state, read in this process."""
    from runtime import get_state, get_thread, open_database

    with open_database(db_path) as db:
        return get_thread(db, thread).as_dict(), get_state(db, thread).values["steps"]


def _logged_steps(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _wait_until_held(proc: subprocess.Popen, log: Path, step: int, timeout: float = 120) -> None:
    """Poll the graph's log until the node of `step` has logged (it then waits for its gate).
    `timeout` only bounds a test that would otherwise hang."""
    deadline = time.monotonic() + timeout
    while step not in _logged_steps(log):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before step {step}: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"step {step} not reached after {timeout}s")
        time.sleep(0.05)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_run_a_file_graph_then_read_it_by_thread_id(run_agent, graph_file: Path, kind: str) -> None:
    spec = f"{graph_file}:{BUILDERS[kind]}"
    done = run_agent("run", spec, "--thread", "u", "--input", '{"n": 4}')
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout

    state = _json(run_agent("state", "--thread", "u", "--json"))
    assert state["values"]["steps"] == [0, 1, 2, 3]
    assert state["values"]["count"] == 4
    assert state["next"] == []
    assert state["graph"] == spec

    assert state["status"] == "completed"

    history = _json(run_agent("history", "--thread", "u", "--json"))
    assert [row["step"] for row in history] == [4, 3, 2, 1, 0, -1]
    assert [row["writers"] for row in history[:4]] == [["step"]] * 4


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_sigkill_mid_run_then_resume_applies_each_step_once(
    spawn_agent, run_agent, db_path: Path, graph_file: Path, tmp_path: Path, kind: str
) -> None:
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    data = {"n": 30, "log": str(log), "hold_at": 6, "gate": str(gate)}
    proc = spawn_agent("run", f"{graph_file}:{BUILDERS[kind]}", "--thread", "u", "--input", json.dumps(data))
    _wait_until_held(proc, log, 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    record, before = _thread(db_path, "u")
    assert record["status"] == "stale"  # recorded as running, but its process is gone
    assert before == list(range(6))  # the node of step 6 was in flight

    gate.touch()
    resumed = run_agent("resume", "--thread", "u")
    assert resumed.returncode == 0, resumed.stderr
    assert _thread(db_path, "u")[1] == list(range(30))
    # Outside the state, only the node in flight at the kill may have run twice.
    runs = Counter(int(line) for line in log.read_text().split())
    assert sorted(runs) == list(range(30))
    redone = [step for step, times in runs.items() if times > 1]
    assert redone == [6] and runs[6] == 2


def test_relative_spec_is_remembered_and_resumed_from_another_directory(
    run_agent, db_path: Path, graph_file: Path, tmp_path: Path
) -> None:
    """Started as `graph.py:build` in the graph's folder, stopped, resumed elsewhere with only --thread."""
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    data = {"n": 20, "log": str(log), "hold_at": 4, "gate": str(gate)}
    proc = subprocess.Popen(
        agent_cmd("run", "graph.py:build", "--thread", "u", "--input", json.dumps(data)),
        cwd=tmp_path,
        env=agent_env(db_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stderr = LineReader(proc.stderr)
        _wait_until_held(proc, log, 4)
        proc.send_signal(signal.SIGTERM)
        stderr.wait_for("Stopping: ")  # seen: the node in flight may finish, no other will start
        gate.touch()
        _, err = finish(proc, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "agent resume --thread u" in err

    record, steps = _thread(db_path, "u")
    assert (record["graph"], record["status"]) == (f"{graph_file}:build", "stopped")
    assert steps == list(range(5))

    resumed = run_agent("resume", "--thread", "u")  # cwd is the project root, not tmp_path
    assert resumed.returncode == 0, resumed.stderr
    record, steps = _thread(db_path, "u")
    assert (record["status"], steps) == ("completed", list(range(20)))


def test_package_module_spec_with_the_package_on_pythonpath(run_agent, tmp_path: Path) -> None:
    package = tmp_path / "site" / "loops"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counting.py").write_text(USER_GRAPH, encoding="utf-8")
    path = str(tmp_path / "site")

    done = run_agent("run", "loops.counting:build", "--thread", "p", "--input", '{"n": 3}', PYTHONPATH=path)
    assert done.returncode == 0, done.stderr
    state = _json(run_agent("state", "--thread", "p", "--json", PYTHONPATH=path))
    assert state["graph"] == "loops.counting:build"
    assert state["values"]["steps"] == [0, 1, 2]


def test_a_compiled_graph_attribute_runs(run_agent, db_path: Path, graph_file: Path) -> None:
    done = run_agent("run", f"{graph_file}:compiled", "--thread", "c", "--input", '{"n": 3}')
    assert done.returncode == 0, done.stderr
    record, steps = _thread(db_path, "c")
    assert (record["graph"], record["status"], steps) == (f"{graph_file}:compiled", "completed", [0, 1, 2])


BAD_SPECS = {
    "missing file": ("{tmp}/nowhere.py:build", "does not exist"),
    "missing attribute": ("{tmp}/graph.py:no_such_builder", "no attribute 'no_such_builder'"),
    "non-graph attribute": ("{tmp}/graph.py:not_a_graph", "not a StateGraph"),
    "builder returns no graph": ("{tmp}/graph.py:builds_no_graph", "not a StateGraph"),
    "file raises on import": ("{tmp}/broken.py:build", "ZeroDivisionError"),
    "module raises on import": ("broken:build", "ZeroDivisionError"),
    "missing module": ("no_such_module_here:build", "no_such_module_here"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_a_bad_graph_spec_exits_2_and_changes_nothing(run_agent, db_path: Path, graph_file: Path, tmp_path: Path, case: str) -> None:
    (tmp_path / "broken.py").write_text("from langgraph.graph import StateGraph\n\n1 / 0\n")
    template, expected = BAD_SPECS[case]
    spec = template.format(tmp=tmp_path)
    env = {"PYTHONPATH": str(tmp_path)}

    def refused() -> None:
        proc = run_agent("run", spec, "--thread", "bad", "--input", '{"n": 1}', **env)
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr

    refused()
    assert not list(tmp_path.glob(f"{db_path.name}*")), "a refused run created the database"

    from runtime import open_database, run_thread

    with open_database(db_path, create=True) as db:
        assert run_thread(db, f"{graph_file}:build", "good", {"n": 2}).status == "completed"
    before = db_snapshot(db_path)
    refused()
    assert db_snapshot(db_path) == before
