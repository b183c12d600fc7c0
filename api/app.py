"""The server's application: its settings, what it holds while it runs, and the guards every
request passes (token, body size, cross-site requests, one error shape).

`create_app` composes the routers (api/assistants.py, api/threads_api.py, api/runs_api.py,
api/store_api.py, api/agent_api.py) over one `Server`: the database, the graphs it was started
with, the hub that passes run events to streams, the run book's watcher, and, with `workers`, a
fleet worker driving queued runs in this process (a thread of its own with its own event loop).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import book
from api.face import error_body, problem
from api.hooks import Webhooks
from api.streams import Hub
from runtime.errors import AgentError
from runtime.redact import redact
from runtime.runs.outcome import RunEvent
from runtime.store.database import Database

log = logging.getLogger("agent.serve")
MAX_BODY_BYTES = 1 << 20
"""The largest request body taken (1 MiB): a queue's items go in a file, not in one request."""
WATCH_SECONDS = 1.0
"""How often the run book looks at every thread with a run not ended (runs driven by other
processes; a run this process's worker ends is settled at once, and its waiters and streams look
every half second themselves)."""
SCHEDULE_POLL = 15.0
"""How often the embedded worker looks for due schedules (as `agent worker --poll`)."""
SCHEDULE_GRACE = 900.0
"""How late a schedule's run may start before it counts as missed (as `agent worker --missed-after`)."""
OPEN_PATHS = ("/", "/ok", "/favicon.ico")
"""Paths answered without the token: the dashboard's page and assets (they hold no data) and the health check."""


