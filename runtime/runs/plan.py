"""Preparing a run: everything checked and built before anything is written, as a `RunPlan`.

A plan is made once per run: by `prepare_run` for a new thread, by `prepare_resume` or
`prepare_retry` for an existing one. Making it loads the graph, checks the input (or the
edits), resolves the settings, builds the models, reads the thread's row and finds what to
resume from; whatever is wrong fails here, before the thread is touched. `runner.run_plan`
then runs it. A plan is for one run: its models keep connections that bind to the run's loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from graphs import GraphLoadError, GraphSpec, load_graph
from runtime.policy.trust import load_problem
from runtime.errors import BadInput, CannotRetry, Command, Message, NothingToResume, OneOf, Placeholder, Setting, UnknownGraph, Verb
from runtime.policy import budget
from runtime.policy.inputs import check_value
from runtime.policy.models import make_model
from runtime.policy.prices import check_prices
from runtime.policy.settings import RunSettings
from runtime.policy.shared_rates import model_limits
from runtime.runs.outcome import EventHandler, RunEvent
from runtime.store.database import Database
from runtime.threads import control as controls
from runtime.threads import registry as threads
from runtime.threads.edit import check_edits
from runtime.threads.history import find_checkpoint, latest_state, runnable_spec, state_at
from runtime.threads.progress import stored_counts

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class RunPlan:
    """A run ready to go: which graph on which thread, from where, with what."""

    thread_id: str
    spec: GraphSpec
    settings: RunSettings
    """Resolved: given > stored with the thread > the graph's defaults > the base defaults."""
    model: Any
    """The chat model, built once (runtime/policy/models.py)."""
    cheap_model: Any
    """The `--cheap-model`, built once; None without one."""
    lease_hint: str
    """What to do when the disk has no room for the thread's lease (nothing is written then)."""
    input: Any = None
    """A new thread's input; a `Command` answering the thread's interrupts; None to continue."""
    record: threads.ThreadRecord | None = None
    """The thread's row, read once while preparing; None for a new thread."""
    checkpoint_id: str | None = None
    """The checkpoint to go on from (a fork); None for the latest."""
    edits: dict[str, Any] | None = None
    """Checked state edits, written as a checkpoint of their own before the graph streams."""
    retry_round: int | None = None
    """retry-failed: the round that sends the given-up items through the queue again."""
    approve_all: bool = False
    notices: tuple[RunEvent, ...] = ()
    """Shown once the lease is taken: a graph changed since the thread started, a retry's round."""
    completed_state: Any = None
    """A stale thread with nothing left to run: its latest state. Nothing runs; the thread is
    recorded as completed (`runner.run_plan`)."""
    lease: int | None = None
    """The lease this run holds on the thread, once taken: its writes carry it (fencing)."""


def load_spec(spec: str) -> GraphSpec:
    try:
        return load_graph(spec)
    except GraphLoadError as exc:
        hint = "name a StateGraph, a compiled graph or a function that builds one"
        if ":" not in spec:
            hint = Message("{} lists the built-in graphs", Command("graphs"))
        raise UnknownGraph(load_problem(exc), hint) from None


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


def build_models(settings: RunSettings) -> tuple[Any, Any]:
    """The run's model and cheap model (None without one), each built once; BadInput for a model
    spec, or an AGENT_MODEL_RPM, that does not parse."""
    model_limits()
    return make_model(settings.model), make_model(settings.cheap_model) if settings.cheap_model else None


def validate_run(
    graph: str, input: Any, settings: RunSettings | None = None, approve_all: bool = False
) -> tuple[GraphSpec, dict[str, Any], RunSettings]:
    """Everything `run_thread` checks before it writes: the graph, the input, the settings, the
    model. `prepare_run` checks the same and keeps what it built, to run it."""
    spec, data, resolved, _ = _checked_new_run(graph, input, settings, approve_all)
    return spec, data, resolved


