"""Pause and cancel: asked from any process, carried out by the process running the thread.

`request_pause` / `request_cancel` store a request in `agent_control`, addressed to the runner
that holds the thread's lease (its pid and host). That runner's process reads
the requests addressed to it every `runtime.policy.budget.FLUSH_SECONDS` (runtime/runs/host.py)
and asks LangGraph to drain: the nodes in
flight finish and are saved, the run stops at the next node boundary with status `paused` or
`cancelled`, and the request is cleared when the runner lets the thread go. A thread nobody is
running is not asked anything: a cancel marks it `cancelled` at once, a pause leaves it as it is
(it is not running). Both are idempotent: asking again says what was already asked or done.
The requests are kept by runtime/store/control.py.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass


from runtime.threads import registry as threads
from runtime.store.parts import control as control_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.seam import Owner
from runtime.store.parts import immediate
from runtime.store.database import Database
from runtime.errors import BadInput, Command, Message, NothingToResume

PAUSE, CANCEL = "pause", "cancel"
PAUSED, CANCELLED = "paused", "cancelled"


class NotControllable(BadInput):
    """Pause or cancel of a thread that has already ended for good."""


@dataclass
class ControlResult:
    thread_id: str
    action: str
    """`pause` or `cancel`."""
    outcome: str
    """`requested` (its runner will stop at the next node boundary), `already_requested`,
    `marked` (not running: the status was set), `already` (it already has that status),
    `not_running` (a pause of a thread that is not running: nothing to do)."""
    status: str
    """The thread's status as shown now."""
    message: str

    def as_dict(self) -> dict[str, str]:
        return self.__dict__.copy()


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without a passwd entry
        return f"uid {os.getuid()}"


def request_pause(db: Database, thread_id: str) -> ControlResult:
    return _request(db, thread_id, PAUSE)


def request_cancel(db: Database, thread_id: str) -> ControlResult:
    return _request(db, thread_id, CANCEL)


def _request(db: Database, thread_id: str, action: str) -> ControlResult:
    done = PAUSED if action == PAUSE else CANCELLED
    with immediate(db.conn):  # read the lease and write the request as one step
        record = threads.get_thread(db, thread_id)
        shown = record.shown_status
        existing = control_rows.get(db.conn, thread_id)
        if existing and (existing.target_pid, existing.target_host) != (record.owner_pid, record.owner_host):
            existing = None  # a request left for an earlier runner of the thread does not count
        if shown == "running":
            if existing and (existing[0] == action or existing[0] == CANCEL):
                asked = "a cancel" if existing[0] == CANCEL else f"a {action}"
                return ControlResult(thread_id, action, "already_requested", shown, f"{asked} of thread {thread_id} was already requested; it stops at the next node boundary")
            control_rows.put(db.conn, thread_id, action, Owner(record.owner_pid, record.owner_host), current_user(), time.time())
            return ControlResult(thread_id, action, "requested", shown, f"asked thread {thread_id} (pid {record.owner_pid}) to {action}; it stops at the next node boundary")
        if shown == done:
            return ControlResult(thread_id, action, "already", shown, f"thread {thread_id} is already {done}")
        if shown in ("completed", CANCELLED):
            raise NotControllable(
                f"thread {thread_id!r} is {shown}; there is nothing to {action}",
                Message("{} shows where it ended", Command("state", thread_id=thread_id)),
            )
        if action == PAUSE:
            return ControlResult(thread_id, action, "not_running", shown, f"thread {thread_id} is not running ({shown}); nothing to pause")
        # A cancel of a thread nobody runs (stopped, failed, paused, interrupted, stale...): mark it.
        thread_rows.end_unowned(db.conn, thread_id, CANCELLED, f"cancelled by {current_user()}", time.time())
        control_rows.delete(db.conn, thread_id)
        return ControlResult(thread_id, action, "marked", CANCELLED, f"thread {thread_id} was {shown}; it is now cancelled")


def clear_request(db: Database, thread_id: str) -> None:
    control_rows.clear(db.conn, thread_id, os.getpid())


def refuse_if_cancelled(record: threads.ThreadRecord, force: bool, command: str = "resume") -> None:
    if record.status == CANCELLED and not force:
        raise NothingToResume(
            f"thread {record.thread_id!r} was cancelled",
            Message("to continue it anyway: {}", Command(command, thread_id=record.thread_id, force=True)),
        )
