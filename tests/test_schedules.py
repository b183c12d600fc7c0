"""Schedules and the worker, on a clock the tests control: validation, firing, overlap, missed
runs, daylight-saving changes, auto-pause, two workers racing, recovery of dead runs, doctor,
the migration, the CLI, and real `agent worker` processes."""

from __future__ import annotations

BOTH_BACKENDS = True
"""Every test here runs on SQLite and on PostgreSQL (tests/conftest.py)."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from tests.conftest import ENDPOINT_MODEL, db_snapshot, sql, raw_connection, nothing_written

QUICK = {"fail_times": 0}
"""`risky` with no failures: a run of a few steps, well under a second."""


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


@pytest.fixture
def db(db_path):
    from runtime import open_database

    database = open_database(db_path, create=True)
    yield database
    database.close()


def add(db, name, cron, tz="UTC", now="2026-11-02T00:00Z", graph="risky", input=QUICK, **options):
    from runtime.schedules.calendar import add_schedule, check_schedule

    return add_schedule(db, check_schedule(name, graph, cron, tz, input, **options), now=ts(now))


def worker(db, now, **options):
    from runtime.schedules.clock import ManualClock
    from runtime.schedules.worker import Worker

    return Worker(db, ManualClock(ts(now)), **options)


def runs(db, name):
    rows = sql(db).execute(
        "SELECT fire_time, thread_id, status, error, resumes FROM agent_schedule_runs WHERE schedule = ? ORDER BY fire_time, id", (name,)
    ).fetchall()
    return [{"fire": iso(f), "thread": t, "status": s, "error": e, "resumes": r} for f, t, s, e, r in rows]


def schedule(db, name):
    from runtime.schedules.calendar import get_schedule

    return get_schedule(db, name)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cron", "0 9 * *"], "has 4 field(s); a schedule takes 5"),
        (["--cron", "0 9 * * * *"], "has 6 field(s)"),
        (["--cron", "61 9 * * *"], "is not a valid cron pattern"),
        (["--cron", "0 9 30 2 *"], "never fires"),
        (["--cron", "0 9 * * *", "--tz", "Mars/Olympus"], "is not an IANA time zone"),
        (["--cron", "0 9 * * *", "--tz", "../etc/passwd"], "is not an IANA time zone"),
        (["--cron", "*/30 * * * *"], "can run 30 minutes apart"),
        (["--cron", "0,59 9 * * *"], "can run 59 minutes apart"),
        (["--cron", "0 9 * * *", "--graph", "nope"], "unknown graph 'nope'"),
        (["--cron", "0 9 * * *", "--max-cost", "-1"], "--max-cost must be 0 or more"),
        (["--cron", "0 9 * * *", "--overlap", "queue"], "--overlap 'queue' is not one of"),
        (["--cron", "0 9 * * *", "--missed", "all"], "--missed 'all' is not one of"),
        (["--cron", "0 9 * * *", "--deadline", "soon"], "is not a duration"),
        (["--cron", "0 9 * * *", "--input", '{"nope": 1}'], "unknown input key"),
    ],
)
def test_a_bad_schedule_exits_2_with_one_line_and_stores_nothing(cli, db_path, args, message):
    argv = ["schedule", "add", "s", "--graph", "risky", "--input", json.dumps(QUICK), *args]
    result = cli(*argv)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr.splitlines()[0]
    assert "Traceback" not in result.output
    assert nothing_written(db_path)


def test_checks_against_the_database_change_nothing(cli, db_path, monkeypatch):
    assert cli("schedule", "add", "a", "--graph", "risky", "--cron", "0 9 * * *").exit_code == 0
    before = db_snapshot(db_path)
    again = cli("schedule", "add", "a", "--graph", "risky", "--cron", "0 10 * * *")
    assert again.exit_code == 2 and "schedule 'a' already exists" in again.stderr
    monkeypatch.setenv("AGENT_MAX_SCHEDULES", "1")
    full = cli("schedule", "add", "b", "--graph", "risky", "--cron", "0 10 * * *")
    assert full.exit_code == 2 and "the most allowed (AGENT_MAX_SCHEDULES=1)" in full.stderr
    monkeypatch.setenv("AGENT_MAX_COST_CEILING", "1")
    over = cli("schedule", "add", "c", "--graph", "risky", "--cron", "0 10 * * *", "--max-cost", "2")
    assert over.exit_code == 2 and "above the system-wide ceiling of 1" in over.stderr
    assert db_snapshot(db_path) == before


def test_the_minimum_interval_is_checked_over_the_whole_pattern(monkeypatch):
    from runtime.errors import BadInput
    from runtime.schedules.calendar import check_schedule, shortest_gap

    monkeypatch.setenv("AGENT_SCHEDULE_MIN_INTERVAL", "2h")
    # The first two runs (the 1st at 00:00 and 23:00) are 23 hours apart; the 1st 23:00 and the
    # 2nd 00:00 are one hour apart.
    assert shortest_gap("0 0,23 1,2 * *") == 3600
    with pytest.raises(BadInput, match="can run 60 minutes apart"):
        check_schedule("s", "risky", "0 0,23 1,2 * *", "UTC", QUICK)
    # Mondays only: 23:00 is followed by the next Monday's 00:00.
    assert shortest_gap("0 0,23 * * 1") == 23 * 3600
    check_schedule("s", "risky", "0 0,23 * * 1", "UTC", QUICK)
    assert shortest_gap("0 9 * * 1-5") == 86400 and shortest_gap("0 9 * * 1,3,5") == 2 * 86400
    monkeypatch.setenv("AGENT_SCHEDULE_MIN_INTERVAL", "15m")
    check_schedule("s", "risky", "*/15 * * * *", "UTC", QUICK)


# -- firing ----------------------------------------------------------------------------------------


def test_a_due_schedule_fires_once_as_a_background_run_of_its_own_thread(db):
    from runtime import get_thread

    add(db, "digest", "0 9 * * 1-5", "Asia/Tokyo", now="2026-11-02T00:30Z", max_cost=2, deadline="10m")  # Monday 09:30 in Tokyo
    assert iso(schedule(db, "digest").next_fire) == "2026-11-03T00:00Z"  # Tuesday 09:00 JST
    w = worker(db, "2026-11-02T23:59Z")
    assert w.tick() == [] and runs(db, "digest") == []
    w.clock.set(ts("2026-11-03T00:00Z"))
    events = w.tick()
    assert [e.kind for e in events] == ["fired", "finished"]
    assert runs(db, "digest") == [{"fire": "2026-11-03T00:00Z", "thread": "digest@2026-11-03T00:00:00Z", "status": "completed", "error": None, "resumes": 0}]
    record = get_thread(db, "digest@2026-11-03T00:00:00Z")
    assert record.status == "completed" and record.settings["background"] is True
    assert record.settings["max_cost"] == 2 and record.settings["deadline"] == 600
    assert w.tick() == []  # the occurrence is not fired again
    assert iso(schedule(db, "digest").next_fire) == "2026-11-04T00:00Z"
    w.clock.set(ts("2026-11-06T00:01Z"))  # Friday: Wednesday's and Thursday's were missed, Friday's is on time
    w.tick()
    assert [(r["fire"], r["status"]) for r in runs(db, "digest")] == [
        ("2026-11-03T00:00Z", "completed"),
        ("2026-11-04T00:00Z", "missed"),
        ("2026-11-06T00:00Z", "completed"),
    ]
    assert runs(db, "digest")[1]["error"] == "2 occurrence(s) from 2026-11-04T00:00Z missed: no worker was running"
    assert iso(schedule(db, "digest").next_fire) == "2026-11-09T00:00Z"  # Monday: not at the weekend


def test_a_trigger_at_the_instant_a_worker_fired_is_refused_and_records_nothing(db):
    from commands.cli_face import cli_text
    from runtime.errors import ScheduleBusy

    add(db, "digest", "0 9 * * *", now="2026-11-02T00:00Z")
    w = worker(db, "2026-11-02T09:00Z")
    assert [e.kind for e in w.tick()] == ["fired", "finished"]
    before = runs(db, "digest")
    with pytest.raises(ScheduleBusy) as refused:
        w.trigger("digest")  # the same schedule at the same instant: the occurrence is taken
    assert refused.value.message == "schedule 'digest' was fired by another process at this very instant"
    assert cli_text(refused.value.fix) == "agent schedule runs digest shows its runs"
    assert runs(db, "digest") == before


def test_overlap_skip_and_allow(db):
    from runtime.threads.registry import create_thread

    for name, overlap in (("skip", "skip"), ("allow", "allow")):
        add(db, name, "0 9 * * *", overlap=overlap)
        # A run of the schedule still going: this process holds its thread, heartbeat fresh.
        create_thread(db, f"{name}-busy", "risky", "1", {})
        sql(db).execute(
            "INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status, worker) VALUES (?, 0, ?, 'running', 'x')", (name, f"{name}-busy")
        )
    w = worker(db, "2026-11-02T09:00Z")
    w.tick()
    assert [(r["status"], r["error"]) for r in runs(db, "skip")][1] == ("skipped", "the previous run (thread skip-busy) was still running (--overlap skip)")
    assert [r["status"] for r in runs(db, "allow")] == ["running", "completed"]
    assert iso(schedule(db, "skip").next_fire) == "2026-11-03T09:00Z"


def test_missed_runs_skip_or_run_once(db):
    add(db, "skip", "0 9 * * *", missed="skip")
    add(db, "once", "0 9 * * *", missed="run-once")
    # The worker was down from Monday until Thursday 11:00: four occurrences, the latest two hours late.
    w = worker(db, "2026-11-05T11:00Z")
    w.tick()
    skipped = runs(db, "skip")
    assert [(r["fire"], r["status"]) for r in skipped] == [("2026-11-02T09:00Z", "missed")]
    assert skipped[0]["error"].startswith("4 occurrence(s) from 2026-11-02T09:00Z missed") and "7200s late" in skipped[0]["error"]
    once = runs(db, "once")
    assert [(r["fire"], r["status"]) for r in once] == [("2026-11-02T09:00Z", "missed"), ("2026-11-05T09:00Z", "completed")]
    assert once[0]["error"].startswith("3 occurrence(s)")
    for name in ("skip", "once"):
        assert iso(schedule(db, name).next_fire) == "2026-11-06T09:00Z"
    # Within the grace period a late occurrence is not missed, whatever the policy.
    w.clock.set(ts("2026-11-06T09:10Z"))
    w.tick()
    assert runs(db, "skip")[-1]["status"] == "completed" and runs(db, "skip")[-1]["fire"] == "2026-11-06T09:00Z"


def _tick_through(db, start: str, end: str, step: float = 900) -> None:
    w = worker(db, start)
    while w.clock.now() <= ts(end):
        w.tick()
        w.clock.advance(step)


def test_spring_forward_a_skipped_time_runs_once(db):
    """New York, 8 March 2026: clocks jump from 02:00 to 03:00; 02:30 does not exist that day."""
    add(db, "early", "30 2 * * *", "America/New_York", now="2026-03-06T12:00Z")
    add(db, "both", "30 2,3 * * *", "America/New_York", now="2026-03-06T12:00Z")
    _tick_through(db, "2026-03-06T12:00Z", "2026-03-09T12:00Z")
    # 02:30 EST is 07:30Z; on the 8th it runs once, at 03:30 EDT (07:30Z); then 02:30 EDT (06:30Z).
    assert [r["fire"] for r in runs(db, "early")] == ["2026-03-07T07:30Z", "2026-03-08T07:30Z", "2026-03-09T06:30Z"]
    assert {r["status"] for r in runs(db, "early")} == {"completed"}
    # 02:30 and 03:30 land on one instant on the 8th: one run, not two.
    assert [r["fire"] for r in runs(db, "both")] == ["2026-03-07T07:30Z", "2026-03-07T08:30Z", "2026-03-08T07:30Z", "2026-03-09T06:30Z", "2026-03-09T07:30Z"]


def test_fall_back_a_repeated_time_runs_once(db):
    """New York, 1 November 2026: clocks go from 02:00 back to 01:00; 01:30 happens twice."""
    add(db, "night", "30 1 * * *", "America/New_York", now="2026-10-31T00:00Z")
    add(db, "hourly", "0 * * * *", "America/New_York", now="2026-11-01T03:30Z")
    _tick_through(db, "2026-10-31T00:00Z", "2026-11-02T12:00Z")
    # 01:30 EDT is 05:30Z and runs; 01:30 EST (06:30Z) does not run again.
    assert [r["fire"] for r in runs(db, "night")] == ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z"]
    hourly = [r["fire"] for r in runs(db, "hourly") if r["fire"] < "2026-11-01T09"]
    assert hourly == ["2026-11-01T04:00Z", "2026-11-01T05:00Z", "2026-11-01T07:00Z", "2026-11-01T08:00Z"]  # 01:00 once


def test_next_fire_times_in_a_real_zone_across_both_changes():
    from runtime.schedules.calendar import next_fire_after

    berlin = [ts("2026-03-28T12:00Z")]
    for _ in range(3):
        berlin.append(next_fire_after("30 2 * * *", "Europe/Berlin", berlin[-1]))
    assert [iso(t) for t in berlin[1:]] == ["2026-03-29T01:30Z", "2026-03-30T00:30Z", "2026-03-31T00:30Z"]
    autumn = next_fire_after("30 2 * * *", "Europe/Berlin", ts("2026-10-24T12:00Z"))
    assert iso(autumn) == "2026-10-25T00:30Z"  # 02:30 CEST, the first of the two
    assert iso(next_fire_after("30 2 * * *", "Europe/Berlin", autumn)) == "2026-10-26T01:30Z"


# -- failures and auto-pause -------------------------------------------------------------------------


def test_a_schedule_pauses_itself_after_consecutive_failures_and_resume_clears_the_count(db, cli, db_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    add(db, "flaky", "0 9 * * *")
    sql(db).execute("UPDATE agent_schedules SET graph = 'gone.py:build' WHERE name = 'flaky'")  # the graph was removed
    w = worker(db, "2026-11-02T09:00Z")
    for day in range(2, 6):
        w.clock.set(ts(f"2026-11-0{day}T09:00Z"))
        w.tick()
    flaky = runs(db, "flaky")
    assert [r["status"] for r in flaky] == ["failed"] * 3  # the fourth day did not fire: paused
    assert "no such file" in flaky[0]["error"].lower() or "gone.py" in flaky[0]["error"]
    paused = schedule(db, "flaky")
    assert paused.status == "paused" and paused.failures == 3
    assert paused.pause_reason.startswith("paused after 3 consecutive failed runs; the last: failed")
    listed = json.loads(cli("schedule", "list", "--json").stdout)[0]
    assert listed["status"] == "paused" and listed["pause_reason"] == paused.pause_reason and listed["next_run"] is None
    table = cli("schedule", "list")
    assert "paused (3 failed runs)" in " ".join(table.stdout.split())
    assert "flaky paused after 3 consecutive failed runs; the last: failed" in table.stderr and "agent schedule resume flaky" in table.stderr
    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "PROBLEM  schedule graphs: 1 schedule(s) name a graph that no longer exists: flaky (gone.py:build)" in doctor.stdout
    sql(db).execute("UPDATE agent_schedules SET graph = 'risky' WHERE name = 'flaky'")
    resumed = cli("schedule", "resume", "flaky", "--json")
    view = json.loads(resumed.stdout)
    assert view["changed"] and view["status"] == "active" and view["failures"] == 0 and view["pause_reason"] is None
    assert view["next_run"] and view["next_run_utc"].endswith("T09:00:00.000000+00:00")
    again = cli("schedule", "resume", "flaky")
    assert again.exit_code == 0 and "was already active; next run" in again.stderr


def test_a_success_resets_the_failure_count(db):
    add(db, "s", "0 9 * * *", max_failures=2)
    sql(db).execute("UPDATE agent_schedules SET graph = 'gone.py:build' WHERE name = 's'")
    w = worker(db, "2026-11-02T09:00Z")
    w.tick()
    sql(db).execute("UPDATE agent_schedules SET graph = 'risky' WHERE name = 's'")
    w.clock.set(ts("2026-11-03T09:00Z"))
    w.tick()
    assert schedule(db, "s").failures == 0
    sql(db).execute("UPDATE agent_schedules SET graph = 'gone.py:build' WHERE name = 's'")
    w.clock.set(ts("2026-11-04T09:00Z"))
    w.tick()
    assert schedule(db, "s").status == "active" and schedule(db, "s").failures == 1


# -- two workers -----------------------------------------------------------------------------------


def test_two_workers_racing_fire_each_occurrence_once(db, db_path):
    from runtime import open_database

    add(db, "race", "0 9 * * *")
    others = [open_database(db_path) for _ in range(4)]
    workers = [worker(d, "2026-11-02T09:00Z") for d in others]
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def go(w) -> None:
        try:
            barrier.wait()
            w.tick()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    racers = [threading.Thread(target=go, args=(w,)) for w in workers]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    for d in others:
        d.close()
    assert errors == []
    assert [(r["fire"], r["status"]) for r in runs(db, "race")] == [("2026-11-02T09:00Z", "completed")]
    assert sql(db).execute("SELECT count(*) FROM agent_threads").fetchone() == (1,)


# -- recovery --------------------------------------------------------------------------------------


def _dead_run(db, name: str, thread: str, resumes: int = 0, fire: float = 1) -> None:
    """A scheduled run whose worker was killed mid-run: a timed-out queue marked as running by a dead pid."""
    from runtime import RunSettings, run_thread

    items = {"items": [f"doc {i}" for i in range(8)], "prompt": "Summarize: {item}"}
    outcome = run_thread(db, "task_queue", thread, items, RunSettings(model="offline:latency=0.2", concurrency=2, deadline=0.4, background=True))
    assert outcome.status == "timeout"
    pid, now = dead_pid(), time.time()
    sql(db).execute(
        "UPDATE agent_threads SET status = 'running', owner_pid = ?, owner_host = ?, owner_since = ?, heartbeat_at = ? WHERE thread_id = ?",
        (pid, socket.gethostname(), now, now, thread),
    )
    sql(db).execute(
        "INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status, worker, resumes) VALUES (?, ?, ?, 'running', ?, ?)",
        (name, fire, thread, f"{pid}@{socket.gethostname()}", resumes),
    )


def test_the_worker_resumes_a_run_whose_runner_died_up_to_a_bound(db, cli):
    from runtime import get_thread

    add(db, "q", "0 9 * * *", graph="task_queue", input={"items": ["a"], "prompt": "Summarize: {item}"}, deadline="10m")
    _dead_run(db, "q", "q-dead")
    doctor = cli("doctor")
    assert "PROBLEM  schedule runs: 1 scheduled run(s) are recorded as running with no live thread: q: q-dead" in doctor.stdout
    events = worker(db, "2026-11-02T08:00Z").tick()
    assert [e.kind for e in events] == ["resumed", "finished"]
    assert runs(db, "q") == [{"fire": "1970-01-01T00:00Z", "thread": "q-dead", "status": "completed", "error": None, "resumes": 1}]
    assert get_thread(db, "q-dead").status == "completed"
    assert cli("doctor").exit_code == 0

    _dead_run(db, "q", "q-dead-again", resumes=3, fire=2)
    events = worker(db, "2026-11-02T08:00Z").tick()
    assert [e.kind for e in events] == ["finished", "gave_up"]
    last = runs(db, "q")[-1]
    assert last["status"] == "failed" and "gave up after 3 resumes" in last["error"]
    assert schedule(db, "q").failures == 1


def test_a_claim_whose_worker_died_before_the_thread_existed_is_started(db):
    add(db, "c", "0 9 * * *")
    sql(db).execute(
        "INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status, worker) VALUES ('c', 5, 'c-claimed', 'running', ?)",
        (f"{dead_pid()}@{socket.gethostname()}",),
    )
    worker(db, "2026-11-02T08:00Z").tick()
    assert [(r["thread"], r["status"], r["resumes"]) for r in runs(db, "c")] == [("c-claimed", "completed", 1)]


# -- migration -------------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_schema_3_file_gets_the_schedule_tables(db_path):
    from runtime import open_database
    from runtime.store.schema import SCHEMA_VERSION

    open_database(db_path, create=True).close()
    conn = raw_connection(db_path)
    conn.execute("DROP TABLE agent_schedule_runs")
    conn.execute("DROP TABLE agent_schedules")
    conn.execute("INSERT INTO agent_threads (thread_id, graph, graph_version, status, created_at, updated_at) VALUES ('t', 'risky', '1', 'completed', 0, 0)")
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()
    with open_database(db_path) as db:
        assert sql(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert sql(db).execute("SELECT status FROM agent_threads WHERE thread_id = 't'").fetchone() == ("completed",)
        add(db, "after", "0 9 * * *")
        assert schedule(db, "after").status == "active"


# -- the CLI ---------------------------------------------------------------------------------------


def test_schedule_commands(cli, db_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    added = cli("schedule", "add", "digest", "--graph", "risky", "--cron", "0 9 * * 1-5", "--tz", "Asia/Tokyo", "--input", json.dumps(QUICK), "--json")
    assert added.exit_code == 0, added.output
    view = json.loads(added.stdout)
    assert view["next_run"].endswith("T09:00+09:00") and view["next_run_utc"].endswith("T00:00:00.000000+00:00")
    listed = cli("schedule", "list")
    flat = " ".join(listed.stdout.split())
    assert "digest" in flat and "+09:00" in flat and " 00:00Z" in flat and "active" in flat

    paused = cli("schedule", "pause", "digest")
    assert paused.exit_code == 0 and "Schedule digest paused." in paused.stderr
    again = cli("schedule", "pause", "digest")
    assert again.exit_code == 0 and "already paused; nothing changed" in again.stderr
    resumed = cli("schedule", "resume", "digest")
    assert resumed.exit_code == 0 and "resumed; next run" in resumed.stderr and "+09:00" in resumed.stderr

    triggered = cli("schedule", "trigger", "digest", "--json")
    assert triggered.exit_code == 0, triggered.output
    thread = json.loads(triggered.stdout)["thread_id"]
    assert thread.startswith("digest@")
    history = json.loads(cli("schedule", "runs", "digest", "--json").stdout)
    assert set(history) == {"schedule", "tz", "runs", "total_cost_usd", "periods", "by"}
    (run,) = history["runs"]
    assert set(run) == {"thread_id", "fire_time", "started_at", "ended_at", "status", "cost_usd", "tokens", "resumes", "error"}
    assert run["thread_id"] == thread and run["status"] == "completed" and run["ended_at"] >= run["started_at"]
    assert history["total_cost_usd"] == run["cost_usd"] and history["periods"][0]["runs"] == 1
    assert json.loads(cli("schedule", "runs", "digest", "--since", "2099-01-01", "--json").stdout)["runs"] == []
    assert len(json.loads(cli("schedule", "runs", "digest", "--since", "1d", "--until", "2099-01-01T00:00Z", "--json").stdout)["runs"]) == 1
    bad = cli("schedule", "runs", "digest", "--since", "yesterday")
    assert bad.exit_code == 2 and "is not a date, a time or a duration" in bad.stderr
    assert "digest" in " ".join(cli("threads").stdout.split())

    missing = cli("schedule", "pause", "nope")
    assert missing.exit_code == 2 and "no schedule 'nope'" in missing.stderr and "agent schedule list" in missing.stderr
    deleted = cli("schedule", "delete", "digest")
    assert deleted.exit_code == 0 and "deleted (1 run record(s)); its threads stay" in deleted.stderr
    assert json.loads(cli("schedule", "list", "--json").stdout) == []
    assert cli("worker", "--now", "2026-11-02T09:00Z").exit_code == 2


def test_costs_add_up_per_schedule_and_per_period(db):
    from runtime.policy.budget import Spend, add_spend
    from runtime.schedules.calendar import schedule_runs

    add(db, "c", "0 9 * * *", "Asia/Tokyo")
    for fire, thread, cost in ((ts("2026-11-02T00:00Z"), "c1", 0.5), (ts("2026-11-02T23:00Z"), "c2", 0.25), (ts("2026-11-04T00:00Z"), "c3", 1.0)):
        sql(db).execute("INSERT INTO agent_schedule_runs (schedule, fire_time, thread_id, status) VALUES ('c', ?, ?, 'completed')", (fire, thread))
        add_spend(db, thread, Spend(10, 10, cost, 1))
    history = schedule_runs(db, "c")
    assert history["total_cost_usd"] == 1.75
    # In Tokyo, 2026-11-02T23:00Z is already the 3rd.
    assert history["periods"] == [
        {"period": "2026-11-02", "runs": 1, "cost_usd": 0.5},
        {"period": "2026-11-03", "runs": 1, "cost_usd": 0.25},
        {"period": "2026-11-04", "runs": 1, "cost_usd": 1.0},
    ]
    assert schedule_runs(db, "c", by="month")["periods"] == [{"period": "2026-11", "runs": 3, "cost_usd": 1.75}]
    assert [r["thread_id"] for r in schedule_runs(db, "c", since=ts("2026-11-02T12:00Z"), until=ts("2026-11-04T00:00Z"))["runs"]] == ["c2"]


# -- real processes ----------------------------------------------------------------------------------


def test_worker_processes_fire_a_due_schedule_exactly_once(run_agent, spawn_agent, db_path):
    added = run_agent("schedule", "add", "e2e", "--graph", "risky", "--cron", "0 9 * * *", "--input", json.dumps(QUICK), "--json")
    assert added.returncode == 0, added.stderr
    due = json.loads(added.stdout)["next_run_utc"]
    # Two workers at once, at the moment the schedule is due (a chosen instant, no waiting).
    procs = [spawn_agent("worker", "--once", "--now", due, "--json") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    # Either worker may run what either fired (on PostgreSQL the run is a job any worker takes):
    # each worker's events in their order, the two workers' in any.
    events = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    fired = sorted((e for e in events if "schedule" in e), key=lambda e: e["event"] != "fired")  # the scheduler's; the others are the run's
    assert [e["event"] for e in fired] == ["fired", "finished"] and fired[1]["status"] == "completed"
    assert sorted(e["event"] for e in events if "schedule" not in e) == ["finished", "started"]
    for out, _ in outputs:
        mine = [json.loads(line)["event"] for line in out.splitlines() if "schedule" not in json.loads(line)]
        assert mine in ([], ["started", "finished"])
    conn = raw_connection(db_path)
    rows = conn.execute("SELECT thread_id, status, ended_at IS NOT NULL FROM agent_schedule_runs").fetchall()
    assert rows == [(f"e2e@{due[:19]}Z", "completed", 1)]
    assert conn.execute("SELECT status FROM agent_threads").fetchall() == [("completed",)]
    conn.close()
    later = run_agent("worker", "--once", "--now", due, "--json")
    assert later.returncode == 0 and later.stdout == ""


def test_sigterm_stops_the_worker_cleanly_and_the_next_worker_finishes_the_run(run_agent, spawn_agent, endpoint, db_path):
    from runtime import open_database

    with open_database(db_path, create=True) as db:
        items = {"items": [f"doc {i}" for i in range(40)], "prompt": "Summarize: {item}"}
        # Added an hour ago, so its first hourly occurrence is already due under the real clock.
        add(db, "slow", "0 * * * *", graph="task_queue", input=items, model=ENDPOINT_MODEL, now=iso(time.time() - 3600))
    # Held with 4 items done and its 8 slots (the default concurrency) waiting on the endpoint.
    endpoint.server.hold(after=4)
    proc = spawn_agent("worker", "--poll", "1s", "--missed-after", "2h", "--json", **endpoint.env)
    endpoint.server.wait_held(8, proc)
    assert len(endpoint.server.log()) == 12
    proc.send_signal(signal.SIGTERM)
    # The signal is pending in the worker once kill() has returned, so its run sees it before
    # any of the answers let go now: the items in flight finish, no other starts.
    endpoint.server.release()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    conn = raw_connection(db_path)
    assert conn.execute("SELECT status, ended_at IS NOT NULL FROM agent_schedule_runs").fetchall() == [("stopped", 1)]
    assert conn.execute("SELECT status, owner_pid FROM agent_threads").fetchall() == [("stopped", None)]
    assert conn.execute("SELECT kind FROM agent_queue").fetchall() == [("resume",)]  # for the next worker
    assert conn.execute("SELECT count(*) FROM store WHERE prefix LIKE 'results.slow@%'").fetchone() == (12,)
    conn.close()
    assert "Worker stopped." in err
    nxt = run_agent("worker", "--once", "--json", **endpoint.env)
    assert nxt.returncode == 0, nxt.stderr
    events = [json.loads(line) for line in nxt.stdout.splitlines()]
    assert [(e["event"], e.get("schedule")) for e in events] == [("started", None), ("finished", None), ("finished", "slow")]
    conn = raw_connection(db_path)
    assert conn.execute("SELECT status FROM agent_schedule_runs").fetchall() == [("completed",)]
    assert conn.execute("SELECT count(*) FROM store WHERE prefix LIKE 'results.slow@%'").fetchone() == (40,)
    conn.close()