def prepare_run(graph: str, thread_id: str, input: Any, settings: RunSettings | None = None, *, approve_all: bool = False) -> RunPlan:
    """A new thread of `graph` with `input`: checked as `validate_run` checks it, nothing written."""
    spec, data, resolved, (model, cheap_model) = _checked_new_run(graph, input, settings, approve_all, thread_id)
    hint = "free some space, then start the run again (nothing of it was written)"
    return RunPlan(thread_id, spec, resolved, model, cheap_model, hint, input=data, approve_all=approve_all)


def _checked_new_run(
    graph: str, input: Any, settings: RunSettings | None, approve_all: bool, thread_id: str | None = None
) -> tuple[GraphSpec, dict[str, Any], RunSettings, tuple[Any, Any]]:
    spec = load_spec(graph)
    resolved = (settings or RunSettings()).resolve(graph_defaults=spec.defaults)
    data = prepare_input(spec, input)
    models = build_models(resolved)
    check_prices()  # every run prices what it spends: a broken prices file fails here, not mid-run
    budget.check_budget_settings(resolved)
    _check_approve_all(resolved, approve_all, thread_id)
    return spec, data, resolved, models


class ResumeOptions(TypedDict, total=False):
    """How to go on with a thread: the keyword arguments of `prepare_resume` and
    `runner.resume_thread`, whose docstring says what each does."""

    edits: dict[str, Any] | None
    wait: float | None
    on_event: EventHandler | None
    force: bool
    approve_all: bool
    command: Any
    attended: bool
    queued: bool
    """Checked for a queue (runtime/fleet/queue.py): a thread that is running is not refused."""


def prepare_resume(
    db: Database, thread_id: str, checkpoint: str | None = None, settings: RunSettings | None = None, **options: Unpack[ResumeOptions]
) -> RunPlan:
    """Going on with a thread, from its latest checkpoint or from `checkpoint` (a fork); the
    arguments are `runner.resume_thread`'s. The thread's row is read once (again after a `wait`,
    which `on_event` is told of: the row changes meanwhile)."""
    if unknown := sorted(set(options) - set(ResumeOptions.__annotations__)):
        raise TypeError(f"prepare_resume() got unexpected keyword argument(s) {', '.join(unknown)}")
    edits, command, approve_all = options.get("edits"), options.get("command"), options.get("approve_all", False)
    attended = options.get("attended", True)
    record, spec = runnable_spec(db, thread_id, attended=attended)
    edits = check_edits(spec, dict(edits), thread_id) if edits else None  # bad keys or values fail here, before anything is written
    resolved = (settings or RunSettings()).resolve(stored=record.settings, graph_defaults=spec.defaults)
    checkpoint_id = find_checkpoint(db, thread_id, checkpoint) if checkpoint else None
    model, cheap_model = build_models(resolved)
    check_prices()
    budget.check_budget_settings(resolved)
    _check_approve_all(resolved, approve_all, thread_id)
    controls.refuse_if_cancelled(record, options.get("force", False))
    record = _after_waiting(db, record, options.get("wait"), options.get("on_event"))
    if not options.get("queued"):
        threads.refuse_if_busy(record)
    completed = _nothing_left(db, spec, record, checkpoint_id, plain=edits is None and command is None)
    notices = ()
    if record.graph_version != spec.version:
        changed = f"graph {record.graph} changed since this thread started (version {record.graph_version} -> {spec.version})"
        notices = (RunEvent("warning", message=changed),)
    hint = Message("free some space, then: {}", Command("resume", thread_id=thread_id))
    return RunPlan(
        thread_id, spec, resolved, model, cheap_model, hint,
        input=command, record=record, checkpoint_id=checkpoint_id, edits=edits,
        approve_all=approve_all, notices=notices, completed_state=completed,
    )  # fmt: skip


