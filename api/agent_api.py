"""Our own endpoints, beside LangGraph's: what `agent status`, `agent history`, `agent diff`,
`agent approvals` / `approve` / `reject`, `pause`, `cancel`, `resume`, `retry-failed`, `results`,
`schedule list` / `runs` and `workers` give, as JSON, over the same runtime calls.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api import book
from api.assistants import server_of
from api.hooks import THREAD_EVENTS, check_url
from runtime.errors import BadInput
from runtime.store.database import Database

router = APIRouter(prefix="/agent", tags=["agent"])
RESULT_COLUMNS = ("index", "status", "item", "output", "error", "attempts", "input_tokens", "output_tokens", "round", "model")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None = None
    all: bool = False
    reason: str | None = Field(None, max_length=2000)
    by: str | None = Field(None, max_length=100)


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = None
    force: bool = False


class ThreadHook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    events: list[str] = Field(default_factory=lambda: list(THREAD_EVENTS))


def progress_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    if not progress:
        return None
    rate = progress.get("rate")
    return {**progress, "rate_per_minute": None if rate is None else round(rate * 60, 2), "eta_seconds": progress.get("eta")}


def thread_summary(db: Database, thread_id: str) -> dict[str, Any]:
    from runtime.threads.history import thread_status

    status = thread_status(db, thread_id)
    status["progress"] = progress_view(status.get("progress"))
    return status


def threads_list(db: Database, status: str | None, graph: str | None) -> list[dict[str, Any]]:
    from runtime.threads.registry import list_threads

    shown = []
    for record in list_threads(db):
        if status not in (None, "", record.shown_status) or graph not in (None, "", record.graph):
            continue
        summary = thread_summary(db, record.thread_id)
        shown.append({key: summary.get(key) for key in ("thread_id", "graph", "status", "created_at", "updated_at", "steps", "error", "progress", "spend")})
    return shown


@router.get("/threads")
async def list_threads(request: Request, status: str | None = None, graph: str | None = None) -> dict[str, Any]:
    server = server_of(request)
    return {"threads": await server.call(threads_list, server.db, status, graph)}


@router.get("/threads/{thread_id}/status")
async def status(request: Request, thread_id: str) -> dict[str, Any]:
    server = server_of(request)
    return await server.call(thread_summary, server.db, thread_id)


@router.get("/threads/{thread_id}/history")
async def history(request: Request, thread_id: str, limit: int | None = None) -> dict[str, Any]:
    from runtime.threads.history import get_history

    server = server_of(request)
    rows = await server.call(get_history, server.db, thread_id, limit, attended=False)
    return {"checkpoints": [row.as_dict() for row in rows]}


@router.get("/threads/{thread_id}/state")
async def state(request: Request, thread_id: str, checkpoint: str | None = None) -> dict[str, Any]:
    from runtime.threads.history import get_state

    server = server_of(request)
    return (await server.call(get_state, server.db, thread_id, checkpoint, attended=False)).as_dict()


@router.get("/threads/{thread_id}/diff")
async def diff(request: Request, thread_id: str, before: str | None = None, after: str | None = None) -> dict[str, Any]:
    from runtime.threads.diff import diff_checkpoints

    server = server_of(request)
    found = await server.call(diff_checkpoints, server.db, thread_id, before, after)
    return found.as_dict()


@router.get("/threads/{thread_id}/approvals")
async def approvals(request: Request, thread_id: str) -> dict[str, Any]:
    from runtime.runs.approvals import pending_approvals

    server = server_of(request)
    return {"approvals": await server.call(pending_approvals, server.db, thread_id, attended=False)}


async def _decide(request: Request, thread_id: str, body: Decision, approved: bool) -> dict[str, Any]:
    from runtime.fleet.queue import submit_decisions

    server = server_of(request)
    await server.call(book.find_thread, server.db, thread_id)
    await server.call(
        submit_decisions, server.db, thread_id, body.ids, approved, body.reason,
        every=body.all, by=book.by_name(body.by), via="api", attended=False,
    )  # fmt: skip
    server.queued(thread_id)
    verb = "approved" if approved else "rejected"
    return {"thread_id": thread_id, "status": "queued", "message": f"{verb}; the thread goes on with the answer"}


@router.post("/threads/{thread_id}/approve")
async def approve(request: Request, thread_id: str, body: Decision) -> dict[str, Any]:
    return await _decide(request, thread_id, body, True)


@router.post("/threads/{thread_id}/reject")
async def reject(request: Request, thread_id: str, body: Decision) -> dict[str, Any]:
    return await _decide(request, thread_id, body, False)


async def _ask(request: Request, thread_id: str, action: str) -> dict[str, Any]:
    """Ask the thread's run to pause or cancel at its next node boundary (as `agent pause` / `cancel` ask)."""
    from runtime.threads import control

    server = server_of(request)
    ask = control.request_pause if action == control.PAUSE else control.request_cancel
    result = await server.call(ask, server.db, thread_id)
    server.tell_drive(thread_id, action)
    return {"thread_id": result.thread_id, "status": result.status, "outcome": result.outcome, "message": result.message}


