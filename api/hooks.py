"""Webhooks: a URL called with a JSON body when something a client waits for happens.

A run's `webhook` (as in the LangGraph API) is called once the run ends, with the run (its id,
thread, status, error) and the thread's values. A thread may name its own (`PUT
/agent/threads/{id}/webhook`) for the moments a person should hear of: an approval waits
(`interrupted`), the run `failed`, its budget ran out (`budget_exceeded`); so may a schedule (`PUT
/agent/schedules/{name}/webhook`), for those moments of each of its runs that this server's
worker drives. Each call is tried up to
ATTEMPTS times, BACKOFF seconds apart and doubling, on the server's loop; a webhook that keeps
failing is logged (without its query string, which may hold a key) and dropped: it never holds a run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from runtime.errors import BadInput
from runtime.redact import redact

log = logging.getLogger("agent.serve")
ATTEMPTS = 5
BACKOFF = 1.0
TIMEOUT = 10.0
THREAD_EVENTS = ("interrupted", "failed", "budget_exceeded")


def check_url(url: Any) -> str:
    """A webhook URL as given, checked: http or https, with a host."""
    parts = urlsplit(str(url or ""))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"webhook {shown(str(url))!r} is not an http(s) URL", "e.g. https://example.com/hooks/agent")
    return str(url)


def shown(url: str) -> str:
    """A URL as a log line may show it: no credentials, no query string."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class Webhooks:
    """The calls waiting to be made, on the server's loop."""

    def __init__(self, server: Any) -> None:
        import httpx

        self.server = server
        self.client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self.tasks: set[asyncio.Task] = set()
        self.backoff = BACKOFF

    def run_ended(self, run: dict[str, Any]) -> None:
        """A run just ended: call its webhook, and the thread's for how it ended."""
        url = (run.get("kwargs") or {}).get("webhook")
        if url:
            self._send(url, "run_ended", run)
        self._send_thread_hook(run)

    def _send_thread_hook(self, run: dict[str, Any]) -> None:
        from api import book

        thread_id = run["thread_id"]

        async def look() -> None:
            meta = await self.server.call(book.thread_meta, self.server.db, thread_id) or {}
            hook = meta.get("webhook")
            if not hook:
                return
            status = await self.server.call(_thread_status, self.server.db, thread_id)
            event = {"awaiting_approval": "interrupted", "interrupted": "interrupted"}.get(status, status)
            if event in hook.get("events", THREAD_EVENTS):
                await self._deliver(hook["url"], event, run)

        self._spawn(look())

    def schedule_run_ended(self, origin: dict[str, Any], ended: dict[str, Any]) -> None:
        """A schedule's run, driven by this server's worker, ended: its schedule's webhook, if it names the moment."""
        from api import book

        name = origin.get("schedule")
        if not name:
            return

        async def look() -> None:
            hook = await self.server.call(book.schedule_hook, self.server.db, name)
            event = {"awaiting_approval": "interrupted"}.get(ended["status"], ended["status"])
            if hook and event in hook.get("events", THREAD_EVENTS):
                run = {"run_id": origin.get("run_id"), "schedule": name, **ended}
                await self._deliver(hook["url"], event, run)

        self._spawn(look())

    def _send(self, url: str, event: str, run: dict[str, Any]) -> None:
        self._spawn(self._deliver(url, event, run))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, url: str, event: str, run: dict[str, Any]) -> None:
        body = {"event": event, **_public(run)}
        try:
            body["values"] = await self.server.call(_values, self.server.db, run["thread_id"])
        except Exception:
            body["values"] = None
        delay = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = await self.client.post(url, json=body)
                if response.status_code < 300:
                    return
                problem = f"answered {response.status_code}"
            except Exception as exc:
                problem = type(exc).__name__
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook %s for run %s %s after %d attempts; dropped", shown(url), run["run_id"], redact(problem), ATTEMPTS)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.client.aclose()


def _public(run: dict[str, Any]) -> dict[str, Any]:
    """A run as a webhook's body shows it: no settings, no webhook URL."""
    keep = ("run_id", "thread_id", "assistant_id", "schedule", "status", "created_at", "updated_at", "ended_at", "error", "metadata", "checkpoint_id")
    return {key: run[key] for key in keep if key in run}


def _values(db: Any, thread_id: str) -> dict[str, Any]:
    from runtime.threads.history import get_state

    return get_state(db, thread_id, attended=False).values


def _thread_status(db: Any, thread_id: str) -> str:
    from runtime.threads import registry

    return registry.get_thread(db, thread_id).status
