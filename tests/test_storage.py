"""The checkpoint store: our saver against LangGraph's conformance suite, history read from
columns against LangGraph's own, retention (prune, delete, vacuum) and `agent doctor`, the
conversion of a database in the old layout, and what the read commands import."""

from __future__ import annotations

import asyncio
import json
import operator
import os
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Annotated, TypedDict

import pytest

from tests.conftest import ROOT, agent_env, db_snapshot

LOOP = str(ROOT / "bench" / "loop_graph.py") + ":build"
DELTA = str(ROOT / "tests" / "delta_graph.py") + ":build"


@pytest.fixture
def db(db_path):
    from runtime import open_database

    with open_database(db_path, create=True) as database:
        yield database


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading a graph file puts its directory on sys.path; keep that to this test.
    monkeypatch.setattr(sys, "path", list(sys.path))


def _failed_loop(db, thread: str, fail_at: int, limit: int, monkeypatch, spec: str = LOOP, env: str = "BENCH_FAIL_AT"):
    """A thread that stopped (failed) when its count reached `fail_at`: resumable."""
    from runtime import run_thread

    monkeypatch.setenv(env, str(fail_at))
    outcome = run_thread(db, spec, thread, {"limit": limit})
    monkeypatch.delenv(env)
    assert outcome.status == "failed", outcome
    return outcome


def _langgraph_history(db, thread: str) -> list[dict]:
    """History as LangGraph computes it (the slow way), to compare against ours."""
    from graphs import load_graph
    from runtime.threads.registry import get_thread

    graph = load_graph(get_thread(db, thread).graph).build().compile(checkpointer=db.checkpointer())
    snaps = list(graph.get_state_history({"configurable": {"thread_id": thread}}))
    next_of = {s.config["configurable"]["checkpoint_id"]: list(s.next) for s in snaps}
    rows = []
    for s in snaps:
        parent = s.parent_config["configurable"]["checkpoint_id"] if s.parent_config else None
        rows.append(
            {
                "checkpoint_id": s.config["configurable"]["checkpoint_id"],
                "parent_id": parent,
                "step": s.metadata["step"],
                "source": s.metadata["source"],
                "writers": next_of.get(parent, []) if parent and s.metadata["source"] == "loop" else [],
                "next": list(s.next),
                "created_at": s.created_at,
            }
        )
    return rows


def _ours(db, thread: str) -> list[dict]:
    """Our history rows, with the keys LangGraph's history has (the branch tree's are beside them)."""
    from runtime import get_history

    tree = ("branch", "lane", "parent_checkpoint_id")
    return [{k: v for k, v in r.as_dict().items() if k not in tree} for r in get_history(db, thread)]


# -- the saver ------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_async", [True, False], ids=["on-the-loop", "on-a-thread"])
def test_saver_passes_the_conformance_suite_base_and_extended(tmp_path, fast_async):
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    from runtime import open_database
    from runtime.store.saver import open_saver

    path = tmp_path / "conformance.db"
    open_database(path, create=True).close()

    @checkpointer_test(name=f"AgentSaver-{fast_async}")
    async def agent_saver():
        saver = open_saver(str(path), fast_async=fast_async)
        yield saver
        saver.conn.close()

    report = asyncio.run(validate(agent_saver))
    claimed = {name for name, result in report.results.items() if result.detected}
    assert claimed == {"put", "put_writes", "get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread", "prune"}
    failures = {name: r.failures for name, r in report.results.items() if r.detected and not r.passed}
    assert report.passed_all(), failures


