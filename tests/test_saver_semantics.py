"""Our saver keeps what LangGraph's own InMemorySaver keeps, on the paths where its one-row-per-step
layout could differ: a `__copy__` fork (a checkpoint stored under its source's parent with no new
versions), a checkpoint id put a second time, and a child whose id sorts below its parent's.

Each scenario runs the same calls against InMemorySaver and against AgentSaver as the runtime
opens it (a file on disk, its own connection, writes joined into the step's row), then reads
everything back through a fresh saver, so no cache of the writer hides a value the file lacks."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from runtime import open_database
from runtime.store.saver import AgentSaver, open_saver


@pytest.fixture
def saver_path(tmp_path):
    path = tmp_path / "semantics.db"
    open_database(path, create=True).close()
    return str(path)


def _seen(item) -> tuple:
    return (
        item.config["configurable"]["checkpoint_id"],
        item.parent_config["configurable"]["checkpoint_id"] if item.parent_config else None,
        item.checkpoint["channel_values"],
        sorted((task, channel, repr(value)) for task, channel, value in item.pending_writes),
    )


def _everything(saver, thread: str = "t") -> list[tuple]:
    """Every checkpoint of a thread as a reader sees it (id, parent, values, pending writes), by
    `list` and again one by one by `get_tuple`, which must agree."""
    listed = [_seen(item) for item in saver.list({"configurable": {"thread_id": thread}})]
    one_by_one = [_seen(saver.get_tuple(_config(row[0], thread))) for row in listed]
    assert one_by_one == listed
    return listed


def _as_read_by_a_new_saver(path: str) -> list[tuple]:
    reader = open_saver(path)
    try:
        return _everything(reader)
    finally:
        reader.conn.close()


def _ours_and_langgraphs(path: str, scenario) -> tuple[list[tuple], list[tuple]]:
    """The same calls on our saver (read back from its file) and on InMemorySaver."""
    expected = InMemorySaver()
    scenario(expected)
    ours = open_saver(path)
    scenario(ours)
    ours.flush()
    ours.conn.close()
    return _as_read_by_a_new_saver(path), _everything(expected)


def _config(checkpoint_id: str | None, thread: str = "t") -> dict:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}


def _put(saver, parent: str | None, cid: str, values: dict, versions: dict, new: dict) -> None:
    checkpoint = {**empty_checkpoint(), "id": cid, "channel_values": values, "channel_versions": versions}
    saver.put(_config(parent), checkpoint, {"source": "loop", "step": len(cid)}, new)


# -- a checkpoint id put again -------------------------------------------------------------------


def _reput_scenario(saver) -> None:
    """1 -> 2 -> 3, where 2 introduces y and 3 carries the writes of 2's task; then 2 and 3 are
    put again (as code that writes an edited checkpoint back does)."""
    _put(saver, None, "1", {"x": "a"}, {"x": 1}, {"x": 1})
    _put(saver, "1", "2", {"x": "a", "y": "b"}, {"x": 1, "y": 2}, {"y": 2})
    saver.put_writes(_config("2"), [("z", "from task")], "task-1")
    _put(saver, "2", "3", {"x": "a", "y": "b", "z": "from task"}, {"x": 1, "y": 2, "z": 3}, {"z": 3})
    _put(saver, "1", "2", {"x": "a", "y": "b"}, {"x": 1, "y": 2}, {})
    _put(saver, "2", "3", {"x": "a", "y": "b", "z": "from task"}, {"x": 1, "y": 2, "z": 3}, {})


def test_a_checkpoint_put_again_keeps_every_value_and_write(saver_path):
    got, expected = _ours_and_langgraphs(saver_path, _reput_scenario)
    assert got == expected
    assert got[0][2] == {"x": "a", "y": "b", "z": "from task"}  # the latest state keeps every key
    assert got[1][3] == [("task-1", "z", "'from task'")]  # 2's writes, once held in 3's row


def test_a_checkpoint_put_again_with_other_values_is_read_back_as_put(saver_path):
    """Putting an id again with new versions replaces what that checkpoint holds; its children keep theirs."""
    scenario_steps = [
        (None, "1", {"x": "a"}, {"x": 1}, {"x": 1}),
        ("1", "2", {"x": "b"}, {"x": 2}, {"x": 2}),
        ("2", "3", {"x": "b", "y": "c"}, {"x": 2, "y": 3}, {"y": 3}),
        ("1", "2", {"x": "edited"}, {"x": 4}, {"x": 4}),
    ]
    got, expected = _ours_and_langgraphs(saver_path, lambda saver: [_put(saver, *step) for step in scenario_steps])
    assert got == expected
    assert got[1][2] == {"x": "edited"} and got[0][2] == {"x": "b", "y": "c"}


# -- a child whose id sorts below its parent's ----------------------------------------------------


def test_a_child_older_by_id_than_its_parent_keeps_the_parents_writes(saver_path):
    """Checkpoint ids grow with the clock of the machine that made them; a resume on a machine
    whose clock is behind makes a child whose id is smaller than its parent's."""

    def scenario(saver) -> None:
        _put(saver, None, "1f0", {"x": "a"}, {"x": 1}, {"x": 1})
        _put(saver, "1f0", "1f9", {"x": "b"}, {"x": 2}, {"x": 2})
        saver.put_writes(_config("1f9"), [("x", "from task")], "task-1")
        _put(saver, "1f9", "1f5", {"x": "from task"}, {"x": 3}, {"x": 3})

    got, expected = _ours_and_langgraphs(saver_path, scenario)
    assert got == expected
    parent = next(row for row in got if row[0] == "1f9")
    assert parent[3] == [("task-1", "x", "'from task'")]


