"""Checkpointer benchmark: our SQLite saver against LangGraph's stock savers, in one run.

    .venv/bin/python bench/checkpointer.py            # the full run (a few minutes)
    .venv/bin/python bench/checkpointer.py --quick    # smaller, for a smoke test

Prints medians and ratios measured in the same invocation (the machines are shared and noisy,
so only ratios from one run compare). Figures are printed, never asserted; bench/README.md
records them. Sections:

1. Per-step cost of a 1,000-step loop: no checkpointer, InMemorySaver, stock SqliteSaver,
   stock SqliteSaver with synchronous=NORMAL, ours, and ours with each task's writes committed
   as it finishes (no write window); each with durability="sync", through the sync API (invoke)
   and the async one (ainvoke); and the whole run path of `agent run` (run_thread), async.
2. History of a 10,000-checkpoint thread: stock `get_state_history` and ours (`get_history`)
   in-process; `agent history --limit 20` as a whole process.
3. Whole-process start: `agent --help`, `agent threads`, and whether any read command imports
   langchain_openai.
4. Resume latency: from `agent resume` process start to the first node running, on a thread of
   ~100 and of ~10,000 checkpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402

from bench.loop_graph import build  # noqa: E402
from runtime import get_history, open_database  # noqa: E402
from runtime.store.saver import open_saver  # noqa: E402

GRAPH_SPEC = str(ROOT / "bench" / "loop_graph.py") + ":build"


def loop_once(saver, thread: str, steps: int, aio: bool) -> float:
    """Microseconds per step of one `steps`-step run."""
    graph = build().compile(checkpointer=saver)
    if hasattr(saver, "bind_graph"):
        saver.bind_graph(graph)
    config = {"configurable": {"thread_id": thread}, "recursion_limit": steps * 3}
    kwargs = {"durability": "sync"} if saver is not None else {}
    started = time.perf_counter()
    if aio:
        asyncio.run(graph.ainvoke({"n": 0, "limit": steps}, config, **kwargs))
    else:
        graph.invoke({"n": 0, "limit": steps}, config, **kwargs)
    elapsed = time.perf_counter() - started
    if hasattr(saver, "settle"):
        # A WAL checkpoint started by the last commits would run into the next configuration's
        # time; those inside the run (every 256 commits) overlapped it and are counted.
        saver.settle()
    return elapsed / steps * 1e6


def stock_saver(path: Path, normal: bool) -> SqliteSaver:
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    if normal:
        conn.execute("PRAGMA synchronous=NORMAL")
    return saver


def our_saver(path: Path, aio: bool, writes_at_once: bool = False):
    """Ours as a run opens it; `writes_at_once`: a task's writes are committed as it finishes
    instead of joining the step's checkpoint row (what closing the write window would cost)."""
    if not path.exists():
        open_database(path, create=True).close()
    saver = open_saver(str(path), fast_async=aio)
    if writes_at_once:
        saver.join_writes = False
    return saver


