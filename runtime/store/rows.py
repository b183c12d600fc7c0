"""The checkpoint row: its columns, how a step's values, their locations and its parent's writes
are packed into it, and what a put needs to know of its parent (`RowFacts`).

Layout in runtime/store/schema.py. A value is found by channel and version in the row whose
`vals` hold it; `refs` names, per location, the channels whose values are there, a location
being a checkpoint_id, LEGACY (the `checkpoint_blobs` table) or NO_VALUE.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Callable, Mapping, NamedTuple

import orjson
import ormsgpack

COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, step, source, created_at, "
    "run_id, writers, next, vals, refs, pwrites"
)
INSERT_CHECKPOINT = f"INSERT INTO checkpoints ({COLUMNS}) VALUES ({', '.join('?' * 16)}) ON CONFLICT DO NOTHING"
HOLDS_LEASE = "EXISTS (SELECT 1 FROM agent_threads WHERE thread_id = ? AND lease = ?)"
"""True while the thread's lease is the given one (fencing: runtime/store/seam.py, LEASE_KEY)."""
INSERT_CHECKPOINT_FENCED = f"INSERT INTO checkpoints ({COLUMNS}) SELECT {', '.join('?' * 16)} WHERE {HOLDS_LEASE} ON CONFLICT DO NOTHING"
"""INSERT_CHECKPOINT while the runner holds the lease: one statement, so no taking over comes between."""
LOADED = "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, vals, refs, next"
"""The columns a checkpoint is loaded from (runtime/store/reading.py)."""
INSERT_WRITE = (
    "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""A write stored on its own (one that a checkpoint row held, moved out of it)."""

pack = ormsgpack.packb
unpack = ormsgpack.unpackb
LEGACY = ""
"""In `refs`: the value is in `checkpoint_blobs`, by (channel, version)."""
NO_VALUE = "-"
"""In `refs`: the channel has a version but no value."""
NOT_ROWS = (LEGACY, NO_VALUE)


class RowFacts(NamedTuple):
    """What a put needs of its parent checkpoint."""

    checkpoint_id: str | None
    next_json: str | None
    """The tasks that ran from it (as JSON): the writers of its child."""
    where: dict[str, str]
    """Where each of its channels' values is (a row's id, or LEGACY / NO_VALUE)."""
    versions: dict[str, Any]
    """Its channel versions: a location serves a child only for the same version."""


NO_PARENT = RowFacts(None, None, {}, {})


def stored_row_facts(
    conn: sqlite3.Connection | sqlite3.Cursor, loads_typed: Callable[[tuple[str, bytes]], Any], thread_id: str, ns: str, cid: str
) -> RowFacts:
    """The facts of a stored checkpoint (none known when it is not stored)."""
    row = conn.execute(
        "SELECT next, vals, refs, type, checkpoint FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
        (thread_id, ns, cid),
    ).fetchone()
    if row is None:
        return RowFacts(cid, None, {}, {})
    versions = loads_typed((row[3], row[4])).get("channel_versions", {})
    return RowFacts(cid, row[0], locations(cid, vals_of(row[1]), unpack(row[2]) if row[2] is not None else None), versions)


def vals_of(packed: bytes | None) -> dict[str, tuple[str, tuple[str, bytes]]]:
    """A row's `vals` as {channel: (version, (type, bytes))}."""
    if packed is None:
        return {}
    return {ch: (version, (type_, blob)) for ch, version, type_, blob in unpack(packed)}


def blob_version(version: str, location: str) -> str:
    """The `version` key of a value in checkpoint_blobs: the version itself for a row written
    before schema 5; for a value pruning moved out of row `location`, the version and that row
    (versions are counters that two branches of a thread can both reach)."""
    return version if location in NOT_ROWS else f"{version}@{location}"


def locations(cid: str, held: Mapping[str, Any], refs: Mapping[str, list[str]] | None) -> dict[str, str]:
    """Where each channel's value is, for the row `cid`: its own `vals`, else its `refs`. A row
    written before schema 5 has neither: everything is in checkpoint_blobs."""
    where = {ch: loc for loc, channels in (refs or {}).items() for ch in channels}
    for ch in held:
        where[ch] = cid
    return where


_json_fallback = json.JSONEncoder(ensure_ascii=False).encode


def encode_json(obj: Any) -> str:
    """Metadata as JSON text, by orjson (a tenth of the json module's time); what orjson refuses
    (keys that are not strings, integers over 64 bits) by the json module, as before."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return _json_fallback(obj)


_NAMES_JSON: dict[tuple[str, ...], str] = {}


def names_json(names: list[str]) -> str:
    """JSON of a list of task names; most steps repeat a handful of lists, so they are cached."""
    key = tuple(names)
    text = _NAMES_JSON.get(key)
    if text is None:
        text = json.dumps(names)
        if len(_NAMES_JSON) < 4096:
            _NAMES_JSON[key] = text
    return text
