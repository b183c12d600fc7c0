"""The checkpoint tables and their migrations. Plain SQL: importing this module stays cheap.

Layout (schema 5, see runtime/store/rows.py and writing.py for who writes what):

- `checkpoints`: one row per checkpoint, appended in the order they are written (a rowid table:
  a new row goes at the end of the table instead of into the middle of a B-tree of thread ids;
  UNIQUE (thread_id, checkpoint_ns, checkpoint_id) finds a checkpoint). A step is one row,
  written by one statement:
  - `checkpoint`: the checkpoint *without* its channel values (versions, versions seen, time);
    `metadata` is JSON. What history shows lives in plain columns, read without deserialising
    anything: `step`, `source`, `created_at`, `run_id`, `writers` (JSON list of the nodes whose
    writes made this checkpoint) and `next` (JSON list of the tasks that run from it; NULL where
    it is not known, and then computed).
  - `vals`: the channel values this checkpoint introduced, each stored once per version
    (msgpack list of [channel, version, type, bytes]); a step stores only what it changed.
  - `refs`: where each of its channels' values lives (msgpack {location: [channel, ...]}), a
    location being the checkpoint_id whose `vals` hold it, "-" for a channel with a version but
    no value, or "" for the `checkpoint_blobs` table. NULL in rows written before schema 5.
  - `pwrites`: the writes of the parent checkpoint's tasks that were stored with this
    checkpoint (msgpack list of [task_id, task_path, idx, channel, type, bytes]). A child is
    newer than its parent, so they are found among the rows after it; no index of their own
    (an index costs every step a page more to write).
- `checkpoint_blobs`: channel values by (thread, namespace, channel, version): values of rows
  written before schema 5, and values that pruning kept after removing the row that held them
  (their version key is `version@checkpoint_id` of that row: versions are counters, which two
  branches of a thread can both reach with different values).
- `writes`: pending writes stored on their own (a task that finished while others of its step
  were still running, an error, an interrupt), as in langgraph-checkpoint-sqlite.

Schema 1 was langgraph-checkpoint-sqlite's layout (the whole state in every checkpoint row);
`ensure_checkpoint_tables` converts it in one transaction. Schemas 2-4 had the same `checkpoints`
columns without `vals`, `refs` and `pwrites`, in a WITHOUT ROWID table; their rows are copied
into the new table as they are (their values stay in `checkpoint_blobs`).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Iterable

SCHEMA_VERSION = 8
"""8: the shared rate buckets (RATES_TABLE); an older file gets the table in its migration
transaction.
7: the fleet (FLEET_TABLES): `agent_threads.lease` and `.resumes`, the run queue `agent_queue`
and the workers `agent_workers`; an older file gets them in its migration transaction.
6: `agent_spend.unpriced_calls` and `agent_progress` (PROGRESS_TABLE); an older file gets them
in its migration transaction.
5: one row per step in `checkpoints` (values and the parent's writes in the row, see above).
3: the control tables (CONTROL_TABLES: spend, pause/cancel requests); a file of schema 2 gets them
in the same migration transaction, schema 1 is converted first.
4: the schedule tables (SCHEDULE_TABLES); an older file gets them in its migration transaction."""

CHECKPOINT_TABLES = """
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id            TEXT NOT NULL,
    checkpoint_ns        TEXT NOT NULL DEFAULT '',
    checkpoint_id        TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type                 TEXT,
    checkpoint           BLOB,
    metadata             BLOB,
    step                 INTEGER,
    source               TEXT,
    created_at           TEXT,
    run_id               TEXT,
    writers              TEXT,
    next                 TEXT,
    vals                 BLOB,
    refs                 BLOB,
    pwrites              BLOB,
    UNIQUE (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL,
    version       TEXT NOT NULL,
    type          TEXT NOT NULL,
    blob          BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, version, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writes (
    thread_id     TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    task_path     TEXT NOT NULL DEFAULT '',
    idx           INTEGER NOT NULL,
    channel       TEXT NOT NULL,
    type          TEXT,
    value         BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID;
"""

CONTROL_TABLES = """
CREATE TABLE IF NOT EXISTS agent_spend (
    thread_id     TEXT PRIMARY KEY,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL NOT NULL DEFAULT 0,
    calls         INTEGER NOT NULL DEFAULT 0,
    updated_at    REAL,
    unpriced_calls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agent_control (
    thread_id     TEXT PRIMARY KEY,
    request       TEXT NOT NULL,
    target_pid    INTEGER,
    target_host   TEXT,
    requested_by  TEXT,
    requested_at  REAL NOT NULL
);
"""
"""Schema 3. `agent_spend`: tokens and estimated cost a thread's model calls reported, over every
run, retry and resume (runtime/policy/budget.py); `unpriced_calls` (schema 6) counts the calls of
models the price table does not know, whose cost is therefore unknown. `agent_control`: a pause or cancel asked of the
process running a thread, read by its runner (runtime/threads/control.py)."""


FLEET_TABLES = """
CREATE TABLE IF NOT EXISTS agent_queue (
    thread_id     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    request       TEXT NOT NULL DEFAULT '{}',
    priority      INTEGER NOT NULL DEFAULT 0,
    queued_at     REAL NOT NULL,
    queued_by     TEXT
);
CREATE INDEX IF NOT EXISTS agent_queue_order ON agent_queue (priority DESC, queued_at);
CREATE TABLE IF NOT EXISTS agent_workers (
    worker_id     TEXT PRIMARY KEY,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    concurrency   INTEGER NOT NULL,
    running       INTEGER NOT NULL DEFAULT 0,
    status        TEXT NOT NULL DEFAULT 'running'
);
CREATE INDEX IF NOT EXISTS agent_threads_running ON agent_threads (status, heartbeat_at)
"""
"""Schema 7. `agent_queue`: at most one queued request per thread (a new run, a resume, a retry
of its failed items, an answer to its approvals), taken by a worker oldest first within its
priority once no live runner holds the thread (runtime/fleet/queue.py). `agent_workers`: one row
per worker process, its heartbeat and how many threads it runs. `agent_threads.lease` grows each
time a runner takes the thread: a runner's writes carry its lease and are refused once another
has taken the thread (fencing, runtime/store/seam.py); `.resumes` counts the takeovers of a dead
runner's thread since it last ran to an end."""


def create_fleet_tables(conn: sqlite3.Connection) -> None:
    columns = table_columns(conn, "agent_threads")
    if "lease" not in columns:
        conn.execute("ALTER TABLE agent_threads ADD COLUMN lease INTEGER NOT NULL DEFAULT 0")
    if "resumes" not in columns:
        conn.execute("ALTER TABLE agent_threads ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
    for statement in FLEET_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


RATES_TABLE = """
CREATE TABLE IF NOT EXISTS agent_rates (
    key           TEXT PRIMARY KEY,
    level         REAL NOT NULL,
    updated_at    REAL NOT NULL
)
"""
"""Schema 8. One leaky bucket per key (a model's requests a minute, AGENT_MODEL_RPM), shared by
every process on the database: the units reserved and not yet leaked, and when it last leaked
(runtime/store/rates.py, runtime/policy/shared_rates.py)."""


def create_control_tables(conn: sqlite3.Connection) -> None:
    for statement in CONTROL_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)
    if "unpriced_calls" not in table_columns(conn, "agent_spend"):  # a file of schema 3 to 5
        conn.execute("ALTER TABLE agent_spend ADD COLUMN unpriced_calls INTEGER NOT NULL DEFAULT 0")
    conn.execute(PROGRESS_TABLE)


PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS agent_progress (
    thread_id     TEXT PRIMARY KEY,
    figures       TEXT NOT NULL,
    updated_at    REAL NOT NULL
)
"""
"""Schema 6. The latest progress a graph reported of its own (`{"progress": {"done": n, "total":
N}}` in its custom stream), as JSON figures, so `agent status` in another process shows it
(runtime/threads/progress.py). A queue's progress is counted from its results instead."""


SCHEDULE_TABLES = """
CREATE TABLE IF NOT EXISTS agent_schedules (
    name          TEXT PRIMARY KEY,
    graph         TEXT NOT NULL,
    cron          TEXT NOT NULL,
    tz            TEXT NOT NULL,
    input         TEXT NOT NULL DEFAULT '{}',
    settings      TEXT NOT NULL DEFAULT '{}',
    overlap       TEXT NOT NULL DEFAULT 'skip',
    missed        TEXT NOT NULL DEFAULT 'skip',
    max_failures  INTEGER NOT NULL DEFAULT 3,
    status        TEXT NOT NULL DEFAULT 'active',
    pause_reason  TEXT,
    failures      INTEGER NOT NULL DEFAULT 0,
    next_fire     REAL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_schedule_runs (
    id            INTEGER PRIMARY KEY,
    schedule      TEXT NOT NULL,
    fire_time     REAL NOT NULL,
    thread_id     TEXT,
    status        TEXT NOT NULL,
    started_at    REAL,
    ended_at      REAL,
    error         TEXT,
    worker        TEXT,
    resumes       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (schedule, fire_time)
);
CREATE INDEX IF NOT EXISTS agent_schedule_runs_status ON agent_schedule_runs (status)
"""
"""Schema 4. `agent_schedules`: one row per schedule, with the next occurrence to fire (UTC epoch
seconds). `agent_schedule_runs`: one row per occurrence a worker claimed (UNIQUE (schedule,
fire_time): an occurrence is claimed once, whatever the number of workers), skipped or missed;
its cost is the thread's in `agent_spend` (runtime/schedules/calendar.py)."""


def create_schedule_tables(conn: sqlite3.Connection) -> None:
    for statement in SCHEDULE_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


EXPECTED_TABLES = ("agent_threads", "checkpoints", "checkpoint_blobs", "writes")

# Not graph nodes: keys LangGraph keeps in `versions_seen` for its own bookkeeping.
_NOT_NODES = ("__input__", "__interrupt__")
_TASKS = "__pregel_tasks"


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def needs_conversion(conn: sqlite3.Connection) -> bool:
    """Whether `checkpoints` is in langgraph-checkpoint-sqlite's layout (schema 1)."""
    columns = table_columns(conn, "checkpoints")
    return bool(columns) and "next" not in columns


def ensure_checkpoint_tables(conn: sqlite3.Connection, serde_factory: Callable[[], Any]) -> int:
    """Create the checkpoint tables, converting schema-1 ones; inside the caller's transaction.

    Returns the number of checkpoints converted. `serde_factory` builds LangGraph's serializer,
    and is called only when there is something to convert (it is slow to import).
    """
    converted = 0
    if needs_conversion(conn):
        converted = _convert_v1(conn, serde_factory())
    elif table_columns(conn, "checkpoints") and "vals" not in table_columns(conn, "checkpoints"):
        _rebuild_v4(conn)
    create_checkpoint_tables(conn)
    return converted


def create_checkpoint_tables(conn: sqlite3.Connection) -> None:
    """CREATE TABLE IF NOT EXISTS each table, statement by statement (executescript would commit)."""
    for statement in CHECKPOINT_TABLES.split(";"):
        if statement.strip():
            conn.execute(statement)


_V4_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, step, source, created_at, "
    "run_id, writers, next"
)


def _rebuild_v4(conn: sqlite3.Connection) -> None:
    """Copy schema 2-4 checkpoint rows into the schema-5 table, oldest first (their values stay in
    checkpoint_blobs, where rows without `refs` find them)."""
    conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_v4")
    create_checkpoint_tables(conn)
    conn.execute(
        f"INSERT INTO checkpoints ({_V4_COLUMNS}) SELECT {_V4_COLUMNS} FROM checkpoints_v4 ORDER BY checkpoint_id"
    )
    conn.execute("DROP TABLE checkpoints_v4")


def _convert_v1(conn: sqlite3.Connection, serde: Any) -> int:
    """Move every schema-1 checkpoint into the new layout: values into blobs, history into columns."""
    conn.execute("ALTER TABLE checkpoints RENAME TO checkpoints_v1")
    has_writes = bool(table_columns(conn, "writes"))
    if has_writes:
        conn.execute("ALTER TABLE writes RENAME TO writes_v1")
    create_checkpoint_tables(conn)
    if has_writes:
        write_columns = table_columns(conn, "writes_v1")
        task_path = "task_path" if "task_path" in write_columns else "''"
        conn.execute(
            "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
            f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {task_path}, idx, channel, type, value FROM writes_v1"
        )
        conn.execute("DROP TABLE writes_v1")
    count = 0
    threads = [r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints_v1")]
    for thread_id in threads:
        rows = conn.execute(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
            "FROM checkpoints_v1 WHERE thread_id = ? ORDER BY checkpoint_ns, checkpoint_id",
            (thread_id,),
        ).fetchall()
        count += _convert_thread(conn, serde, thread_id, rows)
    conn.execute("DROP TABLE checkpoints_v1")
    return count


def _convert_thread(conn: sqlite3.Connection, serde: Any, thread_id: str, rows: list[tuple]) -> int:
    skeletons: dict[tuple[str, str], dict[str, Any]] = {}
    records = []
    for ns, cid, parent, type_, blob, metadata in rows:
        checkpoint = serde.loads_typed((type_, blob))
        values = checkpoint.get("channel_values") or {}
        checkpoint["channel_values"] = {}
        versions = checkpoint.get("channel_versions", {})
        for channel, version in versions.items():
            stored = serde.dumps_typed(values[channel]) if channel in values else ("empty", None)
            conn.execute(
                "INSERT OR IGNORE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                (thread_id, ns, channel, str(version), *stored),
            )
        meta = json.loads(metadata) if metadata else {}
        skeletons[(ns, cid)] = {
            "seen": checkpoint.get("versions_seen", {}),
            "sends": send_targets(values.get(_TASKS)),
        }
        skeleton_type, skeleton = serde.dumps_typed(checkpoint)
        records.append((ns, cid, parent, skeleton_type, skeleton, metadata, meta, checkpoint.get("ts")))
    writers: dict[tuple[str, str], list[str]] = {}
    next_of: dict[tuple[str, str], list[str]] = {}
    for ns, cid, parent, *_rest, meta, _ts in records:
        if meta.get("source") == "loop" and parent and (ns, parent) in skeletons:
            ran = tasks_between(skeletons[(ns, parent)], skeletons[(ns, cid)])
            writers[(ns, cid)] = ran
            next_of.setdefault((ns, parent), ran)
    for ns, cid, parent, skeleton_type, skeleton, metadata, meta, ts in records:
        conn.execute(
            "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
            "metadata, step, source, created_at, run_id, writers, next) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                thread_id,
                ns,
                cid,
                parent,
                skeleton_type,
                skeleton,
                metadata,
                meta.get("step"),
                meta.get("source"),
                ts,
                meta.get("run_id"),
                _json_or_null(writers.get((ns, cid))),
                _json_or_null(next_of.get((ns, cid))),
            ),
        )
    return len(records)


def send_targets(sends: Iterable[Any] | None) -> list[str]:
    """The node names of the `Send` packets in a checkpoint's task channel."""
    return [node for node in (getattr(s, "node", None) for s in sends or ()) if isinstance(node, str)]


def tasks_between(parent: dict[str, Any], child: dict[str, Any]) -> list[str]:
    """The tasks that ran between two checkpoints of one branch, from what they record.

    A pushed task (a `Send`) is one entry of the parent's task channel; a pulled task is a
    node whose `versions_seen` moved, since running consumes its trigger versions.
    """
    before = parent["seen"]
    pulled = [
        name
        for name, seen in child["seen"].items()
        if name not in _NOT_NODES and any(before.get(name, {}).get(ch) != v for ch, v in seen.items())
    ]
    return list(parent["sends"]) + pulled


def _json_or_null(value: list[str] | None) -> str | None:
    return None if value is None else json.dumps(value)
