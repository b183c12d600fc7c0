"""The checkpoint store: our saver against LangGraph's conformance suite, history read from
columns against LangGraph's own, retention (prune, delete, vacuum) and `agent doctor`, the
conversion of a database in the old layout, and what the read commands import."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

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
    from runtime.threads import get_thread

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
    from runtime import get_history

    return [r.as_dict() for r in get_history(db, thread)]


# -- the saver ------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_async", [True, False], ids=["on-the-loop", "on-a-thread"])
def test_saver_passes_the_conformance_suite_base_and_extended(tmp_path, fast_async):
    from langgraph.checkpoint.conformance import checkpointer_test, validate

    from runtime import open_database
    from runtime.saver import open_saver

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


def test_each_step_stores_only_the_values_it_changed(db, monkeypatch):
    _failed_loop(db, "t", fail_at=40, limit=50, monkeypatch=monkeypatch)
    checkpoints = db.conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = 't'").fetchone()[0]
    blobs = db.conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 't'").fetchone()[0]
    # `limit` is written once; `n` and the loop's trigger once a step: about two values a step.
    # A channel with a version but no value gets no row (a missing row reads as empty).
    assert checkpoints == 41 and blobs <= 2 * checkpoints + 4
    assert db.conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 't' AND type = 'empty'").fetchone()[0] == 0
    assert db.conn.execute("SELECT count(*) FROM checkpoint_blobs WHERE thread_id = 't' AND channel = 'limit'").fetchone()[0] == 1


# -- history from columns ------------------------------------------------------------------------


@pytest.mark.parametrize("graph, data", [
    ("risky", {"fail_times": 2, "backoff": 0, "max_attempts": 5}),
    ("research", {"question": "Why is the sky blue?", "steps": 2}),
    ("task_queue", {"items": ["a", "b", "c", "d", "e"], "prompt": "Summarize: {item}"}),
])  # fmt: skip
def test_history_columns_match_langgraph_including_a_fork(db, graph, data):
    from runtime import get_history, resume_thread, run_thread
    from runtime.runner import RunSettings

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
    from runtime.retention import prune

    _failed_loop(db, "t", fail_at=30, limit=40, monkeypatch=monkeypatch)
    before = get_history(db, "t")
    report = prune(db, thread="t", keep=5)
    after = get_history(db, "t")
    assert [r.checkpoint_id for r in after] == [r.checkpoint_id for r in before[:5]]
    assert report.threads[0]["checkpoints_removed"] == len(before) - 5 and report.threads[0]["writes_removed"] > 0
    assert after[-1].writers == ["step"]  # recorded with the checkpoint, so it survives its parent
    oldest = after[-1].checkpoint_id
    assert resume_thread(db, "t").status == "completed"
    assert get_state(db, "t").values["n"] == 40
    assert resume_thread(db, "t", oldest).status == "completed"  # a fork from the oldest kept
    assert get_state(db, "t").values["n"] == 40
    # nothing is left that no checkpoint refers to
    from runtime.doctor import check_database

    assert all(f.ok for f in check_database(db.path))


def test_prune_keeps_what_a_delta_channel_is_rebuilt_from(db, monkeypatch):
    from runtime import get_history, get_state, resume_thread
    from runtime.retention import prune

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
    from nodes.storage import thread_label
    from runtime import run_thread

    for thread in ("gone.1", "kept"):
        run_thread(db, "task_queue", thread, {"items": ["a", "b"], "prompt": "Summarize: {item}"})
    kept_before = {t: rows for t, rows in db_snapshot(db_path).items()}
    result = cli("delete", "--thread", "gone.1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checkpoints"] > 0 and report["writes"] > 0 and report["blobs"] > 0 and report["store_items"] >= 4
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
    assert {c["check"] for c in checks} == {"integrity", "schema", "orphaned writes", "orphaned blobs", "runners", "schedule runs", "schedule graphs"}
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
    from runtime.db import _REGISTRY
    from runtime.schema import SCHEMA_VERSION

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
