"""Export and import of a thread (`agent export`, `agent import`): one database file to another.

The round trip runs the real CLI as processes; the refusals (not a bundle, cut short, damaged,
newer, a taken id) run it in-process and prove with `db_snapshot` that nothing was written.
"""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ENDPOINT_MODEL, ROOT, LineReader, agent_cmd, agent_env, db_snapshot, finish, queue_input, wait_for_results

QUESTION = json.dumps({"question": "Why is the sky blue?", "steps": 3})
PLAN = json.dumps({
    "request": "Close inactive accounts",
    "actions": [
        {"kind": "read_data", "target": "customers", "detail": "inactive accounts"},
        {"kind": "delete_data", "target": "customers", "detail": "inactive rows"},
    ],
})  # fmt: skip


def agent(db: Path, *args: str, stdin=None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The `agent` CLI as a real process on database `db`."""
    return subprocess.run(
        agent_cmd(*args), cwd=ROOT, env=agent_env(db), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=180
    )


def read_out(db: Path, *args: str) -> str:
    done = agent(db, *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def views(db: Path, thread: str, results: bool = True) -> dict[str, object]:
    """What history, state, status and (for a queue) results say of a thread."""
    seen = {
        "history": json.loads(read_out(db, "history", "--thread", thread, "--json")),
        "state": json.loads(read_out(db, "state", "--thread", thread, "--json")),
        "status": json.loads(read_out(db, "status", "--thread", thread, "--json")),
    }
    if results:
        seen["results"] = [json.loads(line) for line in read_out(db, "results", "--thread", thread).splitlines()]
    return seen


def records(bundle: Path) -> list[dict]:
    with gzip.open(bundle, "rt") as lines:
        return [json.loads(line) for line in lines]


def write_records(bundle: Path, rows: list[dict]) -> None:
    with gzip.open(bundle, "wt") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)


def test_a_stopped_queue_and_a_branched_thread_move_to_another_file_and_the_queue_finishes_there(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    stopped = agent(a, "run", "task_queue", "--thread", "q", "--input", queue_input(40), "--model", "offline:reply_chars=40",
                    "--concurrency", "1", "--max-tokens", "100", "--quiet")  # fmt: skip
    assert stopped.returncode == 4, stopped.stderr.decode()  # budget_exceeded: part of the items done
    assert agent(a, "run", "research", "--thread", "r", "--input", QUESTION, "--quiet").returncode == 0
    branched = agent(a, "resume", "--thread", "r", "--checkpoint", "2", "--set", "steps=2", "--quiet")
    assert branched.returncode == 0, branched.stderr.decode()

    with open(tmp_path / "q.bundle", "wb") as bundle:  # to stdout, redirected
        exported = agent(a, "export", "--thread", "q", stdout=bundle)
    assert exported.returncode == 0 and "Exported thread q" in exported.stderr.decode()
    assert agent(a, "export", "--thread", "r", "--output", str(tmp_path / "r.bundle")).returncode == 0
    with open(tmp_path / "q.bundle", "rb") as bundle:  # from stdin
        imported = agent(b, "import", "-", stdin=bundle)
    assert imported.returncode == 0, imported.stderr.decode()
    assert "agent resume --thread q" in imported.stderr.decode()
    assert agent(b, "import", str(tmp_path / "r.bundle")).returncode == 0

    assert views(b, "q") == views(a, "q")
    assert views(b, "r", results=False) == views(a, "r", results=False)
    history = views(b, "r", results=False)["history"]
    assert sorted(row["source"] for row in history if row["step"] == 3) == ["loop", "update"]  # both branches are there
    before = views(b, "q")
    done = [row for row in before["results"] if row["status"] == "done"]
    assert before["status"]["status"] == "budget_exceeded" and 1 <= len(done) < 40

    resumed = agent(b, "resume", "--thread", "q", "--max-tokens", "100000", "--quiet")
    assert resumed.returncode == 0, resumed.stderr.decode()
    after = views(b, "q")
    assert len(after["results"]) == 40 and all(row["status"] == "done" for row in after["results"])
    assert after["results"][: len(done)] == done  # what was done is kept as it was, not done again
    assert after["status"]["spend"]["calls"] == 40  # one call an item, over both files: none redone
    assert views(a, "q")["status"]["status"] == "budget_exceeded"  # the original is not touched


def test_pending_approvals_move_with_the_thread_and_are_answered_there(cli, db_path: Path, tmp_path: Path) -> None:
    assert cli("run", "approval", "--thread", "a", "--input", PLAN, "--background", "--quiet").exit_code == 3
    pending = json.loads(cli("approvals", "--thread", "a", "--json").stdout)
    assert cli("export", "--thread", "a", "--output", str(tmp_path / "a.bundle")).exit_code == 0
    other = tmp_path / "other.db"
    imported = cli("import", str(tmp_path / "a.bundle"), "--db", str(other), "--thread", "a2", "--json")
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert (report["thread_id"], report["source_thread_id"], report["status"]) == ("a2", "a", "interrupted")
    assert report["writes"] >= 1  # the interrupts are pending writes
    moved = json.loads(cli("approvals", "--thread", "a2", "--db", str(other), "--json").stdout)
    assert [p["id"] for p in moved] == [p["id"] for p in pending]
    approved = cli("approve", "--thread", "a2", "--db", str(other), "--all", "--quiet")
    assert approved.exit_code == 0, approved.output
    assert json.loads(cli("status", "--thread", "a2", "--db", str(other), "--json").stdout)["status"] == "completed"


def test_under_another_id_the_queue_keeps_its_items_and_results(cli, tmp_path: Path) -> None:
    assert cli("run", "task_queue", "--thread", "q.1", "--input", queue_input(5), "--quiet").exit_code == 0
    assert cli("export", "--thread", "q.1", "-o", str(tmp_path / "q.bundle")).exit_code == 0
    assert cli("import", str(tmp_path / "q.bundle"), "--thread", "q%2").exit_code == 0  # labels escape '.' and '%'
    original = [json.loads(line) for line in cli("results", "--thread", "q.1").stdout.splitlines()]
    copied = [json.loads(line) for line in cli("results", "--thread", "q%2").stdout.splitlines()]
    assert copied == original and len(copied) == 5
    assert cli("resume", "--thread", "q%2", "--quiet").exit_code == 2  # completed: nothing to resume, as for q.1


def test_export_reads_checkpoints_page_by_page_and_keeps_each_after_its_parent(cli, db_path: Path, tmp_path: Path, monkeypatch) -> None:
    from runtime.threads import bundle

    monkeypatch.setattr(bundle, "PAGE", 3)
    assert cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet").exit_code == 0
    assert cli("resume", "--thread", "r", "--checkpoint", "1", "--quiet").exit_code == 0
    assert cli("export", "--thread", "r", "-o", str(tmp_path / "r.bundle")).exit_code == 0
    rows = records(tmp_path / "r.bundle")
    seen: set[str] = set()
    for row in rows:
        if row.get("kind") == "checkpoint":
            assert row["parent"] is None or row["parent"] in seen
            seen.add(row["id"])
    assert len(seen) == len(json.loads(cli("history", "--thread", "r", "--json").stdout))
    assert cli("import", str(tmp_path / "r.bundle"), "--thread", "r2").exit_code == 0
    history = [{**row, "checkpoint_id": None} for row in json.loads(cli("history", "--thread", "r", "--json").stdout)]
    again = [{**row, "checkpoint_id": None} for row in json.loads(cli("history", "--thread", "r2", "--json").stdout)]
    assert again == history


def test_a_checkpoint_carries_only_the_values_its_parent_does_not_have(cli, tmp_path: Path) -> None:
    assert cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet").exit_code == 0
    assert cli("export", "--thread", "r", "-o", str(tmp_path / "r.bundle")).exit_code == 0
    checkpoints = [row for row in records(tmp_path / "r.bundle") if row.get("kind") == "checkpoint"]
    assert "question" in checkpoints[1]["values"]  # the input, written by __start__
    assert all("question" not in row["values"] for row in checkpoints[2:])


def test_export_of_an_unknown_thread_exits_2_and_writes_no_file(cli, db_path: Path, tmp_path: Path) -> None:
    assert cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet").exit_code == 0
    refused = cli("export", "--thread", "nope", "--output", str(tmp_path / "x.bundle"))
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: no thread 'nope'")
    assert not (tmp_path / "x.bundle").exists() and not (tmp_path / "x.bundle.part").exists()
    nowhere = cli("export", "--thread", "r", "--output", str(tmp_path / "no" / "such" / "r.bundle"))
    assert nowhere.exit_code == 2 and "cannot write" in nowhere.stderr and "Hint: give --output a path" in nowhere.stderr


@pytest.fixture
def bundle_and_target(cli, db_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A bundle of a finished queue, and another database holding a thread of its own."""
    assert cli("run", "task_queue", "--thread", "q", "--input", queue_input(3), "--quiet").exit_code == 0
    bundle = tmp_path / "q.bundle"
    assert cli("export", "--thread", "q", "-o", str(bundle)).exit_code == 0
    target = tmp_path / "target.db"
    assert cli("run", "task_queue", "--thread", "mine", "--input", queue_input(2), "--db", str(target), "--quiet").exit_code == 0
    return bundle, target


def _refused(cli, target: Path, *args: str, says: str) -> None:
    before = db_snapshot(target)
    result = cli("import", *args, "--db", str(target))
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and says in lines[0] and lines[1].startswith("Hint: "), result.stderr
    assert "Traceback" not in result.output
    assert db_snapshot(target) == before


def test_an_existing_thread_id_is_refused_and_nothing_is_written(cli, bundle_and_target) -> None:
    bundle, target = bundle_and_target
    assert cli("import", str(bundle), "--db", str(target)).exit_code == 0
    _refused(cli, target, str(bundle), says="thread 'q' already exists")
    _refused(cli, target, str(bundle), "--thread", "mine", says="thread 'mine' already exists")


def test_files_that_are_not_whole_bundles_are_refused_and_nothing_is_written(cli, bundle_and_target, tmp_path: Path) -> None:
    bundle, target = bundle_and_target
    text = tmp_path / "notes.txt"
    text.write_text("not a bundle\n")
    _refused(cli, target, str(text), says="is not a thread bundle")
    other_json = tmp_path / "other.gz"
    write_records(other_json, [{"hello": "world"}])
    _refused(cli, target, str(other_json), says="is not a thread bundle")
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    _refused(cli, target, str(cut), says="cut short or damaged")
    rows = records(bundle)
    short = tmp_path / "short.bundle"
    write_records(short, rows[:-1])  # no end record
    _refused(cli, target, str(short), says="ends before its last record")
    missing = tmp_path / "missing.bundle"
    write_records(missing, [row for row in rows if row.get("kind") != "writes"])
    _refused(cli, target, str(missing), says="do not add up")
    newer = tmp_path / "newer.bundle"
    write_records(newer, [{**rows[0], "version": 2}, *rows[1:]])
    _refused(cli, target, str(newer), says="newer than this agent reads")
    _refused(cli, target, str(tmp_path / "absent.bundle"), says="no file")


def test_a_record_found_damaged_midway_rolls_the_whole_import_back(cli, bundle_and_target, tmp_path: Path) -> None:
    bundle, target = bundle_and_target
    rows = records(bundle)
    last = max(i for i, row in enumerate(rows) if row.get("kind") == "checkpoint")
    rows[last]["checkpoint"] = ["msgpack", "!!not base64!!"]  # found only after the thread and earlier checkpoints are stored
    damaged = tmp_path / "damaged.bundle"
    write_records(damaged, rows)
    _refused(cli, target, str(damaged), says="a checkpoint record does not read")
    assert cli("threads", "--db", str(target), "--json").stdout.count('"thread_id"') == 1


def test_a_bad_file_leaves_no_new_database_behind(cli, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a bundle\n")
    result = cli("import", str(text), "--db", str(tmp_path / "new.db"))
    assert result.exit_code == 2 and not (tmp_path / "new.db").exists()


def test_a_running_thread_is_exported_as_it_is_and_imported_stopped(spawn_agent, cli, endpoint, db_path: Path, tmp_path: Path) -> None:
    endpoint.server.hold(after=2)
    proc = spawn_agent("run", "task_queue", "--thread", "T", "--input", queue_input(8), "--model", ENDPOINT_MODEL,
                       "--concurrency", "2", **endpoint.env)  # fmt: skip
    stderr = LineReader(proc.stderr)
    wait_for_results(proc, db_path, "T", 2)
    endpoint.server.wait_held(2, proc)

    exported = cli("export", "--thread", "T", "-o", str(tmp_path / "t.bundle"), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["status"] == "running"
    endpoint.server.release()
    finish(proc, stderr)
    assert proc.returncode == 0

    other = tmp_path / "other.db"
    assert cli("import", str(tmp_path / "t.bundle"), "--db", str(other)).exit_code == 0
    status = json.loads(cli("status", "--thread", "T", "--db", str(other), "--json").stdout)
    assert status["status"] == "stopped" and status["runner"] is None
    results = [json.loads(line) for line in cli("results", "--thread", "T", "--db", str(other)).stdout.splitlines()]
    assert [row["index"] for row in results] == [0, 1]  # what was stored when it was read
    resumed = cli("resume", "--thread", "T", "--db", str(other), "--model", "offline", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert len(cli("results", "--thread", "T", "--db", str(other)).stdout.splitlines()) == 8


def test_export_to_a_terminal_is_refused(cli, db_path: Path) -> None:
    import os
    import pty

    assert cli("run", "research", "--thread", "r", "--input", QUESTION, "--quiet").exit_code == 0
    leader, follower = pty.openpty()
    try:
        refused = agent(db_path, "export", "--thread", "r", stdout=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert refused.returncode == 2 and "not written to a terminal" in refused.stderr.decode()


def _checkpoint(cid: str, values: dict, versions: dict) -> dict:
    from langgraph.checkpoint.base import empty_checkpoint

    return {**empty_checkpoint(), "id": cid, "channel_values": values, "channel_versions": versions}


def _stored(db, thread: str) -> list[tuple]:
    """Every checkpoint of a thread as the checkpointer gives it back, every namespace."""
    saver = db.checkpointer()
    return sorted(
        (t.config["configurable"]["checkpoint_ns"], t.config["configurable"]["checkpoint_id"],
         t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None,
         t.checkpoint["channel_values"], t.checkpoint["channel_versions"], t.metadata, sorted(t.pending_writes))
        for t in saver.list({"configurable": {"thread_id": thread}})
    )  # fmt: skip


def test_every_namespace_a_child_older_than_its_parent_and_a_missing_parent_come_through(tmp_path: Path) -> None:
    """Through the runtime's API: a subgraph's namespace, a child whose id sorts before its
    parent's (made on a machine whose clock was behind), one whose parent was pruned away, and
    the values each inherits from its parent."""
    from runtime import export_thread, import_thread, open_database
    from runtime.threads import registry as threads

    source = open_database(tmp_path / "a.db", create=True)
    threads.create_thread(source, "t", "not-here", "1", {"model": "offline"})
    threads.release(source, "t", "stopped", 3, None)
    saver = source.checkpointer()

    def put(ns: str, cid: str, parent: str | None, values: dict, versions: dict, new: dict) -> None:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ns, **({"checkpoint_id": parent} if parent else {})}}
        saver.put(config, _checkpoint(cid, values, versions), {"source": "loop", "step": len(cid)}, new)

    put("", "0005", None, {"a": [1, 2], "b": "x"}, {"a": 1, "b": 1}, {"a": 1, "b": 1})
    put("", "0003", "0005", {"a": [1, 2], "b": "y"}, {"a": 1, "b": 2}, {"b": 2})  # the clock was behind
    put("", "0009", "0003", {"a": [1, 2, 3], "b": "y"}, {"a": 2, "b": 2}, {"a": 2})
    put("", "0010", "0001", {"a": [0], "b": "z"}, {"a": 5, "b": 5}, {"a": 5, "b": 5})  # its parent pruned away
    put("sub:1", "0007", None, {"c": {"k": 1}}, {"c": 1}, {"c": 1})
    saver.put_writes({"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "0009"}}, [("a", [9]), ("b", "w")], "task-1", "p")
    saver.put_writes({"configurable": {"thread_id": "t", "checkpoint_ns": "sub:1", "checkpoint_id": "0007"}}, [("__error__", "boom")], "task-2")

    with open(tmp_path / "t.bundle", "wb") as out:
        exported = export_thread(source, "t", out)
    assert (exported.checkpoints, exported.writes) == (5, 2)
    target = open_database(tmp_path / "b.db", create=True)
    imported = import_thread(target, tmp_path / "t.bundle")
    assert (imported.thread_id, imported.graph, imported.status, imported.checkpoints) == ("t", "not-here", "stopped", 5)
    assert _stored(target, "t") == _stored(source, "t")
    assert threads.get_thread(target, "t").settings == {"model": "offline"}
    ids = [row["id"] for row in records(tmp_path / "t.bundle") if row.get("kind") == "checkpoint"]
    assert ids.index("0005") < ids.index("0003") < ids.index("0009")  # a parent before its children


def test_a_user_graphs_progress_and_spend_move_with_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    documents = json.dumps({"documents": ["one text", "two texts", "three texts"]})
    assert agent(a, "run", "examples/summarize.py:graph", "--thread", "u", "--input", documents, "--quiet").returncode == 0
    assert agent(a, "export", "--thread", "u", "--output", str(tmp_path / "u.bundle")).returncode == 0
    assert any(r.get("kind") == "progress" for r in records(tmp_path / "u.bundle"))
    assert agent(b, "import", str(tmp_path / "u.bundle")).returncode == 0
    moved = views(b, "u", results=False)
    assert moved == views(a, "u", results=False)
    assert moved["status"]["progress"]["done"] == 3 and moved["status"]["spend"]["calls"] == 3