def per_step(work: Path, rounds: int, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Medians per configuration, and per mode the median over rounds of ours / InMemorySaver
    within a round (runs seconds apart, so a slow spell of the machine weighs on both)."""
    makers = {
        "none": lambda aio: None,
        "memory": lambda aio: InMemorySaver(),
        "stock": lambda aio: stock_saver(work / "stock.db", False),
        "stock_normal": lambda aio: stock_saver(work / "stock_normal.db", True),
        "ours": lambda aio: our_saver(work / "ours.db", aio),
        "ours_writes_at_once": lambda aio: our_saver(work / "ours_at_once.db", aio, writes_at_once=True),
        "agent_run": None,  # the runtime's whole run path (run_thread), on the loop graph
    }
    samples: dict[str, list[float]] = {}
    runs = [
        (name, aio)
        for aio in (False, True)
        for name in makers
        if not (name.startswith("stock") and aio) and not (name == "agent_run" and not aio)
    ]
    runs.append(("stock_aiosqlite", True))  # the stock SqliteSaver has no async methods: its async sibling
    order = random.Random(7)
    for r in range(rounds):
        order.shuffle(runs)  # a fixed order would give one configuration the same neighbours every round
        for name, aio in runs:
            key = f"{name}/{'async' if aio else 'sync'}"
            if name == "stock_aiosqlite":
                samples.setdefault(key, []).append(asyncio.run(_stock_async(work / "stock_aio.db", f"a{r}", steps)))
                continue
            if name == "agent_run":
                samples.setdefault(key, []).append(agent_run_once(work / "agent_run.db", f"r{r}", steps))
                continue
            saver = makers[name](aio)
            samples.setdefault(key, []).append(loop_once(saver, f"{name}-{aio}-{r}", steps, aio))
            if saver is not None and hasattr(saver, "conn") and isinstance(saver.conn, sqlite3.Connection):
                saver.conn.close()
    paired = {
        f"{name}/{mode}": statistics.median(o / m for o, m in zip(samples[f"{name}/{mode}"], samples[f"memory/{mode}"]))
        for name in ("ours", "ours_writes_at_once", "agent_run")
        for mode in ("sync", "async")
        if f"{name}/{mode}" in samples
    }
    return {k: statistics.median(v) for k, v in samples.items()}, paired


def agent_run_once(db: Path, thread: str, steps: int) -> float:
    """Microseconds per step of `run_thread` (what `agent run` calls: registry, leases, spend,
    the async run on our saver) on the loop graph; its fixed cost is spread over the steps."""
    from runtime import run_thread

    if not db.exists():
        open_database(db, create=True).close()
    with open_database(db) as database:
        started = time.perf_counter()
        outcome = run_thread(database, GRAPH_SPEC, thread, {"limit": steps})
        elapsed = time.perf_counter() - started
    assert outcome.status == "completed", outcome
    return elapsed / steps * 1e6


async def _stock_async(path: Path, thread: str, steps: int) -> float:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        graph = build().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": thread}, "recursion_limit": steps * 3}
        started = time.perf_counter()
        await graph.ainvoke({"n": 0, "limit": steps}, config, durability="sync")
        return (time.perf_counter() - started) / steps * 1e6


def agent(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_", "BENCH_"))}
    full_env.update({"AGENT_DB": str(db), "COLUMNS": "200"}, **env)
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=full_env, capture_output=True, text=True)


def wall(db: Path, *args: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = agent(db, *args)
        times.append(time.perf_counter() - started)
        if result.returncode not in (0,):
            raise SystemExit(f"agent {' '.join(args)} failed: {result.stderr}")
    return statistics.median(times)


def make_long_thread(db: Path, thread: str, checkpoints: int) -> None:
    """A failed thread of `checkpoints` checkpoints (plus a few), resumable, written by `agent run`."""
    result = agent(db, "run", GRAPH_SPEC, "--thread", thread, "--quiet", "--input", f'{{"limit": {checkpoints + 5}}}', BENCH_FAIL_AT=str(checkpoints))
    if result.returncode != 1 or "stopped at" not in result.stderr:
        raise SystemExit(f"could not build the thread: {result.returncode} {result.stderr}")


def stock_history(work: Path, checkpoints: int) -> tuple[int, float]:
    saver = stock_saver(work / "stock_history.db", True)
    graph = build().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "long"}, "recursion_limit": checkpoints * 3}
    graph.invoke({"n": 0, "limit": checkpoints - 2}, config, durability="sync")
    times, count = [], 0
    for _ in range(3):
        started = time.perf_counter()
        count = sum(1 for _ in graph.get_state_history(config))
        times.append(time.perf_counter() - started)
    return count, statistics.median(times)


def our_history(db: Path, thread: str) -> tuple[int, float]:
    times, count = [], 0
    with open_database(db) as database:
        for _ in range(5):
            started = time.perf_counter()
            count = len(get_history(database, thread))
            times.append(time.perf_counter() - started)
    return count, statistics.median(times)


def resume_latency(db: Path, thread: str, work: Path, repeat: int = 3) -> float:
    """Seconds from starting `agent resume` to the first node running, on copies of `db`."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    latencies = []
    for i in range(repeat):
        copy = work / f"resume-{thread}-{i}.db"
        shutil.copy(db, copy)
        mark = work / f"mark-{thread}-{i}"
        started = time.time()
        result = agent(copy, "resume", "--thread", thread, "--quiet", BENCH_MARK=str(mark))
        if result.returncode != 0:
            raise SystemExit(f"resume failed: {result.stderr}")
        latencies.append(float(mark.read_text()) - started)
    return statistics.median(latencies)


def imports_openai(db: Path, *args: str) -> bool:
    code = (
        "import sys; sys.argv = ['agent', *sys.argv[1:]]\n"
        "from cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('langchain_openai' in sys.modules, file=sys.stderr)"
    )
    env = {**os.environ, "AGENT_DB": str(db)}
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    return result.stderr.strip().splitlines()[-1] == "True"


def machine() -> str:
    import importlib.metadata as md

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite"))
    return f"{os.cpu_count()} CPUs, {cpu}; Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}; {versions}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a shorter long thread")
    parser.add_argument("--rounds", type=int, help="rounds of the per-step section (default 15; 2 with --quick)")
    parser.add_argument("--per-step-only", action="store_true", help="run only the per-step section")
    args = parser.parse_args()
    rounds, steps, long_n = (2, 300, 1_000) if args.quick else (15, 1_000, 10_000)
    rounds = args.rounds or rounds
    work = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    try:
        print(machine())
        print(f"\n1. Per-step cost, {steps}-step loop, median of {rounds} (µs/step)")
        medians, paired = per_step(work, rounds, steps)
        for name, value in medians.items():
            print(f"   {name:<22} {value:8.0f}")
        for name in ("ours", "ours_writes_at_once", "agent_run"):
            for mode in ("sync", "async"):
                if f"{name}/{mode}" in medians:
                    ratio = medians[f"{name}/{mode}"] / medians[f"memory/{mode}"]
                    print(f"   {name} / InMemorySaver ({mode}): {ratio:.2f} of medians, "
                          f"{paired[f'{name}/{mode}']:.2f} median within rounds  (target <= 1.15)")
        print(f"   stock / InMemorySaver (sync): {medians['stock/sync'] / medians['memory/sync']:.2f}, "
              f"with NORMAL: {medians['stock_normal/sync'] / medians['memory/sync']:.2f}")
        if args.per_step_only:
            return

        db = work / "agent.db"
        print(f"\n2. History of a {long_n:,}-checkpoint thread")
        make_long_thread(db, "long", long_n)
        make_long_thread(db, "short", 100)
        count, ours_s = our_history(db, "long")
        stock_count, stock_s = stock_history(work, long_n)
        print(f"   stock get_state_history, full ({stock_count} checkpoints): {stock_s:.3f} s")
        print(f"   ours get_history, full ({count} checkpoints):               {ours_s:.3f} s  (target <= 0.25 s)")
        print(f"   agent history --thread long --limit 20, whole process: {wall(db, 'history', '--thread', 'long', '--limit', '20'):.3f} s  (target <= 0.35 s)")

        print("\n3. Whole-process start")
        print(f"   agent --help:   {wall(db, '--help'):.3f} s  (target <= 0.25 s)")
        print(f"   agent threads:  {wall(db, 'threads'):.3f} s")
        for command in (["--help"], ["threads"], ["history", "--thread", "long", "--limit", "20"]):
            print(f"   agent {' '.join(command)} imports langchain_openai: {imports_openai(db, *command)}")

        print("\n4. Resume latency, process start to first node (median of 3)")
        print(f"   ~100 checkpoints:    {resume_latency(db, 'short', work):.3f} s")
        print(f"   ~{long_n:,} checkpoints: {resume_latency(db, 'long', work):.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
