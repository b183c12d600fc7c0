"""Threads as LangGraph's API shows them: create, get, search, count, patch, delete, copy, their
state (latest, at a checkpoint), a change of state, and their history.

A thread of the API is a thread of the runtime: one the CLI started is here, and one made here
shows in `agent threads` once its first run has begun. Its status is LangGraph's (`idle`, `busy`,
`interrupted`, `error`), with ours beside it (`agent_status`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import book
from api.assistants import server_of
from runtime.errors import BadInput, CheckpointNotFound, ThreadBusy, ThreadExists, ThreadNotFound
from runtime.policy.times import iso_time
from runtime.store.database import Database
from runtime.threads import registry as threads

router = APIRouter(tags=["threads"])
LANGGRAPH_STATUS = {"queued": "busy", "running": "busy", "awaiting_approval": "interrupted", "interrupted": "interrupted",
                    "failed": "error", "budget_exceeded": "error", "timeout": "error", "stale": "error"}  # fmt: skip


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None


class ThreadPatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(BaseModel):
    model_config = ConfigDict(extra="allow")
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    ids: list[str] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class StateUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")
    values: dict[str, Any] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="allow")
    limit: int = Field(10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class CheckpointQuery(BaseModel):
    model_config = ConfigDict(extra="allow")
    checkpoint: dict[str, Any]
    subgraphs: bool = False


# -- reading --------------------------------------------------------------------------------------------


def thread_view(db: Database, thread_id: str, values: bool = True) -> dict[str, Any]:
    record, meta = book.find_thread(db, thread_id)
    meta = meta or {}
    metadata = dict(meta.get("metadata") or {})
    if record is None:
        made = iso_time(meta.get("created_at"))
        return {"thread_id": thread_id, "created_at": made, "updated_at": iso_time(meta.get("updated_at")), "metadata": metadata,
                "status": "idle", "agent_status": None, "config": {}, "values": {}, "interrupts": {}, "error": None}  # fmt: skip
    metadata.setdefault("graph_id", record.graph)
    metadata.setdefault("assistant_id", book.assistant_uuid(record.graph))
    status = "busy" if book.is_busy(db, thread_id) else LANGGRAPH_STATUS.get(record.shown_status, "idle")
    view = {
        "thread_id": thread_id,
        "created_at": iso_time(meta.get("created_at") or record.created_at),
        "updated_at": iso_time(record.updated_at),
        "metadata": metadata,
        "status": status,
        "agent_status": record.shown_status,
        "config": {},
        "values": {},
        "interrupts": {},
        "error": record.error,
    }
    if values and db.checkpoint_columns().has_checkpoints(thread_id):
        state = snapshot(db, thread_id)
        view["values"] = state["values"]
        view["interrupts"] = {task["id"]: task["interrupts"] for task in state["tasks"] if task["interrupts"]}
    return view


def snapshot(db: Database, thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The thread's state at its latest checkpoint (or `checkpoint_id`) as LangGraph's ThreadState."""
    from runtime.threads.history import get_state, readable_spec, state_at

    _, spec = readable_spec(db, thread_id, attended=False)
    if spec is None:  # a graph this server may not import: what the database holds
        view = get_state(db, thread_id, checkpoint_id, attended=False)
        return _plain_state(thread_id, view)
    if checkpoint_id is not None:
        from runtime.threads.history import resolve_checkpoint

        checkpoint_id = resolve_checkpoint(db, thread_id, checkpoint_id)
    snap = state_at(db, spec, thread_id, checkpoint_id)
    if snap is None:
        raise CheckpointNotFound(f"thread {thread_id!r} has no checkpoint yet", "its first run is starting, or has not been asked for")
    return state_json(thread_id, snap)


def state_json(thread_id: str, snap: Any) -> dict[str, Any]:
    checkpoint_id = snap.config["configurable"]["checkpoint_id"]
    parent = snap.parent_config["configurable"]["checkpoint_id"] if snap.parent_config else None
    interrupts = [{"value": i.value, "id": i.id} for i in snap.interrupts]
    return {
        "values": snap.values if isinstance(snap.values, dict) else {"value": snap.values},
        "next": list(snap.next),
        "tasks": [
            {"id": t.id, "name": t.name, "path": list(t.path), "error": t.error, "interrupts": [{"value": i.value, "id": i.id} for i in t.interrupts],
             "checkpoint": None, "state": None, "result": t.result}  # fmt: skip
            for t in snap.tasks
        ],
        "metadata": snap.metadata or {},
        "created_at": snap.created_at,
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id},
        "parent_checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": parent} if parent else None,
        "checkpoint_id": checkpoint_id,
        "parent_checkpoint_id": parent,
        "interrupts": interrupts,
    }


