"""Serve benchmark: `agent serve` against `langgraph dev`, the same graph and client, one invocation.

    .venv/bin/python bench/serve.py --langgraph-dev ../langgraph-dev-env/bin/langgraph            # the full run
    .venv/bin/python bench/serve.py --langgraph-dev ../langgraph-dev-env/bin/langgraph --quick    # a smoke test
    LANGGRAPH_DEV=../langgraph-dev-env/bin/langgraph .venv/bin/python bench/serve.py --repeat 3

`langgraph dev` (LangGraph's in-memory development server) lives in an environment of its own,
never in this project's dependencies; the bench graph imports only LangGraph, which it brings:

    python3 -m venv ../langgraph-dev-env && ../langgraph-dev-env/bin/pip install 'langgraph-cli[inmem]'

Both servers serve bench/serve_graph.py (five nodes in a row, each stamping the time it finished),
each started as a subprocess in a process group of its own from a temporary folder holding a copy
of the graph and a langgraph.json naming it (so `langgraph dev` writes its `.langgraph_api/`
there): `agent serve --workers N --db <new file>` and `langgraph dev --no-browser --no-reload
--n-jobs-per-worker N`, both N runs at once (--workers, default 64). Both stay up for the whole
invocation and the measurements alternate between them, so the machine's noise falls on both;
each is stopped with SIGTERM at the end.

Then, with langgraph-sdk's async client (`get_client`), for each level of concurrent clients (1,
16, 64): each client loops `threads.create()` then `runs.wait(thread, graph, input)` until the
level's runs are done (after a warm-up); runs a second, p50 / p99 of create+wait, and the
server's CPU (its process group's) per run; the progress lines add the client's own CPU per run
and how busy the machine's cores were (other work on the machine included). Then the stream: runs streamed with
`stream_mode="updates"`, one at a time and 16 at once, and for every update the time from the
node's stamp to the client receiving it (one machine, one clock). Every run's final state (or
streamed updates) must show all five nodes, in order, for the run's own input; a run that does
not, or fails, is counted as wrong, printed, and makes the bench exit 1. With --repeat K every
level runs K times (servers alternating which goes first) and the tables show medians.

Both servers slow down as the runs they hold pile up (bench/README.md), so a level measured after
thousands of runs is not the same level on a new server: --fresh starts (and warms up) a new server
of each kind before every level.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
from langgraph_sdk import get_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serve_graph import NODES  # noqa: E402

GRAPH_FILE = ROOT / "bench" / "serve_graph.py"
GRAPH_ID = "five_steps"
AGENT = ROOT / ".venv" / "bin" / "agent"
START_DEADLINE = 90.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    folder: Path
    log: Path
    respawn: Callable[[], Server]
    """Start a new server of the same kind (a new folder, database and port)."""

    def cpu_seconds(self) -> float:
        """CPU time of every live process in the server's process group (user + system)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:  # pgrp; the server leads its own group
                total += int(fields[11]) + int(fields[12])
        return total / TICKS

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class Level:
    """One level's figures from one repetition."""

    runs_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_run: float
    client_cpu_ms_per_run: float = float("nan")
    machine_busy: float = float("nan")
    """Share of all the machine's cores busy during the level (other work on it included), in %."""
    wrong: int = 0


@dataclass
class Tally:
    wrong: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.wrong += 1
        if len(self.errors) < 3:
            self.errors.append(message)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_folder(parent: Path, name: str, extra: dict) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    shutil.copy(GRAPH_FILE, folder / GRAPH_FILE.name)
    config = {**extra, "graphs": {GRAPH_ID: f"./{GRAPH_FILE.name}:graph"}}
    (folder / "langgraph.json").write_text(json.dumps(config, indent=2))
    return folder


def start_ours(parent: Path, workers: int) -> Server:
    folder = server_folder(parent, "agent-serve", {})
    port = free_port()
    command = [str(AGENT), "serve", "--config", "langgraph.json", "--db", str(folder / "serve.db"), "--port", str(port), "--workers", str(workers)]
    return launch("agent serve", command, folder, port, dict(os.environ), lambda: start_ours(parent, workers))


def start_theirs(parent: Path, langgraph: str, workers: int) -> Server:
    folder = server_folder(parent, "langgraph-dev", {"dependencies": ["."]})
    port = free_port()
    command = [langgraph, "dev", "--no-browser", "--no-reload", "--config", "langgraph.json", "--port", str(port), "--n-jobs-per-worker", str(workers)]
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    return launch("langgraph dev", command, folder, port, env, lambda: start_theirs(parent, langgraph, workers))


