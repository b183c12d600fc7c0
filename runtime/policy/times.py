"""How an instant is written wherever a face shows one: ISO 8601 in UTC with microseconds and
the offset `+00:00`, e.g. `2026-12-02T09:41:48.123456+00:00`, the form LangGraph gives each
checkpoint's `ts` (what `agent history`, `state` and `diff` show), so every `--json` time
sorts and parses alike. Instants are kept as epoch seconds inside; only their view is text.
"""

from __future__ import annotations

from datetime import datetime, timezone


def iso_time(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC; None stays None (an instant not reached yet)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")
