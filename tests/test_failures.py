"""Failure semantics: deadlines, node timeouts, status from another process, waiting for a
busy thread, many processes on one database, and databases that cannot be used.

Where a second process must find the first still running, the first runs on the fake model
endpoint held mid-way (`endpoint.server.hold`), and is let go only after the second has acted.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import ENDPOINT_MODEL, ROOT, LineReader, agent_cmd, agent_env, finish, queue_input, results_of, status_of, wait_for_results




def test_deadline_stops_at_a_node_boundary_and_resume_continues(cli):
    run = cli("run", "task_queue", "--thread", "d", "--input", queue_input(12), "--model", "offline:latency=0.2",
              "--concurrency", "2", "--deadline", "0.5s", "--quiet")  # fmt: skip
    assert run.exit_code == 1, run.output
    assert "deadline of 0.5s passed" in run.stderr and "agent resume --thread d" in run.stderr
    status = status_of(cli, "d")
    # 12 items of 0.2 s two at a time take at least 1.2 s: the deadline comes first. How many
    # finished before it depends on how busy the machine is, so that is not asserted.
    assert status["status"] == "timeout" and status["progress"]["done"] < 12
    assert len(results_of(cli, "d")) == status["progress"]["done"]
    # The deadline is stored with the thread and starts afresh on resume; lift it to finish.
    resumed = cli("resume", "--thread", "d", "--deadline", "0", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    rows = results_of(cli, "d")
    assert [r["index"] for r in rows] == list(range(12)) and all(r["status"] == "done" for r in rows)


def test_queue_items_that_time_out_are_retried_then_given_up(cli):
    run = cli("run", "task_queue", "--thread", "t", "--input", queue_input(3), "--model", "offline:latency=2",
              "--node-timeout", "0.05s", "--max-attempts", "2", "--backoff", "0", "--quiet")  # fmt: skip
    assert run.exit_code == 0, run.output
    rows = results_of(cli, "t")
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 2)] * 3
    assert all("TimeoutError: the model did not answer within 0.05s" in r["error"] for r in rows)


def test_a_timed_out_step_fails_the_run_after_its_attempts_and_resumes(cli):
    run = cli("run", "research", "--thread", "r", "--input", '{"question": "q", "steps": 1}',
              "--model", "offline:latency=2", "--node-timeout", "0.05", "--max-attempts", "2", "--backoff", "0")  # fmt: skip
    assert run.exit_code == 1
    assert "TimeoutError: the model did not answer within 0.05s" in run.stderr
    assert status_of(cli, "r")["status"] == "failed"
    # Without the node timeout too: 0.05 s is not a bound an answer meets on a busy machine.
    fixed = cli("resume", "--thread", "r", "--model", "offline", "--node-timeout", "0", "--quiet")
    assert fixed.exit_code == 0, fixed.output
    assert status_of(cli, "r")["settings"]["model"] == "offline"


def test_risky_attempts_that_time_out_take_the_retry_then_give_up_branch(cli):
    run = cli("run", "risky", "--thread", "k", "--node-timeout", "0.05", "--backoff", "0", "--input",
              '{"duration": 5, "max_attempts": 2}')  # fmt: skip
    assert run.exit_code == 0
    state = json.loads(cli("state", "--thread", "k", "--json").stdout)["values"]
    assert state["outcome"] == "gave_up" and state["attempts"] == 2
    assert state["give_up_reason"].startswith("gave up after 2 of 2 attempts: TimeoutError")
    threads = json.loads(cli("threads", "--json").stdout)
    assert threads[0]["error"] == state["give_up_reason"]


@pytest.mark.parametrize("bad", ["soon", "10 minutes", "-5s", "5x"])
def test_bad_durations_exit_2(cli, db_path, bad):
    result = cli("run", "risky", "--thread", "x", "--deadline", bad)
    assert result.exit_code == 2 and "is not a duration" in result.stderr
    assert not db_path.exists()


def _start_held(spawn_agent, endpoint, db_path, thread: str, count: int, done: int) -> subprocess.Popen:
    """A queue on the endpoint, two at a time, held with `done` items finished and two in flight."""
    endpoint.server.hold(after=done)
    proc = spawn_agent("run", "task_queue", "--thread", thread, "--input", queue_input(count), "--model", ENDPOINT_MODEL,
                       "--concurrency", "2", "--quiet", **endpoint.env)  # fmt: skip
    wait_for_results(proc, db_path, thread, done)
    endpoint.server.wait_held(2, proc)
    return proc


def test_status_from_another_process_while_running(cli, db_path, spawn_agent, endpoint):
    proc = _start_held(spawn_agent, endpoint, db_path, "s", count=20, done=4)
    live = status_of(cli, "s")
    assert live["status"] == "running"
    assert live["runner"]["pid"] == proc.pid and live["runner"]["alive"] is True
    assert live["progress"]["total"] == 20 and live["progress"]["done"] == 4
    endpoint.server.release()
    assert proc.wait(timeout=120) == 0
    done = status_of(cli, "s")
    assert done["status"] == "completed" and done["runner"] is None and done["progress"]["done"] == 20


def test_resume_wait_takes_the_thread_over_when_its_runner_stops(cli, db_path, spawn_agent, endpoint):
    first = _start_held(spawn_agent, endpoint, db_path, "w", count=40, done=2)
    first_err = LineReader(first.stderr)
    second = spawn_agent("resume", "--thread", "w", "--wait", "10m", "--deadline", "0", "--quiet", **endpoint.env)
    second_err = LineReader(second.stderr)
    second_err.wait_for(f"waiting for pid {first.pid}")
    # Stop the first: once it says it is stopping, its two items in flight may finish.
    first.send_signal(signal.SIGTERM)
    first_err.wait_for("Stopping: ")
    endpoint.server.release()
    _, err = finish(first, first_err)
    assert first.returncode == 130, err  # stopped by the signal
    _, err = finish(second, second_err)
    assert second.returncode == 0, err
    rows = results_of(cli, "w")
    assert [r["index"] for r in rows] == list(range(40))


def test_eight_processes_on_eight_threads_of_one_database(db_path, tmp_path):
    procs = [
        subprocess.Popen(
            agent_cmd("run", "task_queue", "--thread", f"p{i}", "--input", queue_input(30, f"p{i}"), "--model",
                      "offline:latency=0.01", "--concurrency", "4", "--quiet"),  # fmt: skip
            cwd=ROOT, env=agent_env(db_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(8)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "locked" not in err
    conn = sqlite3.connect(db_path)
    counts = dict(conn.execute("SELECT prefix, count(*) FROM store WHERE prefix LIKE 'results.%' GROUP BY prefix"))
    statuses = set(r[0] for r in conn.execute("SELECT status FROM agent_threads"))
    conn.close()
    assert counts == {f"results.p{i}": 30 for i in range(8)} and statuses == {"completed"}


def _completed_db(cli, db_path) -> bytes:
    assert cli("run", "task_queue", "--thread", "a", "--input", queue_input(5), "--quiet").exit_code == 0
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db_path.read_bytes()


def test_database_from_a_newer_version_is_refused_untouched(cli, db_path):
    _completed_db(cli, db_path)
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db_path.read_bytes()
    for args in (["threads"], ["resume", "--thread", "a"], ["run", "risky", "--thread", "n"]):
        result = cli(*args)
        assert result.exit_code == 2 and "newer version of agent" in result.stderr
        assert "Traceback" not in result.stderr
    assert db_path.read_bytes() == before


def test_truncated_database_is_refused_untouched(cli, db_path):
    data = _completed_db(cli, db_path)
    db_path.write_bytes(data[: len(data) // 2])
    for wal in db_path.parent.glob(db_path.name + "-*"):
        wal.unlink()
    before = db_path.read_bytes()
    for args in (["threads"], ["history", "--thread", "a"], ["results", "--thread", "a"], ["resume", "--thread", "a"]):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert db_path.read_bytes() == before


def test_database_path_that_cannot_be_created(cli, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    result = cli("run", "risky", "--thread", "x", "--db", str(blocker / "agent.db"))
    assert result.exit_code == 2 and "cannot create" in result.stderr


def _can_mount() -> bool:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs a private mount namespace (unshare -m) to make a read-only directory")
def test_read_only_database_directory(cli, db_path, tmp_path):
    """A real read-only filesystem (root ignores permission bits, so chmod would prove nothing)."""
    _completed_db(cli, db_path)
    mount_dir = tmp_path / "ro"
    mount_dir.mkdir()
    script = (
        f"mount -t tmpfs -o size=16m tmpfs {mount_dir} && cp {db_path} {mount_dir}/agent.db && "
        f"mount -o remount,ro {mount_dir} && "
        f"{sys.executable} -c 'from cli import main; main()' threads --db {mount_dir}/agent.db; echo rc=$?; "
        f"{sys.executable} -c 'from cli import main; main()' run risky --thread n --db {mount_dir}/new.db; echo rc=$?"
    )
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=agent_env(db_path), capture_output=True, text=True, timeout=60)
    assert result.stdout.count("rc=2") == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "its directory is read-only" in result.stderr and "Error: cannot create" in result.stderr


def test_tampered_checkpoint_cannot_construct_objects(cli, db_path, tmp_path, run_agent):
    """An object smuggled into a checkpoint is not constructed when the thread is read."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    _completed_db(cli, db_path)
    marker = tmp_path / "constructed"
    permissive = JsonPlusSerializer(allowed_msgpack_modules=True)
    conn = sqlite3.connect(db_path)
    cid, type_, blob = conn.execute(
        "SELECT checkpoint_id, type, checkpoint FROM checkpoints WHERE thread_id = 'a' ORDER BY checkpoint_id DESC LIMIT 1"
    ).fetchone()
    checkpoint = permissive.loads_typed((type_, blob))
    from tests.tamper_payload import Payload

    checkpoint["channel_values"]["prompt"] = Payload(path=str(marker))
    marker.unlink()  # constructing it above wrote the marker; it must not come back on load
    type_, blob = permissive.dumps_typed(checkpoint)
    conn.execute("UPDATE checkpoints SET type = ?, checkpoint = ? WHERE thread_id = 'a' AND checkpoint_id = ?", (type_, blob, cid))
    conn.commit()
    conn.close()

    strict = run_agent("state", "--thread", "a", "--json", PYTHONPATH=str(ROOT))
    assert strict.returncode in (0, 2), strict.stderr
    assert not marker.exists()
    # The same read with the protection turned off does construct it: the test can fail.
    loose = run_agent("state", "--thread", "a", "--json", LANGGRAPH_STRICT_MSGPACK="false", PYTHONPATH=str(ROOT))
    assert loose.returncode == 0, loose.stderr
    assert marker.exists()


