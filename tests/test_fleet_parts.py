"""The fleet's parts in one process, on real SQLite files: fencing in the saver, the queue's
claims, takeovers, the worker from Python, and what doctor and `agent workers` say.

(Real worker processes, kill -9, SIGSTOP and SIGTERM: tests/test_fleet.py.)
"""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json
import os
import socket
import time
from pathlib import Path

import pytest

from runtime import FleetWorker, RunSettings, list_workers, open_database, submit_resume, submit_run, wait_for_thread
from runtime.errors import BadInput, ThreadBusy, ThreadExists, UnknownGraph
from runtime.store.parts import immediate
from runtime.store.parts import threads as thread_rows
from runtime.store.seam import LEASE_KEY, LeaseLost, Owner
from runtime.store.saver import open_saver
from tests.conftest import db_snapshot, sql, raw_connection

QUESTION = {"question": "Why is the sea salty?", "steps": 2}


@pytest.fixture
def db(db_path: Path):
    with open_database(db_path, create=True) as database:
        yield database


def _checkpoint(cid: str, step: int) -> tuple[dict, dict]:
    from langgraph.checkpoint.base import empty_checkpoint

    return {**empty_checkpoint(), "id": cid, "channel_values": {"x": step}, "channel_versions": {"x": step}}, {"source": "loop", "step": step}


@pytest.mark.sqlite_only  # its queued writes; PostgreSQL's fencing: tests/test_postgres_backend.py
def test_a_runner_whose_lease_was_taken_writes_nothing_more(db, db_path):
    now = time.time()
    with immediate(db.conn):
        assert thread_rows.insert(db.conn, "t", "research", "1", {}, Owner(1, "a"), now)
    lease = thread_rows.get(db.conn, "t").lease
    saver = open_saver(str(db_path))
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", LEASE_KEY: lease}}
    checkpoint, metadata = _checkpoint("1", 1)
    first = saver.put(config, checkpoint, metadata, {"x": 1})
    saver.put_writes({"configurable": {**first["configurable"], LEASE_KEY: lease}}, [("x", 2)], "task-1")
    saver.flush()  # stored while the lease is held
    with immediate(db.conn):  # another runner takes the thread over
        assert thread_rows.take_over(db.conn, "t", lease, Owner(2, "b"), now)
        assert not thread_rows.take_over(db.conn, "t", lease, Owner(3, "c"), now)  # of two takers, one wins
    stale = {"configurable": {**first["configurable"], LEASE_KEY: lease}}
    checkpoint, metadata = _checkpoint("2", 2)
    with pytest.raises(LeaseLost):
        saver.put(stale, checkpoint, metadata, {"x": 2})
    saver.put_writes(stale, [("x", 3)], "task-2")  # queued for the step's checkpoint, which never comes
    saver.flush()  # stored on their own: refused too, and dropped (a reader flushing them is not troubled)
    assert saver.flush() == 0
    conn = raw_connection(db_path)
    assert conn.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = 't'").fetchall() == [("1",)]
    assert conn.execute("SELECT task_id FROM writes").fetchall() == [("task-1",)]
    row = conn.execute("SELECT lease, resumes, owner_pid FROM agent_threads WHERE thread_id = 't'").fetchone()
    assert row == (lease + 1, 1, 2)
    conn.close()
    saver.conn.close()


def test_a_queued_run_is_claimed_once_and_waits_while_its_thread_runs(db):
    submit_run(db, "research", "q", QUESTION)
    assert thread_rows.get(db.conn, "q").status == "queued"
    with immediate(db.conn):
        assert thread_rows.claim(db.conn, "q", Owner(1, "a"), time.time()) is not None
        assert thread_rows.claim(db.conn, "q", Owner(2, "b"), time.time()) is None  # running: nobody else takes it
    from runtime.store.parts import queue as queue_rows

    assert [r.thread_id for r in queue_rows.ready(db.conn, 10)] == []  # its thread runs: not ready


def test_submit_refuses_what_run_refuses_and_writes_nothing(db, db_path):
    submit_run(db, "research", "taken", QUESTION)
    before = db_snapshot(db_path)
    with pytest.raises(UnknownGraph):
        submit_run(db, "no_such_graph", "x", {})
    with pytest.raises(BadInput):
        submit_run(db, "research", "x", {"nonsense": 1})
    with pytest.raises(BadInput):
        submit_run(db, "research", "x", QUESTION, RunSettings(max_cost=-1))
    with pytest.raises(ThreadExists):
        submit_run(db, "research", "taken", QUESTION)
    assert db_snapshot(db_path) == before


