"""What each thread's model calls spent, on PostgreSQL (`agent_spend`): one row per thread.

As SQLite's (runtime/store/spend.py): `add` is one upsert, so that adders in many processes,
on many machines, never lose a count.
"""

from __future__ import annotations

import psycopg

from runtime.store.seam import SpendRow


def get(conn: psycopg.Connection, thread_id: str) -> SpendRow | None:
    row = conn.execute(
        "SELECT input_tokens, output_tokens, cost_usd, calls, unpriced_calls FROM agent_spend WHERE thread_id = %s", (thread_id,)
    ).fetchone()
    return None if row is None else SpendRow(*row)


def by_thread(conn: psycopg.Connection) -> dict[str, SpendRow]:
    rows = conn.execute("SELECT thread_id, input_tokens, output_tokens, cost_usd, calls, unpriced_calls FROM agent_spend").fetchall()
    return {r[0]: SpendRow(*r[1:]) for r in rows}


def add(conn: psycopg.Connection, thread_id: str, spend: SpendRow, now: float) -> None:
    """One statement, so that adders in many processes never lose a count."""
    conn.execute(
        "INSERT INTO agent_spend AS s (thread_id, input_tokens, output_tokens, cost_usd, calls, unpriced_calls, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (thread_id) DO UPDATE SET input_tokens = s.input_tokens + excluded.input_tokens, "
        "output_tokens = s.output_tokens + excluded.output_tokens, cost_usd = s.cost_usd + excluded.cost_usd, "
        "calls = s.calls + excluded.calls, unpriced_calls = s.unpriced_calls + excluded.unpriced_calls, "
        "updated_at = excluded.updated_at",
        (thread_id, spend.input_tokens, spend.output_tokens, float(spend.cost_usd), spend.calls, spend.unpriced_calls, now),
    )
