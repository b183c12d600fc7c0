"""Graphs on a real SQLite file through the runtime API (what a notebook calls), and the
built-in graphs compiled with in-memory and SQLite checkpointers alike."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from graphs import builtin_names, load_graph
from runtime import get_history, get_state, iter_results, open_database, resume_thread, run_thread
from runtime.errors import NothingToResume
from runtime.policy.models import OfflineChatModel
from runtime.runs.runner import RunSettings
from state.context import RunContext

INPUTS = {
    "task_queue": {"items": ["a", "b", "c"], "prompt": "Summarize: {item}"},
    "risky": {"fail_times": 1, "backoff": 0},
    "research": {"question": "Why is the sky blue?", "steps": 2},
    "approval": {"actions": [{"kind": "read_data", "target": "t", "detail": "rows"}]},  # nothing sensitive: no interrupt
}


@pytest.fixture
def db(db_path):
    with open_database(db_path, create=True) as database:
        yield database


def _run_builtin(name, saver, store):
    builder = load_graph(name).build(max_attempts=2, backoff=0)
    graph = builder.compile(checkpointer=saver, store=store)
    config = {"configurable": {"thread_id": f"t-{name}"}, "recursion_limit": 1000}
    context = RunContext(model=OfflineChatModel(), max_attempts=2, concurrency=2)
    asyncio.run(graph.ainvoke(INPUTS[name], config, context=context, durability="sync"))
    return graph, graph.get_state(config).values  # the whole state, not only the graph's output keys


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_graphs_on_in_memory_saver(name):
    _, final = _run_builtin(name, InMemorySaver(), InMemoryStore())
    _check_final(name, final)


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_graphs_on_sqlite(name, db):
    outcome = run_thread(db, name, f"t-{name}", INPUTS[name], RunSettings(backoff=0))
    assert outcome.status == "completed" and outcome.exit_code == 0
    _check_final(name, get_state(db, f"t-{name}").values)
    assert outcome.checkpoint_id == get_history(db, f"t-{name}")[0].checkpoint_id


def _check_final(name, values):
    if name == "task_queue":
        assert (values["total"], values["done"], values["failed"]) == (3, 3, 0)
        assert values["items"] is None  # the items moved to the store
    elif name == "risky":
        assert values["outcome"] == "succeeded" and values["attempts"] == 2
    elif name == "approval":
        assert [p["outcome"] for p in values["performed"]] == ["done"] and values["report"]
    else:
        assert len(values["plan"]) == 2 and len(values["notes"]) == 2 and values["answer"]


def test_queue_results_in_item_order_with_retries_and_give_up(db):
    items = [f"doc {i}" for i in range(10)] + ["doc POISON"]
    settings = RunSettings(model="offline:fail_first=1,fail_on=POISON", max_attempts=3, concurrency=4, backoff=0)
    outcome = run_thread(db, "task_queue", "q", {"items": items, "prompt": "Summarize: {item}"}, settings)
    assert outcome.status == "completed"
    assert outcome.values["done"] == 10 and outcome.values["failed"] == 1
    rows = list(iter_results(db, "q"))
    assert [r["index"] for r in rows] == list(range(11))
    assert all(r["status"] == "done" and r["attempts"] == 2 for r in rows[:10])
    poison = rows[10]
    assert poison["status"] == "failed" and poison["attempts"] == 3 and "503" in poison["error"]
    assert [r["index"] for r in iter_results(db, "q", status="failed")] == [10]


def test_bad_request_gives_up_the_item_at_once(db):
    settings = RunSettings(model="offline:reject_on=BAD", max_attempts=5, backoff=0)
    run_thread(db, "task_queue", "q", {"items": ["ok", "BAD one"], "prompt": "{item}"}, settings)
    bad = list(iter_results(db, "q"))[1]
    assert bad["status"] == "failed" and bad["attempts"] == 1 and "(400)" in bad["error"]


def test_risky_give_up_reason_reaches_the_outcome(db):
    outcome = run_thread(db, "risky", "r", {"fail_times": -1, "backoff": 0, "max_attempts": 2})
    assert outcome.status == "completed"
    assert outcome.error.startswith("gave up after 2 of 2 attempts")
    assert get_state(db, "r").values["give_up_reason"] == outcome.error


def test_resume_from_older_checkpoint_forks_and_keeps_the_old_branch(db):
    run_thread(db, "research", "f", INPUTS["research"])
    before = get_history(db, "f")
    fork_from = next(r for r in before if r.step == 2)
    outcome = resume_thread(db, "f", fork_from.checkpoint_id[:30])
    assert outcome.status == "completed"
    after = get_history(db, "f")
    old_ids = {r.checkpoint_id for r in before}
    assert old_ids <= {r.checkpoint_id for r in after}  # nothing of the old branch is lost
    new = [r for r in after if r.checkpoint_id not in old_ids]
    assert new and new[-1].source == "fork" and new[-1].parent_id == fork_from.checkpoint_id
    # A step number names a checkpoint on the latest branch: the new one.
    assert get_state(db, "f", "3").checkpoint_id in {r.checkpoint_id for r in new}
    assert get_state(db, "f").values["answer"]


def test_resume_of_a_completed_thread_is_refused(db):
    run_thread(db, "risky", "done", {"backoff": 0})
    with pytest.raises(NothingToResume):
        resume_thread(db, "done")


def _db_bytes(db_path) -> int:
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = pages * conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return size


def test_storage_grows_linearly_with_items(tmp_path):
    """A layout that re-wrote every result into every checkpoint would grow ~16x from 250 to
    1,000 items (and pass 10 MB at 1,000); ours grows ~4x and stays small."""
    sizes = {}
    for n in (250, 1000):
        path = tmp_path / f"q{n}.db"
        with open_database(path, create=True) as database:
            items = [f"document {i}: " + "lorem ipsum " * 4 for i in range(n)]
            outcome = run_thread(database, "task_queue", "q", {"items": items, "prompt": "Summarize: {item}"}, RunSettings(concurrency=8))
            assert outcome.values["done"] == n
        sizes[n] = _db_bytes(path)
    assert sizes[1000] < 4_000_000, sizes
    assert sizes[1000] / sizes[250] < 5.0, sizes
