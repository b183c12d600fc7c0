"""One queue thread over 1, 2 and 4 workers on PostgreSQL: items a second, and the ratio to one.

    .venv/bin/python bench/queue_spread.py                 # 10,000 items, 1, 2 and 4 workers
    .venv/bin/python bench/queue_spread.py --quick         # 1,000 items, for a smoke test
    .venv/bin/python bench/queue_spread.py --postgres URL  # another server (default: AGENT_TEST_POSTGRES, else the local one)

One `task_queue` thread of --items items (the offline model with a fixed latency, so the model is
never the limit: each worker has the thread's --concurrency items in flight, over the --item-parts
parts it holds) is queued with `agent submit`, then N `agent worker --until-idle --concurrency 1
--item-parts P` processes start at once, each in a
process group of its own, on a new database of the server (dropped after). The thread's run is
driven by one of them and its items are spread over all of them as Procrastinate jobs
(runtime/fleet/spread.py).

For each N: the wall time from the first worker's start to the last one's exit; the items a second
between the first result written and the last (the workers' start-up, the items' loading and the
last checkpoint left out: the store's own timestamps); the ratio of that to one worker's in the
same invocation, and to the ideal (N x concurrency / latency); each worker's share of the items
and its CPU seconds (its --stats); and the server's CPU share, read from /proc for the
PostgreSQL processes over the run. Then that every item has exactly one result and the thread
completed. Figures are printed, never asserted; bench/README.md records them with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_storage import PostgresServer, default_server  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def agent(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from cli import main; main()", *args], cwd=ROOT, env=env, **popen)


def postgres_cpu() -> float:
    """CPU seconds of every `postgres` process now (the server and its backends on this machine),
    with those of backends that have ended (their parent's children's times)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, and of its children that ended (the backends)
    return total / CLOCK_TICKS


def one_shape(server: PostgresServer, workers: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    with server.fresh(f"spread{workers}") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
        env.update({"AGENT_DB": url, "PYTHONUNBUFFERED": "1"})
        items = folder / "items.json"
        items.write_text(json.dumps({"items": [f"document {i}" for i in range(args.items)], "prompt": "Summarise: {item}"}))
        model = f"offline:latency={args.latency}"
        submitted = agent(
            "submit", "task_queue", "--thread", "queue", "--input", f"@{items}", "--model", model, "--concurrency", str(args.concurrency),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if submitted.wait() != 0:
            raise SystemExit(f"agent submit failed: {submitted.stderr.read()}")
        cpu_before = postgres_cpu()
        started = time.monotonic()
        procs = []
        for n in range(workers):
            stats = folder / f"w{workers}-{n}.json"
            procs.append((stats, agent(
                "worker", "--until-idle", "--concurrency", "1", "--item-parts", str(args.item_parts), "--stats", str(stats),
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            )))
        for stats, proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"a worker failed: {proc.stderr.read()}")
        wall = time.monotonic() - started
        server_cpu = postgres_cpu() - cpu_before
        first, last, count, distinct = server_row(url, "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at)), count(*), count(DISTINCT key) FROM store WHERE prefix = 'results.queue'")
        status = server_row(url, "SELECT status FROM agent_threads WHERE thread_id = 'queue'")[0]
        reports = [json.loads(stats.read_text()) for stats, _ in procs]
    span = float(last) - float(first)
    return {
        "workers": workers,
        "wall": wall,
        "items_per_second": (count - 1) / span if span > 0 else float("nan"),
        "shares": [r.get("items", 0) for r in reports],
        "worker_cpu": [r["cpu_seconds"] for r in reports],
        "server_cpu": server_cpu,
        "results": count,
        "distinct": distinct,
        "status": status,
    }


def server_row(url: str, sql: str) -> tuple:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds a model call takes")
    parser.add_argument("--concurrency", type=int, default=32, help="the thread's --concurrency: items in flight per worker")
    parser.add_argument("--item-parts", type=int, default=4, help="parts a worker holds at once")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--postgres", nargs="?", const="", default="", metavar="URL")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.items = 1000
    server = PostgresServer(args.postgres or default_server())
    counts = [int(n) for n in args.workers.split(",")]
    in_flight = args.concurrency
    print(f"{args.items:,} items, offline model at {args.latency:g}s a call, {in_flight} in flight per worker, {args.item_parts} parts held at once")
    print(f"machine: {os.cpu_count()} cores; {server.describe()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for workers in counts:
            rows.append(one_shape(server, workers, args, Path(folder)))
            row = rows[-1]
            print(
                f"  {workers} worker(s): {row['items_per_second']:,.0f} items/s between first and last result, wall {row['wall']:.1f}s; "
                f"items by worker {row['shares']}; worker CPU {[round(c, 1) for c in row['worker_cpu']]}s; PostgreSQL CPU {row['server_cpu']:.1f}s",
                flush=True,
            )
    base = rows[0]["items_per_second"]
    print("\nworkers  items/s  × one worker  of ideal  results (distinct)  status")
    for row in rows:
        ideal = row["workers"] * in_flight / args.latency
        print(
            f"{row['workers']:>7}  {row['items_per_second']:>7,.0f}  {row['items_per_second'] / base:>12.2f}  {row['items_per_second'] / ideal:>7.0%}  "
            f"{row['results']:>7,} ({row['distinct']:,})  {row['status']}"
        )
    print("targets: 2 workers >= 1.8 x one, 4 workers >= 3 x one, where the cores allow")


if __name__ == "__main__":
    main()
