"""A run's waits end the moment the run is asked to stop.

LangGraph drains a run at the next step boundary: the nodes in flight finish and are saved. A
node that is waiting (a backoff, a server's Retry-After of up to ten minutes, a rate limit)
has nothing to finish, so Ctrl-C, SIGTERM, the deadline, a pause or the budget must not wait
for it. The runner's control (`InterruptibleControl`) wakes every wait of the run when a drain
is requested, and the wait raises `WaitInterrupted` (state/context.py): a queue item that was
waiting is left without a result, a node that was waiting fails, and either runs again on resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Awaitable, TypeVar

from langgraph.runtime import RunControl

from state.context import WaitInterrupted

T = TypeVar("T")


class InterruptibleControl(RunControl):
    """LangGraph's RunControl that also ends the run's waits when a drain is requested.

    Made inside the run's event loop; `request_drain` may be called from any thread.
    """

    __slots__ = ("_loop", "_stopping")

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()

    def request_drain(self, reason: str = "shutdown") -> None:
        super().request_drain(reason)
        try:
            in_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._stopping.set()
        else:
            with contextlib.suppress(RuntimeError):  # the run has ended and its loop is closed
                self._loop.call_soon_threadsafe(self._stopping.set)

    async def until_stopped(self, awaitable: Awaitable[T]) -> T:
        """What `awaitable` gives, or `WaitInterrupted` as soon as a drain is requested."""
        if self._stopping.is_set():
            _discard(awaitable)
            raise self._interrupted()
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        raise self._interrupted()

    def _interrupted(self) -> WaitInterrupted:
        return WaitInterrupted(f"stopped waiting: the run was asked to stop ({self.drain_reason})")


class RunClock:
    """The clock of a run's nodes (state.context.Clock): its waits end when the run stops."""

    def __init__(self, control: InterruptibleControl) -> None:
        self._control = control

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, seconds: float) -> None:
        await self._control.until_stopped(asyncio.sleep(seconds))


def _discard(awaitable: Any) -> None:
    """Close a coroutine that will not be awaited (so Python does not warn that it never was)."""
    if asyncio.iscoroutine(awaitable):
        awaitable.close()
