"""Approvals: the interrupts a thread waits on, and answering them by id.

A graph asks for a person's decision with LangGraph's `interrupt(value)`; the thread stops with
status `interrupted`. `pending_approvals` lists what waits (each with its interrupt id), and
`decide` resumes the thread with `Command(resume={interrupt_id: decision, ...})`, a decision
carrying who decided (the OS user), when (UTC) and why. Interrupts not answered keep waiting.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.threads.control import current_user
from runtime.store.database import Database
from runtime.errors import BadInput, Command, Message, NothingToResume, Setting


def pending_approvals(db: Database, thread_id: str, *, attended: bool = True) -> list[dict[str, Any]]:
    """The thread's pending interrupts at its latest checkpoint: `id` and what each asks about."""
    from runtime.threads.history import readable_spec, state_at

    _, spec = readable_spec(db, thread_id, attended=attended)
    snapshot = state_at(db, spec, thread_id)
    pending = []
    for interrupt in snapshot.interrupts if snapshot is not None else ():
        value = interrupt.value
        pending.append({"id": interrupt.id, **(value if isinstance(value, dict) else {"value": value})})
    return pending


def decisions_for(
    db: Database,
    thread_id: str,
    ids: list[str] | None,
    approved: bool,
    reason: str | None,
    every: bool = False,
    *,
    attended: bool = True,
    by: str | None = None,
    via: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The resume map for `decide`: interrupt id -> decision. Ids may be unique prefixes. `by`
    and `via` name who decided and through what (the OS user and the CLI's verb unless given:
    the HTTP API records the name its caller gives, and that it came through the API)."""
    pending = pending_approvals(db, thread_id, attended=attended)
    if not pending:
        raise NothingToResume(
            f"thread {thread_id!r} has no pending approvals", Message("{} shows where it is", Command("state", thread_id=thread_id))
        )
    known = [p["id"] for p in pending]
    if every:
        chosen = known
    elif ids:
        chosen = [_match(thread_id, ref, known) for ref in ids]
    elif len(known) == 1:
        chosen = known
    else:
        raise BadInput(
            f"thread {thread_id!r} has {len(known)} pending approvals: {', '.join(known)}",
            Message(
                "name one with {ids} ({approvals} lists them), or answer them all with {every}",
                ids=Setting("ids"), approvals=Command("approvals", thread_id=thread_id), every=Setting("every"),
            ),
        )
    verb = via or ("agent approve" if approved else "agent reject")
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    decision = {"approved": approved, "by": by or current_user(), "at": at, "reason": reason, "via": verb}
    return {interrupt_id: {**decision, "interrupt_id": interrupt_id} for interrupt_id in dict.fromkeys(chosen)}


def _match(thread_id: str, ref: str, known: list[str]) -> str:
    matches = [k for k in known if k.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    hint = Message("{approvals} lists the pending ones: {known}", approvals=Command("approvals", thread_id=thread_id), known=", ".join(known))
    if not matches:
        raise BadInput(f"thread {thread_id!r} has no pending approval {ref!r}", hint)
    raise BadInput(f"approval id {ref!r} matches {len(matches)} pending approvals", hint)


def check_reason(thread_id: str, ids: list[str] | None, approved: bool, reason: str | None) -> None:
    if not approved and not (reason or "").strip():
        raise BadInput(
            Message("a rejection needs a {reason}", reason=Setting("reason"), value=reason),
            Message("e.g. {}", Command("reject", thread_id=thread_id, ids=ids or ["ID"], reason="not this vendor")),
        )


def decide(
    db: Database,
    thread_id: str,
    ids: list[str] | None,
    approved: bool,
    reason: str | None = None,
    *,
    every: bool = False,
    **resume_options: Any,
) -> Any:
    """Answer pending approvals and resume the thread (see `runtime.runs.runner.resume_thread` for
    `resume_options`). Returns the run's outcome; unanswered approvals keep waiting."""
    from langgraph.types import Command as GraphCommand  # not runtime.errors.Command, the next command a hint names

    from runtime.runs.runner import resume_thread

    check_reason(thread_id, ids, approved, reason)
    answers = decisions_for(db, thread_id, ids, approved, reason, every, attended=resume_options.get("attended", True))
    return resume_thread(db, thread_id, command=GraphCommand(resume=answers), **resume_options)
