"""Running and resuming threads: the durable loop shared by the CLI and notebooks.

Every run streams with `durability="sync"`: the checkpoint of a step is committed before the
next step starts, and each finished task's writes are saved as it finishes, so a crash loses
only the tasks that were still running. Ctrl-C and SIGTERM ask LangGraph to drain: the run
stops at the next step boundary with everything before it saved.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl

from graphs import GraphLoadError, GraphSpec, load_graph
from nodes.errors import describe
from runtime.policy import budget
from runtime.threads import control as controls
from runtime.threads import registry as threads
from runtime.store.transaction import immediate
from runtime.store.database import Database, is_full
from runtime.threads.edit import edit_step
from runtime.errors import BadInput, CannotRetry, Command, Message, NothingToResume, OneOf, Placeholder, Setting, StorageFull, UnknownGraph, Verb
from runtime.threads.history import latest_state, resolve_checkpoint, runnable_spec, state_at
from runtime.policy.inputs import check_value
from runtime.policy.limits import RequestLimiter
from runtime.policy.models import make_model
from runtime.policy.prices import check_prices
from runtime.threads.progress import ProgressSnapshot, ProgressTracker, stored_counts
from runtime.redact import redact
from runtime.policy.settings import RunSettings
from runtime.policy.waits import InterruptibleControl, RunClock
from state.context import RunContext, WaitInterrupted

RECURSION_LIMIT = 10_000_000
"""Steps one invocation may take: queues of many items legitimately loop for long."""

EXIT_CODES = {
    "completed": 0,
    "failed": 1,
    "timeout": 1,
    "interrupted": 3,
    "paused": 3,
    "budget_exceeded": 4,
    "cancelled": 5,
    "stopped": 130,
}
DEADLINE = "deadline"
"""The drain reason of a run stopped by its deadline."""
DRAINED_STATUS = {DEADLINE: "timeout", budget.BUDGET: "budget_exceeded", controls.PAUSE: "paused", controls.CANCEL: "cancelled"}
"""The status of a run drained for a reason (any other reason, a signal's name: `stopped`)."""
PROGRESS_EVERY = 0.2
"""Seconds between two `progress` events of a queue."""


@dataclass
class RunEvent:
    """Something to show while a run goes: a finished node, a committed step, a notice."""

    kind: str
    step: int | None = None
    node: str | None = None
    seconds: float | None = None
    error: str | None = None
    message: str | None = None
    item: dict[str, Any] | None = None
    """kind `item`: one queue item's final result: `queue_item` (its index), `status`, `previous`
    (its status before a retry round), `error`, `input_tokens`, `output_tokens`."""
    progress: ProgressSnapshot | None = None
    """kind `progress`: a queue's figures, at most every PROGRESS_EVERY seconds and at the end."""


@dataclass
class RunOutcome:
    thread_id: str
    graph: str
    status: str
    steps: int
    checkpoint_id: str | None
    seconds: float
    error: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    progress: ProgressSnapshot | None = None
    """A queue's figures at the end of the run."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)


EventHandler = Callable[[RunEvent], None]


def load_spec(spec: str) -> GraphSpec:
    try:
        return load_graph(spec)
    except GraphLoadError as exc:
        hint = "name a StateGraph, a compiled graph or a function that builds one"
        if ":" not in spec:
            hint = Message("{} lists the built-in graphs", Command("graphs"))
        raise UnknownGraph(exc.message, hint) from None


def prepare_input(spec: GraphSpec, data: Any) -> dict[str, Any]:
    """Check an input against the graph before anything is written."""
    if not isinstance(data, dict):
        raise BadInput("the input must be a JSON object", Message("e.g. {}", Setting("input", {"items": ["a"], "prompt": "Summarize: {item}"})))
    check_value(data, "the input")
    keys = spec.input_keys()
    if keys is not None and (unknown := sorted(set(data) - keys)):
        raise BadInput(f"unknown input key(s) {', '.join(unknown)} for graph {spec.spec}", f"its input keys: {', '.join(sorted(keys))}")
    if spec.validate is not None:
        try:
            data = spec.validate(data)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    return data


def validate_run(
    graph: str, input: Any, settings: RunSettings | None = None, approve_all: bool = False
) -> tuple[GraphSpec, dict[str, Any], RunSettings]:
    """Everything `run_thread` checks before it writes: the graph, the input, the settings, the model."""
    spec = load_spec(graph)
    resolved = (settings or RunSettings()).resolve(graph_defaults=spec.defaults)
    data = prepare_input(spec, input)
    make_model(resolved.model)
    if resolved.cheap_model:
        make_model(resolved.cheap_model)
    check_prices()  # every run prices what it spends: a broken prices file fails here, not mid-run
    budget.check_budget_settings(resolved)
    _check_approve_all(resolved, approve_all)
    return spec, data, resolved


def run_thread(
    db: Database,
    graph: str,
    thread_id: str,
    input: dict[str, Any],
    settings: RunSettings | None = None,
    *,
    on_event: EventHandler | None = None,
    handle_signals: bool = False,
    approve_all: bool = False,
) -> RunOutcome:
    """Start a new thread of `graph` with `input`, run it to the end (or a stop), and return how it ended."""
    spec, data, resolved = validate_run(graph, input, settings, approve_all)
    model = make_model(resolved.model)
    _take_lease(
        db,
        lambda: threads.create_thread(db, thread_id, spec.spec, spec.version, resolved.as_dict()),
        "free some space, then start the run again (nothing of it was written)",
    )
    return _run_sync(_drive(db, spec, resolved, model, thread_id, data, None, on_event, handle_signals, approve_all=approve_all))


def resume_thread(
    db: Database,
    thread_id: str,
    checkpoint: str | None = None,
    settings: RunSettings | None = None,
    *,
    edits: dict[str, Any] | None = None,
    wait: float | None = None,
    on_event: EventHandler | None = None,
    handle_signals: bool = False,
    force: bool = False,
    approve_all: bool = False,
    command: Any = None,
    attended: bool = True,
) -> RunOutcome:
    """Continue a thread from its latest checkpoint (input None), or fork it from `checkpoint`.

    A cancelled thread is refused unless `force`. `command` (a LangGraph `Command(resume=...)`,
    from runtime/runs/approvals.py) answers the thread's pending interrupts; `approve_all` (`--yes`)
    approves its sensitive actions up front.

    `settings` override what the thread recorded, from now on. With `wait` (seconds), a thread
    that another live process is running is waited for instead of refused. `edits` (state key ->
    value) are applied first, as a checkpoint of their own (runtime/threads/edit.py). The thread's graph
    is imported only when trusted (runtime/policy/trust.py); `attended` is False for the worker.
    """
    record, spec = runnable_spec(db, thread_id, attended=attended)
    apply_edits = edit_step(spec, edits)  # bad keys or values fail here, before anything is written
    resolved = (settings or RunSettings()).resolve(stored=record.settings, graph_defaults=spec.defaults)
    checkpoint_id = resolve_checkpoint(db, thread_id, checkpoint) if checkpoint else None
    model = make_model(resolved.model)
    check_prices()
    budget.check_budget_settings(resolved)
    _check_approve_all(resolved, approve_all)
    controls.refuse_if_cancelled(record, force)
    if wait:
        threads.wait_until_free(db, thread_id, wait, notify=lambda holder: on_event and on_event(RunEvent("warning", message=f"waiting for {holder}")))
    threads.refuse_if_busy(threads.get_thread(db, thread_id))
    if checkpoint_id is not None:
        state_at(db, spec, thread_id, checkpoint_id)  # one that cannot be read fails here, before the thread is touched
    else:
        state = latest_state(db, spec, thread_id)
        if state is None:
            raise NothingToResume(
                f"thread {thread_id!r} has no checkpoint: its first run stopped before its input was saved",
                Message("start it again under the same id, which nothing holds now: {}", Command("run", graph=record.graph, thread_id=thread_id, input=Placeholder("JSON"))),
            )
        if not state.next and not state.tasks:
            current = threads.get_thread(db, thread_id)
            if current.shown_status == "stale" and apply_edits is None and command is None:
                return _record_completed(db, spec, current, state, on_event)
            raise NothingToResume(
                f"thread {thread_id!r} has completed; there is nothing to resume",
                Message("to run again from an earlier point: {} ({})", Command("resume", thread_id=thread_id, checkpoint="ID"), Command("history", thread_id=thread_id)),
            )
    _take_lease(
        db, lambda: threads.acquire(db, thread_id, resolved.as_dict()), Message("free some space, then: {}", Command("resume", thread_id=thread_id))
    )
    if record.graph_version != spec.version and on_event:
        on_event(RunEvent("warning", message=f"graph {record.graph} changed since this thread started (version {record.graph_version} -> {spec.version})"))
    return _run_sync(
        _drive(db, spec, resolved, model, thread_id, command, checkpoint_id, on_event, handle_signals, prepare=apply_edits, approve_all=approve_all)
    )


def _take_lease(db: Database, lease: Callable[[], Any], hint: str) -> None:
    """Take a thread's lease (`lease()`) for a run, once the database's reserve is in place.

    The reserve is what lets a run stopped by a full disk still record how it ended
    (`_record_end`); with no room for it, or for the lease, the run does not start: StorageFull,
    with nothing written.
    """
    db.keep_reserve(hint)
    try:
        lease()
    except sqlite3.OperationalError as exc:
        if is_full(exc):
            raise StorageFull(f"the disk that holds {db.path} is full", hint) from None
        raise


def _record_completed(db: Database, spec: GraphSpec, record: threads.ThreadRecord, state: Any, on_event: EventHandler | None) -> RunOutcome:
    """A stale thread whose latest checkpoint has nothing left to run: its last runner died before
    it saved a step (a `resume --checkpoint` killed early, say), so the thread stands completed
    as its checkpoints are. That is recorded, and the lease the dead runner left is let go."""
    thread_id = record.thread_id
    step = (state.metadata or {}).get("step", record.steps)
    values = state.values if isinstance(state.values, dict) else {}
    error = values.get("give_up_reason")
    _take_lease(db, lambda: threads.acquire(db, thread_id), Message("free some space, then: {}", Command("resume", thread_id=thread_id)))
    threads.release(db, thread_id, "completed", step, error)
    if on_event:
        on_event(RunEvent("notice", message=f"thread {thread_id}: its last run stopped before it saved a step, and nothing is left to run; recorded as completed"))
    return RunOutcome(thread_id, spec.spec, "completed", max(step, 0), state.config["configurable"]["checkpoint_id"], 0.0, error, values)


def _check_approve_all(settings: RunSettings, approve_all: bool) -> None:
    if approve_all and settings.background:
        raise BadInput(
            Message("{} cannot approve the actions of a {} run: nobody is at the terminal", Setting("approve_all"), Setting("background")),
            Message(
                "leave out {} and answer each action with {}",
                Setting("approve_all"), OneOf(Command("approve", thread_id="T", ids=["ID"]), Command("reject", thread_id="T", ids=["ID"])),
            ),
        )


def retry_failed(
    db: Database,
    thread_id: str,
    settings: RunSettings | None = None,
    *,
    wait: float | None = None,
    force: bool = False,
    on_event: EventHandler | None = None,
    handle_signals: bool = False,
    attended: bool = True,
) -> RunOutcome:
    """Send a queue's given-up items (its dead-letter list) through the queue again.

    Items whose result is `done` are not touched. The queue must have finished its pass; the
    retry is a new round of the same thread (the `round` in its state), checkpointed like any
    run, so a crash or Ctrl-C during it is continued with `resume_thread`. `settings` override
    the thread's from now on, as with `resume_thread`; a cancelled thread is refused unless `force`.
    """
    record, spec = runnable_spec(db, thread_id, attended=attended)
    controls.refuse_if_cancelled(record, force, "retry-failed")
    resolved = (settings or RunSettings()).resolve(stored=record.settings, graph_defaults=spec.defaults)
    model = make_model(resolved.model)
    check_prices()
    if wait:
        threads.wait_until_free(db, thread_id, wait, notify=lambda holder: on_event and on_event(RunEvent("warning", message=f"waiting for {holder}")))
    state = latest_state(db, spec, thread_id)
    values = state.values if state is not None and isinstance(state.values, dict) else {}
    if "cursor" not in values or "total" not in values:
        raise CannotRetry(
            f"thread {thread_id!r} (graph {record.graph}) has no queue of items to retry", Message("{} works on task_queue threads", Verb("retry-failed"))
        )
    if state.next:
        raise CannotRetry(
            f"thread {thread_id!r} has not finished its pass over the items ({record.shown_status})",
            Message("finish it first: {}", Command("resume", thread_id=thread_id)),
        )
    next_round = (values.get("round") or 0) + 1
    failed = stored_counts(db, thread_id, next_round)["stale_failed"]
    if not failed:
        raise CannotRetry(f"thread {thread_id!r} has no failed items to retry", Message("{} lists its results", Command("results", thread_id=thread_id)))
    _take_lease(
        db, lambda: threads.acquire(db, thread_id, resolved.as_dict()), Message("free some space, then: {}", Command("retry-failed", thread_id=thread_id))
    )

    async def start_round(graph: Any, config: dict[str, Any]) -> None:
        await graph.aupdate_state(config, {"cursor": 0, "round": next_round}, as_node="load_items")

    if on_event:
        on_event(RunEvent("notice", message=f"retrying {failed} failed item(s) of thread {thread_id} (round {next_round})"))
    return _run_sync(_drive(db, spec, resolved, model, thread_id, None, None, on_event, handle_signals, prepare=start_round))


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="agent-run")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _drive(
    db: Database,
    spec: GraphSpec,
    settings: RunSettings,
    model: Any,
    thread_id: str,
    data: dict[str, Any] | None,
    checkpoint_id: str | None,
    on_event: EventHandler | None,
    handle_signals: bool,
    prepare: Callable[[Any, dict[str, Any]], Awaitable[None]] | None = None,
    approve_all: bool = False,
) -> RunOutcome:
    """`prepare(graph, config)` runs once the graph is compiled, before it streams. `data` is a
    new thread's input, a `Command` answering interrupts, or None to continue."""
    emit = on_event or (lambda event: None)
    started = time.monotonic()
    control = InterruptibleControl()  # a drain also ends every wait of the run (runtime/policy/waits.py)
    progress = {"step": -1, "checkpoint_id": checkpoint_id}
    status, error = "failed", None
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    config = {"configurable": configurable, "recursion_limit": RECURSION_LIMIT}
    restore_signals = _install_signals(control, emit) if handle_signals else (lambda: None)
    deadline = asyncio.get_running_loop().call_later(settings.deadline, control.request_drain, DEADLINE) if settings.deadline else None
    beat = asyncio.create_task(_heartbeat(db, thread_id, progress))
    limits = budget.run_limits(settings)
    meter = budget.SpendMeter(budget.get_spend(db, thread_id), limits, on_exceeded=lambda: control.request_drain(budget.BUDGET))
    watcher = asyncio.create_task(controls.watch(db, thread_id, control, meter, on_request=lambda request: emit(_asked_to_stop(request))))
    tracker: ProgressTracker | None = None
    try:
        async with db.open_async() as (saver, store):
            builder = spec.build(max_attempts=settings.max_attempts, backoff=settings.backoff, node_timeout=settings.node_timeout)
            graph = builder.compile(checkpointer=saver, store=store)
            saver.bind_graph(graph)  # so each checkpoint records the tasks that run next (agent history)
            context = None
            if builder.context_schema is RunContext:
                context = RunContext(
                    model=model,
                    max_attempts=settings.max_attempts,
                    concurrency=settings.concurrency,
                    backoff=settings.backoff,
                    node_timeout=settings.node_timeout,
                    rpm=settings.rpm,
                    tpm=settings.tpm,
                    limiter=RequestLimiter(settings.concurrency, settings.rpm, settings.tpm, until_stopped=control.until_stopped),
                    clock=RunClock(control),
                    model_spec=settings.model,
                    cheap_model=make_model(settings.cheap_model) if settings.cheap_model else None,
                    cheap_model_spec=settings.cheap_model,
                    meter=meter,
                    background=settings.background,
                    approved_by=controls.current_user() if approve_all else None,
                )
            try:
                if prepare is not None:
                    await prepare(graph, config)
                # A new thread has no progress yet; its total comes with its first checkpoint.
                priced_as = settings.cheap_model or settings.model  # with a cheap model, a queue's items all go to it
                tracker = ProgressTracker(priced_as) if isinstance(data, dict) else await _tracker(db, graph, config, priced_as)
                await _stream(graph, data, config, context, control, progress, emit, tracker)
                state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
                status = "interrupted" if (state.next or state.interrupts) else "completed"
                values = state.values if isinstance(state.values, dict) else {}
                error = values.get("give_up_reason")  # a graph that gave up says why
            except (GraphDrained, WaitInterrupted):  # a node that was waiting when the drain came ends it too
                status, values = DRAINED_STATUS.get(control.drain_reason, "stopped"), {}
                if status == "timeout":
                    error = f"deadline of {settings.deadline:g}s passed; stopped at a node boundary"
                elif status == "budget_exceeded":
                    error = budget.exceeded_message(meter.total, limits)
                elif status == "cancelled":
                    error = "cancelled at a node boundary"
            except asyncio.CancelledError:
                status, values = "stopped", {}
                asyncio.current_task().uncancel()
            except Exception as exc:
                status, error, values = "failed", explain_failure(exc), {}
    finally:
        beat.cancel()
        watcher.cancel()
        restore_signals()
        if deadline is not None:
            deadline.cancel()
        _record_end(db, thread_id, meter.take_pending(), status, progress["step"] if progress["step"] >= 0 else None, error)
    final = tracker.snapshot() if tracker is not None and tracker.active else None
    if final is not None:
        emit(RunEvent("progress", progress=final))
    return RunOutcome(
        thread_id=thread_id,
        graph=spec.spec,
        status=status,
        steps=max(progress["step"], 0),
        checkpoint_id=progress["checkpoint_id"],
        seconds=time.monotonic() - started,
        error=error,
        values=values,
        progress=final,
    )


def _record_end(db: Database, thread_id: str, spend: budget.Spend, status: str, steps: int | None, error: str | None) -> None:
    """Record how a run ended, in one transaction: its last spend, its control request cleared,
    its status, and the lease given up.

    A run stopped by a full disk may find no room even for these few pages: the database's
    reserve is given up to make some, and the transaction tried again.
    """

    def record() -> None:
        with immediate(db.conn):
            budget.add_spend(db, thread_id, spend)
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


async def _tracker(db: Database, graph: Any, config: dict[str, Any], model: str | None) -> ProgressTracker:
    """A queue's progress so far, from the latest checkpoint and the results in the store."""
    state = await graph.aget_state(config)
    values = state.values if isinstance(state.values, dict) else {}
    if "total" not in values:
        return ProgressTracker(model)  # not a queue, or one stopped before it loaded its items
    counts = stored_counts(db, config["configurable"]["thread_id"], values.get("round", 0) or 0)
    counts.pop("recent")
    return ProgressTracker(model, counts, total=values["total"])


async def _stream(graph, data, config, context, control, progress, emit, tracker: ProgressTracker) -> None:
    started: dict[str, float] = {}
    shown = 0.0
    async for mode, payload in graph.astream(
        data,
        config,
        context=context,
        durability="sync",
        stream_mode=["tasks", "checkpoints", "custom"],
        control=control,
    ):
        if mode == "custom":
            if not (isinstance(payload, dict) and "queue_item" in payload):
                continue  # a user graph's own custom events
            tracker.record(payload)
            emit(RunEvent("item", item=payload, error=payload.get("error")))
            if time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                emit(RunEvent("progress", progress=tracker.snapshot()))
        elif mode == "checkpoints":
            progress["step"] = payload["metadata"].get("step", progress["step"])
            progress["checkpoint_id"] = payload["config"]["configurable"]["checkpoint_id"]
            if tracker.total is None and isinstance(payload.get("values"), dict) and "total" in payload["values"]:
                tracker.total = payload["values"]["total"]
            emit(RunEvent("checkpoint", step=progress["step"]))
        elif "triggers" in payload:  # a task started
            started[payload["id"]] = time.monotonic()
        else:
            began = started.pop(payload["id"], None)
            err = payload.get("error")
            emit(
                RunEvent(
                    "node",
                    step=progress["step"] + 1,
                    node=payload["name"],
                    seconds=(time.monotonic() - began) if began else None,
                    error=redact(describe(err)) if err else None,
                )
            )


def explain_failure(exc: BaseException) -> str:
    """One line for why a run failed, with the fix where it is known; never a secret."""
    status = getattr(exc, "status_code", None)
    if status == 401:
        return "the model endpoint rejected the API key (401): OPENAI_API_KEY is missing or wrong"
    if status == 403:
        return "the model endpoint refused access (403): the key lacks permission for this model"
    if status == 404:
        return f"the model endpoint does not know this model or path (404): {redact(describe(exc))}"
    return redact(describe(exc))


async def _heartbeat(db: Database, thread_id: str, progress: dict[str, Any]) -> None:
    while True:
        await asyncio.sleep(threads.HEARTBEAT_SECONDS)
        # Off the event loop: the write may have to wait for the store's transaction, which
        # needs the loop to reach its COMMIT; waiting on the loop would stall both for the
        # whole busy timeout.
        await asyncio.to_thread(threads.heartbeat, db, thread_id, max(progress["step"], 0))


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
