"""PostgreSQL as the database (`--db postgresql://...`): what only a server has. Bad URLs, refused
credentials and missing rights, each one line and exit 2 with nothing half made; two processes
setting up one new database at once; a newer schema refused; fencing in LangGraph's savers.

The commands themselves run on both backends in the BOTH_BACKENDS modules (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess

import pytest

from tests.conftest import ROOT, agent_cmd, agent_env
from tests.postgres_server import admin_connection, agent_database, empty_database, postgres_off, server_url

pytestmark = pytest.mark.skipif(postgres_off(), reason="AGENT_TEST_POSTGRES=off leaves PostgreSQL out")

QUESTION = json.dumps({"question": "Why do durable agents matter?"})


def agent(db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd(*args), cwd=ROOT, env=agent_env(db), capture_output=True, text=True, timeout=120)  # type: ignore[arg-type]


def url_of(name: str, user: str = "postgres", password: str | None = None) -> str:
    from psycopg.conninfo import conninfo_to_dict

    server = conninfo_to_dict(server_url())
    secret = f":{password}" if password else ""
    return f"postgresql://{user}{secret}@{server.get('host') or '127.0.0.1'}:{server.get('port') or 5432}/{name}"


def tables_of(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error of a refused command: exit 2, an Error and a Hint line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and lines[1].startswith("Hint: "), proc.stderr
    return proc.stderr


def test_a_run_on_a_new_database_makes_every_table_and_the_cli_reads_it_back() -> None:
    with empty_database() as conninfo:
        from psycopg.conninfo import conninfo_to_dict

        url = url_of(conninfo_to_dict(conninfo)["dbname"])
        proc = agent(url, "run", "research", "--thread", "r", "--input", QUESTION, "--json")
        assert proc.returncode == 0, proc.stderr
        assert {"agent_threads", "agent_next", "checkpoints", "checkpoint_writes", "store"} <= tables_of(url)
        history = json.loads(agent(url, "history", "--thread", "r", "--json").stdout)
        assert [row["step"] for row in history][::-1] == list(range(-1, 6))
        assert history[0]["writers"] == ["synthesize"] and history[-1]["next"] == ["__start__"]


@pytest.mark.parametrize(
    ("make_url", "words"),
    [
        (lambda: "postgresql://postgres@127.0.0.1:1/agent", "cannot reach"),
        (lambda: "postgresql://postgres@127.0.0.1:notaport/agent", "cannot be read"),
        (lambda: "postgresql://postgres:s3cret-must-not-show@127.0.0.1/agent?nonsense=1", "cannot be read"),
        (lambda: url_of(f"agent_missing_{secrets.token_hex(4)}"), "does not exist"),
        (lambda: url_of("postgres", user=f"nobody_{secrets.token_hex(4)}", password="s3cret-must-not-show"), "refused the credentials"),
    ],
    ids=["unreachable", "malformed", "unknown parameter", "no such database", "unknown role"],
)
def test_a_database_that_cannot_be_used_is_one_line_and_exit_2(make_url, words: str) -> None:
    url = make_url()
    for args in (["run", "research", "--thread", "r", "--input", QUESTION], ["threads"]):
        stderr = one_line_error(agent(url, *args))
        assert words in stderr
        assert "s3cret-must-not-show" not in stderr


def test_a_role_that_may_not_create_tables_is_told_so_and_nothing_is_half_made() -> None:
    role = f"agent_reader_{secrets.token_hex(4)}"
    admin = admin_connection()
    try:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        with empty_database() as conninfo:
            from psycopg.conninfo import conninfo_to_dict

            name = conninfo_to_dict(conninfo)["dbname"]
            import psycopg

            with psycopg.connect(conninfo, autocommit=True) as conn:  # as PostgreSQL 15 has it for every new database
                conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
            stderr = one_line_error(agent(url_of(name, user=role), "run", "research", "--thread", "r", "--input", QUESTION))
            assert "may not create the tables" in stderr and "GRANT CREATE ON SCHEMA" in stderr
            assert tables_of(conninfo) == set()
    finally:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_two_processes_setting_up_one_new_database_at_once_both_succeed() -> None:
    from psycopg.conninfo import conninfo_to_dict

    with empty_database() as conninfo:
        url = url_of(conninfo_to_dict(conninfo)["dbname"])
        procs = [
            subprocess.Popen(
                agent_cmd("run", "research", "--thread", f"r{i}", "--input", QUESTION, "-q"),
                cwd=ROOT, env=agent_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # type: ignore[arg-type]
            )  # fmt: skip
            for i in range(4)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        import psycopg

        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM agent_schema").fetchall() == [(8,)]
            versions = [v for (v,) in conn.execute("SELECT v FROM checkpoint_migrations ORDER BY v")]
            assert versions == list(range(len(versions)))  # each LangGraph migration once
            assert conn.execute("SELECT count(*) FROM agent_threads WHERE status = 'completed'").fetchone() == (4,)


def test_a_database_of_a_newer_version_is_refused_and_left_alone() -> None:
    import psycopg

    with agent_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE agent_schema SET version = 99")
        stderr = one_line_error(agent(url, "threads"))
        assert "newer version of agent (schema 99" in stderr
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT version FROM agent_schema").fetchall() == [(99,)]


def _checkpoint(cid: str, step: int):
    from langgraph.checkpoint.base import empty_checkpoint

    return {**empty_checkpoint(), "id": cid, "channel_values": {"x": step}, "channel_versions": {"x": step}}, {"source": "loop", "step": step}


def test_a_runner_whose_lease_was_taken_writes_nothing_more_sync_and_async() -> None:
    import time

    from runtime import open_database
    from runtime.store.parts import immediate
    from runtime.store.parts import threads as thread_rows
    from runtime.store.seam import LEASE_KEY, LeaseLost, Owner

    with agent_database() as url:
        db = open_database(url)
        try:
            now = time.time()
            with immediate(db.conn):
                assert thread_rows.insert(db.conn, "t", "research", "1", {}, Owner(1, "a"), now)
            lease = thread_rows.get(db.conn, "t").lease
            saver = db.checkpointer()
            config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", LEASE_KEY: lease}}
            first = saver.put(config, *_checkpoint("1", 1), {"x": 1})
            saver.put_writes({"configurable": {**first["configurable"], LEASE_KEY: lease}}, [("x", 2)], "task-1")
            with immediate(db.conn):  # another runner takes the thread over
                assert thread_rows.take_over(db.conn, "t", lease, Owner(2, "b"), now)
            stale = {"configurable": {**first["configurable"], LEASE_KEY: lease}}
            with pytest.raises(LeaseLost):
                saver.put(stale, *_checkpoint("2", 2), {"x": 2})
            with pytest.raises(LeaseLost):
                saver.put_writes(stale, [("x", 3)], "task-2")

            async def late_async_writes() -> None:
                async with db.open_async() as (asaver, _store):
                    with pytest.raises(LeaseLost):
                        await asaver.aput(stale, *_checkpoint("3", 3), {"x": 3})
                    with pytest.raises(LeaseLost):
                        await asaver.aput_writes(stale, [("x", 4)], "task-3")
                    current = {"configurable": {**first["configurable"], LEASE_KEY: lease + 1}}
                    await asaver.aput(current, *_checkpoint("4", 4), {"x": 4})  # the new holder's are stored

            asyncio.run(late_async_writes())
            assert db.conn.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = 't' ORDER BY 1").fetchall() == [("1",), ("4",)]
            assert db.conn.execute("SELECT task_id FROM checkpoint_writes").fetchall() == [("task-1",)]
        finally:
            db.close()


# -- history, retention and doctor on PostgreSQL -----------------------------------------------------

LOOP = str(ROOT / "bench" / "loop_graph.py") + ":build"


@pytest.fixture
def pg(monkeypatch: pytest.MonkeyPatch):
    """A set-up database, opened, with the CLI pointed at it (`agent` in-process through `cli`)."""
    import sys

    from runtime import open_database

    monkeypatch.setattr(sys, "path", list(sys.path))  # a graph file's folder goes on sys.path
    with agent_database() as url:
        monkeypatch.setenv("AGENT_DB", url)
        with open_database(url) as db:
            yield db


def failed_loop(db, thread: str, fail_at: int, limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that stopped (failed) when its count reached `fail_at`: resumable."""
    from runtime import run_thread

    monkeypatch.setenv("BENCH_FAIL_AT", str(fail_at))
    assert run_thread(db, LOOP, thread, {"limit": limit}).status == "failed"
    monkeypatch.delenv("BENCH_FAIL_AT")


