"""Run the `agent` CLI and stop the whole process (SIGSTOP) just before it executes a chosen SQL
statement, so that a crash test can kill it (SIGKILL) at that exact point.

    python -m tests.stop_at_sql REGEX N agent-arguments...

The N-th statement that matches REGEX (case-insensitive, from the statement's start) stops the
process. Statements are seen through SQLite's trace callback, set on every connection the process
opens (the `sqlite3.connect` of this process is wrapped before the CLI is imported).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import threading


def main() -> None:
    pattern, nth, args = re.compile(sys.argv[1], re.IGNORECASE), int(sys.argv[2]), sys.argv[3:]
    seen = 0
    lock = threading.Lock()

    def trace(sql: str) -> None:
        nonlocal seen
        if not pattern.match(sql.lstrip()):
            return
        with lock:
            seen += 1
            stop = seen == nth
        if stop:
            os.kill(os.getpid(), signal.SIGSTOP)

    connect = sqlite3.connect

    def traced(*a, **k):
        conn = connect(*a, **k)
        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = traced
    sys.argv = ["agent", *args]
    from cli import main as agent

    agent()


if __name__ == "__main__":
    main()
