"""Schedules: cron patterns in a time zone, stored in the database, and their run history.

A schedule names a graph, its input and per-run limits; `agent worker` (runtime/schedules/worker.py)
fires it; the rows are kept by runtime/store/schedules.py. Cron patterns are parsed by croniter;
this module only turns the wall-clock times a pattern names into instants, with one rule for
daylight-saving changes:

- Each wall-clock time of the pattern fires at most once a day, read in the schedule's zone.
- A time that a spring-forward change skips (02:30 when clocks jump from 02:00 to 03:00) is read
  with the offset in force before the change, as Python's zoneinfo does (fold=0): it fires once,
  as far after the jump as it was into the gap (03:30 new time). Two pattern times that land on
  one instant (02:30 and 03:30 that day) fire once.
- A time that a fall-back change repeats (01:30 when clocks go from 02:00 back to 01:00) fires
  once, at its first occurrence (summer time); the repeated hour does not fire again.

The minimum interval between runs is checked on wall-clock time over the whole pattern: every
pair of neighbouring times within a day, and from the last time of a day to the first time of
the next day the pattern selects. A spring-forward change can bring two runs closer by the
size of the change (one hour in most zones) on that one day.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runtime.store.parts import schedules as schedule_rows
from runtime.store.database import Database
from runtime.store.seam import ScheduleRow
from runtime.errors import BadInput, Command, Message, ScheduleExists, ScheduleNotFound, Setting, setting_or_text
from runtime.policy.numbers import env_number
from runtime.policy.settings import parse_duration
from runtime.policy.times import iso_time
from runtime.store.parts import immediate

MIN_INTERVAL_ENV = "AGENT_SCHEDULE_MIN_INTERVAL"
DEFAULT_MIN_INTERVAL = 3600.0
MAX_SCHEDULES_ENV = "AGENT_MAX_SCHEDULES"
DEFAULT_MAX_SCHEDULES = 100
OVERLAP = ("skip", "allow")
MISSED = ("skip", "run-once")
DEFAULT_MAX_FAILURES = 3
FAILED = ("failed", "timeout", "budget_exceeded", "cancelled")
"""Run statuses that count towards a schedule's consecutive failures (`completed` resets the count;
`interrupted`, `paused` and `stopped` leave it)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DST_MARGIN = timedelta(hours=3)
"""More than any zone's daylight-saving shift: how far back in wall time a search starts."""
_DAY_SEARCH_YEARS = 28
"""The Gregorian weekday-and-leap-year pattern repeats every 28 years (1901-2099)."""


@dataclass
class Schedule:
    name: str
    graph: str
    cron: str
    tz: str
    input: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    overlap: str = "skip"
    missed: str = "skip"
    max_failures: int = DEFAULT_MAX_FAILURES
    status: str = "active"
    pause_reason: str | None = None
    failures: int = 0
    next_fire: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Its fields, times as ISO 8601 (runtime/policy/times.py); the next run both in the
        schedule's zone (`next_run`) and in UTC (`next_run_utc`), None while it is paused."""
        view = asdict(self)
        due = self.next_fire if self.next_fire and self.status == "active" else None
        del view["next_fire"]
        view["created_at"], view["updated_at"] = iso_time(self.created_at), iso_time(self.updated_at)
        view["next_run"] = local_iso(due, self.tz) if due else None
        view["next_run_utc"] = iso_time(due)
        return view


# -- times ---------------------------------------------------------------------------------------


def zone(tz: str) -> ZoneInfo:
    try:
        if not tz or tz != tz.strip() or tz.startswith(("/", ".")):
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(
            Message("{setting} {value!r} is not an IANA time zone", setting=Setting("tz"), value=tz),
            Message("e.g. {a}, {b} or {c}", a=Setting("tz", "Asia/Tokyo"), b=Setting("tz", "Europe/Berlin"), c=Setting("tz", "UTC")),
        ) from None


