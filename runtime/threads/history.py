"""Reading threads: history, state at a checkpoint, naming checkpoints, per-item results."""

from __future__ import annotations

import time
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from state.storage import items_namespace, results_namespace
from runtime.policy.times import iso_time
from runtime.store.database import Database
from runtime.store.parts import namespaces
from runtime.store.parts import queue as queue_rows
from runtime.policy.numbers import check_number
from runtime.threads.progress import reported_progress, stored_progress
from runtime.errors import AmbiguousCheckpoint, CheckpointNotFound, Command, Message, NoResults, UnknownGraph
from runtime.threads import registry as threads
from runtime.threads.history_rows import branch_rows, history_rows
from runtime.threads.history_tree import assign_lanes, find_branches
from runtime.threads.stored_state import reading_checkpoints, stored_snapshot  # fork.py takes reading_checkpoints from here too

if TYPE_CHECKING:
    from graphs import GraphSpec

STEP_REF = re.compile(r"^-?\d{1,7}$")


@dataclass
class HistoryRow:
    checkpoint_id: str
    parent_id: str | None
    step: int
    source: str
    writers: list[str]
    next: list[str]
    created_at: str
    shown: dict[str, list[Any]] | None = None
    """With `show`: per state key, what this step's tasks wrote to it (e.g. which model answered,
    what was decided); None when not asked for."""
    branch: int = 0
    """Which line of history holds it: 0 for the line of the latest checkpoint, then each other
    line newest first (runtime/threads/history_tree.py)."""
    lane: int = 0
    """The column the history tree draws it in; lanes are reused once a branch has joined."""

    def as_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["parent_checkpoint_id"] = self.parent_id  # LangGraph's name for it, beside ours
        if data["shown"] is None:
            del data["shown"]
        return data


@dataclass
class StateView:
    thread_id: str
    graph: str
    status: str
    checkpoint_id: str
    parent_id: str | None
    step: int
    created_at: str
    next: list[str]
    values: dict[str, Any]
    tasks: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _compiled(db: Database, spec: GraphSpec):
    return spec.build().compile(checkpointer=db.checkpointer())


def readable_spec(db: Database, thread_id: str, *, attended: bool = True) -> tuple[threads.ThreadRecord, GraphSpec | None]:
    """For reading a thread: its graph when it may be imported here (runtime/policy/trust.py), else
    None, and the reader shows what the database holds (runtime/threads/stored_state.py)."""
    from runtime.policy.trust import is_trusted

    record = threads.get_thread(db, thread_id)
    return record, (_load(record) if is_trusted(record.graph, attended=attended) else None)


def runnable_spec(db: Database, thread_id: str, *, attended: bool = True) -> tuple[threads.ThreadRecord, GraphSpec]:
    """For running a thread (or forking it): its graph, or GraphNotTrusted when it may not be
    imported here (runtime/policy/trust.py); `attended` is False for the worker and the server."""
    from runtime.policy.trust import require_trusted

    record = threads.get_thread(db, thread_id)
    require_trusted(record.graph, attended=attended, owner=f"thread {thread_id!r}")
    return record, _load(record)


def _load(record: threads.ThreadRecord) -> GraphSpec:
    from graphs import GraphLoadError, load_graph  # imports LangGraph: only where a graph is needed
    from runtime.policy.trust import load_problem

    try:
        return load_graph(record.graph)
    except GraphLoadError as exc:
        raise UnknownGraph(Message("thread {!r} belongs to graph {}, which cannot be loaded: {}", record.thread_id, record.graph, load_problem(exc))) from None


