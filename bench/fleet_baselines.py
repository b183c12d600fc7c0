"""The fleet benchmark's baselines: what a LangGraph user does today, in a process of its own.

    .venv/bin/python bench/fleet_baselines.py sqlite --threads 200 --latency 1 --db baseline.db
    .venv/bin/python bench/fleet_baselines.py memory --threads 200 --latency 1
    .venv/bin/python bench/fleet_baselines.py postgres --threads 200 --latency 1 --db postgresql://USER@HOST/DB

One process, one event loop, `asyncio.gather` of N `graph.ainvoke` calls of bench/fleet_graph.py,
`durability="sync"`, on the stock `AsyncSqliteSaver` (langgraph-checkpoint-sqlite over aiosqlite,
opened with `from_conn_string` as its documentation shows), on the stock `AsyncPostgresSaver`
(langgraph-checkpoint-postgres, opened as its documentation shows: `from_conn_string`, one
connection, then `setup()`), or on `InMemorySaver` (the floor: no storage at all). bench/fleet.py runs each in a fresh process, so the peak RSS and the CPU time are
this shape's alone, and prints one JSON line: the wall time of the gather, the RSS before it and
at its peak (VmHWM), the process's CPU seconds during it, and the save latency of every
checkpoint, measured as the worker measures its own: from `checkpoint["ts"]` (set when LangGraph
creates the checkpoint, after the step's tasks finished) to `aput` returning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

from bench.fleet_graph import build  # noqa: E402
from runtime import make_model  # noqa: E402
from state.context import RunContext  # noqa: E402


def proc_status_kb(field: str, pid: int | str = "self") -> int | None:
    """A `kB` figure of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


def time_saves(saver: Any, latencies: list[float]) -> None:
    """Record, for every checkpoint put, the seconds from its creation to the put returning."""
    put = saver.aput

    async def timed_aput(config, checkpoint, metadata, new_versions):
        result = await put(config, checkpoint, metadata, new_versions)
        latencies.append(time.time() - datetime.fromisoformat(checkpoint["ts"]).timestamp())
        return result

    saver.aput = timed_aput


async def gather_threads(saver: Any, threads: int, steps: int, model_spec: str) -> dict[str, Any]:
    latencies: list[float] = []
    time_saves(saver, latencies)  # before compiling: the graph may keep a copy of the saver
    graph = build().compile(checkpointer=saver)
    # One thread first on a model that does not wait, so what the first run imports and builds
    # lazily counts as start-up, not as the threads' memory.
    warm = RunContext(model=make_model("offline"), model_spec="offline")
    await graph.ainvoke({"topic": "warm-up", "steps": steps}, {"configurable": {"thread_id": "warm-up"}}, context=warm, durability="sync")
    context = RunContext(model=make_model(model_spec), model_spec=model_spec)
    latencies.clear()
    rss_before, cpu_before = proc_status_kb("VmRSS"), cpu_seconds()
    started = time.monotonic()
    finals = await asyncio.gather(*(
        graph.ainvoke({"topic": f"topic {i}", "steps": steps}, {"configurable": {"thread_id": f"t{i}"}}, context=context, durability="sync")
        for i in range(threads)
    ))  # fmt: skip
    wall = time.monotonic() - started
    assert all(final["done"] == steps for final in finals), "a thread did not finish its steps"
    return {
        "wall": wall,
        "steps": threads * steps,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "rss_before_kb": rss_before,
        "rss_peak_kb": proc_status_kb("VmHWM"),
        "save_latency_ms": {
            "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "count": len(latencies),
        },
    }


async def run(saver_kind: str, threads: int, steps: int, model_spec: str, db: str | None) -> dict[str, Any]:
    if saver_kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return await gather_threads(InMemorySaver(), threads, steps, model_spec)
    if saver_kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(db) as saver:
            await saver.setup()
            return await gather_threads(saver, threads, steps, model_spec)
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        return await gather_threads(saver, threads, steps, model_spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saver", choices=["sqlite", "postgres", "memory"])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--latency", type=float, required=True, help="seconds each model call takes")
    parser.add_argument("--steps", type=int, default=5, help="model steps per thread")
    parser.add_argument("--db", help="the SQLite file, or the PostgreSQL database's URL (not for memory)")
    args = parser.parse_args()
    if args.saver != "memory" and not args.db:
        parser.error(f"{args.saver} needs --db")
    figures = asyncio.run(run(args.saver, args.threads, args.steps, f"offline:latency={args.latency:g}", args.db))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
