"""The write queue: a task's writes wait for the step's checkpoint row to take them.

put_writes/aput_writes queue them (LangGraph waits for neither) and the step's put takes them; a
flusher thread stores on their own, in `writes`, those that no put took within JOIN_SECONDS to
twice that (a task that finished while a sibling still runs), and at interpreter exit what is
left is stored. Errors, interrupts and LangGraph's other special writes, and writes to a saver
without a connection of its own, are stored at once.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Callable

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import WRITES_IDX_MAP

from runtime.store.records import LeaseLost

JOIN_SECONDS = 0.005
"""How long a task's queued writes (sync API) wait for the step's checkpoint to take them."""
_QUIET_SECONDS = 1.0
"""How long the flusher runs on with nothing queued before it ends."""


class QueuedWrites:
    """The write queue of AgentSaver (runtime/store/saver.py), which gives it `conn`, `lock`,
    `is_setup`, `setup()`, `join_writes`, `_put` and `_put_writes` (the write path's)."""

    def _start_write_queue(self) -> None:
        # Mutable holders, shared with the copies LangGraph makes of the saver.
        self._sync_pending: list[PendingWrites] = []
        self._sync_lock = threading.Lock()
        self._flusher = Flusher()
        _FLUSHERS.add(self._flusher)

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """Store a task's writes.

        LangGraph's loop does not wait for this call. When the task was its step's last, the
        step's checkpoint `put` follows within microseconds and stores the writes in its row;
        so on a saver with a connection of its own (`join_writes`, as for runs) the writes are
        queued, and whatever no put took within JOIN_SECONDS to twice that is stored by a flusher
        thread (a task that finished while others of its step still run). Any read or delete
        through this saver, and `flush()`, stores the queue first.
        """
        args = (config, writes, task_id, task_path)
        if not self._queue(args):
            with self._locked():
                self._put_writes(*args)

    def _queue(self, args: tuple) -> bool:
        """Queue a task's writes for its step's checkpoint row; False when they must be stored
        at once: none to store, no connection of this saver's own, or an error, an interrupt or
        another of LangGraph's special writes (it relies on those being stored before it goes on)."""
        writes = args[1]
        if not writes or not self.join_writes or any(w[0] in WRITES_IDX_MAP for w in writes):
            return False
        pending = PendingWrites(str(args[0]["configurable"]["thread_id"]), args)
        with self._sync_lock:
            self._sync_pending.append(pending)
            if not self._flusher.running:
                self._flusher.start(self)
        return True

    def flush(self, min_age: float = 0.0) -> int:
        """Store the queued writes at least `min_age` seconds old; returns how many tasks' writes."""
        if not self._sync_pending:
            return 0
        with self.lock:  # taken from the queue and stored under the lock readers hold
            due = self._take_due(min_age)
            self._store(due)
        return len(due)

    def _take_due(self, min_age: float = 0.0) -> list[PendingWrites]:
        now = time.monotonic()
        with self._sync_lock:
            due = [p for p in self._sync_pending if now - p.queued >= min_age]
            for p in due:
                self._sync_pending.remove(p)
        return due

    def _store(self, due: list[PendingWrites]) -> None:
        """Store taken writes on their own (callers hold `self.lock`); what fails goes back, but
        the writes of a runner that lost its thread (fencing), which are refused for good: those
        are dropped, and whoever flushed them (a reader, another run) is not troubled by them."""
        for i, p in enumerate(due):
            try:
                self._put_writes(*p.args)
            except LeaseLost:
                continue
            except BaseException:
                self._unclaim(due[i:])
                raise

    def _flushed(self, method: Callable[..., Any], *args: Any) -> Any:
        """`method(*args)` after storing every queued write (callers hold `self.lock`)."""
        if self._sync_pending:
            self._store(self._take_due())
        return method(*args)

    def _put_joined(self, config, checkpoint, metadata, new_versions) -> RunnableConfig:
        """`_put` with the thread's queued writes joined (callers hold `self.lock`: queued writes
        leave the queue only under it, so a reader, which holds it too, finds every write either
        still queued or stored)."""
        joined = self._claim(config) if self._sync_pending else []
        try:
            return self._put(config, checkpoint, metadata, new_versions, [p.args for p in joined])
        except LeaseLost:
            raise  # the thread is another runner's now: its writes go with the refused checkpoint
        except BaseException:
            self._unclaim(joined)
            raise

    def _claim(self, config: RunnableConfig) -> list[PendingWrites]:
        """Take the queued writes of a thread, for its next checkpoint's row."""
        thread_id = str(config["configurable"]["thread_id"])
        with self._sync_lock:
            joined = [p for p in self._sync_pending if p.thread_id == thread_id]
            for p in joined:
                self._sync_pending.remove(p)
        return joined

    def _unclaim(self, joined: list[PendingWrites]) -> None:
        """Writes a failed put did not store: back to the queue, for the flusher or the next call."""
        if joined:
            with self._sync_lock:
                self._sync_pending[:0] = joined


class PendingWrites:
    """A task's writes queued for its step's checkpoint row (see put_writes)."""

    __slots__ = ("thread_id", "args", "queued")

    def __init__(self, thread_id: str, args: tuple) -> None:
        self.thread_id = thread_id
        self.args = args
        self.queued = time.monotonic()


class Flusher:
    """Stores queued writes that no checkpoint put took within JOIN_SECONDS, on a thread of its
    own. Started by the first write queued while it is not running, it looks at the queue every
    JOIN_SECONDS (nothing wakes it per write: waking a thread per step costs more than the step's
    SQL) and ends after a second with nothing queued. It holds the saver only while it runs
    (LangGraph runs a shallow copy of the compiled graph's saver; copies share the queue, this
    flusher, the connection and its lock). At interpreter exit, `_flush_at_exit` stores what is left."""

    def __init__(self) -> None:
        self.saver: QueuedWrites | None = None  # set and cleared under the saver's _sync_lock
        self.running = False  # likewise

    def start(self, saver: QueuedWrites) -> None:
        """Called under `saver._sync_lock`, with `running` false."""
        self.running = True
        self.saver = saver
        threading.Thread(target=self._run, name="agent-writes-flusher", daemon=True).start()

    def _run(self) -> None:
        quiet_since = time.monotonic()
        while True:
            time.sleep(JOIN_SECONDS)
            saver = self.saver
            if saver is None:
                return
            if saver._sync_pending:
                quiet_since = time.monotonic()
                try:
                    saver.flush(JOIN_SECONDS)
                except sqlite3.ProgrammingError:  # its connection was closed: nothing more to do
                    self._stop(saver)
                    return
                except Exception:
                    pass  # kept queued: the next put, read or flush stores it or raises
            elif time.monotonic() - quiet_since > _QUIET_SECONDS:
                if self._stop(saver, unless_queued=True):
                    return
            del saver

    def _stop(self, saver: QueuedWrites, *, unless_queued: bool = False) -> bool:
        """Let go of the saver (unless, with `unless_queued`, writes were queued meanwhile)."""
        with saver._sync_lock:
            if unless_queued and saver._sync_pending:
                return False
            self.running = False
            self.saver = None
            return True


_FLUSHERS: "weakref.WeakSet[Flusher]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for flusher in list(_FLUSHERS):
        saver = flusher.saver
        if saver is not None:
            try:
                saver.flush()
            except Exception:
                pass