def test_each_step_is_one_row_that_stores_only_the_values_it_changed(db, monkeypatch):
    import ormsgpack

    _failed_loop(db, "t", fail_at=40, limit=50, monkeypatch=monkeypatch)
    rows = db.conn.execute("SELECT checkpoint_id, vals, refs FROM checkpoints WHERE thread_id = 't' ORDER BY checkpoint_id").fetchall()
    assert len(rows) == 41
    # Values, refs and the parent's writes live in the step's row: nothing in the other tables.
    assert db.conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 't'").fetchone()[0] == 0
    ids = {cid for cid, _, _ in rows}
    stored: dict[str, int] = {}
    for cid, vals, refs in rows:
        for channel, *_ in ormsgpack.unpackb(vals) if vals else []:
            stored[channel] = stored.get(channel, 0) + 1
        # every other channel names the row that holds its value (or that it has none)
        for location in ormsgpack.unpackb(refs) if refs else {}:
            assert location in ids or location == "-", location
    # `limit` is written once (with the input); `n` once for each of the 39 steps that finished.
    assert stored["limit"] == 1 and stored["n"] == 39


def test_a_database_of_schema_4_is_converted_and_its_threads_resume(tmp_path, monkeypatch):
    """A file written before one-row steps: its rows are copied, their values stay in
    checkpoint_blobs, and a thread continues from them (new rows refer to the old values)."""
    from runtime import open_database, resume_thread

    old = tmp_path / "v4.db"
    _write_schema_4(old)
    with open_database(old) as database:
        assert database.conn.execute("PRAGMA user_version").fetchone()[0] >= 5
        before = _ours(database, "t")
        assert [r["step"] for r in before][:2] == [6, 5]
        outcome = resume_thread(database, "t")  # BENCH_FAIL_AT is unset now: runs to the limit
        assert outcome.status == "completed", outcome
        assert outcome.values["n"] == 10 and outcome.values["limit"] == 10
        # the thread keeps its string versions (a counter beside them could not be compared)
        latest = database.checkpointer().get_tuple({"configurable": {"thread_id": "t"}})
        assert all(isinstance(v, str) and len(v) > 32 for v in latest.checkpoint["channel_versions"].values())
        after = _ours(database, "t")
        assert after[len(after) - len(before):] == before


def _write_schema_4(path) -> None:
    """A schema-4 file: the loop thread 't' failed at n=7 (built with this version writing the
    string versions schema 4 wrote, then laid out as schema 4 had it: WITHOUT ROWID checkpoints
    without vals/refs/pwrites, values in blobs)."""
    import random

    import ormsgpack

    from runtime import open_database
    from runtime.store.saver import AgentSaver
    from runtime.store.schema import _V4_COLUMNS

    def string_version(self, current, channel=None):
        n = 0 if current is None else int(str(current).split(".")[0])
        return f"{n + 1:032}.{random.random():016}"

    work = path.with_name("build.db")
    with open_database(work, create=True) as database, pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_FAIL_AT", "7")
        patch.setattr(AgentSaver, "get_next_version", string_version)
        from runtime import run_thread

        assert run_thread(database, LOOP, "t", {"limit": 10}).status == "failed"
        database.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE checkpoints RENAME TO new_layout")
    conn.execute(
        "CREATE TABLE checkpoints (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, "
        "parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB, step INTEGER, source TEXT, created_at TEXT, "
        "run_id TEXT, writers TEXT, next TEXT, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)) WITHOUT ROWID"
    )
    conn.execute(f"INSERT INTO checkpoints SELECT {_V4_COLUMNS} FROM new_layout")
    for thread_id, ns, cid, parent, vals, pwrites in conn.execute(
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, vals, pwrites FROM new_layout"
    ).fetchall():
        for channel, version, type_, blob in ormsgpack.unpackb(vals) if vals else []:
            conn.execute("INSERT INTO checkpoint_blobs VALUES (?, ?, ?, ?, ?, ?)", (thread_id, ns, channel, version, type_, blob))
        for task_id, task_path, idx, channel, type_, value in ormsgpack.unpackb(pwrites) if pwrites else []:
            conn.execute(
                "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (thread_id, ns, parent, task_id, task_path, idx, channel, type_, value),
            )
    conn.execute("DROP TABLE new_layout")
    conn.execute("PRAGMA user_version=4")
    conn.execute("COMMIT")
    conn.close()
    os.replace(work, path)