def check_cron(cron: str) -> None:
    from croniter import croniter

    parts = cron.split()
    if len(parts) != 5:
        raise BadInput(
            Message(
                "{setting} {value!r} has {count} field(s); a schedule takes 5: minute hour day-of-month month day-of-week",
                setting=Setting("cron"), value=cron, count=len(parts),
            ),
            Message("e.g. {} (09:00 on weekdays)", Setting("cron", "0 9 * * 1-5")),
        )
    if not croniter.is_valid(cron):
        raise BadInput(
            Message("{setting} {value!r} is not a valid cron pattern", setting=Setting("cron"), value=cron),
            Message('e.g. {} (09:00 on weekdays), "30 6 1 * *" (06:30 on the 1st)', Setting("cron", "0 9 * * 1-5")),
        )


def _walls(cron: str, start: datetime):
    """The pattern's wall-clock times after `start` (naive: croniter does no zone arithmetic)."""
    from croniter import croniter

    it = croniter(cron, start)
    while True:
        yield it.get_next(datetime)


def _instant(wall: datetime, tz: ZoneInfo) -> float:
    # fold=0: a repeated time is its first occurrence; a skipped one takes the offset before the change.
    return wall.replace(tzinfo=tz, fold=0).timestamp()


def next_fire_after(cron: str, tz: str, after: float) -> float:
    """The first instant after `after` (epoch seconds) at which the pattern fires, by the rule above."""
    from croniter import CroniterBadDateError

    zone_ = zone(tz)
    start = datetime.fromtimestamp(after, zone_).replace(tzinfo=None) - _DST_MARGIN
    best: float | None = None
    best_wall: datetime | None = None
    try:
        for wall in _walls(cron, start):
            if best_wall is not None and wall > best_wall + _DST_MARGIN:
                break
            instant = _instant(wall, zone_)
            if instant > after and (best is None or instant < best):
                best, best_wall = instant, best_wall or wall
    except (CroniterBadDateError, StopIteration):
        pass
    if best is None:
        raise BadInput(
            Message("{setting} {value!r} never fires", setting=Setting("cron"), value=cron),
            "check the day-of-month and month fields (e.g. 30 February does not exist)",
        )
    return best


def local_iso(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="minutes")


