"""The facts the storage seam's parts hand back and the errors they raise (runtime/store/seam.py
says what each part must do with them)."""

from __future__ import annotations

from typing import Any, NamedTuple


class OccurrenceTaken(Exception):
    """A schedule's occurrence (schedule, fire time) was claimed already, by another worker or a trigger."""


class LeaseLost(Exception):
    """A write of a runner whose lease on the thread was taken over (fencing): refused, nothing stored."""


LEASE_KEY = "agent_lease"
"""The configurable key of a run's config that carries its lease on the thread (a number that
grows with each taking of the lease). A checkpoint or a task's writes put with it are stored
only while the thread's lease is still that number, in the same statement; else `LeaseLost`."""


class StorageUnreadable(Exception):
    """The storage cannot be read at all (not a database of this backend, or a damaged one)."""


# -- rows: what the parts hand back -----------------------------------------------------------


class Layout(NamedTuple):
    """What a backend's database is made of, as `agent doctor` checks it."""

    kind: str
    """How messages name the backend: "SQLite", "PostgreSQL"."""
    schema_version: int
    """The version this code writes."""
    expected_tables: tuple[str, ...]
    writes_table: str
    """Where a task's writes are stored apart from their checkpoint."""


class Owner(NamedTuple):
    """The process holding a thread's lease, or asked to pause or cancel it."""

    pid: int
    host: str


class ThreadRow(NamedTuple):
    thread_id: str
    graph: str
    graph_version: str
    status: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float
    steps: int
    error: str | None
    owner_pid: int | None
    owner_host: str | None
    owner_since: float | None
    heartbeat_at: float | None
    lease: int = 0
    """Grows each time a runner takes the thread (fencing: LEASE_KEY)."""
    resumes: int = 0
    """Takeovers of a dead runner's thread since a run of it last ended."""


class QueueRow(NamedTuple):
    """A queued request to run a thread: `kind` is `run`, `resume`, `retry` or `answer`."""

    thread_id: str
    kind: str
    request: dict[str, Any]
    priority: int
    queued_at: float
    queued_by: str | None


class WorkerRow(NamedTuple):
    worker_id: str
    pid: int
    host: str
    started_at: float
    heartbeat_at: float
    concurrency: int
    running: int
    status: str
    """`running`, `stopping` (draining after SIGTERM) or `stopped`."""


class StoreItem(NamedTuple):
    """An item of LangGraph's store, as a thread's namespaces hold it."""

    key: str
    value: dict[str, Any]
    created_at: float
    updated_at: float


class SpendRow(NamedTuple):
    input_tokens: int
    output_tokens: int
    cost_usd: float
    """The estimated cost of the calls whose model has a price."""
    calls: int
    unpriced_calls: int = 0
    """Calls of models the price table does not know: their tokens count, their cost is unknown."""


class ControlRow(NamedTuple):
    request: str
    target_pid: int | None
    target_host: str | None
    requested_by: str | None
    requested_at: float


class ScheduleRow(NamedTuple):
    name: str
    graph: str
    cron: str
    tz: str
    input: Any
    settings: dict[str, Any]
    overlap: str
    missed: str
    max_failures: int
    status: str
    pause_reason: str | None
    failures: int
    next_fire: float | None
    created_at: float
    updated_at: float


class RunRow(NamedTuple):
    """One occurrence of a schedule: claimed (`running`, then how its thread ended), skipped or missed."""

    id: int
    schedule: str
    fire_time: float
    thread_id: str | None
    status: str
    started_at: float | None
    ended_at: float | None
    error: str | None
    worker: str | None
    resumes: int


# -- the parts ---------------------------------------------------------------------------------
