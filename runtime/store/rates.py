"""Leaky buckets shared by every process on one SQLite file (`agent_rates`): one row per key.

A model's requests a minute across a deployment (runtime/policy/shared_rates.py) are counted
here rather than in any one process: each request reserves one unit of its model's bucket in one
upsert, which reads the level, leaks what the time since the last reservation lets out, adds the
unit and returns the new level, so that two processes reserving at once never both see room for
one unit (runtime/store/seam.py, `SharedRates`). The bucket's clock is the callers' `now`; a
caller whose clock is behind the row's leaks nothing rather than fills the bucket back up.
"""

from __future__ import annotations

import sqlite3


def reserve(conn: sqlite3.Connection, key: str, per_second: float, capacity: float, now: float, amount: float = 1.0) -> float:
    """One statement (an upsert with RETURNING, SQLite 3.35 or newer)."""
    level = conn.execute(
        "INSERT INTO agent_rates (key, level, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET "
        "level = max(0, agent_rates.level - max(0, excluded.updated_at - agent_rates.updated_at) * ?) + excluded.level, "
        "updated_at = max(agent_rates.updated_at, excluded.updated_at) "
        "RETURNING level",
        (key, amount, now, per_second),
    ).fetchone()[0]
    return max(0.0, (level - capacity) / per_second)
