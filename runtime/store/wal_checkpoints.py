"""WAL checkpoints in the background: the saver of a run copies the WAL into the database file on
a worker thread every few hundred commits, instead of inside a commit."""

from __future__ import annotations

import sqlite3
import threading

from runtime.store.connect import checkpoint_wal


class BackgroundWalCheckpoints:
    """Copy the WAL into the database file on a worker thread, every `every` commits.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold and fsyncs
    the database file there: on the event loop, a pause of milliseconds every few hundred steps.
    A PASSIVE checkpoint on another connection does the same work beside the writer.
    """

    every = 256

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.running = threading.Lock()

    def committed(self) -> None:
        self.count += 1
        if self.count >= self.every and self.running.acquire(blocking=False):
            self.count = 0
            threading.Thread(target=self._checkpoint, name="agent-wal-checkpoint", daemon=True).start()

    def wait(self) -> None:
        """Until the checkpoint under way, if any, has finished."""
        with self.running:
            pass

    def _checkpoint(self) -> None:
        try:
            checkpoint_wal(self.path)
        except sqlite3.Error:
            pass  # the next one, or another connection's automatic checkpoint, catches up
        finally:
            self.running.release()
