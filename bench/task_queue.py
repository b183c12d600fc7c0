"""Task queue benchmark: this project's `task_queue` against two baselines, in one run.

    .venv/bin/python bench/task_queue.py            # the full run (about two minutes)
    .venv/bin/python bench/task_queue.py --quick    # smaller, for a smoke test

The same queue through three shapes, with the same model stub (the offline model with a fixed
latency and a fixed reply size, `offline:latency=0.1,reply_chars=500`) and the same concurrency:

(a) `task_queue`, run by `runtime.run_thread` exactly as `agent run` runs it (SQLite
    checkpoints, the store, the lease, progress events), on --items items from a JSONL file;
(b) the naive LangGraph shape: the state holds `remaining` and an `operator.add` list of
    results, each step Sends a batch of `concurrency` items, on the same database machinery,
    on --naive-items items and on a quarter of that (every step re-writes the results so far, so
    its bytes per item grow with its length: the total grows quadratically);
(c) plain asyncio with a semaphore, results in a list, no durability at all, on --items items.

For each: total time, items a second (and against the ideal concurrency / latency), database
bytes per item (the file after a WAL checkpoint, divided by the items), and the time per item
of the last 10% of items against the first 10% (from the first item finished, so start-up is not
counted). Then (a) against its targets. Figures are printed, never asserted; bench/README.md
records them with the machine they came from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Send  # noqa: E402

from runtime import RunSettings, open_database, run_thread  # noqa: E402
from runtime.policy.models import make_model  # noqa: E402


@dataclass
class Measured:
    name: str
    items: int
    seconds: float
    finished: list[float]
    """When each item finished (monotonic seconds), in the order they finished."""
    db_bytes: int | None

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    @property
    def bytes_per_item(self) -> float | None:
        return None if self.db_bytes is None else self.db_bytes / self.items

    @property
    def flatness(self) -> float:
        """Time per item of the last 10% of items over that of the first 10%."""
        times = sorted(self.finished)
        decile = max(2, len(times) // 10)
        first = (times[decile - 1] - times[0]) / (decile - 1)
        last = (times[-1] - times[-decile - 1]) / decile
        return last / first


def prompt_items(n: int) -> list[str]:
    return [f"document {i}: the quick brown fox jumps over the lazy dog" for i in range(n)]


def db_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


# -- (a) this project's task_queue ----------------------------------------------------------------


def run_task_queue(work: Path, n: int, model: str, concurrency: int) -> Measured:
    path = work / "task_queue.db"
    fresh(path)
    items_file = work / "items.jsonl"
    items_file.write_text("".join(json.dumps(item) + "\n" for item in prompt_items(n)))
    finished: list[float] = []

    def on_event(event) -> None:
        if event.kind == "item":
            finished.append(time.monotonic())

    with open_database(path, create=True) as db:
        started = time.monotonic()
        outcome = run_thread(
            db, "task_queue", "bench", {"items_file": str(items_file), "prompt": "Summarize: {item}"},
            RunSettings(model=model, concurrency=concurrency), on_event=on_event,
        )  # fmt: skip
        seconds = time.monotonic() - started
    assert outcome.status == "completed" and outcome.progress.done == n, outcome
    return Measured("(a) task_queue", n, seconds, finished, db_bytes(path))


# -- (b) the naive LangGraph shape ----------------------------------------------------------------


class NaiveState(TypedDict, total=False):
    remaining: list[str]
    batch: list[str]
    results: Annotated[list[dict], operator.add]


def naive_graph(model: Any, concurrency: int, finished: list[float]) -> StateGraph:
    def take(state: NaiveState) -> dict:
        remaining = state["remaining"]
        return {"batch": remaining[:concurrency], "remaining": remaining[concurrency:]}

    def fan_out(state: NaiveState) -> list[Send] | str:
        return [Send("work", {"item": item}) for item in state["batch"]] or END

    async def work(task: dict) -> dict:
        message = await model.ainvoke(f"Summarize: {task['item']}")
        finished.append(time.monotonic())
        return {"results": [{"item": task["item"], "output": message.content}]}

    graph = StateGraph(NaiveState)
    graph.add_node("take", take)
    graph.add_node("work", work)
    graph.add_edge(START, "take")
    graph.add_conditional_edges("take", fan_out, ["work", END])
    graph.add_edge("work", "take")
    return graph


def run_naive(work: Path, n: int, model_spec: str, concurrency: int) -> Measured:
    path = work / f"naive-{n}.db"
    fresh(path)
    finished: list[float] = []
    graph_builder = naive_graph(make_model(model_spec), concurrency, finished)

    async def drive() -> float:
        with open_database(path, create=True) as db:
            async with db.open_async() as (saver, store):
                graph = graph_builder.compile(checkpointer=saver, store=store)
                config = {"configurable": {"thread_id": "naive"}, "recursion_limit": 10 * n}
                started = time.monotonic()
                final = await graph.ainvoke({"remaining": prompt_items(n)}, config, durability="sync")
                seconds = time.monotonic() - started
                assert len(final["results"]) == n
                return seconds

    seconds = asyncio.run(drive())
    return Measured("(b) naive LangGraph", n, seconds, finished, db_bytes(path))


# -- (c) plain asyncio ----------------------------------------------------------------------------


def run_plain(n: int, model_spec: str, concurrency: int) -> Measured:
    model = make_model(model_spec)
    finished: list[float] = []

    async def drive() -> float:
        gate = asyncio.Semaphore(concurrency)
        results: list[str | None] = [None] * n

        async def one(i: int, item: str) -> None:
            async with gate:
                results[i] = (await model.ainvoke(f"Summarize: {item}")).content
                finished.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(*(one(i, item) for i, item in enumerate(prompt_items(n))))
        assert all(r is not None for r in results)
        return time.monotonic() - started

    seconds = asyncio.run(drive())
    return Measured("(c) plain asyncio", n, seconds, finished, None)


# -- report ---------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import langgraph.version

    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, langgraph {langgraph.version.__version__}"
    )


def report(rows: list[Measured], ideal: float, result_bytes: int) -> list[str]:
    lines = [
        f"{'shape':<22} {'items':>6} {'seconds':>8} {'items/s':>8} {'x ideal':>8} {'DB bytes/item':>14} {'last/first 10%':>15}",
    ]
    for m in rows:
        per_item = "-" if m.bytes_per_item is None else f"{m.bytes_per_item:,.0f}"
        lines.append(
            f"{m.name:<22} {m.items:>6} {m.seconds:>8.1f} {m.rate:>8.1f} {m.rate / ideal:>8.2f} {per_item:>14} {m.flatness:>15.2f}"
        )
    a = rows[0]
    plain = next((m for m in rows if m.name.startswith("(c)")), None)
    checks = [
        ("DB bytes per item <= 2x the result size", a.bytes_per_item, 2 * result_bytes, a.bytes_per_item <= 2 * result_bytes),
        ("time per item flat: last/first 10% <= 1.1", a.flatness, 1.1, a.flatness <= 1.1),
        ("throughput >= 0.85x ideal", a.rate / ideal, 0.85, a.rate >= 0.85 * ideal),
    ]
    if plain is not None:
        checks.append(("throughput >= 0.9x plain asyncio", a.rate / plain.rate, 0.9, a.rate >= 0.9 * plain.rate))
    naive = [m for m in rows if m.name.startswith("(b)")]
    if len(naive) == 2 and naive[0].bytes_per_item:
        small, large = naive
        lines.append("")
        lines.append(
            f"(b) grows with its length: {large.items / small.items:.0f}x the items, "
            f"{large.bytes_per_item / small.bytes_per_item:.1f}x the bytes per item "
            f"(linear storage would be 1x; the whole result list is re-written at every step)"
        )
    lines.append("")
    lines.append("targets for (a):")
    for name, value, bound, ok in checks:
        lines.append(f"  {'met   ' if ok else 'MISSED'} {name}: {value:,.2f} (bound {bound:,.2f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="items for (a) and (c)")
    parser.add_argument("--naive-items", type=int, default=2_000, help="items for (b)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each model call takes")
    parser.add_argument("--result-bytes", type=int, default=500, help="characters of each reply")
    parser.add_argument("--quick", action="store_true", help="1,000 items for (a) and (c), 300 for (b)")
    args = parser.parse_args()
    if args.quick:
        args.items, args.naive_items = 1_000, 300
    model = f"offline:latency={args.latency},reply_chars={args.result_bytes}"
    ideal = args.concurrency / args.latency
    print(machine())
    print(f"model {model}, concurrency {args.concurrency}: ideal {ideal:.0f} items/s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="agent-bench-queue-"))
    try:
        rows = []
        for label, run in (
            ("(a)", lambda: run_task_queue(work, args.items, model, args.concurrency)),
            ("(b), a quarter of its items", lambda: run_naive(work, args.naive_items // 4, model, args.concurrency)),
            ("(b)", lambda: run_naive(work, args.naive_items, model, args.concurrency)),
            ("(c)", lambda: run_plain(args.items, model, args.concurrency)),
        ):
            print(f"running {label} ...", flush=True)
            rows.append(run())
        print()
        print("\n".join(report(rows, ideal, args.result_bytes)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
