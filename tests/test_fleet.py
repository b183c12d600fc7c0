"""The fleet with real processes: `agent submit`, `agent worker` (several at once, killed, stalled,
drained), `agent workers`.

The graph is tests/fleet_graph.py, read by the workers as a file graph (listed in
AGENT_TRUSTED_GRAPHS, as an unattended worker needs): each node run appends `THREAD STEP PID` to
a log file outside the state, so a node run twice, or a thread run by two processes, shows there;
a thread given a `gate` holds in the node of step `hold_at` until the gate file exists, so a test
acts while it knows exactly which nodes are in flight. Processes synchronise on files, rows and
the workers' `--json` events only; a time limit only bounds a test that would otherwise hang.
"""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py): on PostgreSQL the
workers take their threads as Procrastinate's jobs (runtime/store/postgres/jobs.py)."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import ROOT, LineReader, db_snapshot, nothing_written, raw_connection

GRAPH_FILE = ROOT / "tests" / "fleet_graph.py"
GRAPH = f"{GRAPH_FILE}:build"
TRUSTED = {"AGENT_TRUSTED_GRAPHS": str(GRAPH_FILE)}
STEPS = 3
"""Steps of an ordinary thread of the graph."""
HELD_STEP = 1
"""The step a gated thread holds in: step 0 is checkpointed, step 1 in flight, step 2 to come."""
BOUND = 120
"""Seconds after which a wait fails instead of hanging (never a synchronisation)."""


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Submitting a file graph in this process puts its folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "nodes.log"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


# -- submitting ------------------------------------------------------------------------------------


def plain(log: Path, n: int = STEPS) -> dict[str, Any]:
    return {"n": n, "log": str(log)}


def gated(log: Path, gate: Path, n: int = STEPS) -> dict[str, Any]:
    return {"n": n, "log": str(log), "gate": str(gate), "hold_at": HELD_STEP}


def submit(db_path: Path, threads: dict[str, dict[str, Any]], *, priority: int = 0, graph: str = GRAPH, **settings: Any) -> None:
    """Queue each thread (id -> input) through the runtime, as `agent submit` does (one process
    per thread would cost a second each; the CLI itself is tested below)."""
    from runtime import open_database
    from runtime.fleet.queue import submit_run
    from runtime.policy.settings import RunSettings

    with open_database(db_path, create=True) as db:
        for thread_id, data in threads.items():
            submit_run(db, graph, thread_id, data, RunSettings(**settings) if settings else None, priority=priority)


# -- workers ---------------------------------------------------------------------------------------


@dataclass
class Worker:
    """An `agent worker --json` process: its events (stdout) and messages (stderr), read as they come."""

    proc: subprocess.Popen
    out: LineReader
    err: LineReader

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_event(self, kind: str, thread_id: str | None = None, status: str | None = None) -> list[str]:
        """Block until the worker reports `kind` (of that thread, with that status)."""
        text = f'"event": "{kind}"'
        if thread_id is not None:
            text += f', "thread_id": "{thread_id}"' + (f', "status": "{status}"' if status else "")
        return self.out.wait_for(text, 1, BOUND)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.out.lines) if line.startswith("{")]

    def finish(self) -> int:
        """Wait for the process to exit; its exit code (all its output is read by then)."""
        try:
            code = self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.out.text()
        self.err.text()
        return code

    def output(self) -> str:
        return "".join(self.out.lines) + "".join(self.err.lines)


@pytest.fixture
def start_worker(spawn_agent) -> Callable[..., Worker]:
    def start(*args: str, concurrency: int = 4, **env: str) -> Worker:
        proc = spawn_agent("worker", "--concurrency", str(concurrency), "--json", *args, **{**TRUSTED, **env})
        worker = Worker(proc, LineReader(proc.stdout), LineReader(proc.stderr))
        worker.err.wait_for("Worker started", timeout=BOUND)
        return worker

    return start


def kill_hard(worker: Worker) -> None:
    """kill -9, and reap it: a pid that is gone (not a zombie) is what tells others it died."""
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(timeout=BOUND)


