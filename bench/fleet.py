"""Fleet benchmark: many threads through `agent worker` against what a LangGraph user does today.

    .venv/bin/python bench/fleet.py            # 10,000 threads, 10 s a model call (long; a quiet machine)
    .venv/bin/python bench/fleet.py --quick    # 200 threads, 1 s a model call, for a smoke test
    .venv/bin/python bench/fleet.py --postgres --threads 2000 --latency 2   # the same on PostgreSQL

N threads of bench/fleet_graph.py (five model steps, each one call of the offline model with a
fixed latency, the model chosen by the run settings) through, in one invocation:

(a) the fleet: N threads queued with `runtime.submit_run`, then one `agent worker --concurrency N
    --until-idle` process; then, on a fresh database, two worker processes of concurrency N/2;
(b) one process, `asyncio.gather` of N `graph.ainvoke` on the stock `AsyncSqliteSaver`,
    `durability="sync"` (bench/fleet_baselines.py);
(c) the same gather on `InMemorySaver`: the floor.

With `--postgres [URL]` (the server: URL, else AGENT_TEST_POSTGRES, else the local one) every
shape runs on PostgreSQL instead: the workers take the runs as Procrastinate jobs, and (b) is
LangGraph's `AsyncPostgresSaver` as its documentation opens it (`from_conn_string`, `setup()`).

Each shape runs in processes of its own on a fresh database: a new file, or a new PostgreSQL
database with a random name, dropped after (bench/fleet_storage.py). For each: wall time and its
ratio to the ideal (steps x latency), model steps a second, peak RSS and RSS per concurrent
thread, checkpoint save latency p50 / p99 (from a checkpoint's creation to its put returning:
the worker's --stats file for (a), a wrapped `aput` for (b) and (c)), and CPU time per step.

RSS per thread: for (b) and (c), the peak (VmHWM) minus the RSS just before the gather (after a
warm-up thread on a model that does not wait), over N; for (a), the worker's peak (ru_maxrss
from wait4) minus that of an idle worker (one that ran a single thread on a model that does not
wait, measured once), over N. CPU per step: (b) and (c) the process's CPU during the gather;
(a) the worker's CPU (wait4) minus the idle worker's; over N x steps.

Then the fleet with one worker is killed (`kill -9` of its process group) when half of all steps
are checkpointed, a new worker is started, and the bench reports the seconds from its start
until every unfinished thread runs again (or has finished), and how many completed steps ran
twice (two checkpoints of one step on one thread; target 0). The lease is AGENT_LEASE_SECONDS's
default (30 s) on both backends; on PostgreSQL it bounds the takeover from below: a dead
worker's Procrastinate jobs are handed back once its heartbeat is that old. Figures are
printed, never asserted, with the targets beside them; bench/README.md records them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")

import runtime  # noqa: E402
from bench.checkpointer import machine  # noqa: E402
from bench.fleet_storage import PostgresServer, SqliteFiles, default_server  # noqa: E402

GRAPH_FILE = ROOT / "bench" / "fleet_graph.py"
GRAPH_SPEC = f"{GRAPH_FILE}:build"
COMPLETED_STEP_RERUNS = (
    "SELECT count(*) FROM (SELECT thread_id, {step} FROM checkpoints WHERE checkpoint_ns = '' "
    "GROUP BY thread_id, {step} HAVING count(*) > 1) AS twice"
)
STEPS_CHECKPOINTED = "SELECT count(*) FROM checkpoints WHERE checkpoint_ns = '' AND {step} >= 1"
COMPLETED = "SELECT count(*) FROM agent_threads WHERE status = 'completed'"
RUNNING_ELSEWHERE = "SELECT count(*) FROM agent_threads WHERE status = 'running' AND (owner_pid IS NULL OR owner_pid <> {param})"
"""Threads claimed by a live runner: any owner but the dead one."""


@dataclass
class Shape:
    name: str
    threads: int
    steps: int
    wall: float
    peak_kb: float
    base_kb: float
    save_p50: float
    save_p99: float
    cpu_seconds: float
    note: str = ""
    wall_after_start: float | None = None
    """(a): from the first worker's own start (its stats' started_at: interpreter start-up and
    imports left out, as the gathers' wall leaves them out) to the last one's exit."""

    @property
    def kb_per_thread(self) -> float:
        return (self.peak_kb - self.base_kb) / self.threads


@dataclass
class Process:
    """A process we started, in its own process group, and what wait4 said when it ended."""

    popen: subprocess.Popen
    started: float
    ended: float | None = None
    ended_epoch: float | None = None
    returncode: int | None = None
    maxrss_kb: int = 0
    cpu_seconds: float = 0.0

    def reap(self, block: bool) -> bool:
        """Whether it has ended (reaped with wait4, which gives its peak RSS and CPU time)."""
        if self.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.popen.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.ended, self.ended_epoch = time.monotonic(), time.time()
        self.returncode = self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.maxrss_kb, self.cpu_seconds = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        return True

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # its own group: start_new_session
            except ProcessLookupError:
                pass
            self.reap(block=True)


Storage = SqliteFiles | PostgresServer

STARTED: list[Process] = []
"""Every process this bench started, so an interrupted run leaves none behind."""


def agent_env(db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "OPENAI_"))}
    # An unattended worker imports only built-in graphs and those listed here.
    env.update(AGENT_DB=str(db), AGENT_TRUSTED_GRAPHS=str(GRAPH_FILE), COLUMNS="200")
    return env


def start(args: list[str], db: str, log: Path) -> Process:
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=agent_env(db), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    process = Process(popen, time.monotonic())
    STARTED.append(process)
    return process


def start_worker(db: str, concurrency: int, stats: Path) -> Process:
    args = ["-m", "cli", "worker", "--concurrency", str(concurrency), "--until-idle", "--stats", str(stats)]
    return start(args, db, stats.with_suffix(".log"))


def wait(process: Process, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not process.reap(block=False):
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"{what} did not finish within {timeout:.0f} s; its log: {tail(log)}")
        time.sleep(0.05)
    if process.returncode != 0:
        raise SystemExit(f"{what} exited {process.returncode}; its log: {tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else "(none)"


def submit_run():
    """The fleet's Python submit, or None on a tree without the fleet. Looked for in the public
    API first; the fleet's module otherwise (it is not listed in `runtime._PUBLIC` yet)."""
    found = getattr(runtime, "submit_run", None)
    if found is None:
        try:
            from runtime.fleet.queue import submit_run as found
        except ImportError:
            return None
    return found


