"""Numbers a user or the environment gives: budgets, ceilings, waits, durations, limits.

One rule for every face (the CLI, a notebook, the HTTP API): a number is finite, at least its
minimum, and whole where a count is meant; NaN, infinities and negatives are refused with an
`InvalidNumber` that names the setting and what it must be. An environment variable that is set
but malformed is an error, never taken as unset: a ceiling that does not parse must not become
"no ceiling".
"""

from __future__ import annotations

import math
import os

from runtime.errors import InvalidNumber


def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0,
    exclusive: bool = False,
    whole: bool = False,
    unit: str = "",
    note: str = "",
) -> float | int:
    """`value` if it keeps the rule (finite; at least `minimum`, or above it when `exclusive`;
    an int when `whole`), else InvalidNumber. Booleans are not numbers here."""
    kind = int if whole else (int, float)
    fits = isinstance(value, kind) and not isinstance(value, bool)
    if fits:
        fits = math.isfinite(value) and (value > minimum if exclusive else value >= minimum)
    if not fits:
        raise InvalidNumber(name, value, _rule(minimum, exclusive, whole, unit, note))
    return value


def env_number(
    env: str,
    *,
    minimum: float = 0,
    exclusive: bool = False,
    whole: bool = False,
    unit: str = "",
    note: str = "",
) -> float | int | None:
    """The number an environment variable holds, None when it is unset or empty; a value that
    is not a number, or breaks the rule of `check_number`, is an InvalidNumber naming `env`."""
    text = os.environ.get(env, "").strip()
    if not text:
        return None
    rule = dict(minimum=minimum, exclusive=exclusive, whole=whole, unit=unit, note=note)
    try:
        value: float | int = float(text)
    except ValueError:
        raise InvalidNumber(env, text, _rule(**rule)) from None
    if whole and math.isfinite(value) and value == int(value):
        value = int(text) if text.lstrip("+-").isdigit() else int(value)
    return check_number(value, env, **rule)


def _rule(minimum: float, exclusive: bool, whole: bool, unit: str, note: str) -> str:
    """`at least 1`, `a whole number of 0 or more`, `0 or more seconds`, `a number above 0`."""
    if exclusive:
        bound = f"above {minimum:g}"
    elif minimum == 0:
        bound = "0 or more"
    else:
        bound = f"at least {minimum:g}"
    if unit:
        text = f"{bound} {unit}"
    elif whole:
        text = bound if minimum > 0 and not exclusive else f"a whole number {'' if exclusive else 'of '}{bound}"
    else:
        text = f"a number {'' if exclusive else 'of '}{bound}"
    return text + (f" ({note})" if note else "")
