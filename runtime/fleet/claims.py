"""What a fleet worker takes and what it tells: a claim on a thread, its events, and how often it looks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TAKEOVER = "takeover"
"""The kind of a claim on a thread whose runner died."""
CLAIM_BATCH = 2000
"""Threads taken (or announced) in one pass; more wait for the next."""
SCAN_SECONDS = 1.0
"""How often a worker looks for threads whose runner died (and, on PostgreSQL, for jobs of dead
workers and requests without a job)."""


@dataclass
class Claim:
    """A thread this worker took: why (a queued request, or a takeover) and its lease."""

    thread_id: str
    kind: str
    request: dict[str, Any]
    lease: int
    before: str = "queued"
    """The thread's status before it was taken (restored when its request cannot start)."""
    priority: int = 0


@dataclass
class WorkerEvent:
    """Something the worker did: `started`, `finished`, `taken_over`, `gave_up`, `refused`, `stopping`."""

    kind: str
    thread_id: str | None = None
    status: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "thread_id": self.thread_id, "status": self.status, "message": self.message}