def stop_outside_a_transaction(worker: Worker, db_path: Path | str) -> None:
    """SIGSTOP the worker at a moment it holds no write lock on the database (its heartbeat and
    its queue reads take it for a moment): else every other process would wait for it (on
    PostgreSQL, until the server ends its session: idle_in_transaction_session_timeout)."""
    for _ in range(20):
        worker.proc.send_signal(signal.SIGSTOP)
        if not _in_a_transaction(db_path):
            return
        worker.proc.send_signal(signal.SIGCONT)  # stopped inside a transaction: let it finish, try again
    pytest.fail("the worker was inside a transaction at every SIGSTOP")


def _in_a_transaction(db_path: Path | str) -> bool:
    if isinstance(db_path, str):  # a stopped worker's sessions idle in a transaction (the others' finish theirs)
        with raw_connection(db_path) as conn:
            for _ in range(5):
                idle = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
                ).fetchone()[0]
                if not idle:
                    return False
            return True
    import sqlite3

    conn = sqlite3.connect(db_path, timeout=2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


# -- reading what happened -------------------------------------------------------------------------


def query(db_path: Path | str, sql: str, *params: Any) -> list[tuple]:
    """Rows read through a connection of this test's own, while the workers write. `STEP` and
    `WRITES` in the SQL name the step column and the writes table of the backend."""
    postgres = isinstance(db_path, str)
    sql = sql.replace("STEP", "(metadata->>'step')::int" if postgres else "step").replace("WRITES", "checkpoint_writes" if postgres else "writes")
    conn = raw_connection(db_path)
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def statuses(db_path: Path) -> dict[str, str]:
    return dict(query(db_path, "SELECT thread_id, status FROM agent_threads"))


def errors(db_path: Path) -> dict[str, str]:
    """The error of every thread that recorded one (what a failed status assertion shows)."""
    return dict(query(db_path, "SELECT thread_id, error FROM agent_threads WHERE error IS NOT NULL"))


def owner(db_path: Path, thread_id: str) -> int | None:
    rows = query(db_path, "SELECT owner_pid FROM agent_threads WHERE thread_id = ?", thread_id)
    return rows[0][0] if rows else None


def queued(db_path: Path) -> dict[str, str]:
    return dict(query(db_path, "SELECT thread_id, kind FROM agent_queue"))


def checkpoints_of(db_path: Path, thread_id: str) -> list[tuple]:
    """Every checkpoint row of the thread (every namespace) and its writes: what a runner wrote."""
    rows = query(db_path, "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, STEP FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_id", thread_id)
    writes = query(db_path, "SELECT checkpoint_ns, checkpoint_id, task_id, idx FROM WRITES WHERE thread_id = ? ORDER BY 1, 2, 3, 4", thread_id)
    return rows + [("write", *w) for w in writes]


def assert_one_branch(db_path: Path, thread_id: str, n: int = STEPS) -> None:
    """The thread's history is one unbroken branch -1, 0, ..., n: no step twice, each checkpoint
    the child of the one before."""
    counts = query(db_path, "SELECT STEP, count(*) FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' GROUP BY 1 ORDER BY 1", thread_id)
    assert counts == [(step, 1) for step in range(-1, n + 1)], f"{thread_id}: {counts}"
    chain = query(db_path, "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY STEP", thread_id)
    assert [parent for _, parent in chain[1:]] == [cid for cid, _ in chain[:-1]], f"{thread_id}: {chain}"


def node_runs(log: Path) -> list[tuple[str, int, int]]:
    """(thread, step, pid) for every node run the graph logged."""
    if not log.exists():
        return []
    return [(thread, int(step), int(pid)) for thread, step, pid in (line.split() for line in log.read_text().splitlines())]


def runs_per_node(log: Path) -> Counter:
    return Counter((thread, step) for thread, step, _ in node_runs(log))


def held(log: Path, threads: list[str]) -> bool:
    """Whether every one of the threads has logged its held step (it now waits at the gate)."""
    logged = set(runs_per_node(log))
    return all((t, HELD_STEP) in logged for t in threads)


def wait_until(condition: Callable[[], bool], what: str, *workers: Worker) -> None:
    """Poll a file or a row until `condition` holds; fail at once if a worker that should be
    running has exited (its output says why)."""
    deadline = time.monotonic() + BOUND
    while not condition():
        for worker in workers:
            if worker.proc.poll() is not None:
                pytest.fail(f"worker {worker.pid} exited ({worker.proc.returncode}) before {what}: {worker.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {BOUND}s")
        time.sleep(0.05)


def assert_each_node_ran_once(log: Path, threads: list[str], n: int = STEPS, *, except_: dict[tuple[str, int], int] | None = None) -> None:
    runs = runs_per_node(log)
    expected = {(t, s): 1 for t in threads for s in range(n)}
    expected.update(except_ or {})
    mine = {key: count for key, count in runs.items() if key[0] in set(threads)}
    assert mine == expected, {k: (mine.get(k), v) for k, v in expected.items() if mine.get(k) != v}


# -- 1. several workers -----------------------------------------------------------------------------


def test_three_workers_share_three_hundred_threads_each_run_once_by_one_worker(start_worker, db_path: Path, log: Path, gate: Path) -> None:
    """Three workers on one file: every thread completes, one branch each, every node run once,
    each thread by one worker. The first 3 x concurrency threads hold at a gate until all are in
    flight, so the three are known to run threads at the same time."""
    concurrency = 8
    first = [f"first-{i}" for i in range(3 * concurrency)]
    rest = [f"t-{i}" for i in range(300 - len(first))]
    submit(db_path, {t: gated(log, gate) for t in first}, priority=1)
    submit(db_path, {t: plain(log) for t in rest})

    workers = [start_worker("--until-idle", concurrency=concurrency) for _ in range(3)]
    wait_until(lambda: held(log, first), "every first thread in flight", *workers)
    holders = Counter(pid for _, step, pid in node_runs(log) if step == HELD_STEP)
    assert holders == {w.pid: concurrency for w in workers}  # each worker full, none more than its concurrency
    gate.touch()
    for worker in workers:
        assert worker.finish() == 0, worker.output()

    everyone = first + rest
    assert statuses(db_path) == {t: "completed" for t in everyone}, errors(db_path)
    assert queued(db_path) == {}
    assert_each_node_ran_once(log, everyone)
    by_thread = defaultdict(set)
    for thread, _, pid in node_runs(log):
        by_thread[thread].add(pid)
    assert all(len(pids) == 1 for pids in by_thread.values()), {t: p for t, p in by_thread.items() if len(p) > 1}
    assert set().union(*by_thread.values()) == {w.pid for w in workers}
    started = Counter(e["thread_id"] for w in workers for e in w.events() if e["event"] == "started")
    assert started == {t: 1 for t in everyone}
    finished = [e for w in workers for e in w.events() if e["event"] == "finished"]
    assert sorted(e["thread_id"] for e in finished) == sorted(everyone) and {e["status"] for e in finished} == {"completed"}
    for thread in everyone:
        assert_one_branch(db_path, thread)


# -- 2. kill -9 ------------------------------------------------------------------------------------


def test_a_live_worker_takes_over_every_thread_of_a_killed_one(start_worker, db_path: Path, log: Path, gate: Path) -> None:
    """Worker A holds six threads inside their step-1 node, the only nodes it has in flight, when
    it is killed; worker B, already running the other threads, takes the six over and finishes
    them. Only those six nodes ran twice."""
    held_threads = [f"held-{i}" for i in range(6)]
    others = [f"other-{i}" for i in range(60)]
    submit(db_path, {t: gated(log, gate) for t in held_threads}, priority=1)
    a = start_worker(concurrency=len(held_threads))
    wait_until(lambda: held(log, held_threads), "A holds its six threads", a)
    submit(db_path, {t: plain(log) for t in others})
    b = start_worker(concurrency=4)
    b.wait_event("finished")  # B is at work
    kill_hard(a)
    gate.touch()

    for thread in held_threads:
        b.wait_event("taken_over", thread)
    everyone = held_threads + others
    wait_until(lambda: statuses(db_path) == {t: "completed" for t in everyone}, "every thread completed", b)
    b.proc.send_signal(signal.SIGTERM)
    assert b.finish() == 0, b.output()

    assert queued(db_path) == {}
    assert_each_node_ran_once(log, everyone, except_={(t, HELD_STEP): 2 for t in held_threads})
    for thread in held_threads:
        assert [pid for t, _, pid in node_runs(log) if t == thread] == [a.pid, a.pid, b.pid, b.pid]
    assert {e["thread_id"] for e in b.events() if e["event"] == "taken_over"} == set(held_threads)
    for thread in everyone:
        assert_one_branch(db_path, thread)


def test_a_worker_started_after_the_kill_takes_the_threads_over(start_worker, db_path: Path, log: Path, gate: Path) -> None:
    held_threads = [f"held-{i}" for i in range(3)]
    others = [f"other-{i}" for i in range(10)]
    submit(db_path, {t: gated(log, gate) for t in held_threads}, priority=1)
    submit(db_path, {t: plain(log) for t in others})
    a = start_worker(concurrency=len(held_threads))
    wait_until(lambda: held(log, held_threads), "A holds its three threads", a)
    kill_hard(a)
    assert statuses(db_path) == {**{t: "running" for t in held_threads}, **{t: "queued" for t in others}}  # running: recorded so, its runner gone
    gate.touch()

    b = start_worker("--until-idle", concurrency=4)
    assert b.finish() == 0, b.output()
    everyone = held_threads + others
    assert statuses(db_path) == {t: "completed" for t in everyone}
    assert_each_node_ran_once(log, everyone, except_={(t, HELD_STEP): 2 for t in held_threads})
    for thread in everyone:
        assert_one_branch(db_path, thread)


# -- 3. a stalled runner is fenced -----------------------------------------------------------------


def stall_past_the_lease(start_worker, db_path: Path, log: Path, gate: Path) -> tuple[Worker, list[tuple]]:
    """Worker A holds thread `t` in its step-1 node; SIGSTOP A past its lease; worker B takes the
    thread over and finishes it (B is stopped then); SIGCONT A, whose node now returns. Returns A,
    once it has reported its run of `t` ended taken_over, and what was stored of `t` before the SIGCONT."""
    lease = {"AGENT_LEASE_SECONDS": "3"}
    submit(db_path, {"t": gated(log, gate)})
    a = start_worker("--debug", concurrency=1, **lease)
    wait_until(lambda: held(log, ["t"]), "A in the held node", a)
    stop_outside_a_transaction(a, db_path)
    try:
        b = start_worker(concurrency=1, **lease)
        wait_until(lambda: owner(db_path, "t") == b.pid, "B holds the thread", b)
        b.wait_event("taken_over", "t")
        gate.touch()
        b.wait_event("finished", "t", "completed")
        stored = checkpoints_of(db_path, "t")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    a.wait_event("finished", "t", "taken_over")
    b.proc.send_signal(signal.SIGTERM)
    assert b.finish() == 0, b.output()
    assert [(step, pid) for _, step, pid in node_runs(log)] == [(0, a.pid), (1, a.pid), (1, b.pid), (2, b.pid)]
    return a, stored


def test_a_stalled_worker_whose_thread_was_taken_over_writes_nothing_more(start_worker, db_path: Path, log: Path, gate: Path) -> None:
    """A's held node returns after the takeover, but its run ends taken_over and not one
    checkpoint or write of it is stored; on SIGTERM A exits 0."""
    a, stored = stall_past_the_lease(start_worker, db_path, log, gate)
    assert checkpoints_of(db_path, "t") == stored
    a.proc.send_signal(signal.SIGTERM)
    code = a.finish()
    assert checkpoints_of(db_path, "t") == stored  # nothing of A after the takeover, even as it exits
    assert statuses(db_path) == {"t": "completed"}
    assert_one_branch(db_path, "t")
    assert code == 0, a.output()


def test_a_worker_goes_on_serving_after_one_of_its_threads_was_taken_over(start_worker, db_path: Path, log: Path, gate: Path) -> None:
    """The refused writes of the taken-over run are its alone: the next thread A runs completes."""
    a, stored = stall_past_the_lease(start_worker, db_path, log, gate)
    submit(db_path, {"after": plain(log)})  # A is the only worker left
    a.wait_event("finished", "after")
    a.proc.send_signal(signal.SIGTERM)
    a.finish()
    assert checkpoints_of(db_path, "t") == stored
    assert statuses(db_path) == {"t": "completed", "after": "completed"}, a.output()
    assert_each_node_ran_once(log, ["after"])
    assert_one_branch(db_path, "after")


@pytest.mark.postgres_only
def test_a_worker_cut_off_from_the_database_is_taken_over_and_writes_nothing_when_it_comes_back(
    start_worker, db_path: str, log: Path, gate: Path
) -> None:
    """Worker A reaches PostgreSQL through a proxy the test cuts while A holds `t` in its step-1
    node: A can no longer renew its lease, worker B takes `t` over and finishes it; the proxy is
    restored and A, whose node returns meanwhile, stores nothing of `t`, and goes on serving."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.tcp_proxy import TcpProxy

    lease = {"AGENT_LEASE_SECONDS": "3"}
    server = conninfo_to_dict(db_path)
    submit(db_path, {"t": gated(log, gate)})
    with TcpProxy(server["host"], int(server["port"])) as proxy:
        through_proxy = db_path.replace(f":{server['port']}/", f":{proxy.port}/")
        a = start_worker(concurrency=1, AGENT_DB=through_proxy, **lease)
        wait_until(lambda: held(log, ["t"]), "A in the held node", a)
        proxy.cut()
        b = start_worker(concurrency=1, **lease)
        b.wait_event("taken_over", "t")
        gate.touch()  # both nodes return; only B can store
        b.wait_event("finished", "t", "completed")
        stored = checkpoints_of(db_path, "t")
        b.proc.send_signal(signal.SIGTERM)
        assert b.finish() == 0, b.output()
        proxy.restore()
        a.wait_event("finished", "t")
        submit(db_path, {"after": plain(log)})  # A is the only worker left
        a.wait_event("finished", "after", "completed")
        a.proc.send_signal(signal.SIGTERM)
        assert a.finish() == 0, a.output()
    assert checkpoints_of(db_path, "t") == stored
    assert statuses(db_path) == {"t": "completed", "after": "completed"}
    assert_one_branch(db_path, "t")
    assert [(step, pid) for thread, step, pid in node_runs(log) if thread == "t"] == [(0, a.pid), (1, a.pid), (1, b.pid), (2, b.pid)]


# -- 4. SIGTERM drains ------------------------------------------------------------------------------


def test_sigterm_stops_every_thread_at_a_node_boundary_and_queues_it_for_the_next_worker(
    start_worker, db_path: Path, log: Path, gate: Path
) -> None:
    held_threads = [f"held-{i}" for i in range(4)]
    waiting = [f"waiting-{i}" for i in range(10)]
    submit(db_path, {t: gated(log, gate) for t in held_threads}, priority=1)
    submit(db_path, {t: plain(log) for t in waiting})
    first = start_worker(concurrency=len(held_threads))
    wait_until(lambda: held(log, held_threads), "the worker holds four threads", first)

    first.proc.send_signal(signal.SIGTERM)
    first.wait_event("stopping")
    gate.touch()
    assert first.finish() == 0, first.output()

    assert statuses(db_path) == {**{t: "stopped" for t in held_threads}, **{t: "queued" for t in waiting}}
    assert queued(db_path) == {**{t: "resume" for t in held_threads}, **{t: "run" for t in waiting}}
    # The node in flight finished and was saved: the held threads stopped after step 1.
    for thread in held_threads:
        assert query(db_path, "SELECT max(STEP) FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ''", thread) == [(HELD_STEP + 1,)]

    second = start_worker("--until-idle", concurrency=4)
    assert second.finish() == 0, second.output()
    everyone = held_threads + waiting
    assert statuses(db_path) == {t: "completed" for t in everyone}
    assert queued(db_path) == {}
    assert_each_node_ran_once(log, everyone)  # nothing ran twice: the drain stopped only between nodes
    for thread in everyone:
        assert_one_branch(db_path, thread)


# -- 5. a queued resume of a running thread waits ----------------------------------------------------


def test_a_queued_resume_of_a_running_thread_waits_for_that_run_to_end(
    spawn_agent, run_agent, start_worker, db_path: Path, log: Path, gate: Path
) -> None:
    from runtime import open_database
    from runtime.fleet.queue import submit_resume

    run = spawn_agent("run", GRAPH, "--thread", "t", "--input", json.dumps(gated(log, gate)))
    run_err = LineReader(run.stderr)
    deadline = time.monotonic() + BOUND
    while not held(log, ["t"]):
        assert run.poll() is None and time.monotonic() < deadline, "".join(run_err.lines)
        time.sleep(0.05)

    with open_database(db_path) as db:
        assert submit_resume(db, "t") == "t"  # accepted, though the thread runs
    assert queued(db_path) == {"t": "resume"}
    assert (statuses(db_path)["t"], owner(db_path, "t")) == ("running", run.pid)

    worker = start_worker(concurrency=2)
    # A thread queued after the resume: once the worker has run it, it has seen the resume, older,
    # and left it waiting.
    submit(db_path, {"later": plain(log)})
    worker.wait_event("finished", "later", "completed")
    assert not [e for e in worker.events() if e["thread_id"] == "t"]
    assert runs_per_node(log)["t", 0] == 1 and runs_per_node(log)["t", HELD_STEP] == 1
    assert (statuses(db_path)["t"], owner(db_path, "t"), queued(db_path)) == ("running", run.pid, {"t": "resume"})

    paused = run_agent("pause", "--thread", "t", "--json")
    assert paused.returncode == 0 and json.loads(paused.stdout)["outcome"] == "requested", paused.stderr
    run_err.wait_for("pause was requested", timeout=BOUND)
    gate.touch()
    assert run.wait(timeout=BOUND) == 3, run_err.text()

    worker.wait_event("started", "t")
    worker.wait_event("finished", "t", "completed")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.output()
    assert statuses(db_path)["t"] == "completed" and queued(db_path) == {}
    assert_each_node_ran_once(log, ["t", "later"])
    assert [pid for thread, _, pid in node_runs(log) if thread == "t"] == [run.pid, run.pid, worker.pid]
    assert_one_branch(db_path, "t")


# -- 6. one thread's pause, cancel or budget touches no other ----------------------------------------


def test_pause_cancel_and_budget_stop_one_thread_each_among_a_hundred(start_worker, run_agent, db_path: Path, log: Path) -> None:
    """Threads that would run for hours are paused and cancelled while they run; a research thread
    exceeds its token budget; the other 97 complete in the same worker."""
    endless = {"n": 10**6, "log": str(log), "delay": 0.05}
    submit(db_path, {"to-pause": endless, "to-cancel": endless}, priority=2)
    submit(db_path, {"over-budget": {"question": "Why is the sea salty?", "steps": 3}}, priority=1, graph="research", max_tokens=1)
    others = [f"t-{i}" for i in range(97)]
    submit(db_path, {t: plain(log) for t in others})

    worker = start_worker("--until-idle", concurrency=8)
    wait_until(lambda: {("to-pause", 0), ("to-cancel", 0)} <= set(runs_per_node(log)), "both endless threads running", worker)
    for verb, thread in (("pause", "to-pause"), ("cancel", "to-cancel")):
        asked = run_agent(verb, "--thread", thread, "--json")
        assert asked.returncode == 0 and json.loads(asked.stdout)["outcome"] == "requested", asked.stdout + asked.stderr
    assert worker.finish() == 0, worker.output()

    expected = {t: "completed" for t in others} | {"to-pause": "paused", "to-cancel": "cancelled", "over-budget": "budget_exceeded"}
    assert statuses(db_path) == expected
    assert queued(db_path) == {}
    assert_each_node_ran_once(log, others)
    finished = {e["thread_id"]: e["status"] for e in worker.events() if e["event"] == "finished"}
    assert finished == expected
    for thread in others:
        assert_one_branch(db_path, thread)


# -- 7. bad input to agent submit ---------------------------------------------------------------------


BAD_SUBMITS = {
    "unknown graph": ["no_such_graph", "--input", "{}"],
    "malformed JSON": ["research", "--input", '{"question": '],
    "bad input keys": ["research", "--input", '{"question": "q", "bogus": 1}'],
    "negative budget": ["research", "--input", '{"question": "q"}', "--max-tokens", "-1"],
    "existing thread": ["research", "--input", '{"question": "q"}'],
    "queued thread": ["research", "--input", '{"question": "q"}'],
}


def _refusal(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """The one `Error:` line and the `Hint:` of a refused command."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    hints = [line for line in proc.stderr.splitlines() if line.startswith("Hint:")]
    assert len(errors) == 1 and len(hints) == 1, proc.stderr
    return errors[0], hints[0]


def _as_run(refusal: tuple[str, str]) -> tuple[str, str]:
    """A refusal of `agent submit` as `agent run` words it: the same, but for the command's name."""
    return refusal[0], refusal[1].replace("agent submit", "agent run")


@pytest.mark.parametrize("case", list(BAD_SUBMITS))
def test_bad_input_to_submit_is_refused_as_run_refuses_it_and_changes_nothing(run_agent, db_path: Path, case: str) -> None:
    args = BAD_SUBMITS[case]
    if case == "existing thread":
        done = run_agent("run", "research", "--thread", "taken", "--input", '{"question": "q", "steps": 1}', "--quiet")
        assert done.returncode == 0, done.stderr
    submit(db_path, {"waiting": {"n": 1}})  # a queued thread too
    thread = {"existing thread": "taken", "queued thread": "waiting"}.get(case, "new")
    before = db_snapshot(db_path)

    submitted = _refusal(run_agent("submit", *args, "--thread", thread))
    assert db_snapshot(db_path) == before
    run = _refusal(run_agent("run", *args, "--thread", thread))
    assert db_snapshot(db_path) == before
    assert _as_run(submitted) == run


@pytest.mark.parametrize("case", [case for case in BAD_SUBMITS if "thread" not in case])
def test_bad_input_to_submit_creates_no_database(run_agent, db_path: Path, case: str) -> None:
    """As `agent run`: everything is checked before the file is made."""
    run = _refusal(run_agent("run", *BAD_SUBMITS[case], "--thread", "new"))
    assert nothing_written(db_path), "a refused run created the database"
    submitted = _refusal(run_agent("submit", *BAD_SUBMITS[case], "--thread", "new"))
    assert nothing_written(db_path), "a refused submit created the database"
    assert _as_run(submitted) == run


def test_submit_queues_a_run_that_a_worker_runs(run_agent, start_worker, db_path: Path, log: Path) -> None:
    done = run_agent("submit", GRAPH, "--thread", "t", "--input", json.dumps(plain(log)), "--priority", "3", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"thread_id": "t", "queued": "run"}
    assert statuses(db_path) == {"t": "queued"}
    assert query(db_path, "SELECT kind, priority FROM agent_queue WHERE thread_id = 't'") == [("run", 3)]

    worker = start_worker("--until-idle", concurrency=1)
    assert worker.finish() == 0, worker.output()
    assert statuses(db_path) == {"t": "completed"}
    assert_each_node_ran_once(log, ["t"])


# -- 8. agent workers ---------------------------------------------------------------------------------


def test_workers_lists_a_running_worker_then_shows_it_stale_once_killed(start_worker, run_agent, db_path: Path, log: Path, gate: Path) -> None:
    submit(db_path, {t: gated(log, gate) for t in ("a", "b")})
    worker = start_worker(concurrency=3)
    wait_until(lambda: held(log, ["a", "b"]), "two threads held", worker)
    wait_until(lambda: query(db_path, "SELECT running FROM agent_workers WHERE pid = ?", worker.pid) == [(2,)], "the worker's beat counts two", worker)

    listed = run_agent("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["pid"], r["status"], r["concurrency"], r["running"]) for r in rows] == [(worker.pid, "running", 3, 2)]

    kill_hard(worker)
    listed = run_agent("workers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["pid"], r["status"], r["running"]) for r in json.loads(listed.stdout)] == [(worker.pid, "stale", 0)]