def launch(name: str, command: list[str], folder: Path, port: int, env: dict, respawn: Callable[[], Server]) -> Server:
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(name, f"http://127.0.0.1:{port}", process, folder, log, respawn)
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode} before answering:\n{tail(log)}")
        try:
            if httpx.get(f"{server.url}/ok", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise SystemExit(f"{name} did not answer GET /ok within {START_DEADLINE:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def check_state(state, n: int) -> str | None:
    if not isinstance(state, dict):
        return f"final state is {type(state).__name__}: {str(state)[:200]}"
    if state.get("steps") != list(NODES) or state.get("n") != n or any(f"t_{node}" not in state for node in NODES):
        return f"run {n}: final state {json.dumps(state)[:300]}"
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def waited_runs(server: Server, clients: int, runs: int, tally: Tally, first: int = 0) -> Level:
    """`clients` loops of create thread + runs.wait until `runs` runs are done."""
    client = get_client(url=server.url)
    numbers = itertools.count(first)
    latencies: list[float] = []

    async def loop() -> None:
        while (n := next(numbers)) < first + runs:
            started = time.perf_counter()
            try:
                thread = await client.threads.create()
                state = await client.runs.wait(thread["thread_id"], GRAPH_ID, input={"n": n})
            except Exception as exc:  # a failed run counts as wrong, never as fast
                tally.fail(f"run {n}: {type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append(time.perf_counter() - started)
            if problem := check_state(state, n):
                tally.fail(problem)

    cpu, own, (busy, total) = server.cpu_seconds(), time.process_time(), machine_ticks()
    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    wall = time.perf_counter() - started
    cpu, own = server.cpu_seconds() - cpu, time.process_time() - own
    busy, total = (now - before for now, before in zip(machine_ticks(), (busy, total)))
    await client.aclose()
    if not latencies:
        return Level(0.0, float("nan"), float("nan"), float("nan"), wrong=tally.wrong)
    return Level(len(latencies) / wall, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, cpu / runs * 1e3,
                 own / runs * 1e3, busy / total * 100 if total else float("nan"), tally.wrong)


async def streamed_runs(server: Server, clients: int, runs: int, tally: Tally, first: int = 0) -> tuple[list[float], list[float]]:
    """Runs streamed with stream_mode="updates": each update's stamp-to-received seconds, and each run's seconds."""
    client = get_client(url=server.url)
    numbers = itertools.count(first)
    delays: list[float] = []
    whole: list[float] = []

    async def loop() -> None:
        while (n := next(numbers)) < first + runs:
            started = time.perf_counter()
            seen: list[str] = []
            try:
                thread = await client.threads.create()
                async for part in client.runs.stream(thread["thread_id"], GRAPH_ID, input={"n": n}, stream_mode="updates"):
                    received = time.time()
                    if part.event == "error":
                        raise RuntimeError(f"error event: {part.data}")
                    if part.event != "updates" or not isinstance(part.data, dict):
                        continue
                    for node, update in part.data.items():
                        stamp = (update or {}).get(f"t_{node}")
                        if stamp is not None:
                            delays.append(received - stamp)
                            seen.append(node)
            except Exception as exc:
                tally.fail(f"stream {n}: {type(exc).__name__}: {exc}"[:300])
                continue
            whole.append(time.perf_counter() - started)
            if seen != list(NODES):
                tally.fail(f"stream {n}: updates from {seen}")

    await asyncio.gather(*(loop() for _ in range(clients)))
    await client.aclose()
    return delays, whole


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def versions(langgraph: str) -> tuple[str, str]:
    import importlib.metadata as md

    ours = ", ".join(f"{p} {md.version(p)}" for p in ("langgraph", "langgraph-sdk", "uvicorn", "starlette"))
    python = Path(langgraph).parent / "python"
    probe = "import importlib.metadata as md; print(', '.join(f'{p} {md.version(p)}' for p in ('langgraph-cli', 'langgraph-api', 'langgraph-runtime-inmem', 'langgraph', 'uvicorn')))"
    try:
        theirs = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        theirs = "?"
    return ours, theirs or "?"


def idle_cpu(servers: list[Server], seconds: float = 3.0) -> dict[str, float]:
    before = {s.name: s.cpu_seconds() for s in servers}
    time.sleep(seconds)
    return {s.name: (s.cpu_seconds() - before[s.name]) / seconds * 100 for s in servers}


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


async def measure(servers: list[Server], args) -> int:
    """Every level on every server; with --fresh each level on a server just started (`servers` is
    kept current, so the caller stops the ones left running)."""
    levels = list(zip(args.clients, args.runs))
    tallies = {s.name: Tally() for s in servers}
    counters = {s.name: itertools.count(0, 100_000) for s in servers}

    async def warm(server: Server) -> None:
        await waited_runs(server, 16, args.warmup, tallies[server.name], next(counters[server.name]))
        await streamed_runs(server, 1, 5, tallies[server.name], next(counters[server.name]))

    async def ready(index: int) -> Server:
        if args.fresh:
            old = servers[index]
            old.stop()
            servers[index] = old.respawn()
            shutil.rmtree(old.folder, ignore_errors=True)
            await warm(servers[index])
        return servers[index]

    print(f"warm-up: {args.warmup} runs at 16 clients and 5 streams on each" + (", again before every level (--fresh)" if args.fresh else ""), flush=True)
    for server in servers:
        await warm(server)
    for name, percent in idle_cpu(servers).items():
        print(f"{name} idle: {percent:.1f}% of a core", flush=True)

    results: dict[tuple[str, int], list[Level]] = {}
    stream: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for repeat in range(args.repeat):
        order = list(range(len(servers))) if repeat % 2 == 0 else list(range(len(servers)))[::-1]
        for clients, runs in levels:
            for index in order:
                server = await ready(index)
                tally = tallies[server.name]
                level = await waited_runs(server, clients, runs, tally, next(counters[server.name]))
                results.setdefault((server.name, clients), []).append(level)
                print(f"  [{repeat + 1}/{args.repeat}] {server.name:<13} {clients:>3} clients x {runs} runs: {level.runs_per_s:7.1f} runs/s, "
                      f"p50 {level.p50_ms:7.1f} ms, p99 {level.p99_ms:7.1f} ms, server CPU {level.cpu_ms_per_run:5.1f} ms/run, "
                      f"client CPU {level.client_cpu_ms_per_run:4.1f} ms/run, machine {level.machine_busy:3.0f}% busy, wrong {tally.wrong}", flush=True)
        for clients in args.stream_clients:
            for index in order:
                server = await ready(index)
                delays, whole = await streamed_runs(server, clients, args.stream_runs, tallies[server.name], next(counters[server.name]))
                figures = (percentile(delays, 0.5) * 1e3, percentile(delays, 0.99) * 1e3, percentile(whole, 0.5) * 1e3) if delays else (float("nan"),) * 3
                stream.setdefault((server.name, clients), []).append(figures)
                print(f"  [{repeat + 1}/{args.repeat}] {server.name:<13} stream, {clients:>3} at once x {args.stream_runs}: node->client p50 {figures[0]:.1f} ms, "
                      f"p99 {figures[1]:.1f} ms; run p50 {figures[2]:.1f} ms", flush=True)

    return report(servers, levels, results, stream, tallies, args)


def report(servers: list[Server], levels: list, results: dict, stream: dict, tallies: dict, args) -> int:
    """The tables of figures (medians of the repeats), and 1 if any run was wrong."""
    ours, theirs = (s.name for s in servers) if len(servers) == 2 else (servers[0].name, None)
    print(f"\nRuns: create thread + runs.wait, medians of {args.repeat}; ratio = agent serve / langgraph dev")
    if theirs:
        print("| clients | runs | ours runs/s | theirs runs/s | runs/s ratio | ours p50 ms | theirs p50 ms | ours p99 ms | theirs p99 ms | ours CPU ms/run | theirs CPU ms/run |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for clients, runs in levels:
        a = results[(ours, clients)]
        row = [median([x.runs_per_s for x in a]), median([x.p50_ms for x in a]), median([x.p99_ms for x in a]), median([x.cpu_ms_per_run for x in a])]
        if not theirs:
            print(f"| {clients} | {runs:,} | {fmt(row[0])} | {fmt(row[1])} | {fmt(row[2])} | {fmt(row[3])} |")
            continue
        b = results[(theirs, clients)]
        other = [median([x.runs_per_s for x in b]), median([x.p50_ms for x in b]), median([x.p99_ms for x in b]), median([x.cpu_ms_per_run for x in b])]
        print(f"| {clients} | {runs:,} | {fmt(row[0])} | {fmt(other[0])} | {fmt(row[0] / other[0], 2)} | {fmt(row[1])} | {fmt(other[1])} | "
              f"{fmt(row[2])} | {fmt(other[2])} | {fmt(row[3])} | {fmt(other[3])} |")

    print(f"\nStream (stream_mode=\"updates\"): node finished -> update received, {args.stream_runs} runs a level, medians of {args.repeat}")
    print("| streams at once | server | update p50 ms | update p99 ms | run p50 ms |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for clients in args.stream_clients:
        for server in servers:
            figures = stream[(server.name, clients)]
            print(f"| {clients} | {server.name} | " + " | ".join(fmt(median([f[i] for f in figures])) for i in range(3)) + " |")

    bad = 0
    for name, tally in tallies.items():
        if tally.wrong:
            bad += tally.wrong
            print(f"\n{name}: {tally.wrong} run(s) wrong or failed; the first:", *tally.errors, sep="\n  ")
    if not bad:
        print("\nEvery run's final state (and every stream's updates) had all five nodes, in order, for its own input.")
    return 1 if bad else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langgraph-dev", metavar="PATH", default=os.environ.get("LANGGRAPH_DEV"),
                        help="the `langgraph` executable of an environment with langgraph-cli[inmem] (env LANGGRAPH_DEV)")
    parser.add_argument("--only-ours", action="store_true", help="leave langgraph dev out (e.g. to profile agent serve)")
    parser.add_argument("--workers", type=int, default=64, help="runs at once on each server (agent serve --workers, langgraph dev --n-jobs-per-worker)")
    parser.add_argument("--clients", default="1,16,64", help="levels of concurrent clients (default 1,16,64)")
    parser.add_argument("--runs", default="100,800,800", help="runs at each level (default 100,800,800; one client waits out the queues' polls, 0.5-1 s a run)")
    parser.add_argument("--warmup", type=int, default=64, help="runs before measuring, on each server")
    parser.add_argument("--stream-runs", type=int, default=50, help="runs streamed at each stream level (default 50)")
    parser.add_argument("--stream-clients", default="1,16", help="streams at once (default 1,16)")
    parser.add_argument("--fresh", action="store_true", help="a newly started server (and warm-up) for every level, so no level runs on the runs before it")
    parser.add_argument("--repeat", type=int, default=1, help="repeat every level K times and show medians")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 20/160/160 runs, 20 streams, 16 warm-up runs")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.stream_runs, args.warmup = "20,160,160", 20, 16
    args.clients = [int(x) for x in args.clients.split(",")]
    args.runs = [int(x) for x in args.runs.split(",")]
    args.stream_clients = [int(x) for x in args.stream_clients.split(",")]
    if len(args.runs) != len(args.clients):
        parser.error("--runs needs one number per --clients level")
    if not args.only_ours and not (args.langgraph_dev and Path(args.langgraph_dev).is_file()):
        parser.error("--langgraph-dev PATH (or LANGGRAPH_DEV) must name the langgraph executable of an environment with "
                     "langgraph-cli[inmem]: python3 -m venv ../langgraph-dev-env && ../langgraph-dev-env/bin/pip install 'langgraph-cli[inmem]'")
    return args


def main() -> None:
    args = parse_args()
    from bench.checkpointer import machine

    ours_versions, theirs_versions = versions(args.langgraph_dev) if args.langgraph_dev else ("", "")
    print(machine())
    print(f"agent serve: {ours_versions}")
    if not args.only_ours:
        print(f"langgraph dev: {theirs_versions}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="agent-bench-serve-"))
    servers: list[Server] = []
    status = 1
    try:
        servers.append(start_ours(work, args.workers))
        if not args.only_ours:
            servers.append(start_theirs(work, args.langgraph_dev, args.workers))
        print(", ".join(f"{s.name} at {s.url}" for s in servers) + f"; {args.workers} runs at once on each", flush=True)
        status = asyncio.run(measure(servers, args))
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for server in servers:
            server.stop()
            if server.process.returncode not in (0, -signal.SIGTERM):
                print(f"{server.name} exited with {server.process.returncode}:\n{tail(server.log, 10)}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