def agent_cli(*args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(agent_cmd(*args), cwd=ROOT, env=agent_env(os.environ["AGENT_DB"]), capture_output=True, text=True, timeout=120)  # type: ignore[arg-type]


def test_history_is_recorded_with_each_checkpoint_and_matches_langgraphs(pg, monkeypatch) -> None:
    """The tasks that ran and run next come from agent_next, as LangGraph's own get_state_history
    computes them; history of a thread written without them (no bound graph) computes them."""
    from graphs import load_graph
    from runtime import get_history

    failed_loop(pg, "t", fail_at=8, limit=10, monkeypatch=monkeypatch)
    graph = load_graph(LOOP).build().compile(checkpointer=pg.checkpointer())
    theirs = [(s.config["configurable"]["checkpoint_id"], list(s.next)) for s in graph.get_state_history({"configurable": {"thread_id": "t"}})]
    ours = [(r.checkpoint_id, r.next) for r in get_history(pg, "t")]
    assert ours == theirs
    assert pg.conn.execute("SELECT count(*) FROM agent_next WHERE thread_id = 't'").fetchone()[0] == len(theirs)
    pg.conn.execute("DELETE FROM agent_next")
    assert [(r.checkpoint_id, r.next) for r in get_history(pg, "t")] == theirs


def test_prune_keeps_the_newest_n_and_the_thread_still_resumes_and_forks(pg, monkeypatch) -> None:
    from runtime import get_history, get_state, resume_thread
    from runtime.doctor import check_database
    from runtime.threads.retention import prune

    failed_loop(pg, "t", fail_at=30, limit=40, monkeypatch=monkeypatch)
    before = get_history(pg, "t")
    report = prune(pg, thread="t", keep=5)
    after = get_history(pg, "t")
    assert [r.checkpoint_id for r in after] == [r.checkpoint_id for r in before[:5]]
    assert report.threads[0]["checkpoints_removed"] == len(before) - 5 and report.threads[0]["writes_removed"] > 0
    assert report.threads[0]["blobs_removed"] > 0  # values no kept checkpoint refers to
    oldest = after[-1].checkpoint_id
    assert resume_thread(pg, "t").status == "completed"
    assert get_state(pg, "t").values["n"] == 40
    assert resume_thread(pg, "t", oldest).status == "completed"  # a fork from the oldest kept
    assert get_state(pg, "t").values["n"] == 40
    assert all(f.ok for f in check_database(pg.url)), [f for f in check_database(pg.url) if not f.ok]


def test_delete_removes_everything_of_the_thread_and_nothing_else(pg) -> None:
    from runtime import run_thread

    for thread in ("gone", "kept"):
        run_thread(pg, "task_queue", thread, {"items": ["a", "b"], "prompt": "Summarize: {item}"})

    def rows(thread: str) -> dict[str, int]:
        counts = {t: pg.conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = %s", (thread,)).fetchone()[0]
                  for t in ("checkpoints", "checkpoint_writes", "checkpoint_blobs", "agent_next", "agent_threads", "agent_spend")}  # fmt: skip
        counts["store"] = pg.conn.execute("SELECT count(*) FROM store WHERE prefix LIKE %s", (f"%.{thread}",)).fetchone()[0]
        return counts

    kept = rows("kept")
    result = agent_cli("delete", "--thread", "gone", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checkpoints"] > 0 and report["store_items"] >= 4 and report["registry"] == 1
    gone = rows("gone")
    assert gone.pop("agent_spend") == 1  # kept, as on SQLite: what the thread cost stays on record
    assert gone == dict.fromkeys(gone, 0)
    assert rows("kept") == kept


def test_dry_runs_change_nothing_and_the_real_ones_do_what_they_said(pg, monkeypatch) -> None:
    from tests.conftest import db_snapshot

    failed_loop(pg, "t", fail_at=15, limit=20, monkeypatch=monkeypatch)
    pg.conn.execute(
        "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob) "
        "VALUES ('t', '', 'no-such-checkpoint', 'task', 0, 'n', 'msgpack', '\\x01')"
    )
    before = db_snapshot(pg.url)
    prune = agent_cli("prune", "--keep", "2", "--orphans", "--dry-run", "--json")
    assert prune.returncode == 0, prune.stderr
    report = json.loads(prune.stdout)
    assert report["dry_run"] and report["threads"][0]["checkpoints_removed"] == 14 and report["orphans"]["writes"] == 1
    assert json.loads(agent_cli("delete", "--thread", "t", "--dry-run", "--json").stdout)["checkpoints"] == 16
    assert json.loads(agent_cli("vacuum", "--dry-run", "--json").stdout)["dry_run"] is True
    assert db_snapshot(pg.url) == before
    assert json.loads(agent_cli("prune", "--keep", "2", "--orphans", "--json").stdout)["threads"] == report["threads"]
    assert pg.conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 2
    vacuum = agent_cli("vacuum", "--json")
    assert vacuum.returncode == 0 and json.loads(vacuum.stdout)["bytes_after"] > 0, vacuum.stderr


def test_doctor_finds_planted_problems_and_says_how_to_fix_them(pg, monkeypatch) -> None:
    import socket
    import sys
    import time

    failed_loop(pg, "t", fail_at=5, limit=10, monkeypatch=monkeypatch)
    healthy = agent_cli("doctor", "--json")
    assert healthy.returncode == 0 and all(c["ok"] for c in json.loads(healthy.stdout)["checks"]), healthy.stdout
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    pg.conn.execute(
        "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob) "
        "VALUES ('t', '', 'no-such-checkpoint', 'task', 0, 'n', 'msgpack', '\\x01')"
    )
    pg.conn.execute(
        "UPDATE agent_threads SET status = 'running', owner_pid = %s, owner_host = %s, owner_since = %s, heartbeat_at = %s",
        (dead.pid, socket.gethostname(), now, now),
    )
    result = agent_cli("doctor")
    assert result.returncode == 1
    assert "PROBLEM  orphaned writes: 1 write(s)" in result.stdout and "agent prune --orphans" in result.stdout
    assert "PROBLEM  runners: 1 thread(s)" in result.stdout and "agent resume --thread t" in result.stdout
    assert agent_cli("prune", "--orphans").returncode == 0
    assert agent_cli("resume", "--thread", "t").returncode == 0  # takes the dead runner's thread over
    assert agent_cli("doctor").returncode == 0


def test_a_run_that_loses_the_database_stops_at_a_node_boundary_and_resumes(endpoint) -> None:
    """`agent run` reaches PostgreSQL through a proxy the test cuts while the run's model call is
    held: past its lease the run says so and stops at the next node boundary (`stopped`, exit 130,
    with how to resume); the proxy restored, nothing is lost and `agent resume` finishes it."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.conftest import ENDPOINT_MODEL, LineReader, finish, queue_input
    from tests.tcp_proxy import TcpProxy

    with agent_database() as url:
        server = conninfo_to_dict(url)
        with TcpProxy(server["host"], int(server["port"])) as proxy:
            through_proxy = url.replace(f":{server['port']}/", f":{proxy.port}/")
            env = {**agent_env(through_proxy), **endpoint.env, "AGENT_LEASE_SECONDS": "2"}  # type: ignore[arg-type]
            endpoint.server.hold(after=2)
            proc = subprocess.Popen(
                agent_cmd("run", "task_queue", "--thread", "q", "--input", queue_input(6), "--model", ENDPOINT_MODEL, "--concurrency", "1"),
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            stderr = LineReader(proc.stderr)
            endpoint.server.wait_held(1, proc)  # the third item's call, in flight
            proxy.cut()
            stderr.wait_for("the database could not be reached")
            proxy.restore()
            endpoint.server.release()
            out, err = finish(proc, stderr)
        assert proc.returncode == 130, err
        assert "the lease lapsed; stopped at a node boundary" in err and "agent resume --thread q" in err
        status = json.loads(agent(url, "status", "--thread", "q", "--json").stdout)
        assert status["status"] == "stopped" and status["runner"] is None
        resumed = subprocess.run(
            agent_cmd("resume", "--thread", "q", "--quiet"), cwd=ROOT, env={**agent_env(url), **endpoint.env}, capture_output=True, text=True, timeout=120  # type: ignore[arg-type]
        )
        assert resumed.returncode == 0, resumed.stderr
        results = [json.loads(line) for line in agent(url, "results", "--thread", "q").stdout.splitlines()]
        assert [r["index"] for r in results] == list(range(6)) and {r["status"] for r in results} == {"done"}


def test_only_a_server_out_of_reach_is_waited_out() -> None:
    """A worker and a runner wait out a lost connection; a statement the server refused (a bug,
    a constraint) is raised, never retried for ever."""
    import sqlite3

    import psycopg
    from procrastinate.exceptions import ConnectorException
    from psycopg_pool import PoolTimeout

    from runtime.store.parts import out_of_reach

    wrapped = ConnectorException("Database error.")
    wrapped.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    refused = ConnectorException("Database error.")
    refused.__cause__ = psycopg.errors.UniqueViolation("duplicate key")
    assert out_of_reach(psycopg.OperationalError("consuming input failed")) and out_of_reach(PoolTimeout("no connection")) and out_of_reach(wrapped)
    assert not any(out_of_reach(e) for e in (psycopg.errors.UniqueViolation("dup"), refused, ValueError("bug"), sqlite3.OperationalError("database is locked")))
