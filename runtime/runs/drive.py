"""Driving a compiled graph: one run of a plan on its leased thread, to its end or a stop.

Every run streams with `durability="sync"`: the checkpoint of a step is committed before the
next step starts, and each finished task's writes are saved as it finishes, so a crash loses
only the tasks that were still running. Ctrl-C and SIGTERM ask LangGraph to drain: the run
stops at the next step boundary with everything before it saved. The deadline, the budget and
a pause or cancel asked from another process drain it the same way. Meanwhile a heartbeat keeps
the thread's lease; however the run ends, that is recorded in one transaction (`_record_end`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from dataclasses import replace
from typing import Any, AsyncIterator, Callable

from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl

from nodes.errors import describe
from runtime.errors import Command, Message, StorageFull
from runtime.policy import budget
from runtime.policy.limits import RequestLimiter
from runtime.policy.metering import SpendCallback
from runtime.policy.shared_rates import shared_admission
from runtime.policy.waits import InterruptibleControl, RunClock
from runtime.redact import redact
from runtime.runs.answer import answer_text, output_values
from runtime.runs.host import LEASE_LAPSED, LEASE_LOST, RunHost
from runtime.runs.outcome import EventHandler, RunEvent, RunOutcome, explain_failure
from runtime.runs.tracing import RunTrace, trace_config
from runtime.runs.plan import RunPlan
from runtime.store.database import Database, is_full
from runtime.store.parts import immediate
from runtime.store.seam import LEASE_KEY, LeaseLost
from runtime.threads import control as controls
from runtime.threads import registry as threads
from runtime.threads.edit import apply_edits
from runtime.threads.progress import ProgressSnapshot, ProgressTracker, save_reported, stored_counts
from state.context import RunContext, WaitInterrupted

RECURSION_LIMIT = 10_000_000
"""Steps one invocation may take: queues of many items legitimately loop for long."""
DEADLINE = "deadline"
"""The drain reason of a run stopped by its deadline."""
TAKEN_OVER = "taken_over"
"""How a run ends whose lease another runner took: nothing of it is recorded (it is not the holder)."""
DRAINED_STATUS = {
    DEADLINE: "timeout",
    budget.BUDGET: "budget_exceeded",
    controls.PAUSE: "paused",
    controls.CANCEL: "cancelled",
    LEASE_LOST: TAKEN_OVER,
    LEASE_LAPSED: "stopped",
}
"""The status of a run drained for a reason (any other reason, a signal's name: `stopped`)."""
PROGRESS_EVERY = 0.2
"""Seconds between two `progress` events of a queue."""


async def drive(db: Database, plan: RunPlan, on_event: EventHandler | None = None, handle_signals: bool = False) -> RunOutcome:
    """Run the plan's graph on its thread, whose lease this process holds, and record how it ended."""
    async with RunHost(db) as host:
        return await Drive(db, plan, on_event, host).run(handle_signals)


class Drive:
    """One run of a plan: what drains it (its control), what it spends (its meter), the step it
    has reached, and how it ended. Made inside the run's event loop, which the control binds to."""

    def __init__(self, db: Database, plan: RunPlan, on_event: EventHandler | None, host: RunHost) -> None:
        self.db, self.plan, self.host = db, plan, host
        self.emit: EventHandler = on_event or (lambda event: None)
        self.control = InterruptibleControl()  # a drain also ends every wait of the run (runtime/policy/waits.py)
        self.limits = budget.run_limits(plan.settings)
        spent = budget.get_spend(db, plan.thread_id)
        self.meter = budget.SpendMeter(spent, self.limits, on_exceeded=lambda: self.control.request_drain(budget.BUDGET))
        self.step, self.checkpoint_id = -1, plan.checkpoint_id
        self.step_recorded = -1
        """The step last written to the thread's row (by the host's heartbeat)."""
        self.status, self.error, self.values = "failed", None, {}
        self.tracker: ProgressTracker | None = None
        self.reported = False
        """Whether the graph reported progress of its own (not a queue's items)."""
        self.task_started: dict[str, float] = {}
        self.progress_shown = 0.0
        self.output: dict[str, Any] = {}
        self.trace = RunTrace(plan)

    async def run(self, handle_signals: bool) -> RunOutcome:
        started = time.monotonic()
        async with self.trace.around():
            try:
                async with self.watched(handle_signals):
                    await self.run_graph()
            finally:
                steps = self.step if self.step >= 0 else None
                final = self.figures() if self.tracker is not None and self.tracker.active else None
                reported = final if self.reported and self.status != TAKEN_OVER else None
                # Off the loop, and whole even if this task is cancelled meanwhile: the write waits
                # its turn, and the lock may be held by the store's transaction of another run of
                # this process, which needs the loop to reach its COMMIT.
                ending = (self.db, self.plan.thread_id, self.meter.take_pending(), self.status, steps, self.error, reported)
                await asyncio.shield(asyncio.to_thread(_record_end, *ending))
                self.trace.ended(self.status, max(self.step, 0), self.checkpoint_id, self.error)
        if final is not None:
            self.emit(RunEvent("progress", progress=final))
        return RunOutcome(
            thread_id=self.plan.thread_id,
            graph=self.plan.spec.spec,
            status=self.status,
            steps=max(self.step, 0),
            checkpoint_id=self.checkpoint_id,
            seconds=time.monotonic() - started,
            error=self.error,
            values=self.values,
            progress=final,
            output=self.output,
            # a queue's results are many: its summary counts them, `agent results` lists them
            answer=answer_text(self.output, self.values) if self.status == "completed" and (final is None or self.reported) else None,
        )

    @contextlib.asynccontextmanager
    async def watched(self, handle_signals: bool) -> AsyncIterator[None]:
        """Around the run: the signals, the deadline, and the host that renews the lease, adds
        the spend and hands on what other processes ask (runtime/runs/host.py)."""
        restore_signals = _install_signals(self.control, self.emit) if handle_signals else (lambda: None)
        seconds = self.plan.settings.deadline
        deadline = asyncio.get_running_loop().call_later(seconds, self.control.request_drain, DEADLINE) if seconds else None
        try:
            async with self.host.hosting(self):
                yield
        finally:
            restore_signals()
            if deadline is not None:
                deadline.cancel()

    def asked(self, request: str) -> None:
        """A pause or cancel asked from another process: stop at the next node boundary."""
        if not self.control.drain_requested:
            self.control.request_drain(request)
            self.emit(_asked_to_stop(request))

    def lease_lost(self) -> None:
        """Another runner took the thread over (this process stalled past its lease): stop."""
        if self.control.drain_reason != LEASE_LOST:
            self.control.request_drain(LEASE_LOST)

    def lease_lapsed(self) -> None:
        """The lease could not be renewed for as long as it lasts: stop at the next node boundary
        (`stopped`, resumable; a write refused meanwhile makes it `taken_over`)."""
        if not self.control.drain_requested:
            self.control.request_drain(LEASE_LAPSED)

    def figures(self) -> ProgressSnapshot:
        """The progress now; for a graph that reports its own, with the thread's spend as the meter has it."""
        snapshot = self.tracker.snapshot()
        if not self.reported:
            return snapshot
        spent = self.meter.total
        return replace(
            snapshot, input_tokens=spent.input_tokens, output_tokens=spent.output_tokens, cost_usd=spent.cost_usd if spent.cost_known else None
        )

    async def run_graph(self) -> None:
        """Compile the graph on the database, stream it, and note how the run ended."""
        settings = self.plan.settings
        saver = self.host.storage[0]
        builder, graph = self.host.compiled(self.plan.spec, settings)
        saver.bind_graph(graph, self.plan.thread_id)  # so each checkpoint records the tasks that run next (agent history)
        context = self.context() if builder.context_schema is RunContext else None
        try:
            await self.stream(graph, context)
        except (GraphDrained, WaitInterrupted):  # a node that was waiting when the drain came ends it too
            self.status, self.values = DRAINED_STATUS.get(self.control.drain_reason, "stopped"), {}
            self.error = self.drained_error()
        except asyncio.CancelledError:
            self.status, self.values = "stopped", {}
            asyncio.current_task().uncancel()
        except LeaseLost:
            self.status, self.values = TAKEN_OVER, {}
            self.error = self.drained_error()
        except Exception as exc:
            self.status, self.error, self.values = "failed", explain_failure(exc), {}
        finally:
            saver.unbind(self.plan.thread_id)

    def context(self) -> RunContext:
        """What the graph's nodes get from the run: its models, limits, clock and meter."""
        settings, plan = self.plan.settings, self.plan
        limiter = RequestLimiter(
            settings.concurrency,
            settings.rpm,
            settings.tpm,
            until_stopped=self.control.until_stopped,
            shared=shared_admission(self.db, settings.model, settings.cheap_model),
        )
        return RunContext.of_settings(
            settings,
            plan.model,
            plan.cheap_model,
            limiter=limiter,
            clock=RunClock(self.control),
            meter=self.meter,
            background=settings.background,
            approved_by=controls.current_user() if plan.approve_all else None,
            spread=self.host.spread(self) if self.host.spread is not None else None,
        )

    def drained_error(self) -> str | None:
        if self.status == "timeout":
            return f"deadline of {self.plan.settings.deadline:g}s passed; stopped at a node boundary"
        if self.status == "budget_exceeded":
            return budget.exceeded_message(self.meter.total, self.limits, self.meter.unpriced)
        if self.status == "cancelled":
            return "cancelled at a node boundary"
        if self.status == TAKEN_OVER:
            return "another runner took the thread over while this one was stalled; this one stopped, and wrote nothing after"
        if self.control.drain_reason == LEASE_LAPSED:
            return f"the database could not be reached for {threads.STALE_AFTER_SECONDS:g}s, so the lease lapsed; stopped at a node boundary"
        return self.error

    async def stream(self, graph: Any, context: RunContext | None) -> None:
        """Stream the graph from where the plan starts to its end (or a drain, which raises)."""
        plan = self.plan
        configurable: dict[str, Any] = {"thread_id": plan.thread_id}
        if plan.lease is not None:
            configurable[LEASE_KEY] = plan.lease  # fencing: its writes are refused once another runner takes the thread
        if plan.checkpoint_id:
            configurable["checkpoint_id"] = plan.checkpoint_id
        config = {
            "configurable": configurable,
            "recursion_limit": RECURSION_LIMIT,
            "callbacks": [SpendCallback(self.meter)],  # every chat model call of the run is counted
            **trace_config(plan),
        }
        await self.before_stream(graph, config)
        # A new thread has no progress yet; its total comes with its first checkpoint.
        priced_as = plan.settings.cheap_model or plan.settings.model  # with a cheap model, a queue's items all go to it
        self.tracker = ProgressTracker(priced_as) if isinstance(plan.input, dict) else await _queue_tracker(self.db, graph, config, priced_as)
        modes = ["tasks", "checkpoints", "custom"]
        async for mode, payload in graph.astream(plan.input, config, context=context, durability="sync", stream_mode=modes, control=self.control):
            self.streamed(mode, payload)
        state = await graph.aget_state({"configurable": {"thread_id": plan.thread_id}})
        self.status = "interrupted" if (state.next or state.interrupts) else "completed"
        self.values = state.values if isinstance(state.values, dict) else {}
        self.output = output_values(graph, self.values)
        self.error = self.values.get("give_up_reason")  # a graph that gave up says why

    async def before_stream(self, graph: Any, config: dict[str, Any]) -> None:
        """A resume's edits, a checkpoint of their own that the run goes on from; or a retry's new round."""
        if self.plan.edits:
            config["configurable"]["checkpoint_id"] = await apply_edits(graph, config, self.plan.edits)
        elif self.plan.retry_round is not None:
            await graph.aupdate_state(config, {"cursor": 0, "round": self.plan.retry_round}, as_node="load_items")

    def streamed(self, mode: str, payload: Any) -> None:
        """One part of the stream: a queue item's result, a committed step, a task started or ended."""
        if mode == "custom":
            if isinstance(payload, dict) and "queue_item" in payload:
                self.item_done(payload)
            elif isinstance(payload, dict) and "progress" in payload:
                if self.tracker.report(payload["progress"]):
                    self.reported = True
                    self.show_progress()
            else:  # the graph's own: passed on to whoever follows the run (a stream of the HTTP API)
                self.emit(RunEvent("custom", data=payload))
        elif mode == "checkpoints":
            self.step = payload["metadata"].get("step", self.step)
            self.checkpoint_id = payload["config"]["configurable"]["checkpoint_id"]
            if self.tracker.total is None and isinstance(payload.get("values"), dict) and "total" in payload["values"]:
                self.tracker.total = payload["values"]["total"]
            self.emit(RunEvent("checkpoint", step=self.step))
        elif "triggers" in payload:  # a task started
            self.task_started[payload["id"]] = time.monotonic()
            self.trace.node_started(payload["id"], payload["name"], self.step + 1)
        else:
            began = self.task_started.pop(payload["id"], None)
            err = payload.get("error")
            seconds = (time.monotonic() - began) if began else None
            error = redact(describe(err)) if err else None
            self.trace.node_ended(payload["id"], error)
            self.emit(RunEvent("node", step=self.step + 1, node=payload["name"], seconds=seconds, error=error))

    def item_done(self, item: dict[str, Any]) -> None:
        self.tracker.record(item)
        self.emit(RunEvent("item", item=item, error=item.get("error")))
        self.show_progress()

    def show_progress(self) -> None:
        if time.monotonic() - self.progress_shown >= PROGRESS_EVERY:
            self.progress_shown = time.monotonic()
            self.emit(RunEvent("progress", progress=self.figures()))


def _record_end(
    db: Database, thread_id: str, spend: budget.Spend, status: str, steps: int | None, error: str | None, reported: ProgressSnapshot | None
) -> None:
    """Record how a run ended, in one transaction: its last spend, the progress the graph
    reported of its own, its control request cleared, its status, and the lease given up.

    A run stopped by a full disk may find no room even for these few pages: the database's
    reserve is given up to make some, and the transaction tried again.
    """

    def record() -> None:
        with immediate(db.conn):
            budget.add_spend(db, thread_id, spend)
            if reported is not None:
                save_reported(db, thread_id, reported)
            controls.clear_request(db, thread_id)
            threads.release(db, thread_id, status, steps, error)

    try:
        return record()
    except sqlite3.OperationalError as exc:
        if not is_full(exc):
            raise
    try:
        if db.give_up_reserve():
            return record()
    except sqlite3.OperationalError as exc:
        if not is_full(exc):
            raise
    raise StorageFull(
        f"the disk that holds {db.path} is full: the run stopped ({status}), and that could not be recorded",
        Message("free some space, then: {}", Command("resume", thread_id=thread_id)),
    )


async def _queue_tracker(db: Database, graph: Any, config: dict[str, Any], model: str | None) -> ProgressTracker:
    """A queue's progress so far, from the latest checkpoint and the results in the store."""
    state = await graph.aget_state(config)
    values = state.values if isinstance(state.values, dict) else {}
    if "total" not in values:
        return ProgressTracker(model)  # not a queue, or one stopped before it loaded its items
    counts = stored_counts(db, config["configurable"]["thread_id"], values.get("round", 0) or 0)
    counts.pop("recent")
    return ProgressTracker(model, counts, total=values["total"])


def _asked_to_stop(request: str) -> RunEvent:
    """Shown where the run goes when another process asked it to pause or cancel: it will stop,
    and why (the same moment as the first Ctrl-C's message)."""
    return RunEvent("stopping", message=f"a {request} was requested from another process; stopping after the node in flight")


def _install_signals(control: RunControl, emit: EventHandler) -> Callable[[], None]:
    """First Ctrl-C/SIGTERM: drain at the next step boundary. Second: stop now."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            control.request_drain(signal.Signals(signum).name)
            emit(RunEvent("stopping", message="stopping after the node in flight (Ctrl-C again to stop now)"))
        elif task is not None:
            task.cancel()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def restore() -> None:
        # Put back what the caller had (say, `agent worker`'s own handlers), not the defaults.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            if previous[sig] is not None:
                signal.signal(sig, previous[sig])

    return restore
