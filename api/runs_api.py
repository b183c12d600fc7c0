"""Runs: create (in the background, streamed, or waited for), list, get, join, join the stream,
cancel, delete; and crons, which are our schedules.

A run is queued (runtime/fleet/queue.py) and driven by a worker: this server's own with
`--workers`, or any `agent worker` on the same database. One writer per thread holds: a run of a
busy thread is refused (`multitask_strategy` `reject`, 409) or runs after it (`enqueue`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api import book
from api.assistants import resolve, server_of
from api.hooks import check_url
from api.streams import MODES, run_stream
from runtime.errors import BadInput
from runtime.threads.control import NotControllable
from runtime.store.database import Database

router = APIRouter(tags=["runs"])
WAIT_SECONDS = 0.5
ENDED = frozenset({"ended"})


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    assistant_id: str
    input: dict[str, Any] | None = None
    command: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: str | list[str] | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    webhook: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None


class CronCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    assistant_id: str
    schedule: str
    input: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    timezone: str | None = None


class CronSearch(BaseModel):
    model_config = ConfigDict(extra="allow")
    assistant_id: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)


def _body(body: RunCreate) -> dict[str, Any]:
    data = body.model_dump()
    for key in ("interrupt_before", "interrupt_after"):
        if data.get(key):
            raise BadInput(f"`{key}` is not supported", "a graph stops for a person with `interrupt()` in its nodes (the approval graph does)")
    command = data.get("command") or {}
    if set(command) - {"resume"}:
        raise BadInput("`command` may only carry `resume` (the answers to a thread's approvals)", 'e.g. {"resume": {"approved": true, "by": "ana"}}')
    if data.get("checkpoint") and not data.get("checkpoint_id"):
        data["checkpoint_id"] = data["checkpoint"].get("checkpoint_id")
    if data.get("webhook"):
        check_url(data["webhook"])
    for mode in _modes(data.get("stream_mode")):
        if mode not in MODES:
            raise BadInput(f"stream mode {mode!r} is not one of: {', '.join(sorted(MODES))}")
    return data


def _modes(given: str | list[str] | None) -> list[str]:
    if given is None:
        return ["values"]
    return [given] if isinstance(given, str) else list(given)


async def start(request: Request, thread_id: str | None, body: RunCreate, follow: bool = False) -> tuple[Any, dict[str, Any], Any]:
    """Check and queue the run; with `follow`, the hub's queue of its thread's live events,
    subscribed before the run is queued."""
    server = server_of(request)
    data = _body(body)
    graph_id, spec = resolve(server, body.assistant_id)
    if thread_id is None:
        thread_id, data["if_not_exists"] = str(uuid.uuid4()), "create"
    queue = server.hub.subscribe(thread_id) if follow else None
    try:
        run = await server.call(book.create_run, server.db, thread_id, spec, book.assistant_uuid(graph_id), data)
    except BaseException:
        if queue is not None:
            server.hub.unsubscribe(thread_id, queue)
        raise
    server.queued(thread_id)
    return server, run, queue


def _located(response: Response, run: dict[str, Any]) -> None:
    response.headers["Content-Location"] = f"/threads/{run['thread_id']}/runs/{run['run_id']}"


def public(run: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in run.items() if k not in ("submitted", "after", "graph")}
    shown["kwargs"] = {k: v for k, v in (run.get("kwargs") or {}).items() if k != "webhook"}
    return shown


async def ended(server: Any, thread_id: str, run_id: str) -> dict[str, Any]:
    """Wait for the run to end (woken by this process's workers, else reading again every WAIT_SECONDS)."""
    queue = server.hub.subscribe(thread_id, ENDED)
    try:
        while True:
            await server.settle(thread_id)
            run = await server.call(book.get_run, server.db, thread_id, run_id)
            if run["status"] in book.FINAL:
                return run
            try:
                await asyncio.wait_for(queue.get(), WAIT_SECONDS)
            except TimeoutError:
                pass
    finally:
        server.hub.unsubscribe(thread_id, queue)


def outcome(db: Database, run: dict[str, Any]) -> dict[str, Any]:
    """What `wait` and `join` answer: the thread's values as the run left them; for a run that
    failed, `__error__`; for one waiting on a person, `__interrupt__` beside the values."""
    from api.threads_api import snapshot

    if run["status"] == "error" and not db.checkpoint_columns().has_checkpoints(run["thread_id"]):
        return {"__error__": {"error": "RunError", "message": run.get("error") or "the run failed"}}
    state = snapshot(db, run["thread_id"])
    values = dict(state["values"])
    if run["status"] == "error":
        values["__error__"] = {"error": "RunError", "message": run.get("error") or "the run failed"}
    if state["interrupts"]:
        values["__interrupt__"] = state["interrupts"]
    return values


# -- creating --------------------------------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs")
async def create_run(request: Request, response: Response, thread_id: str, body: RunCreate) -> dict[str, Any]:
    _, run, _ = await start(request, thread_id, body)
    _located(response, run)
    return public(run)


@router.post("/runs")
async def create_stateless_run(request: Request, response: Response, body: RunCreate) -> dict[str, Any]:
    _, run, _ = await start(request, None, body)
    _located(response, run)
    return public(run)


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(request: Request, response: Response, thread_id: str, body: RunCreate) -> dict[str, Any]:
    server, run, _ = await start(request, thread_id, body)
    _located(response, run)
    run = await ended(server, run["thread_id"], run["run_id"])
    return await server.call(outcome, server.db, run)


@router.post("/runs/wait")
async def wait_stateless_run(request: Request, response: Response, body: RunCreate) -> dict[str, Any]:
    server, run, _ = await start(request, None, body)
    _located(response, run)
    run = await ended(server, run["thread_id"], run["run_id"])
    return await server.call(outcome, server.db, run)


def _streaming(server: Any, run: dict[str, Any], modes: list[str], last_event_id: str | None, queue: Any = None) -> StreamingResponse:
    location = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    return StreamingResponse(
        run_stream(server, run, set(modes), last_event_id, queue),
        media_type="text/event-stream",
        headers={"Location": f"{location}/stream", "Content-Location": location, "Cache-Control": "no-store"},
    )


@router.post("/threads/{thread_id}/runs/stream", response_class=StreamingResponse)
async def stream_run(request: Request, thread_id: str, body: RunCreate) -> StreamingResponse:
    server, run, queue = await start(request, thread_id, body, follow=True)
    return _streaming(server, run, _modes(body.stream_mode), None, queue)


@router.post("/runs/stream", response_class=StreamingResponse)
async def stream_stateless_run(request: Request, body: RunCreate) -> StreamingResponse:
    server, run, queue = await start(request, None, body, follow=True)
    return _streaming(server, run, _modes(body.stream_mode), None, queue)


# -- reading, joining, cancelling ----------------------------------------------------------------------


@router.get("/threads/{thread_id}/runs")
async def list_runs(request: Request, thread_id: str, limit: int = 10, offset: int = 0, status: str | None = None) -> list[dict[str, Any]]:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    await server.settle(thread_id)
    runs = [public(r) for r in reversed(await server.call(book.runs_of, server.db, thread_id)) if status in (None, r["status"])]
    return runs[max(offset, 0) : max(offset, 0) + max(min(limit, 1000), 1)]


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(request: Request, thread_id: str, run_id: str) -> dict[str, Any]:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    await server.settle(thread_id)
    return public(await server.call(book.get_run, server.db, thread_id, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(request: Request, thread_id: str, run_id: str) -> dict[str, Any]:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    await server.call(book.get_run, server.db, thread_id, run_id)
    run = await ended(server, thread_id, run_id)
    return await server.call(outcome, server.db, run)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", response_class=StreamingResponse)
async def join_stream(
    request: Request,
    thread_id: str,
    run_id: str,
    stream_mode: list[str] | None = Query(None),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    run = await server.call(book.get_run, server.db, thread_id, run_id)
    given = [mode for part in stream_mode or [] for mode in part.split(",") if mode]
    modes = _modes(given or (run.get("kwargs") or {}).get("stream_mode"))
    for mode in modes:
        if mode not in MODES:
            raise BadInput(f"stream mode {mode!r} is not one of: {', '.join(sorted(MODES))}")
    return _streaming(server, run, modes, last_event_id or None)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: Request, thread_id: str, run_id: str, wait: bool = False, action: str = "interrupt") -> Response:
    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    run = await server.call(book.get_run, server.db, thread_id, run_id)
    if run["status"] in book.FINAL:
        raise NotControllable(f"run {run_id!r} has ended ({run['status']}); there is nothing to cancel")
    await server.call(book.cancel, server.db, run)
    server.tell_drive(thread_id, "cancel")
    if wait:
        await ended(server, thread_id, run_id)
    return Response(status_code=202 if not wait else 204)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(request: Request, thread_id: str, run_id: str) -> Response:
    server = server_of(request)
    await server.call(book.delete_run, server.db, thread_id, run_id)
    return Response(status_code=204)


# -- crons ------------------------------------------------------------------------------------------------


@router.post("/runs/crons")
async def create_cron(request: Request, body: CronCreate) -> dict[str, Any]:
    from api.crons import add

    server = server_of(request)
    graph_id, spec = resolve(server, body.assistant_id)
    return await server.call(add, server.db, book.assistant_uuid(graph_id), spec, body.model_dump())


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(request: Request, thread_id: str, body: CronCreate) -> dict[str, Any]:
    raise BadInput(
        "a schedule here starts a new thread for each of its runs; it cannot run one thread again and again",
        "create it with POST /runs/crons",
    )


@router.post("/runs/crons/search")
async def search_crons(request: Request, body: CronSearch | None = None) -> list[dict[str, Any]]:
    from api.crons import search

    server, body = server_of(request), body or CronSearch()
    found = await server.call(search, server.db, server.graphs)
    found = [c for c in found if body.assistant_id in (None, c["assistant_id"], c["graph_id"])]
    return found[body.offset : body.offset + body.limit]


@router.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(request: Request, cron_id: str) -> Response:
    from runtime.schedules.calendar import delete_schedule

    server = server_of(request)
    await server.call(delete_schedule, server.db, cron_id)
    return Response(status_code=204)