_SIBLINGS_GRAPH = """
import operator, os, time
from typing import Annotated, TypedDict
from langgraph.graph import START, StateGraph

class S(TypedDict, total=False):
    done: Annotated[list, operator.add]

def fast(state):
    with open({log!r}, "a") as out:
        out.write("fast\\n")
    return {{"done": ["fast"]}}

def slow(state):
    time.sleep(float(os.environ.get("SLOW", "0")))
    return {{"done": ["slow"]}}

def build():
    graph = StateGraph(S)
    graph.add_node("fast", fast)
    graph.add_node("slow", slow)
    graph.add_edge(START, "fast")
    graph.add_edge(START, "slow")
    return graph
"""

_SIBLINGS_SYNC = """
import json, sys
sys.path[:0] = [{root!r}, {here!r}]
from runtime.store.saver import open_saver
from siblings_graph import build

app = build().compile(checkpointer=open_saver({db!r}))
config = {{"configurable": {{"thread_id": "s"}}}}
print(json.dumps(app.invoke({{"done": []}} if sys.argv[1] == "run" else None, config, durability="sync")))
"""


def _siblings(tmp_path):
    """A graph whose step runs `fast` (logs each run) beside `slow` (sleeps $SLOW seconds)."""
    log = tmp_path / "fast.log"
    (tmp_path / "siblings_graph.py").write_text(_SIBLINGS_GRAPH.format(log=str(log)))
    return tmp_path / "siblings_graph.py", log


