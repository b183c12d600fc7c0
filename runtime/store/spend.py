"""What each thread's model calls spent, in SQLite (`agent_spend`): one row per thread.

The budget (runtime/policy/budget.py) prices the calls and decides when a run stops; this
module only reads the rows and adds to them (runtime/store/seam.py, `SpendLedger`).
"""

from __future__ import annotations

import sqlite3

from runtime.store.seam import SpendRow


def get(conn: sqlite3.Connection, thread_id: str) -> SpendRow | None:
    row = conn.execute(
        "SELECT input_tokens, output_tokens, cost_usd, calls, unpriced_calls FROM agent_spend WHERE thread_id = ?", (thread_id,)
    ).fetchone()
    return None if row is None else SpendRow(*row)


def by_thread(conn: sqlite3.Connection) -> dict[str, SpendRow]:
    rows = conn.execute("SELECT thread_id, input_tokens, output_tokens, cost_usd, calls, unpriced_calls FROM agent_spend").fetchall()
    return {r[0]: SpendRow(*r[1:]) for r in rows}


def add(conn: sqlite3.Connection, thread_id: str, spend: SpendRow, now: float) -> None:
    """One statement, so that adders in many processes never lose a count."""
    conn.execute(
        "INSERT INTO agent_spend (thread_id, input_tokens, output_tokens, cost_usd, calls, unpriced_calls, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(thread_id) DO UPDATE SET input_tokens = input_tokens + excluded.input_tokens, "
        "output_tokens = output_tokens + excluded.output_tokens, cost_usd = cost_usd + excluded.cost_usd, "
        "calls = calls + excluded.calls, unpriced_calls = unpriced_calls + excluded.unpriced_calls, "
        "updated_at = excluded.updated_at",
        (thread_id, spend.input_tokens, spend.output_tokens, spend.cost_usd, spend.calls, spend.unpriced_calls, now),
    )