def utc_iso(ts: float) -> str:
    """A UTC time to the minute for people (`2026-11-23T09:00Z`); JSON has runtime.policy.times."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def thread_name(schedule: str, fire_time: float) -> str:
    """The thread of one occurrence: the schedule's name and the fire time in UTC."""
    return f"{schedule}@{datetime.fromtimestamp(fire_time, timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def min_interval() -> float:
    text = os.environ.get(MIN_INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_MIN_INTERVAL
    return parse_duration(text, MIN_INTERVAL_ENV) or 0.0


def shortest_gap(cron: str) -> float:
    """The shortest wall-clock time in seconds between two runs of the pattern, over all of it."""
    from croniter import croniter

    minute, hour, dom, month, dow = croniter(cron).expanded
    minutes = list(range(60)) if "*" in minute else [int(m) for m in minute]
    hours = list(range(24)) if "*" in hour else [int(h) for h in hour]
    times = sorted({h * 60 + m for h in hours for m in minutes})
    within = min((b - a for a, b in zip(times, times[1:])), default=None)
    wrap = 1440 - times[-1] + times[0]
    if within is not None and within <= wrap:
        return within * 60.0
    days = _shortest_day_gap(" ".join(["0", "0", *cron.split()[2:]]))
    across = days * 1440 - times[-1] + times[0]
    return min(x for x in (within, across) if x is not None) * 60.0


def _shortest_day_gap(day_cron: str) -> int:
    """The fewest days between two days the pattern selects, over a full calendar cycle."""
    from croniter import CroniterBadDateError

    start = datetime(2001, 1, 1) - timedelta(minutes=1)
    end = datetime(2001 + _DAY_SEARCH_YEARS, 1, 1)
    previous: date | None = None
    best = 10**6
    try:
        for wall in _walls(day_cron, start):
            if wall >= end:
                break
            if previous is not None:
                best = min(best, (wall.date() - previous).days)
                if best == 1:
                    break
            previous = wall.date()
    except CroniterBadDateError:
        pass
    return best


def parse_when(text: str | None, tz: str, now: float, option: str) -> float | None:
    """`2026-11-01`, `2026-11-01T09:00` (in the schedule's zone unless it names one) or `7d` (ago);
    `option` is the setting the text came from (`since`)."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            seconds = parse_duration(text, option)
        except BadInput:
            raise BadInput(
                Message("{setting} {value!r} is not a date, a time or a duration", setting=setting_or_text(option), value=text),
                Message("e.g. {a}, {b} or {c} (ago)", a=Setting(option, "2026-11-01"), b=Setting(option, "2026-11-01T09:00"), c=Setting(option, "7d")),
            ) from None
        return now - (seconds or 0.0)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed.timestamp()


# -- the schedules table -----------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadInput(f"invalid schedule name {name!r}", "use up to 64 letters, digits, '-', '_' or '.', starting with a letter or digit, e.g. morning-digest")


def max_schedules() -> int:
    limit = env_number(MAX_SCHEDULES_ENV, whole=True)
    return DEFAULT_MAX_SCHEDULES if limit is None else int(limit)


@dataclass
class NewSchedule:
    """A schedule that passed every check that needs no database (`check_schedule`)."""

    name: str
    graph: str
    cron: str
    tz: str
    input: Any
    settings: dict[str, Any]
    overlap: str
    missed: str
    max_failures: int


def check_schedule(
    name: str,
    graph: str,
    cron: str,
    tz: str,
    input: Any,
    *,
    max_cost: float | None = None,
    deadline: str | float | None = None,
    model: str | None = None,
    overlap: str = "skip",
    missed: str = "skip",
    max_failures: int = DEFAULT_MAX_FAILURES,
) -> NewSchedule:
    """Every check of a new schedule but those against the database; raises BadInput/UnknownGraph."""
    from runtime.runs.runner import validate_run
    from runtime.policy.settings import RunSettings
    from runtime.policy.trust import require_trusted

    check_name(name)
    check_cron(cron)
    zone(tz)
    next_fire_after(cron, tz, time.time())  # a pattern that never fires (30 February)
    limit = min_interval()
    gap = shortest_gap(cron)
    if gap < limit:
        raise BadInput(
            Message(
                "{setting} {value!r} can run {gap:g} minutes apart; schedules may run at most every {limit:g} minutes",
                setting=Setting("cron"), value=cron, gap=gap / 60, limit=limit / 60,
            ),
            f"space the runs out, or lower the minimum with {MIN_INTERVAL_ENV} (e.g. {MIN_INTERVAL_ENV}=15m)",
        )
    if overlap not in OVERLAP:
        raise BadInput(Message("{setting} {value!r} is not one of: {choices}", setting=Setting("overlap"), value=overlap, choices=", ".join(OVERLAP)))
    if missed not in MISSED:
        raise BadInput(Message("{setting} {value!r} is not one of: {choices}", setting=Setting("missed"), value=missed, choices=", ".join(MISSED)))
    if not isinstance(max_failures, int) or max_failures < 1:
        raise BadInput(Message("{setting} must be at least 1, not {value}", setting=Setting("max_failures"), value=max_failures))
    deadline_s = parse_duration(deadline, "deadline")
    spec, _, _ = validate_run(graph, input, RunSettings(model=model, max_cost=max_cost, deadline=deadline_s, background=True))
    # Its runs are started unattended, by the worker: the graph must be one it will import.
    require_trusted(spec.spec, attended=False, owner=f"schedule {name!r}")
    settings = {k: v for k, v in {"model": model, "max_cost": max_cost, "deadline": deadline_s}.items() if v}
    return NewSchedule(name, spec.spec, cron, tz, input, settings, overlap, missed, max_failures)


def add_schedule(db: Database, new: NewSchedule, now: float | None = None) -> Schedule:
    """Store a checked schedule; refuse a name that exists and more than AGENT_MAX_SCHEDULES."""
    now = time.time() if now is None else now
    next_fire = next_fire_after(new.cron, new.tz, now)
    with immediate(db.conn):
        if schedule_rows.get(db.conn, new.name) is not None:
            raise ScheduleExists(
                f"schedule {new.name!r} already exists",
                Message("pick another name, or replace it: {}, then add it again", Command("schedule delete", name=new.name)),
            )
        count = schedule_rows.count(db.conn)
        if count >= max_schedules():
            raise BadInput(
                f"this database has {count} schedule(s), the most allowed ({MAX_SCHEDULES_ENV}={max_schedules()})",
                Message("delete one you no longer need ({list}), or raise {env}", list=Command("schedule list"), env=MAX_SCHEDULES_ENV),
            )
        schedule_rows.insert(
            db.conn,
            ScheduleRow(new.name, new.graph, new.cron, new.tz, new.input, new.settings, new.overlap, new.missed, new.max_failures,
                        "active", None, 0, next_fire, now, now),
        )  # fmt: skip
    return get_schedule(db, new.name)


def get_schedule(db: Database, name: str) -> Schedule:
    row = schedule_rows.get(db.conn, name)
    if row is None:
        raise ScheduleNotFound(f"no schedule {name!r} in {db.path}", Message("{} lists the schedules", Command("schedule list")))
    return Schedule(*row)


def list_schedules(db: Database) -> list[Schedule]:
    return [Schedule(*row) for row in schedule_rows.list_all(db.conn)]


def last_runs(db: Database) -> dict[str, dict[str, Any]]:
    """schedule name -> its latest run row that fired, was skipped or was missed."""
    return {
        name: {"thread_id": run.thread_id, "status": run.status, "fire_time": iso_time(run.fire_time), "error": run.error}
        for name, run in schedule_rows.last_runs(db.conn).items()
    }


def pause_schedule(db: Database, name: str, reason: str | None = None) -> tuple[Schedule, bool]:
    """Pause it; (schedule, False) when it was paused already (nothing changes)."""
    with immediate(db.conn):
        schedule = get_schedule(db, name)
        if schedule.status == "paused":
            return schedule, False
        schedule_rows.pause(db.conn, name, reason, time.time())
    return get_schedule(db, name), True


def resume_schedule(db: Database, name: str, now: float | None = None) -> tuple[Schedule, bool]:
    """Make it active again from now (occurrences while paused are not missed runs) and clear its
    failure count; (schedule, False) when it was active already."""
    now = time.time() if now is None else now
    with immediate(db.conn):
        schedule = get_schedule(db, name)
        if schedule.status == "active":
            return schedule, False
        schedule_rows.resume(db.conn, name, next_fire_after(schedule.cron, schedule.tz, now), now)
    return get_schedule(db, name), True


def delete_schedule(db: Database, name: str) -> int:
    """Delete the schedule and its run history; the threads its runs made stay. Returns the runs removed."""
    with immediate(db.conn):
        get_schedule(db, name)
        removed = schedule_rows.delete(db.conn, name)
    return removed


# -- run history ---------------------------------------------------------------------------------------

_PERIODS = {"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}


def schedule_runs(db: Database, name: str, since: float | None = None, until: float | None = None, by: str = "day") -> dict[str, Any]:
    """The runs of a schedule (fire time in [since, until)), oldest first, with their thread's cost,
    and the total cost of the schedule and of each period (in the schedule's zone)."""
    if by not in _PERIODS:
        raise BadInput(Message("{setting} {value!r} is not one of: {choices}", setting=Setting("by"), value=by, choices=", ".join(_PERIODS)))
    schedule = get_schedule(db, name)
    runs = []
    periods: dict[str, dict[str, Any]] = {}
    zone_ = ZoneInfo(schedule.tz)
    for run, cost, tokens in schedule_rows.runs_with_spend(db.conn, name, since, until):
        runs.append(
            {
                "thread_id": run.thread_id,
                "fire_time": iso_time(run.fire_time),
                "started_at": iso_time(run.started_at),
                "ended_at": iso_time(run.ended_at),
                "status": run.status,
                "cost_usd": round(cost, 6),
                "tokens": tokens,
                "resumes": run.resumes,
                "error": run.error,
            }
        )
        period = datetime.fromtimestamp(run.fire_time, zone_).strftime(_PERIODS[by])
        bucket = periods.setdefault(period, {"period": period, "runs": 0, "cost_usd": 0.0})
        bucket["runs"] += 1
        bucket["cost_usd"] = round(bucket["cost_usd"] + cost, 6)
    return {
        "schedule": name,
        "tz": schedule.tz,
        "runs": runs,
        "total_cost_usd": round(sum(r["cost_usd"] for r in runs), 6),
        "periods": list(periods.values()),
        "by": by,
    }
