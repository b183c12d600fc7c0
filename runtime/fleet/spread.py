"""One queue thread's items over every worker of a fleet on PostgreSQL.

A `task_queue` thread driven by a worker does not work through its items alone. Its run, the
owner, goes through the queue a chunk at a time as on one machine (nodes/queue.py), but hands
each chunk's items out as Procrastinate jobs `agent.items`, one per part of `concurrency`
consecutive indexes, and every worker with room takes parts (`ItemWorker`), the owner's own
included: each worker serves those jobs with a Procrastinate worker of their own, beside the
one that hands out threads, so a run waiting for its items never holds the slot they need.

What stays as on one machine, and how:

- **A result is written once.** A part's worker writes each result with one statement that
  writes only where the item still needs work in this round (no result, or one given up in an
  earlier round): a part run again (its worker died, the chunk was handed out again after a
  takeover) skips what is done, and a result never replaces a result. Two jobs of one part never
  run at once: the part's job lock is the part. Re-executed items are at most those that were
  in flight in a worker that died.
- **Progress, ETA and the dead-letter list.** The owner reads its chunk's results as they are
  written and reports each to the run as its own items are reported, so `agent run`, `agent
  status` and `agent results` show the same figures; a failed item is given up into the results
  with its error, exactly as a local one.
- **Limits.** `--rpm` and `--tpm` hold for the thread across every worker: each model request
  of a part reserves its share of the thread's buckets in the database (`rates.reserve`), as
  AGENT_MODEL_RPM's shared limits do, which apply as well. `--concurrency` is per worker: a
  worker has at most that many items of the thread in flight over all the parts it holds
  (`--item-parts`, of any threads), in a sliding window as on one machine, so each worker adds
  one machine's worth. Each part's worker adds what it spent to the thread's spend
  as it ends; the owner reads the thread's spend while it waits, so the budget drains the run as
  on one machine, and a part stops starting items once the budget it saw is spent.
- **Stopping.** A drain of the owner (SIGTERM of its worker, a pause, a cancel, the deadline, the
  budget) marks the run's parts stopped and cancels those not started; parts running start no
  more items (in the owner's process they see the drain itself; elsewhere they read the mark
  before each item), finish those in flight, and drop those waiting (a backoff), as one machine
  does. A worker that stops starts no more items of others' parts: their owners hand them out again.
  A fatal error in a part (a wrong key) is recorded for the owner, which fails the run with it.
- **Partition.** Parts do not hold the thread's lease: they write only results, which are
  written once, so a part whose worker was cut off and comes back writes at most results that no
  one else has written. The run itself (its cursor and counters) is written only by the owner,
  whose writes are fenced by the lease.

Procrastinate gives the dispatch, the part locks, and the search for the jobs of dead workers;
what is added on top is the write-once result, the owner's wait for its chunk, and the fatal error
carried back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from nodes.errors import EndpointError, describe
from runtime.policy import budget
from runtime.policy.limits import RequestLimiter
from runtime.policy.metering import SpendCallback
from runtime.policy.settings import RunSettings
from runtime.policy.shared_rates import shared_admission
from runtime.policy.waits import InterruptibleControl, RunClock
from runtime.redact import redact
from runtime.store.parts import out_of_reach
from runtime.store.parts import threads as thread_rows
from state.context import RunContext, WaitInterrupted
from state.storage import item_key, items_namespace, results_namespace, thread_label

if TYPE_CHECKING:
    from runtime.runs.drive import Drive
    from runtime.store.database import Database

POLL_SECONDS = 0.2
"""How often the owner reads its chunk's new results."""
CHECK_EVERY = 5
"""Polls between two looks at the parts' jobs, the thread's spend and a fatal error."""
STATUS_SECONDS = 0.5
"""How long a worker trusts what it last read of a thread's status."""
FATAL_KEY = "fatal"
STOP_KEY = "stop"
"""Marks a thread whose run stopped handing items out (drained or failed): its parts start no more."""
PART_FAILURES = 3
"""Jobs of one part that may fail (a worker's error, not the model's) before the run fails too."""
KEEP_THREADS = 64
"""Threads whose models a worker keeps while none of their parts runs here."""