def test_a_worker_in_process_runs_the_queue_by_priority_and_a_second_request_waits_its_turn(db):
    for i in range(5):
        submit_run(db, "research", f"r{i}", QUESTION, priority=i % 2)
    with pytest.raises(ThreadExists):
        submit_run(db, "research", "r0", QUESTION)  # queued already
    order: list[str] = []
    worker = FleetWorker(db, concurrency=1, until_idle=True, on_event=lambda e: e.kind == "started" and order.append(e.thread_id))
    stats = worker.run()
    assert order == ["r1", "r3", "r0", "r2", "r4"]  # priority 1 first, then oldest first
    assert stats.finished == 5 and stats.max_running == 1 and stats.steps == 5 * 4
    assert all(wait_for_thread(db, f"r{i}", timeout=5).status == "completed" for i in range(5))
    submit_resume(db, "r0", "1", edits={"steps": 1})  # a fork of a completed thread, queued
    with pytest.raises(ThreadBusy):
        submit_resume(db, "r0", "1")  # one request waits at a time
    FleetWorker(db, until_idle=True).run()
    assert wait_for_thread(db, "r0", timeout=5).status == "completed"


def test_a_thread_whose_runner_died_is_taken_over_at_most_max_resumes_times(db):
    from runtime import run_thread

    assert run_thread(db, "research", "dead", QUESTION).status == "completed"
    dead_pid = _dead_pid()
    with immediate(db.conn):  # as a runner killed mid-run leaves it
        sql(db).execute(
            "UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, heartbeat_at = ?, resumes = 0 WHERE thread_id = 'dead'",
            (dead_pid, socket.gethostname(), time.time()),
        )
    events: list = []
    FleetWorker(db, until_idle=True, on_event=events.append).run()
    assert [e.kind for e in events if e.thread_id == "dead"][:1] == ["taken_over"]
    assert thread_rows.get(db.conn, "dead").status == "completed"  # nothing was left to run
    with immediate(db.conn):
        sql(db).execute("UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, resumes = 3 WHERE thread_id = 'dead'", (dead_pid, socket.gethostname()))
    FleetWorker(db, until_idle=True, max_resumes=3).run()
    record = thread_rows.get(db.conn, "dead")
    assert record.status == "failed" and "gave up after 3 takeovers" in record.error


def test_workers_and_doctor_see_a_dead_worker_and_a_queued_graph_that_is_gone(db, db_path, tmp_path):
    FleetWorker(db, until_idle=True).run()
    assert list_workers(db) == []  # it said it stopped
    assert [w["status"] for w in list_workers(db, include_stopped=True)] == ["stopped"]
    with immediate(db.conn):
        sql(db).execute(
            "INSERT INTO agent_workers VALUES ('gone', ?, ?, 0, ?, 4, 2, 'running')", (_dead_pid(), socket.gethostname(), time.time())
        )
    assert [(w["worker_id"], w["status"], w["running"]) for w in list_workers(db)] == [("gone", "stale", 0)]
    graph = tmp_path / "mine.py"
    graph.write_text("from langgraph.graph import StateGraph, START, END\nfrom typing import TypedDict\n"
                     "class S(TypedDict, total=False):\n    n: int\n"
                     "g = StateGraph(S)\ng.add_node('a', lambda s: {'n': 1})\ng.add_edge(START, 'a')\ng.add_edge('a', END)\n")  # fmt: skip
    submit_run(db, f"{graph}:g", "mine", {})
    graph.unlink()
    from runtime.doctor import check_database

    found = {f.check: f for f in check_database(db_path)}
    assert not found["queued runs"].ok and "mine" in found["queued runs"].detail
    assert not found["workers"].ok and "1 worker(s)" in found["workers"].detail