def _plain_state(thread_id: str, view: Any) -> dict[str, Any]:
    return {
        "values": view.values, "next": view.next, "metadata": {"step": view.step}, "created_at": view.created_at,
        "tasks": [{"id": str(i), "name": t["name"], "path": [], "error": t["error"], "interrupts": [{"value": v, "id": None} for v in t["interrupts"]],
                   "checkpoint": None, "state": None, "result": None} for i, t in enumerate(view.tasks)],
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": view.checkpoint_id},
        "parent_checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": view.parent_id} if view.parent_id else None,
        "checkpoint_id": view.checkpoint_id, "parent_checkpoint_id": view.parent_id, "interrupts": [],
    }  # fmt: skip


def history(db: Database, thread_id: str, query: HistoryQuery) -> list[dict[str, Any]]:
    from runtime.threads.history import get_history

    book.find_thread(db, thread_id)
    before = query.before.get("configurable", query.before).get("checkpoint_id") if isinstance(query.before, dict) else query.before
    rows = [row for row in get_history(db, thread_id, attended=False) if before is None or row.checkpoint_id < before]
    found = []
    for row in rows:
        if len(found) >= query.limit:
            break
        state = snapshot(db, thread_id, row.checkpoint_id)
        if all(state["metadata"].get(k) == v for k, v in (query.metadata or {}).items()):
            found.append(state)
    return found


def search(db: Database, query: ThreadSearch) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys([*(r.thread_id for r in threads.list_threads(db)), *book.api_thread_ids(db)]))
    if query.ids is not None:
        ids = [i for i in ids if i in set(query.ids)]
    views = []
    for thread_id in ids:
        try:
            view = thread_view(db, thread_id, values=query.values is not None)
        except ThreadNotFound:
            continue
        if query.status and view["status"] != query.status:
            continue
        if any(view["metadata"].get(k) != v for k, v in (query.metadata or {}).items()):
            continue
        if any(view["values"].get(k) != v for k, v in (query.values or {}).items()):
            continue
        views.append(view)
    key = query.sort_by or "created_at"
    views.sort(key=lambda v: str(v.get(key) or ""), reverse=(query.sort_order or "desc") == "desc")
    page = views[query.offset : query.offset + query.limit]
    for view in page:
        if query.values is None:
            view.update({k: v for k, v in thread_view(db, view["thread_id"]).items() if k in ("values", "interrupts")})
    return page


# -- writing --------------------------------------------------------------------------------------------


def create(db: Database, body: ThreadCreate) -> dict[str, Any]:
    thread_id = body.thread_id or str(uuid.uuid4())
    threads.check_thread_id(thread_id)
    try:
        book.find_thread(db, thread_id)
    except ThreadNotFound:
        book.put_thread_meta(db, thread_id, body.metadata or {})
        return thread_view(db, thread_id)
    if body.if_exists == "do_nothing":
        return thread_view(db, thread_id)
    raise ThreadExists(f"thread {thread_id!r} already exists", "pick a new thread id, or ask for if_exists `do_nothing`")


def patch(db: Database, thread_id: str, body: ThreadPatch) -> dict[str, Any]:
    record, meta = book.find_thread(db, thread_id)
    merged = {**((meta or {}).get("metadata") or {}), **body.metadata}
    book.put_thread_meta(db, thread_id, merged, (meta or {}).get("created_at") or (record.created_at if record else None))
    return thread_view(db, thread_id)


def delete(db: Database, thread_id: str) -> None:
    from runtime.store.parts import immediate, namespaces
    from runtime.threads.retention import delete_thread
    from state.storage import thread_label

    record, _ = book.find_thread(db, thread_id)
    if record is not None:
        if book.is_busy(db, thread_id):
            raise ThreadBusy(f"thread {thread_id!r} is busy with a run", f"cancel it first (POST /agent/threads/{thread_id}/cancel)")
        delete_thread(db, thread_id)
    with immediate(db.conn):
        namespaces.delete_of_thread(db.conn, thread_label(thread_id))


def copy(db: Database, thread_id: str) -> dict[str, Any]:
    from runtime.threads.fork import fork_thread

    record, meta = book.find_thread(db, thread_id)
    new_id = str(uuid.uuid4())
    latest = db.checkpoint_columns().latest_checkpoint_id(thread_id) if record is not None else None
    if latest is None:
        book.put_thread_meta(db, new_id, (meta or {}).get("metadata") or {})
    else:
        fork_thread(db, thread_id, latest, new_id)
    return thread_view(db, new_id)


