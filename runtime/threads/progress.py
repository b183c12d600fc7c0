"""A run's progress in figures: done, failed, total, items a second, ETA, elapsed, tokens, cost.

The same `figures()` serves the live display of a run (fed by the run's item events) and
`agent status` in another process (fed by the database: the per-item results in the store and
the checkpoint's counters), so the two agree. A graph that is not a queue may report progress
of its own, `{"progress": {"done": n, "total": N}}` (and `"failed"`) in its custom stream: the
runner takes those counts as they are (`ProgressTracker.report`), and keeps its figures in the
database for `agent status` (`save_reported`, `reported_progress`). Items a second are measured over the last
`WINDOW` seconds of the current run, so the ETA follows a queue that slows down (a 429) or
speeds up, rather than the average since the start.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from state.storage import results_namespace
from runtime.store.parts import namespaces
from runtime.store.parts import progress as progress_rows
from runtime.store.database import Database
from runtime.policy.prices import cost_usd

WINDOW = 30.0
"""Seconds over which items a second are measured."""


@dataclass
class ProgressSnapshot:
    total: int
    done: int
    failed: int
    remaining: int
    """Items still to process in this round: those without a result, and in a retry round
    those given up in an earlier round."""
    elapsed: float | None
    """Seconds since the current run started; None when no run is going."""
    rate: float | None
    """Items finished a second over the last WINDOW seconds of the run."""
    eta: float | None
    """Seconds until `remaining` is done at `rate`."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    """Estimated from the price table (runtime/policy/prices.json); None for a model it has no price for."""

    @property
    def percent(self) -> float:
        finished = self.total - self.remaining
        return 100.0 * finished / self.total if self.total else 100.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("elapsed", "rate", "eta"):
            if data[key] is not None:
                data[key] = round(data[key], 3)
        if data["cost_usd"] is not None:
            data["cost_usd"] = round(data["cost_usd"], 6)
        data["percent"] = round(self.percent, 2)
        return data


SNAPSHOT_FIELDS = tuple(f.name for f in fields(ProgressSnapshot))


def figures(
    *,
    total: int,
    done: int,
    failed: int,
    stale_failed: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    model: str | None = None,
    elapsed: float | None = None,
    recent: int = 0,
) -> ProgressSnapshot:
    """The figures from counts. `recent` is how many items finished in the last
    min(WINDOW, elapsed) seconds; `stale_failed`, items given up in an earlier round that a
    retry round has still to send."""
    remaining = max(0, total - done - failed + stale_failed)
    span = min(WINDOW, elapsed) if elapsed else 0.0
    rate = recent / span if span > 0 and elapsed is not None else None
    if remaining == 0:
        eta = 0.0
    else:
        eta = remaining / rate if rate else None
    return ProgressSnapshot(
        total=total,
        done=done,
        failed=failed,
        remaining=remaining,
        elapsed=elapsed,
        rate=rate,
        eta=eta,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd(model, input_tokens, output_tokens),
    )


class ProgressTracker:
    """The progress of a run in this process: counts from the database at the start, then
    one item event at a time."""

    def __init__(self, model: str | None, counts: dict[str, int] | None = None, total: int | None = None) -> None:
        self.model = model
        self.total = total
        self.started = time.monotonic()
        self.counts = {"done": 0, "failed": 0, "stale_failed": 0, "input_tokens": 0, "output_tokens": 0, **(counts or {})}
        self._finished: deque[tuple[float, int]] = deque()
        """(when, how many) items finished, over the last WINDOW seconds."""
        self._reported: int | None = None

    @property
    def active(self) -> bool:
        """Whether this run has a queue to show (its total is known)."""
        return self.total is not None

    def record(self, event: dict[str, Any]) -> None:
        """An item event from `process_items`: index, status, previous status, tokens."""
        counts = self.counts
        if event.get("previous") == "failed":  # a retry of a given-up item
            counts["stale_failed"] -= 1
            if event["status"] == "done":
                counts["failed"] -= 1
                counts["done"] += 1
        else:
            counts[event["status"]] += 1
        counts["input_tokens"] += event.get("input_tokens") or 0
        counts["output_tokens"] += event.get("output_tokens") or 0
        self._finished_now(1)

    def report(self, figures: dict[str, Any]) -> bool:
        """A graph's own progress event, `{"done": n, "total": N, "failed": f}` (failed optional):
        the counts are taken as they are. False, and nothing changed, when they are not counts."""
        counts = reported_counts(figures)
        if counts is None:
            return False
        done, total, failed = counts
        finished = done + failed
        if self._reported is not None and finished > self._reported:  # the first report of a run is its baseline
            self._finished_now(finished - self._reported)
        self._reported = finished
        self.total, self.counts["done"], self.counts["failed"] = total, done, failed
        return True

    def _finished_now(self, count: int) -> None:
        now = time.monotonic()
        self._finished.append((now, count))
        self._forget(now)

    def snapshot(self) -> ProgressSnapshot:
        now = time.monotonic()
        self._forget(now)
        return figures(
            total=self.total or 0,
            **self.counts,
            model=self.model,
            elapsed=now - self.started,
            recent=sum(count for _, count in self._finished),
        )

    def _forget(self, now: float) -> None:
        while self._finished and self._finished[0][0] < now - WINDOW:
            self._finished.popleft()


def reported_counts(figures: Any) -> tuple[int, int, int] | None:
    """(done, total, failed) of a graph's progress event, or None unless they are whole numbers
    with 0 <= done + failed <= total."""
    if not isinstance(figures, dict):
        return None
    done, total, failed = figures.get("done"), figures.get("total"), figures.get("failed", 0)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (done, total, failed)):
        return None
    return (done, total, failed) if done + failed <= total else None


def stored_counts(db: Database, thread_id: str, round_: int = 0, since: float | None = None) -> dict[str, int]:
    """Counts from the thread's results in the store: done, failed (and of those, given up
    before round `round_`), tokens, and results written at or after `since` (epoch seconds)."""
    counts = {"done": 0, "failed": 0, "stale_failed": 0, "input_tokens": 0, "output_tokens": 0, "recent": 0}
    rows = namespaces.result_counts(db.conn, ".".join(results_namespace(thread_id)), round_, since)
    for status, stale, count, input_tokens, output_tokens, recent in rows:
        if status in ("done", "failed"):
            counts[status] += count
        if status == "failed":
            counts["stale_failed"] += stale or 0
        counts["input_tokens"] += input_tokens or 0
        counts["output_tokens"] += output_tokens or 0
        counts["recent"] += recent or 0
    return counts


def stored_progress(
    db: Database, thread_id: str, values: dict[str, Any], model: str | None, run_started: float | None
) -> ProgressSnapshot | None:
    """A queue's progress from the database alone (`agent status`), or None for a thread
    without a queue. `values` are the latest checkpoint's; `run_started` (epoch seconds) is
    when the run going on now began, None when none is."""
    if "total" not in values:
        return None
    now = time.time()
    since = max(now - WINDOW, run_started) if run_started is not None else None
    counts = stored_counts(db, thread_id, values.get("round", 0) or 0, since)
    recent = counts.pop("recent")
    return figures(
        total=values["total"],
        **counts,
        model=model,
        elapsed=(now - run_started) if run_started is not None else None,
        recent=recent if since is not None else 0,
    )


def save_reported(db: Database, thread_id: str, snapshot: ProgressSnapshot) -> None:
    """Keep the figures of a graph's own progress for `agent status` in other processes."""
    progress_rows.put(db.conn, thread_id, snapshot.as_dict(), time.time())


def reported_progress(db: Database, thread_id: str, running: bool) -> ProgressSnapshot | None:
    """The figures a graph last reported of its own progress, or None. While its run goes on,
    elapsed and ETA are moved on by the time since they were written; once no run is going,
    there is no rate and no ETA."""
    row = progress_rows.get(db.conn, thread_id)
    if row is None:
        return None
    figures, written = row
    snapshot = ProgressSnapshot(**{name: figures.get(name) for name in SNAPSHOT_FIELDS})
    if not running:
        return replace(snapshot, elapsed=None, rate=None, eta=0.0 if snapshot.remaining == 0 else None)
    age = max(0.0, time.time() - written)
    return replace(
        snapshot,
        elapsed=None if snapshot.elapsed is None else snapshot.elapsed + age,
        eta=None if snapshot.eta is None else max(0.0, snapshot.eta - age),
    )