def submit(db: str, threads: int, steps: int, model: str, prefix: str = "t") -> float:
    """Queue `threads` runs in-process; seconds per submit."""
    settings, submit_one = runtime.RunSettings(model=model), submit_run()
    with runtime.open_database(db, create=True) as database:
        started = time.perf_counter()
        for i in range(threads):
            submit_one(database, GRAPH_SPEC, f"{prefix}{i}", {"topic": f"topic {i}", "steps": steps}, settings, priority=0)
        return (time.perf_counter() - started) / threads


# -- (a) the fleet --------------------------------------------------------------------------------


@dataclass
class Idle:
    maxrss_kb: int
    cpu_seconds: float


def idle_worker(work: Path, storage: Storage, concurrency: int, steps: int) -> Idle:
    """A worker that ran one thread on a model that does not wait: everything imported and
    built, no threads' worth of memory."""
    stats = work / "idle.stats.json"
    with storage.fresh("idle") as db:
        submit(db, 1, steps, "offline", prefix="idle")
        process = start_worker(db, concurrency, stats)
        wait(process, 300, "the idle worker", stats.with_suffix(".log"))
    return Idle(process.maxrss_kb, process.cpu_seconds)


def run_fleet(work: Path, storage: Storage, threads: int, steps: int, latency: float, workers: int, idle: Idle) -> tuple[Shape, float]:
    """(a) with `workers` processes sharing the threads; also seconds per in-process submit."""
    with storage.fresh(f"fleet-{workers}") as db:
        return fleet_on(db, work, storage, threads, steps, latency, workers, idle)