@router.post("/threads/{thread_id}/pause")
async def pause(request: Request, thread_id: str) -> dict[str, Any]:
    return await _ask(request, thread_id, "pause")


@router.post("/threads/{thread_id}/cancel")
async def cancel(request: Request, thread_id: str) -> dict[str, Any]:
    return await _ask(request, thread_id, "cancel")


@router.post("/threads/{thread_id}/resume")
async def resume(request: Request, thread_id: str, body: ResumeBody | None = None) -> dict[str, Any]:
    from runtime.fleet.queue import submit_resume

    server, body = server_of(request), body or ResumeBody()
    await server.call(submit_resume, server.db, thread_id, body.checkpoint, None, force=body.force)
    server.queued(thread_id)
    return {"thread_id": thread_id, "status": "queued", "message": "resume queued; a worker goes on from the checkpoint"}


@router.post("/threads/{thread_id}/retry-failed")
async def retry_failed(request: Request, thread_id: str) -> dict[str, Any]:
    from runtime.fleet.queue import submit_retry

    server = server_of(request)
    await server.call(submit_retry, server.db, thread_id)
    server.queued(thread_id)
    return {"thread_id": thread_id, "status": "queued", "message": "a new round of the failed items is queued"}


@router.put("/threads/{thread_id}/webhook")
async def thread_webhook(request: Request, thread_id: str, body: ThreadHook) -> dict[str, Any]:
    server = server_of(request)
    hook = _checked_hook(body)
    await server.call(_set_hook, server.db, thread_id, hook)
    return {"thread_id": thread_id, "webhook": hook}


def _checked_hook(body: ThreadHook) -> dict[str, Any] | None:
    if unknown := sorted(set(body.events) - set(THREAD_EVENTS)):
        raise BadInput(f"unknown webhook event(s) {', '.join(unknown)}", f"a webhook is called on: {', '.join(THREAD_EVENTS)}")
    return {"url": check_url(body.url), "events": body.events} if body.url else None


def _set_hook(db: Database, thread_id: str, hook: dict[str, Any] | None) -> None:
    record, meta = book.find_thread(db, thread_id)
    meta = meta or {}
    book.put_thread_meta(db, thread_id, meta.get("metadata") or {}, meta.get("created_at"), webhook=hook)


@router.get("/threads/{thread_id}/results", response_class=StreamingResponse)
async def results(request: Request, thread_id: str, format: str = "jsonl", status: str | None = None) -> StreamingResponse:
    from runtime.threads.history import iter_results

    if format not in ("jsonl", "csv"):
        raise BadInput(f"format {format!r} is not one of: jsonl, csv")
    server = server_of(request)
    rows = await server.call(lambda: iter(iter_results(server.db, thread_id, status)))
    first = await server.call(next, rows, None)  # a thread with no results is refused before the stream starts
    body = _jsonl(first, rows) if format == "jsonl" else _csv(first, rows)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{thread_id}-results.{format}"'})


def _jsonl(first: dict[str, Any] | None, rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for row in ([first] if first is not None else []):
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()
    for row in rows:
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


def _csv(first: dict[str, Any] | None, rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    for row in ([first] if first is not None else []):
        writer.writerow([_cell(row.get(c)) for c in RESULT_COLUMNS])
    yield buffer.getvalue().encode()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(row.get(c)) for c in RESULT_COLUMNS])
        yield buffer.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@router.get("/schedules")
async def schedules(request: Request) -> dict[str, Any]:
    from api.crons import schedules_view

    server = server_of(request)
    return {"schedules": await server.call(schedules_view, server.db)}


@router.get("/schedules/{name}/runs")
async def schedule_runs(request: Request, name: str, by: str = "day") -> dict[str, Any]:
    from runtime.schedules.calendar import schedule_runs as runs

    server = server_of(request)
    return await server.call(runs, server.db, name, by=by)


@router.put("/schedules/{name}/webhook")
async def schedule_webhook(request: Request, name: str, body: ThreadHook) -> dict[str, Any]:
    server = server_of(request)
    hook = _checked_hook(body)
    await server.call(book.put_schedule_hook, server.db, name, hook)
    return {"schedule": name, "webhook": hook}


@router.get("/spend")
async def spend(request: Request) -> dict[str, Any]:
    from api.spend import spend_over_time

    server = server_of(request)
    return await server.call(spend_over_time, server.db)


@router.get("/workers")
async def workers(request: Request) -> dict[str, Any]:
    from runtime.fleet.workers import list_workers

    server = server_of(request)
    found = await server.call(list_workers, server.db)
    return {"workers": [w.as_dict() if hasattr(w, "as_dict") else w for w in found]}