def _first_to_exit(procs: list[subprocess.Popen], timeout: float = 120) -> subprocess.Popen:
    """The first of `procs` to end (polled: a process's exit is the signal waited for)."""
    deadline = time.monotonic() + timeout
    while not (ended := [p for p in procs if p.poll() is not None]):
        assert time.monotonic() < deadline, f"none of {len(procs)} processes ended in {timeout}s"
        time.sleep(0.05)
    return ended[0]


def test_two_resumes_started_together_exactly_one_runs(cli, db_path, spawn_agent, endpoint):
    stopped = cli("run", "task_queue", "--thread", "two", "--input", queue_input(24), "--model", "offline:latency=0.2",
                  "--concurrency", "2", "--deadline", "0.5s", "--quiet")  # fmt: skip
    assert stopped.exit_code == 1 and status_of(cli, "two")["status"] == "timeout"
    # The resumes go to the held endpoint: whichever wins cannot finish before the other has lost.
    endpoint.server.hold()
    racers = [spawn_agent("resume", "--thread", "two", "--deadline", "0", "--quiet", "--model", ENDPOINT_MODEL, **endpoint.env) for _ in range(2)]
    loser = _first_to_exit(racers)
    winner = next(proc for proc in racers if proc is not loser)
    _, loser_err = loser.communicate()
    assert loser.returncode == 2 and f"is being run by pid {winner.pid}" in loser_err, loser_err
    assert winner.poll() is None
    endpoint.server.release()
    _, winner_err = winner.communicate(timeout=120)
    assert winner.returncode == 0, winner_err
    rows = results_of(cli, "two")
    assert [r["index"] for r in rows] == list(range(24)) and all(r["status"] == "done" for r in rows)