Report = Callable[[int, dict[str, Any], dict[str, Any] | None], None]


def spread_namespace(thread_id: str) -> tuple[str, ...]:
    """Where a part's fatal error waits for the owner, and the owner's stop for the parts."""
    return ("spread", thread_label(thread_id))


def prefix_of(namespace: tuple[str, ...]) -> str:
    return ".".join(namespace)


def parts_of(indexes: list[int], size: int) -> dict[int, list[int]]:
    """The indexes by part: `size` consecutive indexes make a part, so a part's number is the same
    whoever hands it out."""
    parts: dict[int, list[int]] = {}
    for index in indexes:
        parts.setdefault(index // size, []).append(index)
    return parts


class OutOfReach(Exception):
    """The database could not be reached for a moment (`_reaching`)."""


async def _reaching(awaitable: Awaitable[Any]) -> Any:
    """What `awaitable` gives; OutOfReach instead of an error that says the server is out of reach."""
    try:
        return await awaitable
    except Exception as exc:
        if out_of_reach(exc):
            raise OutOfReach() from exc
        raise


class ItemFailed(EndpointError):
    """A fatal error of a part, carried back to its owner (its class name, status and message)."""


# -- the owner -------------------------------------------------------------------------------------


class ItemSpread:
    """A run's hand-out of its queue's items (RunContext.spread), made by the fleet worker's host."""

    def __init__(self, db: Database, jobs: Any, drive: Drive) -> None:
        self.db, self.jobs, self.drive = db, jobs, drive
        self.thread_id = drive.plan.thread_id
        settings = drive.plan.settings
        self.size = max(1, settings.concurrency or 1)
        self.work = {"settings": settings.as_dict()}
        self.failures: dict[int, int] = {}
        """Part -> how many of its jobs failed (a worker raised) in this run."""

    async def process(
        self, round_: int, prompt: str, todo: list[int], report: Report, previous: dict[int, Any], draining: Callable[[], bool]
    ) -> tuple[dict[int, Any], list[int], int]:
        """The items of `todo` handed out as parts, and waited for: what `run_window` returns for
        them (results by index, the items left without one, how many were started)."""
        from nodes.queue import needs_work

        parts = parts_of(todo, self.size)
        await asyncio.to_thread(self._clear_marks)
        job_ids = await self.jobs.adefer_items(self.thread_id, round_, parts, {"prompt": prompt, **self.work})
        outstanding, done = set(todo), {}
        polls = 0
        try:
            while outstanding:
                if draining():
                    break
                await asyncio.sleep(POLL_SECONDS)
                # The server out of reach: polled again (the run's lease lapses and drains it, or it comes back).
                with contextlib.suppress(OutOfReach):
                    found = await _reaching(asyncio.to_thread(self._results, sorted(outstanding)))
                    for index in sorted(found):
                        if not needs_work(found[index], round_):
                            done[index] = found[index]
                            outstanding.discard(index)
                            report(index, found[index], previous.get(index))
                    polls += 1
                    if outstanding and polls % CHECK_EVERY == 0:
                        await _reaching(self._check(round_, parts, outstanding, job_ids, prompt, draining))
        finally:
            if outstanding:  # drained, or failed: no part starts another item of this run
                await asyncio.shield(self._call_back(job_ids))
        # A drained run's items still running elsewhere write their results when they finish;
        # the chunk counts them when it runs again.
        return done, sorted(outstanding), len(todo)

    async def _check(
        self, round_: int, parts: dict[int, list[int]], outstanding: set[int], job_ids: dict[int, int | None], prompt: str, draining: Callable[[], bool]
    ) -> None:
        """The thread's spend (the budget drains the run), a part's fatal error (raised), and parts
        whose job ended with items left: handed out again."""
        fatal, stored, states = await asyncio.to_thread(self._look, round_, parts)
        self.drive.meter.refresh(stored)
        if fatal is not None:
            raise ItemFailed(fatal["message"], fatal["origin"], fatal.get("status_code"), "fatal")
        if draining():
            return
        ended = {part: [i for i in indexes if i in outstanding] for part, indexes in parts.items() if states.get(part) not in ("todo", "doing")}
        ended = {part: indexes for part, indexes in ended.items() if indexes}
        for part in ended:
            if states.get(part) == "failed":  # its worker raised: the database out of reach for a while, or a bug
                self.failures[part] = self.failures.get(part, 0) + 1
                if self.failures[part] > PART_FAILURES:
                    raise RuntimeError(
                        f"workers failed {self.failures[part]} times on items {ended[part][0]}-{ended[part][-1]} of this queue; "
                        "the workers' logs say why"
                    )
        if ended:
            job_ids.update(await self.jobs.adefer_items(self.thread_id, round_, ended, {"prompt": prompt, **self.work}))

    def _results(self, indexes: list[int]) -> dict[int, Any]:
        """The results there are of `indexes`, by index: one statement, however many."""
        from runtime.store.postgres import namespaces

        found = namespaces.values_of(self.db.conn, prefix_of(results_namespace(self.thread_id)), [item_key(i) for i in indexes])
        return {int(key): value for key, value in found.items()}

    def _look(self, round_: int, parts: dict[int, list[int]]) -> tuple[dict[str, Any] | None, budget.Spend, dict[int, str]]:
        conn = self.db.conn
        from runtime.store.postgres import namespaces

        fatal = namespaces.get_value(conn, prefix_of(spread_namespace(self.thread_id)), FATAL_KEY)
        return fatal, budget.get_spend(self.db, self.thread_id), self.jobs.part_states(conn, self.thread_id, round_, parts)

    async def _call_back(self, job_ids: dict[int, int | None]) -> None:
        """Mark the run's parts stopped (workers elsewhere read it before each item; those of this
        process see the drain itself), then cancel those not started. With the database out of
        reach (the drain of a lapsed lease) neither can be done, and the run still stops: its
        parts go on only while the thread stays running, and their results are written once."""
        try:
            await asyncio.to_thread(self._mark_stopped)
            await self.jobs.acancel(job_id for job_id in job_ids.values() if job_id is not None)
        except Exception as exc:
            if not out_of_reach(exc):
                raise

    def _mark_stopped(self) -> None:
        from runtime.store.postgres import namespaces

        namespaces.put_value(self.db.conn, prefix_of(spread_namespace(self.thread_id)), STOP_KEY, {"at": time.time()})

    def _clear_marks(self) -> None:
        """A new run of the thread's queue: no fatal error waiting, and its parts may go."""
        from runtime.store.postgres import namespaces

        for key in (FATAL_KEY, STOP_KEY):
            namespaces.delete_value(self.db.conn, prefix_of(spread_namespace(self.thread_id)), key)


# -- the workers -----------------------------------------------------------------------------------


@dataclass
class _ThreadTools:
    """What a worker keeps of one thread whose parts it works on: its settings and models, its
    slots, and what it last read of whether its items may go."""

    settings_key: str
    settings: RunSettings
    model: Any
    cheap_model: Any
    slots: asyncio.Semaphore
    """The thread's items in flight in this worker, over all its parts: at most its `concurrency`,
    so that each worker adds what one machine would have in flight, and a part's items go in a
    sliding window (a slow item holds back its own slot, not its part's)."""
    may_go: bool = True
    looked: float = 0.0
    parts: int = 0
    """Its parts running in this worker now."""


class ItemWorker:
    """Works on the parts a fleet worker's Procrastinate worker hands it (`handle`)."""

    def __init__(self, db: Database, store_of: Callable[[], Any], local_drive: Callable[[str], Any]) -> None:
        self.db = db
        self.store_of = store_of
        """The host's async store, once it is open."""
        self.local_drive = local_drive
        """The run of a thread driven by this process, or None."""
        self.stopping = False
        """Set when the worker stops: its parts start no more items (their owners hand them out again)."""
        self.threads: dict[str, _ThreadTools] = {}
        self.items_done = 0
        """Results this worker wrote."""

    async def handle(self, thread_id: str, round: int, indexes: list[int], prompt: str, settings: dict[str, Any]) -> None:
        """One part: each of its items that still needs work to its result, side by side."""
        tools = await self._tools(thread_id, settings)
        tools.parts += 1
        try:
            await self._part(thread_id, tools, round, indexes, prompt)
        finally:
            tools.parts -= 1
            self._forget_idle()

    def _forget_idle(self) -> None:
        """Keep the tools of at most KEEP_THREADS threads with no part here, the most recently
        used: a long-lived worker serves the parts of many threads, one after another."""
        idle = [thread_id for thread_id, tools in self.threads.items() if not tools.parts]
        for thread_id in idle[: max(0, len(self.threads) - KEEP_THREADS)]:
            del self.threads[thread_id]

    async def _part(self, thread_id: str, tools: _ThreadTools, round: int, indexes: list[int], prompt: str) -> None:
        from nodes.queue import needs_work, process_one, read_indexes, run_window

        if not await self._may_go(thread_id, tools, fresh=True):
            return  # stopped, paused or cancelled: its next run hands the items out again
        store = self.store_of()
        previous = await read_indexes(store, results_namespace(thread_id), indexes)
        todo = [i for i in indexes if needs_work(previous.get(i), round)]
        if not todo:
            return
        items = await read_indexes(store, items_namespace(thread_id), todo)
        control = InterruptibleControl()
        meter = budget.SpendMeter(await asyncio.to_thread(budget.get_spend, self.db, thread_id), budget.run_limits(tools.settings))
        ctx = await asyncio.to_thread(_context, self.db, thread_id, tools, control, meter)
        watch = asyncio.create_task(self._watch(thread_id, tools, control, meter))

        async def one(index: int) -> None:
            # A slot of the thread's in this worker, then a fresh look: an item starts only while
            # its run hands items out, however long it waited for the slot.
            await control.until_stopped(tools.slots.acquire())
            try:
                if control.drain_requested or meter.exceeded or not await self._may_go(thread_id, tools, fresh=True):
                    raise WaitInterrupted()
                stored = items.get(index)
                if stored is None:
                    raise RuntimeError(f"item {index} is missing from the store")
                record = await process_one(ctx, prompt, index, stored["item"], previous.get(index), round)
                if await asyncio.to_thread(self._write, thread_id, index, record, round):
                    self.items_done += 1
            finally:
                tools.slots.release()

        from langchain_core.runnables.config import var_child_runnable_config

        token = var_child_runnable_config.set({"callbacks": [SpendCallback(meter)]})  # every model call counted
        try:
            await run_window(todo, one, len(todo), lambda: control.drain_requested)
        except WaitInterrupted:
            pass
        except Exception as exc:
            from nodes.errors import classify

            if classify(exc) != "fatal":
                raise
            await asyncio.to_thread(self._record_fatal, thread_id, exc)
        finally:
            var_child_runnable_config.reset(token)
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await asyncio.shield(asyncio.to_thread(self._add_spend, thread_id, meter))

    async def _watch(self, thread_id: str, tools: _ThreadTools, control: InterruptibleControl, meter: budget.SpendMeter) -> None:
        """Stop the part's waits once the thread stops running or its budget is spent."""
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            if meter.exceeded or not await self._may_go(thread_id, tools):
                control.request_drain("stopped")
                return

    async def _may_go(self, thread_id: str, tools: _ThreadTools, fresh: bool = False) -> bool:
        """Whether the thread's items may start: this worker is not stopping, and the thread's run
        hands items out (read from the run itself when this process drives it; else from the
        thread's row and the run's stop mark, at most STATUS_SECONDS old unless `fresh`)."""
        if self.stopping:
            return False
        drive = self.local_drive(thread_id)
        if drive is not None:
            return not drive.control.drain_requested
        if fresh or time.monotonic() - tools.looked >= STATUS_SECONDS:
            tools.may_go, tools.looked = await asyncio.to_thread(self._look, thread_id), time.monotonic()
        return tools.may_go

    def _look(self, thread_id: str) -> bool:
        from runtime.store.postgres import namespaces

        row = thread_rows.get(self.db.conn, thread_id)
        if row is None or row.status != "running":
            return False
        return namespaces.get_value(self.db.conn, prefix_of(spread_namespace(thread_id)), STOP_KEY) is None

    async def _tools(self, thread_id: str, settings: dict[str, Any]) -> _ThreadTools:
        """The thread's models in this worker, made once for all its parts (again if a resume
        changed its settings)."""
        from runtime.runs.plan import build_models

        key = json.dumps(settings, sort_keys=True)
        tools = self.threads.pop(thread_id, None)
        if tools is not None:
            self.threads[thread_id] = tools  # the most recently used last
        if tools is None or tools.settings_key != key:
            resolved = RunSettings(**settings)
            model, cheap_model = await asyncio.to_thread(build_models, resolved)
            tools = self.threads.get(thread_id)
            if tools is None or tools.settings_key != key:  # another part of it may have made them meanwhile
                slots = asyncio.Semaphore(max(1, resolved.concurrency or 1))
                tools = self.threads[thread_id] = _ThreadTools(key, resolved, model, cheap_model, slots)
        return tools

    def _write(self, thread_id: str, index: int, record: dict[str, Any], round_: int) -> bool:
        from runtime.store.postgres import namespaces

        # One statement, atomic alone: not under the database's write lock, which every worker's
        # every item would queue for.
        return namespaces.put_result_once(self.db.conn, prefix_of(results_namespace(thread_id)), item_key(index), record, round_)

    def _record_fatal(self, thread_id: str, exc: BaseException) -> None:
        from runtime.store.postgres import namespaces

        origin = exc.origin if isinstance(exc, EndpointError) else type(exc).__name__
        text = describe(exc).partition(": ")[2] or origin
        value = {"origin": origin, "status_code": getattr(exc, "status_code", None), "message": redact(text)}
        namespaces.put_value(self.db.conn, prefix_of(spread_namespace(thread_id)), FATAL_KEY, value)

    def _add_spend(self, thread_id: str, meter: budget.SpendMeter) -> None:
        budget.add_spend(self.db, thread_id, meter.take_pending())  # one statement (an upsert that adds)


def _context(db: Database, thread_id: str, tools: _ThreadTools, control: InterruptibleControl, meter: budget.SpendMeter) -> RunContext:
    """The RunContext of one part: the thread's models, a limiter that holds the part to the
    thread's `concurrency` and the whole fleet to the thread's rates, and waits that end when the
    part is told to stop."""
    settings = tools.settings
    limiter = RequestLimiter(settings.concurrency, until_stopped=control.until_stopped, shared=thread_admission(db, thread_id, settings))
    return RunContext.of_settings(settings, tools.model, tools.cheap_model, limiter=limiter, clock=RunClock(control), meter=meter, background=True)


def thread_admission(db: Database, thread_id: str, settings: RunSettings) -> Callable[[str | None, float], Awaitable[float]] | None:
    """The limiter's hook for one thread's requests from any worker: a unit of the thread's
    requests-a-minute bucket and its expected tokens from its tokens-a-minute bucket, reserved in
    the database (each bucket holds about a second's worth, as a run's own do), and the model's
    AGENT_MODEL_RPM turn; the longest of the waits they ask."""
    from runtime.store.parts import rates

    model_turn = shared_admission(db, settings.model, settings.cheap_model)
    label = thread_label(thread_id)
    buckets = []
    if settings.rpm:
        buckets.append((f"thread-rpm:{label}", settings.rpm / 60, max(1.0, settings.rpm / 60), False))
    if settings.tpm:
        buckets.append((f"thread-tpm:{label}", settings.tpm / 60, max(1.0, settings.tpm / 60), True))
    if not buckets and model_turn is None:
        return None

    def reserve(tokens: float) -> float:
        now, wait = time.time(), 0.0
        for key, per_second, capacity, by_tokens in buckets:
            amount = min(max(1.0, tokens), capacity) if by_tokens else 1.0
            wait = max(wait, rates.reserve(db.conn, key, per_second, capacity, now, amount))
        return wait

    async def admit(spec: str | None, tokens: float = 0.0) -> float:
        wait = await asyncio.to_thread(reserve, tokens) if buckets else 0.0
        if model_turn is not None:
            wait = max(wait, await model_turn(spec, tokens))
        return wait

    return admit