def _nothing_left(db: Database, spec: GraphSpec, record: threads.ThreadRecord, checkpoint_id: str | None, plain: bool) -> Any:
    """Refuse a thread with nothing to resume. None when it has work left; the latest state of a
    stale thread with nothing left to run, on a `plain` resume (no edits, no answers): its last
    runner died before it saved a step, and the thread is recorded as completed instead."""
    thread_id = record.thread_id
    if checkpoint_id is not None:
        state_at(db, spec, thread_id, checkpoint_id)  # one that cannot be read fails here, before the thread is touched
        return None
    state = latest_state(db, spec, thread_id)
    if state is None:
        raise NothingToResume(
            f"thread {thread_id!r} has no checkpoint: its first run stopped before its input was saved",
            Message("start it again under the same id, which nothing holds now: {}", Command("run", graph=record.graph, thread_id=thread_id, input=Placeholder("JSON"))),
        )
    if state.next or state.tasks:
        return None
    if record.shown_status == "stale" and plain:
        return state
    raise NothingToResume(
        f"thread {thread_id!r} has completed; there is nothing to resume",
        Message("to run again from an earlier point: {} ({})", Command("resume", thread_id=thread_id, checkpoint="ID"), Command("history", thread_id=thread_id)),
    )


def prepare_retry(
    db: Database,
    thread_id: str,
    settings: RunSettings | None = None,
    *,
    wait: float | None = None,
    on_event: EventHandler | None = None,
    force: bool = False,
    attended: bool = True,
) -> RunPlan:
    """A new round of a finished queue for its given-up items; the arguments are
    `runner.retry_failed`'s."""
    record, spec = runnable_spec(db, thread_id, attended=attended)
    controls.refuse_if_cancelled(record, force, "retry-failed")
    resolved = (settings or RunSettings()).resolve(stored=record.settings, graph_defaults=spec.defaults)
    model, cheap_model = build_models(resolved)
    check_prices()
    record = _after_waiting(db, record, wait, on_event)
    next_round, failed = _retry_round(db, spec, record)
    notice = RunEvent("notice", message=f"retrying {failed} failed item(s) of thread {thread_id} (round {next_round})")
    hint = Message("free some space, then: {}", Command("retry-failed", thread_id=thread_id))
    return RunPlan(thread_id, spec, resolved, model, cheap_model, hint, record=record, retry_round=next_round, notices=(notice,))


def _retry_round(db: Database, spec: GraphSpec, record: threads.ThreadRecord) -> tuple[int, int]:
    """The round a retry starts and how many items it sends again; CannotRetry when there is
    no queue, its pass is not finished, or no item failed."""
    thread_id = record.thread_id
    state = latest_state(db, spec, thread_id)
    values = state.values if state is not None and isinstance(state.values, dict) else {}
    if "cursor" not in values or "total" not in values:
        raise CannotRetry(f"thread {thread_id!r} (graph {record.graph}) has no queue of items to retry", Message("{} works on task_queue threads", Verb("retry-failed")))
    if state.next:
        raise CannotRetry(
            f"thread {thread_id!r} has not finished its pass over the items ({record.shown_status})",
            Message("finish it first: {}", Command("resume", thread_id=thread_id)),
        )
    next_round = (values.get("round") or 0) + 1
    failed = stored_counts(db, thread_id, next_round)["stale_failed"]
    if not failed:
        raise CannotRetry(f"thread {thread_id!r} has no failed items to retry", Message("{} lists its results", Command("results", thread_id=thread_id)))
    return next_round, failed


def _after_waiting(
    db: Database, record: threads.ThreadRecord, wait: float | None, on_event: EventHandler | None
) -> threads.ThreadRecord:
    """With `wait` (seconds), wait while another live process runs the thread, and read its row
    again: it changed meanwhile. Without, the row as it was read."""
    if not wait:
        return record
    threads.wait_until_free(
        db, record.thread_id, wait, notify=lambda holder: on_event and on_event(RunEvent("warning", message=f"waiting for {holder}"))
    )
    return threads.get_thread(db, record.thread_id)


def _check_approve_all(settings: RunSettings, approve_all: bool, thread_id: str | None) -> None:
    if approve_all and settings.background:
        thread_id = thread_id or Placeholder("THREAD")  # validate_run: no thread yet
        raise BadInput(
            Message("{} cannot approve the actions of a {} run: nobody is at the terminal", Setting("approve_all"), Setting("background")),
            Message(
                "leave out {} and answer each action with {}",
                Setting("approve_all"),
                OneOf(Command("approve", thread_id=thread_id, ids=["ID"]), Command("reject", thread_id=thread_id, ids=["ID"])),
            ),
        )
