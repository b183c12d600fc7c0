"""Forking a thread into a new one: `agent fork --thread T --checkpoint ID --new-thread T2`.

T2 starts from T's checkpoint ID: that checkpoint (its values and the tasks it runs next) is
stored as T2's first checkpoint, with source `fork`. The writes of tasks that ran from it in T
are not copied: they are T's future, and T2 runs those tasks afresh, as `resume --checkpoint`
does. T2 gets T's registry entry (graph, graph version, run settings), and what T keeps in the
store under its own namespaces (a queue's items and results, state/storage.py) is copied under
T2's.
`resume_thread(db, T2)` then continues from there, and T is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.threads import registry as threads
from runtime.store.parts import namespaces
from runtime.store.parts import immediate
from runtime.store.database import Database
from runtime.errors import BadInput, Command, Message, Setting, ThreadExists, ThreadNotFound


@dataclass
class ForkResult:
    thread_id: str
    """The new thread."""
    source_thread_id: str
    source_checkpoint_id: str
    checkpoint_id: str
    """The new thread's first checkpoint (the same id as the one it was copied from)."""
    step: int
    status: str
    """`forked` when it has work left (resume continues it), `completed` when it has none."""
    next: list[str]
    store_items: int
    """Items and results copied in the store."""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def fork_thread(db: Database, thread_id: str, checkpoint: str, new_thread_id: str) -> ForkResult:
    """Copy thread `thread_id` at `checkpoint` (id, id prefix or step) into the new thread `new_thread_id`."""
    from langgraph.checkpoint.base import copy_checkpoint

    from state.storage import thread_label
    from runtime.threads.history import reading_checkpoints, resolve_checkpoint, runnable_spec

    record, spec = runnable_spec(db, thread_id)  # a fork is made to be run: the same trust as resume
    checkpoint_id = resolve_checkpoint(db, thread_id, checkpoint)
    if new_thread_id == thread_id:
        raise BadInput(
            Message("{setting} must differ from {thread}", setting=Setting("new_thread_id"), thread=Setting("thread_id"), value=new_thread_id),
            Message("e.g. {}", Setting("new_thread_id", f"{thread_id}-fork")),
        )
    _refuse_existing(db, new_thread_id)
    builder = spec.build()
    if delta := sorted(name for name, channel in builder.channels.items() if type(channel).__name__ == "DeltaChannel"):
        raise BadInput(
            f"graph {record.graph} keeps {', '.join(delta)} as a DeltaChannel, rebuilt from earlier checkpoints: a fork cannot start from one",
            Message("fork it inside the thread instead: {}", Command("resume", thread_id=thread_id, checkpoint=checkpoint)),
        )
    saver = db.checkpointer()
    with reading_checkpoints(db, thread_id, checkpoint_id):
        saved = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}})
        graph = builder.compile(checkpointer=saver)
        next_tasks = list(graph.get_state(saved.config).next)
    step = saved.metadata.get("step", -1)

    saver.bind_graph(graph)  # so the copy records the tasks it runs next (agent history)
    metadata = {**saved.metadata, "source": "fork", "forked_from": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
    copied = copy_checkpoint(saved.checkpoint)
    status = "forked" if next_tasks else "completed"
    try:
        with immediate(db.conn):
            threads.create_thread(db, new_thread_id, record.graph, record.graph_version, record.settings)  # refuses a taken id
            config = saver.put(
                {"configurable": {"thread_id": new_thread_id, "checkpoint_ns": ""}}, copied, metadata, dict(copied["channel_versions"])
            )
            store_items = namespaces.copy(db.conn, thread_label(thread_id), thread_label(new_thread_id))
            threads.release(db, new_thread_id, status, step, None)
    except BaseException:
        saver.forget_thread(new_thread_id)  # it remembers the checkpoint it put, which is gone
        raise
    return ForkResult(new_thread_id, thread_id, checkpoint_id, config["configurable"]["checkpoint_id"], step, status, next_tasks, store_items)


def _refuse_existing(db: Database, thread_id: str) -> None:
    """A registered thread, or checkpoints or store data left under the id, make it taken (but
    not a thread whose runner is gone and that has nothing stored: a fork takes its place)."""
    hint = Message("pick another {setting} ({threads} lists the taken ones)", setting=Setting("new_thread_id"), threads=Command("threads"))
    try:
        record = threads.get_thread(db, thread_id)
    except ThreadNotFound:
        record = None
    if record is not None and (record.holder_alive() or threads.has_saved_work(db.conn, thread_id)):
        raise ThreadExists(f"thread {thread_id!r} already exists (graph {record.graph}, {record.shown_status})", hint)
    if record is None and threads.has_saved_work(db.conn, thread_id):
        raise ThreadExists(f"thread id {thread_id!r} still has data in the database, though no registry entry", hint)
