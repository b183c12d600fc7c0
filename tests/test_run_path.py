"""One way down for a run: a run is prepared once (runtime/runs/plan.py), then run.

These tests count what the real functions are asked to do on the way, through wrappers that
call them: how often the graph is loaded, a model built, an HTTP client opened for an endpoint
model, the thread's row read and its lease taken.
"""

from __future__ import annotations

import json
import sys
from types import ModuleType
from typing import Any

import pytest

import runtime.runs.runner  # noqa: F401  (loaded before any count starts: no module of the run path binds a counting wrapper at its import)
from tests.conftest import ENDPOINT_MODEL

OURS = ("cli", "commands", "runtime", "graphs", "nodes", "state")
QUEUE = json.dumps({"items": ["a", "b"], "prompt": "Summarize: {item}"})


def count_calls(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> list[tuple[Any, ...]]:
    """The arguments of every call of `module.name` from now on, wherever our code imported it
    by name; each call goes on to the real function."""
    real = getattr(module, name)
    calls: list[tuple[Any, ...]] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    for loaded in list(sys.modules.values()):
        if loaded is not None and loaded.__name__.split(".")[0] in OURS and vars(loaded).get(name) is real:
            monkeypatch.setattr(loaded, name, counted)
    return calls


class ThreadRows:
    """Reads of threads' rows in the registry, apart from those a lease makes inside its own
    transaction (`acquire`, `create_thread`), and the leases taken."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from runtime.threads import registry

        self.reads: list[str] = []
        self.leases: list[str] = []
        self._leasing = 0
        real_get = registry.get_thread

        def get_thread(db: Any, thread_id: str) -> Any:
            if not self._leasing:
                self.reads.append(thread_id)
            return real_get(db, thread_id)

        monkeypatch.setattr(registry, "get_thread", get_thread)
        for name in ("acquire", "create_thread"):
            monkeypatch.setattr(registry, name, self._lease(getattr(registry, name)))

    def _lease(self, real: Any) -> Any:
        def lease(db: Any, thread_id: str, *args: Any, **kwargs: Any) -> Any:
            self.leases.append(thread_id)
            self._leasing += 1
            try:
                return real(db, thread_id, *args, **kwargs)
            finally:
                self._leasing -= 1

        return lease


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    import graphs

    return count_calls(monkeypatch, graphs, "load_graph")


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from runtime.policy import models

    return count_calls(monkeypatch, models, "make_model")


def test_agent_run_loads_the_graph_once_and_builds_each_model_once(cli, loads, models):
    result = cli("run", "task_queue", "--thread", "t", "--input", QUEUE, "--cheap-model", "offline:latency=0", "--quiet")

    assert result.exit_code == 0, result.output
    assert loads == [("task_queue",)]
    assert models == [("offline",), ("offline:latency=0",)]


def test_agent_run_opens_one_http_client_per_endpoint_model(cli, endpoint, monkeypatch):
    import langchain_openai  # noqa: F401  (imported first: it subclasses the client class counted here)
    import openai

    clients: list[Any] = []

    class CountedClient(openai.DefaultAsyncHttpxClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            clients.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(openai, "DefaultAsyncHttpxClient", CountedClient)
    result = cli("run", "task_queue", "--thread", "t", "--input", QUEUE, "--model", ENDPOINT_MODEL, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(clients) == 1 and len(endpoint.server.log()) == 2

    result = cli("run", "task_queue", "--thread", "u", "--input", QUEUE, "--model", ENDPOINT_MODEL, "--cheap-model", "openai:small", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(clients) == 1 + 2


def test_a_bad_run_is_refused_once_before_the_database_is_made(cli, db_path, loads, models):
    result = cli("run", "task_queue", "--thread", "t", "--input", '{"nope": 1}')

    assert result.exit_code == 2 and "unknown input key(s) nope" in result.output
    assert loads == [("task_queue",)] and models == [] and not db_path.exists()


def test_agent_resume_reads_the_thread_once_and_leases_it_once(cli, monkeypatch):
    assert cli("run", "research", "--thread", "r", "--input", '{"question": "Why is the sky blue?", "steps": 2}').exit_code == 0
    loads = count_calls(monkeypatch, sys.modules["graphs"], "load_graph")
    models = count_calls(monkeypatch, sys.modules["runtime.policy.models"], "make_model")
    rows = ThreadRows(monkeypatch)

    result = cli("resume", "--thread", "r", "--checkpoint", "1", "--set", 'plan=["The one step"]', "--quiet")

    assert result.exit_code == 0, result.output
    assert rows.reads == ["r"] and rows.leases == ["r"]
    assert loads == [("research",)] and models == [("offline",)]


def test_resume_after_waiting_reads_the_row_again(cli, db_path, monkeypatch):
    from runtime import open_database, resume_thread

    assert cli("run", "research", "--thread", "r", "--input", '{"question": "Why?", "steps": 1}').exit_code == 0
    rows = ThreadRows(monkeypatch)
    db = open_database(str(db_path))
    try:
        outcome = resume_thread(db, "r", "1", wait=5.0)  # nobody holds it: the wait reads the row once and ends
    finally:
        db.close()

    assert outcome.status == "completed"
    assert rows.reads == ["r", "r", "r"] and rows.leases == ["r"]  # prepared, the wait's look, read again after it


def test_retry_failed_reads_the_thread_once_and_leases_it_once(cli, monkeypatch):
    items = json.dumps({"items": ["good", "bad one"], "prompt": "Summarize: {item}"})
    assert cli("run", "task_queue", "--thread", "q", "--input", items, "--model", "offline:reject_on=bad").exit_code == 0
    loads = count_calls(monkeypatch, sys.modules["graphs"], "load_graph")
    models = count_calls(monkeypatch, sys.modules["runtime.policy.models"], "make_model")
    rows = ThreadRows(monkeypatch)

    result = cli("retry-failed", "--thread", "q", "--model", "offline", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == {"total": 2, "done": 2, "failed": 0}
    assert rows.reads == ["q"] and rows.leases == ["q"]
    assert loads == [("task_queue",)] and models == [("offline",)]


def test_a_notebook_prepares_a_plan_once_and_runs_it(db_path, loads, models):
    from runtime import open_database, prepare_run, run_plan, run_thread

    plan = prepare_run("task_queue", "nb", {"items": ["a"], "prompt": "Summarize: {item}"})
    assert not db_path.exists()  # prepared and checked: nothing written
    db = open_database(str(db_path), create=True)
    try:
        assert run_plan(db, plan).status == "completed"
        assert run_thread(db, "task_queue", "nb2", {"items": ["b"], "prompt": "Summarize: {item}"}).status == "completed"
    finally:
        db.close()

    assert loads == [("task_queue",), ("task_queue",)]  # once per run
    assert models == [("offline",), ("offline",)]


def test_resume_refuses_a_keyword_it_does_not_take_before_reading_anything(db_path, loads):
    from runtime import open_database, prepare_resume, resume_thread, run_thread

    db = open_database(str(db_path), create=True)
    try:
        run_thread(db, "risky", "r", {"fail_times": 0})
        loads.clear()
        steps = db.conn.execute("SELECT count(*) FROM checkpoints").fetchone()
        for call in (resume_thread, prepare_resume):
            with pytest.raises(TypeError, match="unexpected keyword argument.*checkpint"):
                call(db, "r", checkpint="1")  # a misspelt keyword is not taken for something else
        assert db.conn.execute("SELECT count(*) FROM checkpoints").fetchone() == steps
    finally:
        db.close()
    assert loads == []