@pytest.mark.skipif(not _can_mount(), reason="needs a private mount namespace (unshare -m) for a small file system")
def test_a_full_disk_fails_the_run_cleanly_and_resume_finishes_once_there_is_room(db_path, tmp_path):
    """A real full file system: a 600 KB tmpfs fills while the queue loads its items."""
    items = tmp_path / "items.txt"
    items.write_text("\n".join("x" * 300 + str(i) for i in range(3000)))
    disk = tmp_path / "disk"
    disk.mkdir()
    agent = f"{sys.executable} -c 'from cli import main; main()'"
    spec = json.dumps({"items_file": str(items), "prompt": "Summarize: {item}"})
    script = (
        f"mount -t tmpfs -o size=600k tmpfs {disk} && "
        f"{agent} run task_queue --thread f --db {disk}/a.db --quiet --input '{spec}'; echo run=$?; "
        f"{agent} status --thread f --db {disk}/a.db --json; "
        f"mount -o remount,size=64m {disk} && "
        f"{agent} resume --thread f --db {disk}/a.db --quiet; echo resume=$?; "
        f"{agent} results --thread f --db {disk}/a.db | wc -l"
    )
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, env=agent_env(db_path), capture_output=True, text=True, timeout=180)
    out = result.stdout
    assert "run=1" in out and "resume=0" in out, (out, result.stderr)
    status = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert status["status"] == "failed" and "disk is full" in status["error"]
    assert "Traceback" not in result.stderr and "Resume with: agent resume --thread f" in result.stderr
    assert out.strip().splitlines()[-1].strip() == "3000"
