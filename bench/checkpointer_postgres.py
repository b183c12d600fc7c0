"""Checkpointer benchmark on PostgreSQL: our runs against LangGraph's AsyncPostgresSaver, in one run.

    .venv/bin/python bench/checkpointer_postgres.py                 # the full run (about 12 minutes)
    .venv/bin/python bench/checkpointer_postgres.py --quick         # a smoke test
    .venv/bin/python bench/checkpointer_postgres.py --url postgresql://USER@HOST:5432/postgres

The server is --url, else AGENT_TEST_POSTGRES, else the local one (trust authentication); its role
must be allowed to create databases: every measurement runs on a new database of its own, with a
random name, dropped after. Prints medians and ratios measured in the same invocation, the
configurations of a round in a shuffled order (the machines are shared and noisy, so only ratios
from one run compare). Figures are printed, never asserted; bench/README.md records them.

1. Per-step cost of one thread of the 1,000-step loop (bench/loop_graph.py), async,
   `durability="sync"`, µs per step:
   - agent_run: `run_thread`, what `agent run GRAPH --db postgresql://...` calls (the registry,
     the lease, spend, the heartbeat, the run's streams, on the saver and store a run opens);
   - ours: the same saver and store (`PostgresDatabase.open_async`: a connection pool, fencing),
     the graph compiled on them and `ainvoke`d with the thread's lease in its config;
   - ours_unfenced: the same without the lease (LangGraph's statements alone, over the pool);
   - stock: LangGraph's AsyncPostgresSaver as its documentation shows it: `from_conn_string`,
     `setup()`, the graph compiled with it, `ainvoke`;
   - memory: InMemorySaver.
2. Many threads at once on one event loop: `--threads` threads of the 5-step graph
   (bench/fleet_graph.py, the offline model with `--latency` seconds a call), gathered; steps a
   second:
   - agent_runs: a RunHost and a Drive per thread, as `agent worker` drives its threads;
   - ours: our saver over its pool, fenced, `ainvoke` per thread;
   - ours_unfenced: the same without the leases;
   - stock_conn: `from_conn_string` (one connection, and the saver's lock around every call);
   - stock_pool: AsyncPostgresSaver over an AsyncConnectionPool of the same size as ours, as
     LangGraph documents it (the lock is still taken around every call);
   - memory: InMemorySaver.
3. What a step sends, per step of each variant of sections 1 and 2 (untimed): transactions (the
   database's `xact_commit`; each that writes is a WAL flush with `synchronous_commit=on`), and
   from libpq's protocol trace of every connection the run opens, its round trips, the
   statements parsed and the statements completed by kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

import psycopg  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

from bench import fleet_graph, loop_graph  # noqa: E402
from bench.pg_protocol import STATEMENT_KINDS, messages, traced_connections  # noqa: E402
from runtime import make_model, open_database, run_thread  # noqa: E402
from runtime.policy.settings import RunSettings  # noqa: E402
from runtime.runs.drive import Drive  # noqa: E402
from runtime.runs.host import RunHost  # noqa: E402
from runtime.runs.plan import prepare_run  # noqa: E402
from runtime.store.postgres.database import POOL_SIZE  # noqa: E402
from runtime.store.seam import LEASE_KEY  # noqa: E402
from runtime.threads import registry as threads  # noqa: E402
from state.context import RunContext  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
LOOP_SPEC = str(ROOT / "bench" / "loop_graph.py") + ":build"
FLEET_SPEC = str(ROOT / "bench" / "fleet_graph.py") + ":build"
STOCK_POOL_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
"""The connection settings LangGraph's documentation gives a pool for AsyncPostgresSaver."""


class Timing(NamedTuple):
    """One measurement: wall seconds, and this process's CPU seconds (all its threads) meanwhile."""

    wall: float
    cpu: float