@dataclass
class Server:
    """What the server holds while it runs."""

    db: Database
    graphs: dict[str, str]
    """Assistant (graph) id -> the graph spec its runs use: the built-in graphs and those of its `langgraph.json`."""
    token: str | None = None
    workers: int = 0
    hub: Hub | None = None
    webhooks: Webhooks | None = None
    open_runs: set[str] = field(default_factory=set)
    """Threads with a run not ended: the watcher settles them."""
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(32, thread_name_prefix="agent-api"))
    store: Any = None
    """LangGraph's store in the database (the store's items endpoints), open while the server runs."""
    fleet: Any = None
    _fleet_thread: threading.Thread | None = None

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking runtime call off the loop (each pool thread has its own connection)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, partial(fn, *args, **kwargs))

    # -- the run book's watcher ------------------------------------------------------------------

    async def watch(self) -> None:
        """Settle the threads whose run this process's worker just ended, at once (all of them at
        a time); every WATCH_SECONDS, every thread with a run not ended (runs driven elsewhere)."""
        self.open_runs.update(await self.call(book.open_threads, self.db))
        last_pass = 0.0
        while True:
            ended: set[str] = set()
            try:
                ended.add(await asyncio.wait_for(self.hub.ended.get(), WATCH_SECONDS))
                while not self.hub.ended.empty():
                    ended.add(self.hub.ended.get_nowait())
            except TimeoutError:
                pass
            if time.monotonic() - last_pass >= WATCH_SECONDS:
                last_pass = time.monotonic()
                ended |= self.open_runs
            await asyncio.gather(*(self._watched(thread_id) for thread_id in ended))

    async def _watched(self, thread_id: str) -> None:
        try:
            settled = await self.settle(thread_id)
        except AgentError:  # the thread is gone (deleted)
            self.open_runs.discard(thread_id)
            return
        except Exception as exc:
            log.warning("settling the runs of %s failed: %s", thread_id, redact(str(exc)))
            return
        if not settled.open:
            self.open_runs.discard(thread_id)

    async def settle(self, thread_id: str) -> book.Settled:
        """Settle a thread's run records (whoever notices first: the watcher, a waiter, a stream)
        and tell what follows from a run that ended: its streams, its webhook."""
        settled = await self.call(book.settle, self.db, thread_id)
        for run in settled.changed:
            if run["status"] in book.FINAL:
                self.hub.publish(thread_id, RunEvent("ended"))
                self.webhooks.run_ended(run)
        return settled

    def queued(self, thread_id: str) -> None:
        """A request was just queued for the thread: watch its runs, and have this process's worker look now."""
        self.open_runs.add(thread_id)
        if self.fleet is not None:
            self.fleet.wake()

    # -- the embedded worker -----------------------------------------------------------------------

    def start_fleet(self) -> None:
        if not self.workers:
            return
        from runtime.fleet.worker import FleetWorker
        from runtime.schedules.clock import SystemClock
        from runtime.schedules.worker import Worker as Scheduler

        scheduler = Scheduler(self.db, SystemClock(), grace=SCHEDULE_GRACE, max_resumes=3, poll=SCHEDULE_POLL, enqueue=True)
        last_tick = [float("-inf")]

        def fire_due() -> None:  # off the worker's loop, on a thread of its own connection
            if time.monotonic() - last_tick[0] >= SCHEDULE_POLL:
                last_tick[0] = time.monotonic()
                scheduler.tick()

        fleet = FleetWorker(self.db, concurrency=self.workers, handle_signals=False, on_event=self._worker_event, on_tick=fire_due)
        def finished(origin: dict[str, Any], outcome: Any) -> None:
            scheduler.finished_run(origin, outcome.thread_id, outcome.status, outcome.error)
            ended = {"thread_id": outcome.thread_id, "status": outcome.status, "error": outcome.error}
            self.hub.loop.call_soon_threadsafe(self.webhooks.schedule_run_ended, origin, ended)

        fleet.on_origin = finished
        fleet.on_run_event = self.hub.publish
        self.fleet = fleet
        self._fleet_thread = threading.Thread(target=fleet.run, name="agent-worker", daemon=True)
        self._fleet_thread.start()

    def _worker_event(self, event: Any) -> None:
        if event.kind == "finished" and event.thread_id:
            self.hub.publish(event.thread_id, RunEvent("ended"))  # its waiters and streams settle it themselves at once
            self.hub.run_ended(event.thread_id)
        elif event.kind in ("warning", "stopping"):
            log.warning("%s", redact(event.message or event.kind))

    def tell_drive(self, thread_id: str, request: str) -> None:
        """A pause or cancel of a thread this process's worker drives: told to its run at once
        (runs elsewhere read the request from the database)."""
        fleet = self.fleet
        loop = getattr(fleet, "loop", None)
        if loop is None:
            return

        def tell() -> None:
            drive = fleet.drives.get(thread_id)
            if drive is not None:
                drive.asked(request)

        loop.call_soon_threadsafe(tell)

    def stop_fleet(self, grace: float = 30.0) -> None:
        fleet, worker_thread = self.fleet, self._fleet_thread
        if fleet is None or worker_thread is None:
            return
        loop = getattr(fleet, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(fleet.stop)
        worker_thread.join(grace + 5)


def create_app(server: Server) -> FastAPI:
    from api import agent_api, assistants, runs_api, store_api, threads_api
    from api.dashboard_files import mount_dashboard

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.hub = Hub(asyncio.get_running_loop())
        server.webhooks = Webhooks(server)
        async with server.db.open_async() as (_saver, store):
            server.store = store
            server.start_fleet()
            watcher = asyncio.create_task(server.watch())
            try:
                yield
            finally:
                watcher.cancel()
                await asyncio.to_thread(server.stop_fleet)
                await server.webhooks.close()
                server.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="agent",
        summary="Durable LangGraph threads: the LangGraph Server API that langgraph-sdk uses, and agent's own endpoints.",
        version="1",
        lifespan=lifespan,
    )
    app.state.server = server
    for module in (assistants, threads_api, runs_api, store_api, agent_api):
        app.include_router(module.router)
    mount_dashboard(app)
    _errors(app)
    app.add_middleware(Guard, token=server.token)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(AgentError)
    async def agent_error(request: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where or 'the request'}: {first.get('msg', 'is not valid')}"
        return JSONResponse(problem(400, "BadInput", message, "the API's document at /openapi.json says what each request takes"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse(problem(exc.status_code, kind, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(UnicodeError)
    async def undecodable(request: Request, exc: UnicodeError) -> JSONResponse:
        body = problem(400, "BadInput", "the request holds text that is not valid Unicode (an unpaired surrogate)", "send UTF-8 text")
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, redact(str(exc)))
        body = problem(500, "InternalError", "the server failed to answer this request", "its log says why; nothing of the request was half-written")
        return JSONResponse(body, status_code=500)


class Guard:
    """Every request: the bearer token (when the server has one), compared in constant time; a
    body of at most MAX_BODY_BYTES; and no state-changing request from another site's page."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        if "content-length" not in headers and method_has_body(scope["method"]):
            # A body sent in chunks: read (at most MAX_BODY_BYTES of it) before the app sees any.
            body = await _read_limited(receive)
            if body is None:
                await _answer(send, 413, _too_large())
                return
            receive = _replay(body)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        path, method = scope["path"], scope["method"]
        if self.token and not _open(path) and not _token_ok(headers, self.token):
            return 401, problem(401, "Unauthorized", "this server needs its token", "send `Authorization: Bearer <token>` (the server's AGENT_API_TOKEN)")
        if method not in ("GET", "HEAD", "OPTIONS") and _cross_site(headers):
            return 403, problem(403, "Forbidden", "a request from another site's page may not change anything here", "use the dashboard this server serves")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return 413, _too_large()
        return None


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith("/dashboard/")


def _token_ok(headers: dict[str, str], token: str) -> bool:
    """`Authorization: Bearer <token>`, or `X-Api-Key: <token>` as langgraph-sdk sends its `api_key`."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = headers.get("x-api-key", "")
    return bool(given) and hmac.compare_digest(given.strip().encode(), token.encode())


def _cross_site(headers: dict[str, str]) -> bool:
    """Whether a browser says the request comes from a page of another origin."""
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    host = headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host


def _too_large() -> dict[str, Any]:
    return problem(413, "BodyTooLarge", f"the request body is over {MAX_BODY_BYTES // 1024} KiB", "send fewer items in one request: a queue's items can also come from a file the graph reads (`items_file`)")


def method_has_body(method: str) -> bool:
    return method in ("POST", "PUT", "PATCH", "DELETE")


async def _read_limited(receive: Receive) -> bytes | None:
    """The whole body, or None once it passes MAX_BODY_BYTES."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def _replay(body: bytes) -> Receive:
    sent = [False]

    async def receive() -> Message:
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def dashboard_dir() -> Path:
    return Path(__file__).with_name("dashboard")
