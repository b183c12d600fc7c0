"""The system-wide ceilings on a run's budget, set by whoever runs the machine.

A run's --max-cost / --max-tokens may not exceed them (checked when settings are resolved,
runtime/policy/settings.py), and a run given none is held to them (runtime/policy/budget.py).
"""

from __future__ import annotations

from runtime.policy.numbers import env_number

COST_CEILING_ENV = "AGENT_MAX_COST_CEILING"
TOKENS_CEILING_ENV = "AGENT_MAX_TOKENS_CEILING"


def system_ceiling(env: str) -> float | None:
    """The ceiling an environment variable sets (AGENT_MAX_COST_CEILING, AGENT_MAX_TOKENS_CEILING),
    or None when it is unset. A value that is not a number above 0 is refused (runtime/policy/numbers.py):
    a malformed ceiling never means "no ceiling"."""
    return env_number(env, exclusive=True, whole=env == TOKENS_CEILING_ENV, note="unset it for no ceiling")