class Stopwatch:
    """Wall and CPU time from its making to `stop()`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        return Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


# -- databases ----------------------------------------------------------------------------------


def database_url(server: str, name: str) -> str:
    """The URL of database `name` on the server of `server` (a postgresql:// URL)."""
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on the server (its URL), dropped with any connection left to it."""
    name = f"agent_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def commits(server: str, url: str) -> int:
    """Transactions committed in the database of `url` so far (the server's statistics)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server, autocommit=True) as admin:
        return admin.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()[0]


def leased(db: Any, thread_ids: list[str]) -> dict[str, int]:
    """Register each thread as a run does, leased to this process; its lease."""
    return {t: threads.create_thread(db, t, "bench", "1", {}).lease for t in thread_ids}


# -- 1. one thread, per step --------------------------------------------------------------------


def loop_config(thread: str, steps: int, lease: int | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread}
    if lease is not None:
        configurable[LEASE_KEY] = lease
    return {"configurable": configurable, "recursion_limit": steps * 3}


async def timed_loop(graph: Any, config: dict[str, Any], steps: int) -> Timing:
    watch = Stopwatch()
    final = await graph.ainvoke({"n": 0, "limit": steps}, config, durability="sync")
    timing = watch.stop()
    assert final["n"] == steps, final
    return timing


def loop_memory(url: str | None, steps: int) -> Timing:
    graph = loop_graph.build().compile(checkpointer=InMemorySaver())
    return asyncio.run(timed_loop(graph, loop_config("t", steps), steps))


def loop_stock(url: str, steps: int) -> Timing:
    async def run() -> Timing:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            graph = loop_graph.build().compile(checkpointer=saver)
            return await timed_loop(graph, loop_config("t", steps), steps)

    return asyncio.run(run())


def loop_ours(url: str, steps: int, fenced: bool = True) -> Timing:
    with open_database(url) as db:
        lease = leased(db, ["t"])["t"] if fenced else None

        async def run() -> Timing:
            async with db.open_async() as (saver, store):
                graph = loop_graph.build().compile(checkpointer=saver, store=store)
                return await timed_loop(graph, loop_config("t", steps, lease), steps)

        return asyncio.run(run())


def loop_agent_run(url: str, steps: int) -> Timing:
    with open_database(url) as db:
        watch = Stopwatch()
        outcome = run_thread(db, LOOP_SPEC, "t", {"limit": steps})
        timing = watch.stop()
    assert outcome.status == "completed" and outcome.values["n"] == steps, outcome
    return timing


PER_STEP: dict[str, Callable[[str | None, int], Timing]] = {
    "agent_run": loop_agent_run,
    "ours": loop_ours,
    "ours_unfenced": lambda url, steps: loop_ours(url, steps, fenced=False),
    "stock": loop_stock,
    "memory": loop_memory,
}


# -- 2. many threads at once --------------------------------------------------------------------


def fleet_input(i: int, steps: int) -> dict[str, Any]:
    return {"topic": f"topic {i}", "steps": steps}


async def timed_gather(graph: Any, n: int, steps: int, model_spec: str, leases: dict[str, int] | None = None) -> Timing:
    context = RunContext(model=make_model(model_spec), model_spec=model_spec)

    def config(i: int) -> dict[str, Any]:
        configurable: dict[str, Any] = {"thread_id": f"t{i}"}
        if leases is not None:
            configurable[LEASE_KEY] = leases[f"t{i}"]
        return {"configurable": configurable}

    watch = Stopwatch()
    finals = await asyncio.gather(
        *(graph.ainvoke(fleet_input(i, steps), config(i), context=context, durability="sync") for i in range(n))
    )
    timing = watch.stop()
    assert all(final["done"] == steps for final in finals), "a thread did not finish its steps"
    return timing


def many_memory(url: str | None, n: int, steps: int, model_spec: str) -> Timing:
    graph = fleet_graph.build().compile(checkpointer=InMemorySaver())
    return asyncio.run(timed_gather(graph, n, steps, model_spec))


def many_stock_conn(url: str, n: int, steps: int, model_spec: str) -> Timing:
    async def run() -> Timing:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            await saver.setup()
            return await timed_gather(fleet_graph.build().compile(checkpointer=saver), n, steps, model_spec)

    return asyncio.run(run())


def many_stock_pool(url: str, n: int, steps: int, model_spec: str) -> Timing:
    async def run() -> Timing:
        async with AsyncConnectionPool(url, max_size=POOL_SIZE, kwargs=STOCK_POOL_KWARGS, open=False) as pool:
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            return await timed_gather(fleet_graph.build().compile(checkpointer=saver), n, steps, model_spec)

    return asyncio.run(run())


def many_ours(url: str, n: int, steps: int, model_spec: str, fenced: bool = True) -> Timing:
    with open_database(url) as db:
        leases = leased(db, [f"t{i}" for i in range(n)]) if fenced else None

        async def run() -> Timing:
            async with db.open_async() as (saver, store):
                graph = fleet_graph.build().compile(checkpointer=saver, store=store)
                return await timed_gather(graph, n, steps, model_spec, leases)

        return asyncio.run(run())


def many_agent_runs(url: str, n: int, steps: int, model_spec: str) -> Timing:
    """N runs driven at once in one process as the fleet worker drives them (its claiming aside):
    each planned and leased first, then all driven on one RunHost."""
    with open_database(url) as db:
        settings = RunSettings(model=model_spec)
        plans = []
        for i in range(n):
            plan = prepare_run(FLEET_SPEC, f"t{i}", fleet_input(i, steps), settings)
            record = threads.create_thread(db, plan.thread_id, plan.spec.spec, plan.spec.version, plan.settings.as_dict())
            plans.append(replace(plan, lease=record.lease))

        async def run() -> Timing:
            async with RunHost(db) as host:
                watch = Stopwatch()
                outcomes = await asyncio.gather(*(Drive(db, plan, None, host).run(handle_signals=False) for plan in plans))
                timing = watch.stop()
            assert all(o.status == "completed" and o.steps == steps for o in outcomes), [o for o in outcomes if o.status != "completed"][:1]
            return timing

        return asyncio.run(run())


MANY: dict[str, Callable[[str | None, int, int, str], Timing]] = {
    "agent_runs": many_agent_runs,
    "ours": many_ours,
    "ours_unfenced": lambda url, n, steps, model_spec: many_ours(url, n, steps, model_spec, fenced=False),
    "stock_conn": many_stock_conn,
    "stock_pool": many_stock_pool,
    "memory": many_memory,
}


# -- rounds -------------------------------------------------------------------------------------


def on_fresh_database(server: str, name: str, measure: Callable[[str | None], Timing]) -> Timing:
    if name.startswith("memory"):
        return measure(None)
    with fresh_database(server) as url:
        return measure(url)


def rounds_of(server: str, variants: dict[str, Callable[[str | None], Timing]], rounds: int, seed: int) -> dict[str, list[Timing]]:
    """Seconds of each variant, once per round, the order shuffled each round."""
    samples: dict[str, list[Timing]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(seed)
    for r in range(rounds):
        shuffle.shuffle(order)  # a fixed order would give one variant the same neighbours every round
        for name in order:
            samples[name].append(on_fresh_database(server, name, variants[name]))
        print(f"   round {r + 1}/{rounds} done", file=sys.stderr)
    return samples


def walls(samples: dict[str, list[Timing]], name: str) -> list[float]:
    return [t.wall for t in samples[name]]


def report_ratios(samples: dict[str, list[Timing]], pairs: list[tuple[str, str]]) -> None:
    """Each ratio of wall times twice: of the medians, and the median over rounds of the ratio
    within a round (variants seconds apart, so a slow spell of the machine weighs on both)."""
    for top, bottom in pairs:
        of_medians = statistics.median(walls(samples, top)) / statistics.median(walls(samples, bottom))
        within = statistics.median(t / b for t, b in zip(walls(samples, top), walls(samples, bottom)))
        print(f"   {top} / {bottom}: {of_medians:.2f} of medians, {within:.2f} median within rounds")


# -- 3. what a step sends -----------------------------------------------------------------------


def what_a_step_sends(server: str, title: str, variants: dict[str, Callable[[str], Timing]], steps: int) -> None:
    """Transactions, round trips and statements per step of each variant, from its run of
    `steps` steps in all (untimed: the trace slows the client). What a run sends once (its
    opening, the threads' registration and leases, its end) is spread over its steps."""
    print(f"\n3. What a step sends: {title} (per step)")
    header = "".join(f"{k:>7}" for k in STATEMENT_KINDS)
    print(f"   {'configuration':<15} {'xacts':>6} {'trips':>6} {'parsed':>7} {'stmts':>6}{header} {'other':>6}")
    for name, measure in variants.items():
        with fresh_database(server) as url, tempfile.TemporaryDirectory(prefix="agent-bench-trace-") as folder:
            open_database(url).close()  # every table made (ours and LangGraph's) before the count starts
            before = settled_commits(server, url)
            with traced_connections(Path(folder)) as files:
                measure(url)
            counts = messages(files)
            committed = settled_commits(server, url) - before
        kinds = [counts[k] for k in STATEMENT_KINDS]
        total = sum(v for k, v in counts.items() if k not in ("round trips", "parsed"))
        row = "".join(f"{v / steps:7.2f}" for v in kinds)
        print(
            f"   {name:<15} {committed / steps:6.2f} {counts['round trips'] / steps:6.2f} {counts['parsed'] / steps:7.2f} "
            f"{total / steps:6.2f}{row} {(total - sum(kinds)) / steps:6.2f}"
        )


def settled_commits(server: str, url: str) -> int:
    """`commits` once the database's sessions have ended and their counts are in (a session
    reports them when it ends; the server publishes them a moment later)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server, autocommit=True) as admin:
        for _ in range(100):
            if not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]:
                break
            time.sleep(0.05)
    last = -1
    for _ in range(20):
        now = commits(server, url)
        if now == last:
            return now
        last = now
        time.sleep(0.25)
    return last


# -- the machine --------------------------------------------------------------------------------


def machine(server: str) -> str:
    import importlib.metadata as md

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    with psycopg.connect(server, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()[0]
        settings = ", ".join(f"{k}={admin.execute(f'SHOW {k}').fetchone()[0]}" for k in ("synchronous_commit", "shared_buffers"))
    names = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-postgres", "psycopg", "psycopg-pool")
    packages = ", ".join(f"{p} {md.version(p)}" for p in names)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{date.today()}; {os.cpu_count()} CPUs, {cpu}; load average {load}\n"
        f"PostgreSQL {version} ({settings}); Python {sys.version.split()[0]}; {packages}; our pool {POOL_SIZE} connections"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("AGENT_TEST_POSTGRES") or DEFAULT_SERVER, help="a server URL whose role may create databases")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    parser.add_argument("--rounds", type=int, help="rounds of sections 1 and 2 (default 7; 2 with --quick)")
    parser.add_argument("--steps", type=int, help="steps of the loop of section 1 (default 1,000; 200 with --quick)")
    parser.add_argument("--threads", type=int, help="threads of section 2 (default 200; 40 with --quick)")
    parser.add_argument("--latency", type=float, action="append", help="seconds a model call of section 2 takes, repeatable (default 0 and 0.1)")
    parser.add_argument("--only", choices=["1", "2", "3"], action="append", help="run only this section (repeatable)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 7)
    steps = args.steps or (200 if args.quick else 1_000)
    n = args.threads or (40 if args.quick else 200)
    latencies = args.latency or ([0.0] if args.quick else [0.0, 0.1])
    sections = set(args.only or ["1", "2", "3"])
    server = args.url
    print(machine(server))
    print("command: " + " ".join([".venv/bin/python bench/checkpointer_postgres.py", *sys.argv[1:]]))

    # One small run of each first, so that what the first run of a process imports and builds
    # lazily is not counted against whichever variant happens to come first.
    for name, measure in PER_STEP.items():
        on_fresh_database(server, name, lambda url: measure(url, 20))
    for name, gather in MANY.items():
        on_fresh_database(server, name, lambda url: gather(url, 5, 2, "offline"))

    if "1" in sections:
        print(f"\n1. Per-step cost, one thread of a {steps:,}-step loop, async, median of {rounds} rounds")
        samples = rounds_of(server, {name: (lambda url, m=measure: m(url, steps)) for name, measure in PER_STEP.items()}, rounds, seed=7)
        print(f"   {'configuration':<15} {'µs/step':>8} {'min':>7} {'max':>7} {'CPU µs/step':>12}")
        for name, timings in samples.items():
            per_step = [w / steps * 1e6 for w in walls(samples, name)]
            cpu = statistics.median(t.cpu for t in timings) / steps * 1e6
            print(f"   {name:<15} {statistics.median(per_step):8.0f} {min(per_step):7.0f} {max(per_step):7.0f} {cpu:12.0f}")
        report_ratios(samples, [(top, "stock") for top in ("agent_run", "ours", "ours_unfenced")] + [(top, "memory") for top in ("agent_run", "ours", "stock")])

    if "2" in sections:
        for seed, latency in enumerate(latencies, start=11):
            model_spec = f"offline:latency={latency:g}"
            print(f"\n2. {n} threads of the 5-step graph at once, one event loop, model {model_spec}, median of {rounds} rounds")
            samples = rounds_of(server, {name: (lambda url, g=gather: g(url, n, 5, model_spec)) for name, gather in MANY.items()}, rounds, seed=seed)
            print(f"   {'configuration':<15} {'steps/s':>8} {'min':>7} {'max':>7} {'wall s':>7} {'CPU ms/step':>12}")
            for name, timings in samples.items():
                rates = [n * 5 / w for w in walls(samples, name)]
                cpu = statistics.median(t.cpu for t in timings) / (n * 5) * 1e3
                wall = statistics.median(walls(samples, name))
                print(f"   {name:<15} {statistics.median(rates):8.0f} {min(rates):7.0f} {max(rates):7.0f} {wall:7.2f} {cpu:12.2f}")
            print("   ratios of wall times (lower is faster):")
            pairs = [("agent_runs", "stock_conn"), ("ours", "stock_conn"), ("ours", "stock_pool"), ("ours_unfenced", "stock_pool"), ("stock_pool", "stock_conn")]
            report_ratios(samples, pairs + [("ours", "memory")])

    if "3" in sections:
        loop_steps, few = (100, 10) if args.quick else (300, 20)
        one = {name: (lambda url, m=measure: m(url, loop_steps)) for name, measure in PER_STEP.items() if name != "memory"}
        what_a_step_sends(server, f"one thread of a {loop_steps}-step loop", one, loop_steps)
        many = {name: (lambda url, g=gather: g(url, few, 5, "offline")) for name, gather in MANY.items() if name != "memory"}
        what_a_step_sends(server, f"{few} threads of the 5-step graph at once", many, few * 5)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