def update_state(db: Database, thread_id: str, body: StateUpdate) -> dict[str, Any]:
    """Write `values` as a checkpoint of their own (checked as `agent resume --set` checks them),
    holding the thread's lease meanwhile; refused while a run has it."""
    from runtime.threads.edit import apply_edits, check_edits
    from runtime.threads.history import runnable_spec

    record, spec = runnable_spec(db, thread_id, attended=False)
    if body.as_node is not None and body.as_node not in spec.build().nodes:
        raise BadInput(f"graph {record.graph} has no node {body.as_node!r}", f"its nodes: {', '.join(spec.build().nodes)}")
    edits = check_edits(spec, body.values or {}, thread_id)
    if book.is_busy(db, thread_id):
        raise ThreadBusy(f"thread {thread_id!r} is busy with a run", "change its state once the run has ended")
    held = threads.acquire(db, thread_id)
    try:
        graph = spec.build().compile(checkpointer=db.checkpointer())
        configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
        checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
        if checkpoint_id:
            from runtime.threads.history import resolve_checkpoint

            configurable["checkpoint_id"] = resolve_checkpoint(db, thread_id, checkpoint_id)
        new_id = asyncio.run(apply_edits(graph, {"configurable": configurable}, edits))
    finally:
        threads.release(db, thread_id, record.status, held.steps, record.error)
    return {"checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": new_id}}


# -- routes ------------------------------------------------------------------------------------------------


@router.post("/threads")
async def create_thread(request: Request, body: ThreadCreate | None = None) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(create, server.db, body or ThreadCreate())


@router.post("/threads/search")
async def search_threads(request: Request, body: ThreadSearch | None = None) -> list[dict[str, Any]]:
    server = server_of(request)
    return await server.call(search, server.db, body or ThreadSearch())


@router.post("/threads/count")
async def count_threads(request: Request, body: ThreadSearch | None = None) -> int:
    server = server_of(request)
    query = (body or ThreadSearch()).model_copy(update={"limit": 1000, "offset": 0})
    return len(await server.call(search, server.db, query))


@router.get("/threads/{thread_id}")
async def get_thread(request: Request, thread_id: str) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(thread_view, server.db, thread_id)


@router.patch("/threads/{thread_id}")
async def patch_thread(request: Request, thread_id: str, body: ThreadPatch) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(patch, server.db, thread_id, body)


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(request: Request, thread_id: str) -> Response:
    server = server_of(request)
    await server.call(delete, server.db, thread_id)
    return Response(status_code=204)


@router.post("/threads/{thread_id}/copy")
async def copy_thread(request: Request, thread_id: str) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(copy, server.db, thread_id)


@router.get("/threads/{thread_id}/state")
async def get_state(request: Request, thread_id: str, subgraphs: bool = False) -> dict[str, Any]:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    return await server.call(snapshot, server.db, thread_id)


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(request: Request, thread_id: str, checkpoint_id: str, subgraphs: bool = False) -> dict[str, Any]:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    return await server.call(snapshot, server.db, thread_id, checkpoint_id)


@router.post("/threads/{thread_id}/state/checkpoint")
async def post_state_at(request: Request, thread_id: str, body: CheckpointQuery) -> dict[str, Any]:
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    if checkpoint_id is None:
        return await get_state(request, thread_id)  # no id: the latest, as LangGraph reads a config without one
    if not isinstance(checkpoint_id, str):
        raise BadInput("`checkpoint.checkpoint_id` must be a string", 'e.g. {"checkpoint": {"checkpoint_id": "1f0..."}}')
    return await get_state_at(request, thread_id, checkpoint_id)


@router.post("/threads/{thread_id}/state")
async def post_state(request: Request, thread_id: str, body: StateUpdate) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(update_state, server.db, thread_id, body)


@router.post("/threads/{thread_id}/history")
async def post_history(request: Request, thread_id: str, body: HistoryQuery | None = None) -> list[dict[str, Any]]:
    server = server_of(request)
    return await server.call(history, server.db, thread_id, body or HistoryQuery())


@router.get("/threads/{thread_id}/history")
async def get_history(request: Request, thread_id: str, limit: int = 10, before: str | None = None) -> list[dict[str, Any]]:
    return await post_history(request, thread_id, HistoryQuery(limit=max(1, min(limit, 1000)), before=before))