def state_at(db: Database, spec: GraphSpec | None, thread_id: str, checkpoint_id: str | None = None):
    """LangGraph's snapshot of the thread at a checkpoint (the latest without one), None when the
    thread has none; CheckpointUnreadable when what is stored cannot be read. Without a graph
    (one that may not be imported here), what the database holds (runtime/threads/stored_state.py)."""
    if spec is None:
        return stored_snapshot(db, thread_id, checkpoint_id)
    configurable = {"thread_id": thread_id, **({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}
    with reading_checkpoints(db, thread_id, checkpoint_id):
        snapshot = _compiled(db, spec).get_state({"configurable": configurable})
    return snapshot if snapshot.config and snapshot.config["configurable"].get("checkpoint_id") else None


def latest_state(db: Database, spec: GraphSpec, thread_id: str):
    """The thread's latest state, or None when it has no checkpoint (LangGraph then answers with
    an empty state, which would read as a thread with nothing left to run)."""
    return state_at(db, spec, thread_id)


def _checkpoint_rows(db: Database, thread_id: str) -> list[tuple[str, str | None, int]]:
    return branch_rows(db, thread_id)


def resolve_checkpoint(db: Database, thread_id: str, ref: str) -> str:
    """A checkpoint named by full id, unique id prefix, or step number (on the latest branch)."""
    threads.get_thread(db, thread_id)
    return find_checkpoint(db, thread_id, ref)


def find_checkpoint(db: Database, thread_id: str, ref: str) -> str:
    """`resolve_checkpoint` for a caller that has read the thread's row already."""
    rows = _checkpoint_rows(db, thread_id)
    hint = Message("{} lists its checkpoints", Command("history", thread_id=thread_id))
    if STEP_REF.match(ref):
        step = int(ref)
        by_id = {cid: (parent, s) for cid, parent, s in rows}
        cursor = rows[-1][0] if rows else None
        while cursor in by_id:  # a parent removed by `agent prune` ends the branch
            parent, s = by_id[cursor]
            if s == step:
                return cursor
            cursor = parent
        raise CheckpointNotFound(f"thread {thread_id!r} has no step {step} on its latest branch", hint)
    matches = [cid for cid, _, _ in rows if cid.startswith(ref)]
    if ref in matches:
        return ref
    if not matches:
        raise CheckpointNotFound(f"thread {thread_id!r} has no checkpoint {ref!r}", hint)
    if len(matches) > 1:
        shown = ", ".join(matches[:10]) + (" ..." if len(matches) > 10 else "")
        raise AmbiguousCheckpoint(f"checkpoint prefix {ref!r} matches {len(matches)}: {shown}", "give more characters of the id")
    return matches[0]


def get_history(
    db: Database, thread_id: str, limit: int | None = None, show: list[str] | None = None, *, attended: bool = True
) -> list[HistoryRow]:
    """The thread's checkpoints, newest first, every branch included, each with its branch and
    its lane in the tree (runtime/threads/history_tree.py); with `limit`, the newest `limit`,
    their branches numbered as in the whole history.

    Read from the checkpoint table's columns (runtime/threads/history_rows.py); the graph is loaded only
    for checkpoints whose next tasks were not recorded when they were written. `show` names
    state keys whose writes each step should carry (`HistoryRow.shown`): only those writes are
    deserialised.
    """
    if limit is not None:
        check_number(limit, "limit", minimum=1, whole=True)
    threads.get_thread(db, thread_id)

    def compute_next(ids: list[str]) -> dict[str, list[str]]:
        _, spec = readable_spec(db, thread_id, attended=attended)
        if spec is None:
            return {}  # shown with no next tasks: only the graph could say
        return {cid: list(state_at(db, spec, thread_id, cid).next) for cid in ids}

    rows = [HistoryRow(**row) for row in history_rows(db, thread_id, limit, compute_next)]
    links = [(r.checkpoint_id, r.parent_id) for r in rows] if limit is None else [(cid, parent) for cid, parent, _ in branch_rows(db, thread_id)]
    branch_of = find_branches(links)
    for row in rows:
        row.branch = branch_of.get(row.checkpoint_id, 0)  # 0 for one pruned between the two reads
    assign_lanes(rows)
    if show:
        written = _writes_by_parent(db, thread_id, show, {r.parent_id for r in rows if r.source == "loop" and r.parent_id})
        for row in rows:
            found = written.get(row.parent_id, {}) if row.source == "loop" else {}
            row.shown = {key: found.get(key, []) for key in show}
    return rows


def _writes_by_parent(db: Database, thread_id: str, keys: list[str], parents: set[str]) -> dict[str, dict[str, list[Any]]]:
    """Per checkpoint, the values its tasks wrote to `keys`, in task order."""
    out: dict[str, dict[str, list[Any]]] = {}
    if not parents:
        return out
    saver = db.checkpointer()
    stored = saver.stored_writes(thread_id, "", sorted(parents))
    for checkpoint_id, rows in stored.items():
        for _task_id, channel, type_, value, _path, _idx in sorted(rows, key=lambda r: (r[4], r[0], r[5])):
            if channel in keys:
                with reading_checkpoints(db, thread_id, checkpoint_id):
                    decoded = saver.serde.loads_typed((type_, value))
                out.setdefault(checkpoint_id, {}).setdefault(channel, []).append(decoded)
    return out


def get_state(db: Database, thread_id: str, checkpoint: str | None = None, *, attended: bool = True) -> StateView:
    """The state at the latest checkpoint, or at the one `checkpoint` names. `attended`: False for
    the worker and the server, which import fewer graphs (runtime/policy/trust.py)."""
    record, spec = readable_spec(db, thread_id, attended=attended)
    snap = state_at(db, spec, thread_id, resolve_checkpoint(db, thread_id, checkpoint) if checkpoint else None)
    if snap is None:
        raise CheckpointNotFound(f"thread {thread_id!r} has no checkpoint yet", "its first run is starting, or stopped before its input was saved")
    return StateView(
        thread_id=thread_id,
        graph=record.graph,
        status=record.shown_status,
        checkpoint_id=snap.config["configurable"]["checkpoint_id"],
        parent_id=snap.parent_config["configurable"]["checkpoint_id"] if snap.parent_config else None,
        step=(snap.metadata or {}).get("step", -1),
        created_at=snap.created_at or "",
        next=list(snap.next),
        values=snap.values if isinstance(snap.values, dict) else {"value": snap.values},
        tasks=[
            {
                "name": t.name,
                "error": t.error,
                "interrupts": [getattr(i, "value", i) for i in t.interrupts],
            }
            for t in snap.tasks
        ],
    )


def thread_status(db: Database, thread_id: str) -> dict[str, Any]:
    """What `agent status` shows: status, runner, heartbeat, steps, error, settings, progress.

    Read from the database alone, so it works for a thread running in another process.
    """
    record = threads.get_thread(db, thread_id)
    now = time.time()
    status = record.as_dict()
    status["runner"] = (
        {
            "pid": record.owner_pid,
            "host": record.owner_host,
            "since": iso_time(record.owner_since),
            "heartbeat_age_seconds": round(now - record.heartbeat_at, 1) if record.heartbeat_at else None,
            "alive": record.holder_alive(now),
        }
        if record.owner_pid is not None
        else None
    )
    waiting = queue_rows.get(db.conn, thread_id)
    status["queued"] = (
        {"kind": waiting.kind, "priority": waiting.priority, "queued_at": iso_time(waiting.queued_at), "queued_by": waiting.queued_by} if waiting else None
    )
    latest = db.checkpoint_columns().latest_checkpoint_id(thread_id)
    status["checkpoint_id"] = latest
    from runtime.policy.budget import thread_budgets

    status["spend"] = thread_budgets(db, [record])[thread_id]
    status["progress"], values = None, {}
    if latest:
        with reading_checkpoints(db, thread_id, latest):
            tuple_ = db.checkpointer().get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": latest}})
        values = tuple_.checkpoint.get("channel_values", {}) if tuple_ else {}
        if tuple_ and (tuple_.metadata or {}).get("step") is not None:
            status["steps"] = tuple_.metadata["step"]  # fresher than the registry's heartbeat copy
    # A graph that reports progress of its own; else a queue, its figures from its results in the store.
    reported = reported_progress(db, thread_id, record.shown_status == "running")
    if reported is not None:
        status["progress"] = reported.as_dict()
    elif "total" in values:
        run_started = record.owner_since if record.shown_status == "running" else None
        snapshot = stored_progress(db, thread_id, values, record.settings.get("model"), run_started)
        status["progress"] = snapshot.as_dict() if snapshot else None
    return status


def iter_results(db: Database, thread_id: str, status: str | None = None) -> Iterator[dict[str, Any]]:
    """The thread's per-item results in item order, streamed from the store, each with its item
    and every field: index, status, item, output, error, attempts, input_tokens, output_tokens, round,
    model (which model answered, when the run had a --cheap-model; else None)."""
    record = threads.get_thread(db, thread_id)
    prefix = ".".join(results_namespace(thread_id))
    seen = False
    for key, value, item in namespaces.results(db.conn, prefix, ".".join(items_namespace(thread_id)), status):
        seen = True
        yield full_result(int(key), value, item)
    if not seen and record.graph != "task_queue" and not namespaces.has_items(db.conn, prefix):
        raise NoResults(
            f"thread {thread_id!r} (graph {record.graph}) keeps no per-item results",
            Message("{} shows its state", Command("state", thread_id=thread_id)),
        )


def full_result(index: int, stored: dict[str, Any], item: dict[str, Any] | None) -> dict[str, Any]:
    """A result as stored (compact) with its item, every field present, in a stable order."""
    return {
        "index": index,
        "status": stored.get("status"),
        "item": stored["item"] if "item" in stored else (item or {}).get("item"),
        "output": stored.get("output"),
        "error": stored.get("error"),
        "attempts": stored.get("attempts"),
        "input_tokens": stored.get("input_tokens", 0),
        "output_tokens": stored.get("output_tokens", 0),
        "round": stored.get("round", 0),
        "model": stored.get("model"),
    }


