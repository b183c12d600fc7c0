"""Processes that start writing one database at the same moment, for tests/test_many_writers.py.

    python -m tests.gated GATE READY cli ARGS...          the `agent` CLI with ARGS
    python -m tests.gated GATE READY threads DB N PREFIX  N Python threads, each runs
                                                          runtime.run_thread on one shared Database

Each process first does its slow start-up (imports, opening the database), then creates the
file READY and waits for a shared lock on GATE, which the test holds exclusively until every
process is ready: releasing it lets them all go at once.
"""

from __future__ import annotations

import fcntl
import json
import sys
import threading
from pathlib import Path


def wait_at_gate(gate: str, ready: str) -> None:
    Path(ready).touch()
    with open(gate, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)


def run_cli(gate: str, ready: str, args: list[str]) -> None:
    from cli import main
    import runtime.runs.runner  # noqa: F401  (what a run imports, loaded before the gate)

    wait_at_gate(gate, ready)
    sys.argv = ["agent", *args]
    main()


def run_threads(gate: str, ready: str, db_path: str, count: int, prefix: str) -> None:
    from runtime import open_database, run_thread

    db = open_database(db_path, create=True)
    outcomes: dict[str, str] = {}

    def run(thread_id: str) -> None:
        try:
            outcome = run_thread(db, "task_queue", thread_id, {"items": [f"{thread_id} a", f"{thread_id} b"], "prompt": "Summarize: {item}"})
            outcomes[thread_id] = outcome.status if outcome.error is None else f"{outcome.status}: {outcome.error}"
        except Exception as exc:
            outcomes[thread_id] = f"{type(exc).__name__}: {exc}"

    workers = [threading.Thread(target=run, args=(f"{prefix}-{i}",)) for i in range(count)]
    wait_at_gate(gate, ready)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    db.close()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    gate, ready, mode, *rest = sys.argv[1:]
    if mode == "cli":
        run_cli(gate, ready, rest)
    else:
        run_threads(gate, ready, rest[0], int(rest[1]), rest[2])