def test_the_cli_submits_and_a_worker_runs_it(run_agent, db_path, tmp_path):
    proc = run_agent("submit", "research", "--thread", "c", "--input", json.dumps(QUESTION), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"thread_id": "c", "queued": "run"}
    status = json.loads(run_agent("status", "--thread", "c", "--json").stdout)
    assert status["status"] == "queued" and status["queued"]["kind"] == "run"
    stats_file = tmp_path / "stats.json"
    proc = run_agent("worker", "--until-idle", "--stats", str(stats_file), "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["event"], e["thread_id"], e["status"]) for e in events] == [("started", "c", None), ("finished", "c", "completed")]
    stats = json.loads(stats_file.read_text())
    conn = raw_connection(db_path)
    checkpoints = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 'c'").fetchone()[0]
    conn.close()
    assert stats["steps"] == 4 and stats["save_latency_ms"]["count"] == checkpoints and stats["save_latency_ms"]["p99"] >= 0


def _dead_pid() -> int:
    """A pid no process of this machine has."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_detach_queues_an_answer_a_resume_and_a_retry_for_a_worker(run_agent, db_path):
    plan = {"request": "Tidy up", "actions": [{"kind": "send_email", "target": "a@example.com", "detail": "hello"}]}
    assert run_agent("run", "approval", "--thread", "ap", "--input", json.dumps(plan), "--background", "--quiet").returncode == 3
    queue = {"items": ["a", "b POISON"], "prompt": "Summarize: {item}"}
    assert run_agent("run", "task_queue", "--thread", "q", "--input", json.dumps(queue), "--model", "offline:fail_on=POISON", "--max-attempts", "1", "--quiet").returncode == 0
    proc = run_agent("approve", "--thread", "ap", "--all", "--reason", "fine", "--detach")
    assert proc.returncode == 0 and proc.stdout.strip() == "ap", proc.stderr
    assert run_agent("retry-failed", "--thread", "q", "--model", "offline", "--detach").returncode == 0
    refused = run_agent("resume", "--thread", "q", "--detach", "--wait", "1m")
    assert refused.returncode == 2 and refused.stderr.startswith("Error: --wait does nothing with --detach")
    refused = run_agent("resume", "--thread", "q", "--detach", "--yes")
    assert refused.returncode == 2 and refused.stderr.startswith("Error: --yes cannot approve the actions of a queued run")
    assert json.loads(run_agent("status", "--thread", "ap", "--json").stdout)["queued"]["kind"] == "answer"
    # Two runs ending side by side in one process: each records its end off the loop, where the
    # other's store transaction may hold the write lock until the loop reaches its COMMIT.
    proc = run_agent("worker", "--until-idle", "--json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(run_agent("state", "--thread", "ap", "--json").stdout)
    assert [d["reason"] for d in state["values"]["decisions"]] == ["fine"] and state["values"]["performed"][0]["outcome"] == "done"
    results = [json.loads(line) for line in run_agent("results", "--thread", "q").stdout.splitlines()]
    assert [r["status"] for r in results] == ["done", "done"]  # the retry round sent the failed item again, on a model that answers it


def test_a_worker_stopped_while_it_takes_threads_gives_back_those_it_had_not_started(db):
    for i in range(10):
        submit_run(db, "research", f"g{i}", QUESTION, priority=7)
    worker = FleetWorker(db, concurrency=10)
    worker.emit = lambda event: event.kind == "started" and worker.stop()  # stopped as the first thread starts
    worker.run()
    from runtime.store.parts import queue as queue_rows

    waiting = {row.thread_id: row for row in queue_rows.list_all(db.conn)}
    records = {f"g{i}": thread_rows.get(db.conn, f"g{i}") for i in range(10)}
    given_back = [t for t, r in records.items() if r.status == "queued"]
    assert len(given_back) == 9 and all(waiting[t].kind == "run" and waiting[t].priority == 7 for t in given_back)
    (started,) = [t for t, r in records.items() if r.status != "queued"]
    assert records[started].status == "stopped" and waiting[started].kind == "resume"
    FleetWorker(db, until_idle=True).run()
    assert all(thread_rows.get(db.conn, f"g{i}").status == "completed" for i in range(10))


def test_submit_takes_an_id_whose_first_run_saved_nothing(db):
    with immediate(db.conn):  # a run killed before its first checkpoint left its row behind
        assert thread_rows.insert(db.conn, "early", "risky", "1", {}, Owner(_dead_pid(), socket.gethostname()), time.time())
    submit_run(db, "research", "early", QUESTION)
    record = thread_rows.get(db.conn, "early")
    assert (record.graph, record.status, record.owner_pid) == ("research", "queued", None)
    FleetWorker(db, until_idle=True).run()
    assert wait_for_thread(db, "early", timeout=5).status == "completed"


def test_a_queued_resumes_settings_replace_the_threads_from_then_on(db):
    from runtime import run_thread

    assert run_thread(db, "research", "s", QUESTION, RunSettings(max_tokens=10)).status == "budget_exceeded"
    submit_resume(db, "s", settings=RunSettings(max_tokens=100_000))
    FleetWorker(db, until_idle=True).run()
    record = wait_for_thread(db, "s", timeout=5)
    assert record.status == "completed" and record.settings["max_tokens"] == 100_000
