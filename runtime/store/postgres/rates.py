"""Leaky buckets shared by every process on one PostgreSQL database (`agent_rates`), on any machine.

As SQLite's (runtime/store/rates.py): a reservation is one upsert that leaks, adds one unit and
returns the level, so that reservations from many machines at once each see the others' units
(the conflicting row is locked by the first, and the second's update reads its result).
"""

from __future__ import annotations

import psycopg


def reserve(conn: psycopg.Connection, key: str, per_second: float, capacity: float, now: float, amount: float = 1.0) -> float:
    """One statement (an upsert with RETURNING)."""
    level = conn.execute(
        "INSERT INTO agent_rates AS r (key, level, updated_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET "
        "level = GREATEST(0, r.level - GREATEST(0, excluded.updated_at - r.updated_at) * %s) + excluded.level, "
        "updated_at = GREATEST(r.updated_at, excluded.updated_at) "
        "RETURNING level",
        (key, amount, now, per_second),
    ).fetchone()[0]
    return max(0.0, (level - capacity) / per_second)