def _kill_once_fast_is_stored(db, proc) -> None:
    """kill -9 `proc` as soon as the finished task's writes are stored on their own."""
    deadline = time.monotonic() + 60
    try:
        while not db.conn.execute("SELECT count(*) FROM writes WHERE thread_id = 's' AND channel = 'done'").fetchone()[0]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the finished task's writes were not stored"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_sync_api_stores_a_finished_sibling_while_its_step_runs_on_and_kill_9_keeps_it(tmp_path, db):
    """On the sync API a task's writes wait for the step's checkpoint to be stored with it; a
    task that finishes while its sibling still runs has them stored on their own, within
    milliseconds, so a kill -9 then does not make it run again."""
    graph, log = _siblings(tmp_path)
    script = tmp_path / "siblings_sync.py"
    script.write_text(_SIBLINGS_SYNC.format(root=str(ROOT), here=str(tmp_path), db=str(db.path)))
    env = {**os.environ, "SLOW": "60"}
    proc = subprocess.Popen([sys.executable, str(script), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_once_fast_is_stored(db, proc)
    assert log.read_text() == "fast\n"
    resumed = subprocess.run([sys.executable, str(script), "resume"], env={**env, "SLOW": "0"}, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(json.loads(resumed.stdout)["done"]) == ["fast", "slow"]
    assert log.read_text() == "fast\n"  # not run again


def test_agent_run_stores_a_finished_sibling_while_its_step_runs_on_and_kill_9_keeps_it(tmp_path, db, spawn_agent, run_agent):
    """The same on the runner's (async) path: `agent run`, kill -9 while the sibling sleeps, resume."""
    graph, log = _siblings(tmp_path)
    _kill_once_fast_is_stored(db, spawn_agent("run", f"{graph}:build", "--thread", "s", "--input", "{}", SLOW="60"))
    assert log.read_text() == "fast\n"
    resumed = run_agent("resume", "--thread", "s", SLOW="0")
    assert resumed.returncode == 0, resumed.stderr
    state = json.loads(run_agent("state", "--thread", "s", "--json").stdout)
    assert sorted(state["values"]["done"]) == ["fast", "slow"]
    assert log.read_text() == "fast\n"  # not run again


def test_sync_api_queued_writes_are_read_back_and_stored_at_once_by_flush(tmp_path):
    from langgraph.checkpoint.base import empty_checkpoint

    from runtime import open_database
    from runtime.store.saver import JOIN_SECONDS, open_saver

    path = tmp_path / "q.db"
    open_database(path, create=True).close()
    saver = open_saver(str(path))
    config = saver.put({"configurable": {"thread_id": "q", "checkpoint_ns": ""}}, empty_checkpoint(), {"step": -1}, {})
    saver.put_writes(config, [("x", 1)], "task-1")
    # queued (a put of the step's checkpoint would take it), and read back through the saver
    assert saver.get_tuple(config).pending_writes == [("task-1", "x", 1)]
    saver.put_writes(config, [("x", 2)], "task-2")
    assert saver.flush() == 1 and saver.flush() == 0
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM writes WHERE thread_id = 'q'").fetchone()[0] == 2
    # with nobody reading or putting, the flusher stores them within JOIN_SECONDS
    saver.put_writes(config, [("x", 3)], "task-3")
    deadline = time.monotonic() + 5
    while other.execute("SELECT count(*) FROM writes WHERE thread_id = 'q'").fetchone()[0] < 3:
        assert time.monotonic() < deadline
        time.sleep(JOIN_SECONDS)
    saver.conn.close()


def test_writes_still_queued_when_a_run_ends_are_stored_before_its_connection_closes(db):
    """A run that stops (an error beside a finished task, a pause, a signal) closes its saver's
    connection at once; what was queued for the step's row is stored first."""
    from langgraph.checkpoint.base import empty_checkpoint

    async def run() -> None:
        async with db.open_async() as (saver, _store):
            config = await saver.aput({"configurable": {"thread_id": "q", "checkpoint_ns": ""}}, empty_checkpoint(), {"step": -1}, {})
            await saver.aput_writes(config, [("x", 1)], "finished-task")
            assert saver._sync_pending  # queued, not yet stored

    asyncio.run(run())
    assert db.conn.execute("SELECT task_id, channel FROM writes WHERE thread_id = 'q'").fetchall() == [("finished-task", "x")]


class _Log(TypedDict, total=False):
    log: Annotated[list, operator.add]


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
def test_a_subgraph_interrupted_by_an_error_resumes_as_with_langgraphs_in_memory_saver(tmp_path, aio):
    """Writes queued from a subgraph's namespace beside the parent graph's: stored and read back
    per namespace, so a resume reruns exactly what LangGraph's own InMemorySaver reruns."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    from runtime import open_database
    from runtime.store.saver import open_saver

    def node(name: str, ran: list[str], failing: dict[str, bool]):
        def run(state: _Log) -> _Log:
            ran.append(name)
            if failing.get(name):
                raise RuntimeError(f"{name} failed")
            return {"log": [name]}

        return run

    def scenario(saver) -> tuple[list[str], list[str], dict]:
        ran: list[str] = []
        failing = {"s2": True}
        sub = StateGraph(_Log)
        for name in ("s1", "s2"):
            sub.add_node(name, node(name, ran, failing))
        sub.add_edge(START, "s1")
        sub.add_edge("s1", "s2")
        graph = StateGraph(_Log)
        for name in ("a", "b"):
            graph.add_node(name, node(name, ran, failing))
        graph.add_node("sub", sub.compile())
        graph.add_edge(START, "a")
        graph.add_edge(START, "b")
        graph.add_edge("a", "sub")
        graph.add_edge("sub", END)
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}}

        def invoke(data):
            if aio:
                return asyncio.run(app.ainvoke(data, config, durability="sync"))
            return app.invoke(data, config, durability="sync")

        with pytest.raises(RuntimeError):
            invoke({"log": []})
        first = list(ran)
        ran.clear()
        failing["s2"] = False
        return first, ran, invoke(None)

    path = tmp_path / "sub.db"
    open_database(path, create=True).close()
    ours = scenario(open_saver(str(path), fast_async=aio))
    assert ours == scenario(InMemorySaver())
    assert ours[1] == ["s2"]  # s1, finished inside the subgraph, is not run again


def test_values_of_removed_rows_stay_apart_per_branch_although_versions_repeat(tmp_path):
    """Versions are counters, so two branches of a thread can both store channel x at version 2
    with different values. Removing the rows that hold them (delete_for_runs, prune) moves each
    value out for the checkpoints that still need it, without one branch's taking the other's place."""
    from langgraph.checkpoint.base import empty_checkpoint

    from runtime import open_database
    from runtime.store.saver import open_saver

    path = tmp_path / "b.db"
    open_database(path, create=True).close()
    saver = open_saver(str(path))

    def put(parent, cid, values, versions, new, run):
        checkpoint = {**empty_checkpoint(), "id": cid, "channel_values": values, "channel_versions": versions}
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": parent}}
        return saver.put(config, checkpoint, {"source": "loop", "step": len(cid), "run_id": run}, new)

    put(None, "1", {"x": "root"}, {"x": 1}, {"x": 1}, "keep")
    for branch in ("A", "B"):
        put("1", f"2{branch}", {"x": branch}, {"x": 2}, {"x": 2}, "gone")
        put(f"2{branch}", f"3{branch}", {"x": branch, "y": 1}, {"x": 2, "y": 3}, {"y": 3}, "keep")
    saver.delete_for_runs(["gone"])
    saver._last.clear()
    for branch in ("A", "B"):
        loaded = saver.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": f"3{branch}"}})
        assert loaded.checkpoint["channel_values"] == {"x": branch, "y": 1}
    assert saver.get_next_version(None) == 1 and saver.get_next_version(7) == 8
    saver.conn.close()


# -- history from columns ------------------------------------------------------------------------


@pytest.mark.parametrize("graph, data", [
    ("risky", {"fail_times": 2, "backoff": 0, "max_attempts": 5}),
    ("research", {"question": "Why is the sky blue?", "steps": 2}),
    ("task_queue", {"items": ["a", "b", "c", "d", "e"], "prompt": "Summarize: {item}"}),
])  # fmt: skip
def test_history_columns_match_langgraph_including_a_fork(db, graph, data):
    from runtime import get_history, resume_thread, run_thread
    from runtime.runs.runner import RunSettings

    run_thread(db, graph, "h", data, RunSettings(backoff=0, concurrency=2))
    rows = get_history(db, "h")
    resume_thread(db, "h", rows[len(rows) // 2].checkpoint_id)  # a fork: two branches
    assert _ours(db, "h") == _langgraph_history(db, "h")


def test_history_computes_what_was_not_recorded(db, monkeypatch):
    """Rows written without a bound graph (next and writers NULL) are computed from the graph."""
    _failed_loop(db, "t", fail_at=8, limit=10, monkeypatch=monkeypatch)
    expected = _langgraph_history(db, "t")
    db.conn.execute("UPDATE checkpoints SET next = NULL, writers = NULL WHERE thread_id = 't'")
    assert _ours(db, "t") == expected
    assert [r["next"] for r in _ours(db, "t")][:2] == [["step"], ["step"]]


# -- prune -----------------------------------------------------------------------------------


def test_prune_keeps_the_newest_n_and_the_thread_still_resumes_and_forks(db, monkeypatch):
    from runtime import get_history, get_state, resume_thread
    from runtime.threads.retention import prune

    _failed_loop(db, "t", fail_at=30, limit=40, monkeypatch=monkeypatch)
    before = get_history(db, "t")
    report = prune(db, thread="t", keep=5)
    after = get_history(db, "t")
    assert [r.checkpoint_id for r in after] == [r.checkpoint_id for r in before[:5]]
    assert report.threads[0]["checkpoints_removed"] == len(before) - 5 and report.threads[0]["writes_removed"] > 0
    assert after[-1].writers == ["step"]  # recorded with the checkpoint, so it survives its parent
    # `limit` was stored with the thread's first checkpoint, which is gone: the kept ones still
    # need it, so it moved to checkpoint_blobs
    assert db.conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 't' AND channel = 'limit'").fetchone()[0] == 1
    oldest = after[-1].checkpoint_id
    assert resume_thread(db, "t").status == "completed"
    assert get_state(db, "t").values["n"] == 40
    assert resume_thread(db, "t", oldest).status == "completed"  # a fork from the oldest kept
    assert get_state(db, "t").values["n"] == 40
    # nothing is left that no checkpoint refers to
    from runtime.doctor import check_database

    assert all(f.ok for f in check_database(db.path))


def test_a_step_pruned_away_is_named_as_missing(cli, db, monkeypatch):
    """A step number is looked for along the latest branch, which pruning cut short."""
    from runtime.threads.retention import prune

    _failed_loop(db, "t", fail_at=10, limit=20, monkeypatch=monkeypatch)
    prune(db, thread="t", keep=2)
    result = cli("resume", "--thread", "t", "--checkpoint", "1")
    assert result.exit_code == 2 and "thread 't' has no step 1 on its latest branch" in result.stderr, result.output


def test_prune_keeps_what_a_delta_channel_is_rebuilt_from(db, monkeypatch):
    from runtime import get_history, get_state, resume_thread
    from runtime.threads.retention import prune

    _failed_loop(db, "d", fail_at=20, limit=25, monkeypatch=monkeypatch, spec=DELTA, env="DELTA_FAIL_AT")
    assert get_state(db, "d").values["log"] == list(range(1, 20))
    prune(db, thread="d", keep=1)
    kept = get_history(db, "d")
    # the latest is not a snapshot (every 7th update is): its ancestors back to one stay
    assert 1 < len(kept) <= 8
    assert get_state(db, "d").values["log"] == list(range(1, 20))
    assert resume_thread(db, "d").status == "completed"
    assert get_state(db, "d").values["log"] == list(range(1, 26))


def test_prune_older_than_spares_recent_and_latest(cli, db, db_path, monkeypatch):
    from runtime import get_history

    _failed_loop(db, "old", fail_at=12, limit=20, monkeypatch=monkeypatch)
    _failed_loop(db, "new", fail_at=5, limit=20, monkeypatch=monkeypatch)
    db.conn.execute("UPDATE checkpoints SET created_at = '2000-01-01T00:00:00+00:00' WHERE thread_id = 'old'")
    latest = get_history(db, "old")[0].checkpoint_id
    result = cli("prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [t["thread_id"] for t in report["threads"]] == ["old"]
    assert [r.checkpoint_id for r in get_history(db, "old")] == [latest]
    assert len(get_history(db, "new")) == 6


def test_prune_and_delete_refuse_a_running_thread(cli, db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    now = time.time()
    db.conn.execute(
        "UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ?",
        (os.getpid(), socket.gethostname(), now, now),
    )
    before = db_snapshot(db_path)
    for args in (["prune", "--thread", "t", "--keep", "1"], ["delete", "--thread", "t"], ["vacuum"]):
        result = cli(*args)
        assert result.exit_code == 2 and "running" in result.stderr or "being run" in result.stderr, result.output
    everything = cli("prune", "--keep", "1", "--json")
    assert json.loads(everything.stdout)["skipped"][0]["thread_id"] == "t"
    assert db_snapshot(db_path) == before


@pytest.mark.parametrize("args, message", [
    (["prune"], "say what to prune"),
    (["prune", "--keep", "0"], "--keep must be at least 1"),
    (["prune", "--older-than", "soon"], "is not a duration"),
    (["prune", "--thread", "nope", "--keep", "1"], "no thread 'nope'"),
    (["delete", "--thread", "nope"], "no thread 'nope'"),
])  # fmt: skip
def test_bad_retention_input_exits_2_and_changes_nothing(cli, db, db_path, monkeypatch, args, message):
    _failed_loop(db, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    before = db_snapshot(db_path)
    result = cli(*args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert db_snapshot(db_path) == before


# -- delete, dry runs, vacuum ------------------------------------------------------------------


def test_delete_removes_everything_of_the_thread_and_nothing_else(cli, db, db_path):
    from state.storage import thread_label
    from runtime import run_thread

    for thread in ("gone.1", "kept"):
        run_thread(db, "task_queue", thread, {"items": ["a", "b"], "prompt": "Summarize: {item}"})
    kept_before = {t: rows for t, rows in db_snapshot(db_path).items()}
    result = cli("delete", "--thread", "gone.1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checkpoints"] > 0 and report["writes"] > 0 and report["store_items"] >= 4
    assert report["blobs"] == 0  # values live in the checkpoint rows
    conn = sqlite3.connect(db_path)
    for table in ("checkpoints", "writes", "checkpoint_blobs", "agent_threads"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE thread_id = 'gone.1'").fetchone()[0] == 0, table
    label = thread_label("gone.1")
    assert conn.execute("SELECT count(*) FROM store WHERE prefix LIKE ?", (f"%.{label}",)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM store WHERE prefix = 'results.kept'").fetchone()[0] == 2
    conn.close()
    after = db_snapshot(db_path)
    for table in ("checkpoints", "checkpoint_blobs", "writes"):
        assert [r for r in after[table] if "'kept'" in r] == [r for r in kept_before[table] if "'kept'" in r]


def test_dry_runs_change_nothing(cli, db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=15, limit=20, monkeypatch=monkeypatch)
    db.conn.execute("INSERT INTO writes VALUES ('t', '', 'no-such-checkpoint', 'task', '', 0, 'n', 'msgpack', x'01')")
    before = db_snapshot(db_path)
    prune = cli("prune", "--keep", "2", "--orphans", "--dry-run", "--json")
    assert prune.exit_code == 0, prune.output
    report = json.loads(prune.stdout)
    assert report["dry_run"] and report["threads"][0]["checkpoints_removed"] == 14 and report["orphans"]["writes"] == 1
    delete = cli("delete", "--thread", "t", "--dry-run", "--json")
    assert json.loads(delete.stdout)["checkpoints"] == 16
    vacuum = cli("vacuum", "--dry-run", "--json")
    assert json.loads(vacuum.stdout)["dry_run"] is True
    assert db_snapshot(db_path) == before
    # and the same without --dry-run does what was said
    assert json.loads(cli("prune", "--keep", "2", "--orphans", "--json").stdout)["threads"] == report["threads"]
    assert db.conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 2


def test_vacuum_gives_space_back(cli, db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=300, limit=400, monkeypatch=monkeypatch)
    assert cli("prune", "--keep", "1").exit_code == 0
    report = json.loads(cli("vacuum", "--json").stdout)
    assert report["reclaimable_bytes"] > 0 and report["bytes_after"] < report["bytes_before"]


# -- doctor ---------------------------------------------------------------------------------------


def test_doctor_on_a_healthy_database(cli, db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    before = db_snapshot(db_path)
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    checks = json.loads(result.stdout)["checks"]
    assert {c["check"] for c in checks} == {"integrity", "schema", "orphaned writes", "orphaned blobs", "runners", "schedule runs", "schedule graphs", "queued runs", "workers"}
    assert all(c["ok"] for c in checks)
    assert db_snapshot(db_path) == before


def test_doctor_finds_planted_problems_and_says_how_to_fix_them(cli, db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    db.conn.execute("INSERT INTO writes VALUES ('t', '', 'no-such-checkpoint', 'task', '', 0, 'n', 'msgpack', x'01')")
    db.conn.execute(
        "UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ?",
        (dead.pid, socket.gethostname(), now, now),
    )
    result = cli("doctor")
    assert result.exit_code == 1
    assert "PROBLEM  orphaned writes: 1 write(s)" in result.stdout and "agent prune --orphans" in result.stdout
    assert "PROBLEM  runners: 1 thread(s)" in result.stdout and "agent resume --thread t" in result.stdout
    assert cli("prune", "--orphans").exit_code == 0
    assert cli("resume", "--thread", "t").exit_code == 0  # takes the dead runner's thread over
    assert cli("doctor").exit_code == 0


def test_doctor_reports_a_schema_version_it_does_not_know(cli, db, db_path):
    db.conn.execute("PRAGMA user_version = 99")
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    schema = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "schema")
    assert not schema["ok"] and "newer agent" in schema["detail"] and "upgrade" in schema["fix"]


def test_doctor_reports_a_damaged_file(cli, db_path):
    db_path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    result = cli("doctor")
    assert result.exit_code == 1 and "integrity" in result.stdout and "Traceback" not in result.output


# -- migration ----------------------------------------------------------------------------------------


def test_a_database_in_the_old_layout_is_converted_and_keeps_working(db_path):
    """Schema 1: langgraph-checkpoint-sqlite's tables, the whole state in each checkpoint."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from graphs import load_graph
    from runtime import get_history, get_state, open_database, resume_thread
    from runtime.store.database import _REGISTRY
    from runtime.store.schema import SCHEMA_VERSION

    conn = sqlite3.connect(db_path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_REGISTRY)
    conn.execute("PRAGMA user_version=1")
    now = time.time()
    spec = load_graph(LOOP)
    conn.execute(
        "INSERT INTO agent_threads (thread_id, graph, graph_version, status, settings, created_at, updated_at, steps) "
        "VALUES ('old', ?, ?, 'interrupted', '{}', ?, ?, 3)",
        (spec.spec, spec.version, now, now),
    )
    conn.commit()
    graph = spec.build().compile(checkpointer=SqliteSaver(conn), interrupt_after=["step"])
    config = {"configurable": {"thread_id": "old"}}
    graph.invoke({"limit": 6}, config, durability="sync")
    graph.invoke(None, config, durability="sync")
    fork = list(graph.get_state_history(config))[1].config
    graph.invoke(None, fork, durability="sync")  # a second branch
    old_history = [(s.config["configurable"]["checkpoint_id"], s.metadata["step"], list(s.next)) for s in graph.get_state_history(config)]
    old_values = graph.get_state(config).values
    conn.close()

    with open_database(db_path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        rows = get_history(db, "old")
        assert [(r.checkpoint_id, r.step, r.next) for r in rows] == old_history
        assert [r.writers for r in rows][:-1] == [r["writers"] for r in _langgraph_history(db, "old")][:-1]
        assert get_state(db, "old").values == old_values
        assert resume_thread(db, "old").status == "completed"
        assert get_state(db, "old").values["n"] == 6
    assert open_database(db_path).conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION



def test_a_schema_7_file_gets_the_shared_rate_table_and_keeps_its_rows(db_path):
    from runtime import open_database
    from runtime.store.parts import rates
    from runtime.store.schema import SCHEMA_VERSION

    open_database(db_path, create=True).close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE agent_rates")
    conn.execute("INSERT INTO agent_threads (thread_id, graph, graph_version, status, created_at, updated_at) VALUES ('t', 'risky', '1', 'completed', 0, 0)")
    conn.execute("PRAGMA user_version=7")
    conn.commit()
    conn.close()
    with open_database(db_path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert db.conn.execute("SELECT status FROM agent_threads WHERE thread_id = 't'").fetchone() == ("completed",)
        assert rates.reserve(db.conn, "offline", 1.0, 1.0, 100.0) == 0.0

# -- what read commands import ------------------------------------------------------------------------


def test_read_commands_never_import_the_model_client(db, db_path, monkeypatch):
    _failed_loop(db, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    probe = (
        "import sys\nsys.argv = ['agent', *sys.argv[1:]]\nfrom cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('langchain_openai', 'openai', 'langgraph') if m in sys.modules), file=sys.stderr)"
    )
    for args in (["--help"], ["threads"], ["history", "--thread", "t", "--limit", "20"], ["history", "--thread", "t", "--json"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, env=agent_env(db_path), capture_output=True, text=True, timeout=60)
        assert result.stderr.strip().splitlines()[-1] == "[]", (args, result.stderr)