def fleet_on(db: str, work: Path, storage: Storage, threads: int, steps: int, latency: float, workers: int, idle: Idle) -> tuple[Shape, float]:
    per_submit = submit(db, threads, steps, f"offline:latency={latency:g}")
    concurrency = -(-threads // workers)
    stats = [work / f"fleet-{workers}-{i}.stats.json" for i in range(workers)]
    processes = [start_worker(db, concurrency, s) for s in stats]
    for process, s in zip(processes, stats):
        wait(process, max(300, 20 * steps * latency), f"a worker of {workers}", s.with_suffix(".log"))
    figures = [json.loads(s.read_text()) for s in stats]
    done = storage.read_one(db, COMPLETED)
    saves = [f["save_latency_ms"] for f in figures]
    note = (
        f"threads completed {done}/{threads}; stats: steps {sum(f['steps'] for f in figures)}, "
        f"saves {sum(s['count'] for s in saves)}, max running {'+'.join(str(f['max_running']) for f in figures)}, "
        f"CPU {'+'.join(format(f['cpu_seconds'], '.1f') for f in figures)} s"
    )
    most = sum(f["max_running"] for f in figures)
    if most < threads:  # KB/thread is over N; fewer ran at once
        extra = sum(p.maxrss_kb for p in processes) - workers * idle.maxrss_kb
        note += f"; over the most running at once ({most:,} of {threads:,}): {extra / most:.1f} KB a thread"
    if workers > 1:
        note += "; save latency: the worst worker's p50 and p99"
    shape = Shape(
        f"(a) fleet, {workers} worker{'s' if workers > 1 else ''} x {concurrency}", threads, threads * steps,
        max(p.ended for p in processes) - min(p.started for p in processes),
        sum(p.maxrss_kb for p in processes), workers * idle.maxrss_kb,
        max(s["p50"] or float("nan") for s in saves), max(s["p99"] or float("nan") for s in saves),
        sum(p.cpu_seconds for p in processes) - workers * idle.cpu_seconds, note,
        max(p.ended_epoch for p in processes) - min(f["started_at"] for f in figures),
    )  # fmt: skip
    return shape, per_submit


@dataclass
class Recovery:
    steps_at_kill: int
    unfinished: int
    seconds: float | None
    """From the new worker's start until every unfinished thread ran again; None: never."""

    reruns: int
    completed: int
    """Threads completed once the new worker went idle (of all N)."""


def kill_and_recover(work: Path, storage: Storage, threads: int, steps: int, latency: float) -> Recovery:
    with storage.fresh("kill") as db:
        return kill_on(db, work, storage, threads, steps, latency)


def kill_on(db: str, work: Path, storage: Storage, threads: int, steps: int, latency: float) -> Recovery:
    submit(db, threads, steps, f"offline:latency={latency:g}")
    first = start_worker(db, threads, work / "kill-1.stats.json")
    # The input and start checkpoints of every thread, then one a step; polled cheaply
    # (storage.progress), on the same two cores as the worker; the exact count is taken at the kill.
    half_way = 2 * threads + threads * steps / 2
    deadline = time.monotonic() + max(300, 20 * steps * latency)
    while storage.read_one(db, storage.progress) < half_way:
        if first.reap(block=False) or time.monotonic() > deadline:
            first.kill()
            raise SystemExit(f"the worker ended or stalled before half-way; its log: {tail(work / 'kill-1.stats.log')}")
        time.sleep(min(0.1, latency / 50))
    first.kill()
    at_kill = storage.read_one(db, STEPS_CHECKPOINTED)
    done_at_kill = storage.read_one(db, COMPLETED)
    unfinished = threads - done_at_kill
    second = start_worker(db, threads, work / "kill-2.stats.json")
    # Running again: claimed by a live runner, or already finished.
    seconds = None
    while seconds is None and not second.reap(block=False):
        if storage.read_one(db, RUNNING_ELSEWHERE, first.popen.pid) + storage.read_one(db, COMPLETED) - done_at_kill >= unfinished:
            seconds = time.monotonic() - second.started
        elif time.monotonic() - second.started > max(300, 20 * steps * latency):
            break
        else:
            time.sleep(0.05)
    wait(second, max(300, 20 * steps * latency), "the worker after the kill", work / "kill-2.stats.log")
    if seconds is None and storage.read_one(db, COMPLETED) == threads:
        seconds = second.ended - second.started  # finished before a poll saw them running
    return Recovery(at_kill, unfinished, seconds, storage.read_one(db, COMPLETED_STEP_RERUNS), storage.read_one(db, COMPLETED))


def cli_submit_median(storage: Storage, latency: float, calls: int = 20) -> float:
    with storage.fresh("cli-submit") as db:
        runtime.open_database(db, create=True).close()
        times = []
        for i in range(calls):
            args = ["-m", "cli", "submit", GRAPH_SPEC, "--thread", f"cli{i}", "--input", '{"topic": "cli"}', "--model", f"offline:latency={latency:g}"]
            started = time.perf_counter()
            result = subprocess.run([sys.executable, *args], cwd=ROOT, env=agent_env(db), capture_output=True, text=True)
            times.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"agent submit failed ({result.returncode}): {result.stderr}")
    return statistics.median(times)