# -- a __copy__ fork -------------------------------------------------------------------------------


class _Steps(TypedDict):
    log: Annotated[list[str], operator.add]
    answer: str


def _interrupting_graph(ran: list[str]) -> StateGraph:
    def prepare(state: _Steps) -> dict:
        ran.append("prepare")
        return {"log": ["prepared"]}

    def ask(state: _Steps) -> dict:
        ran.append("ask")
        return {"answer": interrupt("question"), "log": ["asked"]}

    graph = StateGraph(_Steps)
    graph.add_node("prepare", prepare)
    graph.add_node("ask", ask)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "ask")
    graph.add_edge("ask", END)
    return graph


def _copy_fork_scenario(checkpointer, aio: bool) -> dict[str, Any]:
    """Run to the interrupt, answer it, then copy the checkpoint that was waiting and run the copy:
    the interrupt is raised again and, answered otherwise, gives another answer."""
    ran: list[str] = []
    app = _interrupting_graph(ran).compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "t"}}

    async def go() -> dict[str, Any]:
        async def call(method: str, *args: Any, **kwargs: Any) -> Any:
            if aio:
                return await getattr(app, "a" + method)(*args, **kwargs)
            return await asyncio.to_thread(getattr(app, method), *args, **kwargs)

        first = await call("invoke", {"log": []}, config, durability="sync")
        waiting = await call("get_state", config)
        await call("invoke", Command(resume="yes"), config, durability="sync")
        fork = await call("update_state", waiting.config, None, as_node="__copy__")
        copied = await call("get_state", fork)
        again = await call("invoke", None, fork, durability="sync")
        final = await call("invoke", Command(resume="no"), fork, durability="sync")
        return {
            "first": sorted(first), "again": sorted(again), "final": final, "ran": list(ran),
            "copied": (copied.values, copied.next), "history": len([s async for s in _history(app, config, aio)]),
        }  # fmt: skip

    return asyncio.run(go())


async def _history(app, config, aio):
    if aio:
        async for snapshot in app.aget_state_history(config):
            yield snapshot
    else:
        for snapshot in await asyncio.to_thread(lambda: list(app.get_state_history(config))):
            yield snapshot


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
def test_a_copy_fork_has_its_sources_values_and_raises_the_interrupt_again(saver_path, aio):
    expected = _copy_fork_scenario(InMemorySaver(), aio)
    ours = open_saver(saver_path, fast_async=aio)
    got = _copy_fork_scenario(ours, aio)
    ours.conn.close()
    assert got == expected
    assert got["again"] == ["__interrupt__", "log"]
    assert got["final"] == {"log": ["prepared", "asked"], "answer": "no"}
    assert got["ran"] == ["prepare", "ask", "ask", "ask", "ask"]


def test_a_copy_fork_is_stored_whole_in_the_file(saver_path):
    """The copy's values are in the file, not only in the writer's memory: a new saver reads them."""
    ran: list[str] = []
    writer = open_saver(saver_path)
    app = _interrupting_graph(ran).compile(checkpointer=writer)
    config = {"configurable": {"thread_id": "t"}}
    app.invoke({"log": []}, config, durability="sync")
    waiting = app.get_state(config)
    app.invoke(Command(resume="yes"), config, durability="sync")
    fork = app.update_state(waiting.config, None, as_node="__copy__")
    writer.conn.close()
    reader = open_saver(saver_path)
    try:
        copy = reader.get_tuple(fork)
        source = reader.get_tuple(waiting.config)
    finally:
        reader.conn.close()
    assert copy.checkpoint["channel_values"] == source.checkpoint["channel_values"]
    assert copy.parent_config == source.parent_config
    assert isinstance(writer, AgentSaver)
