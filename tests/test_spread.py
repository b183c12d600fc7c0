"""One queue thread's items over every worker on PostgreSQL (runtime/fleet/spread.py), with real
worker processes and a real model server on 127.0.0.1 (tests/fake_openai.py).

Processes synchronise on the server's held requests and on rows; a time limit only bounds a test
that would otherwise hang.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from typing import Any

import pytest

from nodes.queue import chunk_size
from tests.conftest import ENDPOINT_MODEL, raw_connection
from tests.test_fleet import kill_hard, start_worker, submit  # noqa: F401  start_worker is a fixture
from tests.test_model_rpm import most_over_the_limit

BOTH_BACKENDS = True
pytestmark = pytest.mark.postgres_only

PROMPT = "Summarize: {item}"
LEASE = {"AGENT_LEASE_SECONDS": "3"}


def queue_input(count: int, tag: str = "item") -> dict[str, Any]:
    return {"items": [f"{tag}-{i}" for i in range(count)], "prompt": PROMPT}


def results(db_path: str, thread: str) -> list[tuple[str, dict, Any, Any]]:
    with raw_connection(db_path) as conn:
        return conn.execute("SELECT key, value, created_at, updated_at FROM store WHERE prefix = ? ORDER BY key", (f"results.{thread}",)).fetchall()


def status_of(run_agent, thread: str) -> dict[str, Any]:
    done = run_agent("status", "--thread", thread, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_four_workers_share_a_queue_and_a_worker_killed_mid_run_costs_only_its_items_in_flight(
    start_worker, endpoint, run_agent, db_path: str
) -> None:
    """2,000 items in parts of 8, 8 in flight per worker, on four workers. The server answers the
    first chunk's 512 requests (the run hands a chunk out once the one before has all its
    results), then holds every later one until 32 wait: each worker then has its 8 in flight,
    held. One worker that does not own the thread is killed with SIGKILL; the server lets the
    rest go."""
    total, concurrency, parts = 2000, 8, 2
    submit(db_path, {"big": queue_input(total)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=concurrency, max_attempts=1)
    endpoint.server.hold(after=chunk_size(concurrency))
    workers = [start_worker("--until-idle", "--debug", "--item-parts", str(parts), concurrency=1, **endpoint.env, **LEASE) for _ in range(4)]
    endpoint.server.wait_held(4 * concurrency)
    owner = next(w for w in workers for e in w.events() if e["event"] == "started")
    victim = next(w for w in workers if w is not owner)
    held_before = Counter(endpoint.server.held_prompts())
    kill_hard(victim)
    endpoint.server.release()
    for worker in workers:
        if worker is not victim:
            assert worker.finish() == 0, worker.output()

    rows = results(db_path, "big")
    assert [key for key, *_ in rows] == [f"{i:09d}" for i in range(total)]  # every item, once
    assert {value["status"] for _, value, *_ in rows} == {"done"}
    assert all(created == updated for _, _, created, updated in rows)  # no result replaced by another
    calls = Counter(request.prompt for request in endpoint.server.log())
    assert set(calls) == {PROMPT.replace("{item}", f"item-{i}") for i in range(total)}
    again = {prompt for prompt, n in calls.items() if n > 1}
    # Only the items the killed worker had in flight ran twice: at most its 8, each held then.
    assert 0 < len(again) <= concurrency and all(held_before[prompt] == 1 for prompt in again)
    shown = status_of(run_agent, "big")
    assert shown["status"] == "completed" and shown["progress"]["done"] == total and shown["progress"]["failed"] == 0


def test_the_owner_killed_mid_chunk_is_taken_over_and_its_parts_finish_once(start_worker, endpoint, run_agent, db_path: str) -> None:
    """Two workers; the one that drives the thread is killed with SIGKILL while both have their
    items held. The other takes the thread over, hands the chunk out again (a part whose job
    still waits is not deferred twice; the dead worker's running parts are handed back or
    dropped), and every item ends with one result; only the dead worker's in-flight items ran twice."""
    total, concurrency = 600, 4
    submit(db_path, {"owned": queue_input(total)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=concurrency, max_attempts=1)
    endpoint.server.hold(after=chunk_size(concurrency))  # the first chunk answered, the next one's first parts held whole
    workers = [start_worker("--until-idle", concurrency=1, **endpoint.env, **LEASE) for _ in range(2)]
    endpoint.server.wait_held(2 * concurrency)
    owner = next(w for w in workers for e in w.events() if e["event"] == "started")
    survivor = next(w for w in workers if w is not owner)
    kill_hard(owner)
    endpoint.server.release()
    assert survivor.finish() == 0, survivor.output()
    assert any(e["event"] == "taken_over" for e in survivor.events())

    rows = results(db_path, "owned")
    assert [key for key, *_ in rows] == [f"{i:09d}" for i in range(total)]
    assert all(created == updated for _, _, created, updated in rows)
    calls = Counter(request.prompt for request in endpoint.server.log())
    assert len(calls) == total and sum(n > 1 for n in calls.values()) <= concurrency
    shown = status_of(run_agent, "owned")
    assert shown["status"] == "completed" and shown["progress"]["done"] == total


def test_the_dead_letter_list_and_retry_failed_are_as_on_one_machine(start_worker, endpoint, run_agent, db_path: str) -> None:
    """Two items refused (400) on their first call: given up into the results with their error
    by whichever worker met them; `agent retry-failed --detach` sends only those two again, on the
    fleet, and each is replaced once by its new result (round 1)."""
    for bad in ("item-7", "item-13"):
        endpoint.server.on(match=bad, calls={1}, status=400)
    submit(db_path, {"letters": queue_input(40)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=4)
    for worker in [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]:
        assert worker.finish() == 0, worker.output()
    shown = status_of(run_agent, "letters")
    assert shown["status"] == "completed" and (shown["progress"]["done"], shown["progress"]["failed"]) == (38, 2)
    failed = run_agent("results", "--thread", "letters", "--status", "failed")
    dead = [json.loads(line) for line in failed.stdout.splitlines()]
    assert [(d["index"], d["item"]) for d in dead] == [(7, "item-7"), (13, "item-13")] and all("400" in d["error"] for d in dead)

    assert run_agent("retry-failed", "--thread", "letters", "--detach", **endpoint.env).returncode == 0
    for worker in [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]:
        assert worker.finish() == 0, worker.output()
    shown = status_of(run_agent, "letters")
    assert shown["status"] == "completed" and (shown["progress"]["done"], shown["progress"]["failed"]) == (40, 0)
    again = {key: value for key, value, *_ in results(db_path, "letters") if value.get("round")}
    assert sorted(again) == ["000000007", "000000013"]
    assert all(v["status"] == "done" and v["attempts"] == 2 and v["round"] == 1 for v in again.values())
    calls = Counter(request.prompt for request in endpoint.server.log())
    assert sorted(prompt for prompt, n in calls.items() if n > 1) == [PROMPT.replace("{item}", "item-13"), PROMPT.replace("{item}", "item-7")]


def test_an_owner_cut_off_from_the_database_is_taken_over_and_writes_nothing_when_it_comes_back(
    start_worker, endpoint, run_agent, db_path: str
) -> None:
    """Worker A reaches PostgreSQL through a proxy the test cuts while A's items of the second
    chunk are held at the server: A's lease lapses, worker B takes the thread over and finishes
    it (A's parts handed back to B). A's held items are answered while it is still cut off, so
    it can write none of them; when the proxy is restored, A writes nothing of the thread."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.tcp_proxy import TcpProxy

    total, concurrency = 400, 4
    server = conninfo_to_dict(db_path)
    submit(db_path, {"cut": queue_input(total)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=concurrency, max_attempts=1)
    endpoint.server.hold(after=chunk_size(concurrency))
    with TcpProxy(server["host"], int(server["port"])) as proxy:
        through_proxy = db_path.replace(f":{server['port']}/", f":{proxy.port}/")
        a = start_worker(concurrency=1, AGENT_DB=through_proxy, **endpoint.env, **LEASE)
        endpoint.server.wait_held(concurrency)  # A owns the thread and has its 4 in flight
        proxy.cut()
        b = start_worker(concurrency=1, **endpoint.env, **LEASE)
        b.wait_event("taken_over", "cut")
        endpoint.server.release()
        b.wait_event("finished", "cut", "completed")
        rows = results(db_path, "cut")
        b.proc.send_signal(signal.SIGTERM)
        assert b.finish() == 0, b.output()
        proxy.restore()
        a.wait_event("finished", "cut")
        a.proc.send_signal(signal.SIGTERM)
        assert a.finish() == 0, a.output()
    assert results(db_path, "cut") == rows  # A wrote nothing when it came back
    assert [key for key, *_ in rows] == [f"{i:09d}" for i in range(total)]
    assert all(created == updated for _, _, created, updated in rows)
    assert status_of(run_agent, "cut")["status"] == "completed"


def test_the_threads_rpm_holds_across_four_workers(start_worker, endpoint, db_path: str) -> None:
    """`--rpm 120` on one queue thread of 24 items spread over four workers: however the
    workers share the items, the requests reach the server no faster than one run's own."""
    rpm = 120
    submit(db_path, {"slow": queue_input(24)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=2, rpm=rpm)
    endpoint.server.hold()
    workers = [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(4)]
    endpoint.server.wait_held(2)
    endpoint.server.release()
    for worker in workers:
        assert worker.finish() == 0, worker.output()
    arrivals = [request.at for request in endpoint.server.log()]
    assert len(arrivals) == 24
    assert most_over_the_limit(arrivals) <= 0, sorted(round(t - min(arrivals), 3) for t in arrivals)


def test_a_budget_stops_the_queue_across_workers_and_the_spend_is_the_threads(start_worker, endpoint, run_agent, db_path: str) -> None:
    """A token budget worth about 40 of 400 items: the run stops `budget_exceeded` with the spend
    of every worker's calls added to the thread's; a later resume would go on from there."""
    submit(db_path, {"capped": queue_input(400)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=4, max_tokens=600)
    workers = [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]
    for worker in workers:
        assert worker.finish() == 0, worker.output()
    shown = status_of(run_agent, "capped")
    assert shown["status"] == "budget_exceeded", shown
    calls = len(endpoint.server.log())
    assert shown["spend"]["calls"] == calls < 400 and shown["spend"]["exceeded"]
    assert shown["spend"]["tokens"] >= 600
    rows = results(db_path, "capped")
    assert len(rows) == calls and shown["progress"]["done"] <= len(rows)


def test_a_fatal_error_in_another_workers_part_fails_the_run_with_its_message(start_worker, endpoint, run_agent, db_path: str) -> None:
    """A key the server refuses (401) on every item: whichever worker meets it, the run fails with
    the one line a run on one machine gives, and the key is in no row."""
    submit(db_path, {"refused": queue_input(50)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=4)
    endpoint.server.on(status=401)
    workers = [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]
    for worker in workers:
        assert worker.finish() == 0, worker.output()
    shown = status_of(run_agent, "refused")
    assert shown["status"] == "failed"
    assert "rejected the API key (401)" in shown["error"]
    key = endpoint.env["OPENAI_API_KEY"]
    with raw_connection(db_path) as conn:
        dump = json.dumps([list(map(str, row)) for row in conn.execute("SELECT prefix, key, value FROM store").fetchall()])
    assert key not in dump and key[-12:] not in dump


def test_a_paused_queue_keeps_what_was_in_flight_and_resumes_on_the_fleet_asking_each_item_once(
    start_worker, endpoint, run_agent, db_path: str
) -> None:
    """Paused while its items are out: the server answers the first chunk's 256 requests, then
    holds the next 8 (each worker's part of 4) until the run has stopped `paused`. Those 8 finish
    and are kept; no other item starts. Resumed with --detach, the rest run, and no item is
    asked twice."""
    total, concurrency = 400, 4
    submit(db_path, {"paused": queue_input(total)}, graph="task_queue", model=ENDPOINT_MODEL, concurrency=concurrency)
    endpoint.server.hold(after=chunk_size(concurrency))
    workers = [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]
    endpoint.server.wait_held(8)
    assert run_agent("pause", "--thread", "paused").returncode == 0
    owner = next(w for w in workers for e in w.events() if e["event"] == "started")
    owner.wait_event("finished", "paused", "paused")
    endpoint.server.release()
    for worker in workers:  # idle once their parts have ended
        assert worker.finish() == 0, worker.output()
    assert len(results(db_path, "paused")) == chunk_size(concurrency) + 8

    assert run_agent("resume", "--thread", "paused", "--detach", **endpoint.env).returncode == 0
    for worker in [start_worker("--until-idle", concurrency=1, **endpoint.env) for _ in range(2)]:
        assert worker.finish() == 0, worker.output()
    assert status_of(run_agent, "paused")["status"] == "completed"
    assert len(results(db_path, "paused")) == total
    calls = Counter(request.prompt for request in endpoint.server.log())
    assert len(calls) == total and set(calls.values()) == {1}


def test_a_dead_workers_part_is_dropped_when_the_part_waits_again_and_handed_back_when_not(db_path: str) -> None:
    """Procrastinate's stalled-job search hands a dead worker's jobs back; a part whose owner has
    handed it out again meanwhile (a takeover) would have two jobs waiting, which its queueing
    lock refuses: the dead worker's job is dropped instead, and the other part's is handed back."""
    import asyncio

    from runtime import open_database

    with open_database(db_path, create=True) as db:
        jobs = db.job_queue()
        jobs.ensure_schema()

        async def scenario() -> tuple[dict, dict, list[tuple]]:
            async with jobs.app.open_async():
                first = await jobs.adefer_items("t", 0, {0: [0, 1], 1: [2, 3]}, {"prompt": PROMPT, "settings": {}})
                with raw_connection(db_path) as conn:
                    dead = conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id").fetchone()[0]
                    conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = ?", (dead,))
                again = await jobs.adefer_items("t", 0, {0: [0, 1]}, {"prompt": PROMPT, "settings": {}})
                assert again[0] is not None and again[0] != first[0]
                await jobs.retry_stalled(10)
            with raw_connection(db_path) as conn:
                return first, again, conn.execute("SELECT id, status::text FROM procrastinate_jobs ORDER BY id").fetchall()

        first, again, rows = asyncio.run(scenario())
        assert rows == [(first[1], "todo"), (again[0], "todo")]


def test_the_threads_tokens_a_minute_are_reserved_by_what_each_request_is_expected_to_cost(db_path: str) -> None:
    """`--tpm 600` (10 tokens a second, a second's worth held): three requests expected to cost
    6 tokens each, asked at once from anywhere, wait nothing, a little, then longer; a request
    is never reserved for less than one token or more than the bucket holds."""
    import asyncio

    from runtime import open_database
    from runtime.fleet.spread import thread_admission
    from runtime.policy.settings import RunSettings

    with open_database(db_path, create=True) as db:
        admit = thread_admission(db, "t", RunSettings(model="offline", tpm=600))
        assert admit is not None
        assert thread_admission(db, "t", RunSettings(model="offline")) is None  # no limit: no hook

        async def waits() -> list[float]:
            return [await admit(None, 6) for _ in range(3)]

        first, second, third = asyncio.run(waits())
        assert first == 0.0 and 0.0 < second <= 0.2 and 0.6 < third <= 0.8
        with raw_connection(db_path) as conn:
            level = conn.execute("SELECT level FROM agent_rates WHERE key = 'thread-tpm:t'").fetchone()[0]
        assert 17.0 < level <= 18.0
        huge = asyncio.run(admit(None, 1_000_000))  # clamped to the bucket: one second's worth more
        assert 1.6 < huge <= 1.8


def test_the_jobs_table_gets_statistics_after_a_burst_and_not_again_until_the_next(db_path: str) -> None:
    """600 jobs in one burst: the next look takes the statistics Procrastinate's fetch is planned
    by; the look after that has nothing to do."""
    from runtime import open_database

    with open_database(db_path, create=True) as db:
        jobs = db.job_queue()
        jobs.ensure_schema()
        assert not jobs.keep_statistics(db.conn)  # a new, empty table
        with raw_connection(db_path) as conn:
            conn.execute("INSERT INTO procrastinate_jobs (queue_name, task_name) SELECT 'bench', 'burst' FROM generate_series(1, 600)")
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute("SELECT 1")  # the end of this statement's transaction sends this session's counts
        assert jobs.keep_statistics(db.conn)
        assert not jobs.keep_statistics(db.conn)
        analyzed = db.conn.execute("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'").fetchone()[0]
        assert analyzed


def test_a_long_lived_worker_keeps_the_models_of_a_bounded_number_of_threads(db_path: str) -> None:
    """Parts of many threads, one after another (here threads that are no longer running, whose
    parts end at once): the worker keeps the models of the most recent KEEP_THREADS only."""
    import asyncio

    from runtime import open_database
    from runtime.fleet.spread import KEEP_THREADS, ItemWorker

    with open_database(db_path, create=True) as db:
        worker = ItemWorker(db, store_of=lambda: None, local_drive=lambda thread_id: None)

        async def parts() -> None:
            for n in range(KEEP_THREADS + 10):
                await worker.handle(f"gone-{n}", 0, [0], PROMPT, {"model": "offline", "concurrency": 2})

        asyncio.run(parts())
        assert list(worker.threads) == [f"gone-{n}" for n in range(10, KEEP_THREADS + 10)]
        assert worker.items_done == 0