# -- (b) and (c) ----------------------------------------------------------------------------------


def run_gather(work: Path, storage: Storage, saver: str, threads: int, steps: int, latency: float) -> Shape:
    """(b) on the backend's stock saver (`storage.stock`), or (c) with `saver` "memory"."""
    if saver == "memory":
        return gather_on(None, work, saver, "(c) gather, InMemorySaver", threads, steps, latency)
    with storage.fresh(f"gather-{saver}") as db:
        return gather_on(db, work, saver, f"(b) gather, {storage.stock[1]}", threads, steps, latency)


def gather_on(db: str | None, work: Path, saver: str, name: str, threads: int, steps: int, latency: float) -> Shape:
    args = [str(ROOT / "bench" / "fleet_baselines.py"), saver, "--threads", str(threads), "--latency", f"{latency:g}", "--steps", str(steps)]
    if db is not None:
        args += ["--db", db]
    log = work / f"gather-{saver}.log"
    out = work / f"gather-{saver}.json"
    with open(out, "wb") as stdout, open(log, "wb") as stderr:
        popen = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True)
    process = Process(popen, time.monotonic())
    STARTED.append(process)
    wait(process, max(600, 50 * steps * latency), f"the {saver} gather", log)
    f = json.loads(out.read_text().strip().splitlines()[-1])
    saves = f["save_latency_ms"]
    return Shape(
        name, threads, f["steps"], f["wall"], f["rss_peak_kb"], f["rss_before_kb"], saves["p50"], saves["p99"],
        f["cpu_seconds"], f"saves {saves['count']}; process wall {process.ended - process.started:.1f} s",
    )  # fmt: skip


# -- report ---------------------------------------------------------------------------------------


def table(rows: list[Shape], ideal: float) -> list[str]:
    lines = [
        f"{'shape':<32} {'wall s':>7} {'x ideal':>7} {'steps/s':>8} {'peak RSS MB':>11} {'KB/thread':>9} "
        f"{'save p50 ms':>11} {'save p99 ms':>11} {'CPU ms/step':>11}"
    ]
    for s in rows:
        lines.append(
            f"{s.name:<32} {s.wall:>7.1f} {s.wall / ideal:>7.2f} {s.steps / s.wall:>8.1f} {s.peak_kb / 1024:>11.1f} "
            f"{s.kb_per_thread:>9.1f} {s.save_p50:>11.1f} {s.save_p99:>11.1f} {s.cpu_seconds / s.steps * 1000:>11.2f}"
        )
    lines.append("")
    lines += [f"  {s.name}: {s.note}" for s in rows if s.note]
    return lines


def targets(fleet: list[Shape], floor: Shape | None, recovery: Recovery | None) -> list[str]:
    checks: list[tuple[str, float | None, float]] = []
    for s in fleet:
        if floor is not None:
            own = "" if s.wall_after_start is None else f" (from the worker's own start: {s.wall_after_start / floor.wall:.2f})"
            checks.append((f"{s.name}: wall / (c)'s wall <= 1.2{own}", s.wall / floor.wall, 1.2))
        checks.append((f"{s.name}: RSS per concurrent thread <= 100 KB", s.kb_per_thread, 100))
        checks.append((f"{s.name}: save p99 <= 20 ms", s.save_p99, 20))
    if recovery is not None:
        checks.append(("after kill -9: every unfinished thread running again within 15 s", recovery.seconds, 15))
        checks.append(("after kill -9: completed steps run twice = 0", recovery.reruns, 0))
    lines = ["targets for (a):" if checks else "targets for (a): nothing to compare without the fleet"]
    for name, value, bound in checks:
        ok = value is not None and value <= bound
        shown = "never" if value is None else f"{value:,.2f}"
        lines.append(f"  {'met   ' if ok else 'MISSED'} {name}: {shown} (bound {bound:g})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="threads N (default 10,000; 200 with --quick)")
    parser.add_argument("--latency", type=float, help="seconds each model call takes (default 10; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=5, help="model steps a thread")
    parser.add_argument("--quick", action="store_true", help="200 threads, 1 s a model call")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 run")
    parser.add_argument(
        "--postgres", nargs="?", const=default_server(), metavar="URL",
        help="run every shape on PostgreSQL: a new database a shape on this server (default: AGENT_TEST_POSTGRES, "
        "else postgresql://postgres@127.0.0.1:5432/postgres), whose role may create databases",
    )  # fmt: skip
    args = parser.parse_args()
    threads = args.threads or (200 if args.quick else 10_000)
    latency = args.latency if args.latency is not None else (1.0 if args.quick else 10.0)
    ideal = args.steps * latency
    work = Path(tempfile.mkdtemp(prefix="agent-bench-fleet-"))
    storage = SqliteFiles(work) if args.postgres is None else PostgresServer(args.postgres)
    print(machine())
    print(f"database: {storage.describe()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{threads:,} threads of {args.steps} model steps, offline:latency={latency:g}: ideal wall {ideal:g} s (steps x latency)", flush=True)
    try:
        measure(work, storage, threads, args.steps, latency, ideal, kill=not args.no_kill)
    finally:
        for process in STARTED:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, storage: Storage, threads: int, steps: int, latency: float, ideal: float, kill: bool) -> None:
    rows: list[Shape] = []
    for saver in ("memory", storage.stock[0]):
        print(f"running the {saver} gather ...", flush=True)
        rows.append(run_gather(work, storage, saver, threads, steps, latency))
    floor = rows[0]
    fleet: list[Shape] = []
    recovery, per_submit, cli = None, None, None
    if submit_run() is not None:
        print("running an idle worker ...", flush=True)
        idle = idle_worker(work, storage, threads, steps)
        for workers in (1, 2):
            print(f"running the fleet, {workers} worker(s) ...", flush=True)
            shape, per_submit = run_fleet(work, storage, threads, steps, latency, workers, idle)
            fleet.append(shape)
        if kill:
            print("running the fleet, kill -9 at half-way ...", flush=True)
            recovery = kill_and_recover(work, storage, threads, steps, latency)
        cli = cli_submit_median(storage, latency)
    else:
        print("(a) skipped: this tree has no fleet yet (runtime.submit_run)")
    print()
    print("\n".join(table(fleet + rows[::-1], ideal)))
    if per_submit is not None:
        print(f"submit: runtime.submit_run {per_submit * 1000:.2f} ms a thread (in-process, {threads:,} threads); "
              f"agent submit {cli:.3f} s a call (whole process, median of 20)")
    if recovery is not None:
        shown = "never" if recovery.seconds is None else f"{recovery.seconds:.2f} s"
        print(f"kill -9 of the one worker at {recovery.steps_at_kill:,} of {threads * steps:,} steps checkpointed, "
              f"{recovery.unfinished:,} threads unfinished: all running again {shown} after the new worker started; "
              f"completed steps run twice: {recovery.reruns}; threads completed in the end {recovery.completed:,}/{threads:,}")
    print()
    print("\n".join(targets(fleet, floor, recovery)))


if __name__ == "__main__":
    main()
