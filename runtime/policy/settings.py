"""Run settings: what the user gave, over what the thread stored, over the graph's defaults.

Settings are stored with the thread (they never hold a secret) so that `resume` runs it the
same way unless told otherwise. A deadline is a duration: each run or resume gets it afresh.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from runtime.policy.ceilings import COST_CEILING_ENV, TOKENS_CEILING_ENV, system_ceiling
from runtime.errors import BadInput, Message, Setting, setting_or_text
from runtime.policy.numbers import check_number
from runtime.policy.models import model_label

BASE_DEFAULTS: dict[str, Any] = {
    "max_attempts": 3,
    "concurrency": 8,
    "backoff": 0.5,
    "node_timeout": 300.0,
    "deadline": None,
    "rpm": None,
    "tpm": None,
    "max_tokens": None,
    "max_cost": None,
    "cheap_model": None,
    "background": False,
}
"""`concurrency` 8: enough to keep a remote API busy (at 1-2 s a call, 240-480 requests a minute,
within the first tier of the common providers); a 429 lowers it for the run until calls succeed."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | int | None, option: str) -> float | None:
    """`90`, `90s`, `10m`, `1h30m`, `1d` -> seconds; `0` or `none` -> no limit. A number is
    held to the rule of runtime/policy/numbers.py (finite, 0 or more); so is the total of a text.
    `option` is the setting (`deadline`) or the environment variable the text came from."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else (float(check_number(text, option, unit="seconds")) or None)
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned in ("0", "none", "off"):
        return None
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + (u or "") for n, u in parts) != cleaned:
        raise BadInput(Message("{setting} {value!r} is not a duration", setting=setting_or_text(option), value=text), _duration_examples(option))
    total = sum(float(n) * _UNIT[u or None] for n, u in parts)
    if not math.isfinite(total):
        raise BadInput(
            Message("{setting} {value!r} is too long to be a duration", setting=setting_or_text(option), value=text), _duration_examples(option)
        )
    return total or None


def _duration_examples(option: str) -> Message:
    """`e.g. deadline="90s", ...`; an environment variable is shown with its value after it."""
    named = setting_or_text(option)
    shown = [Setting(option, text) if isinstance(named, Setting) else f"{option} {text}" for text in ("90s", "10m", "1h30m")]
    return Message("e.g. {a}, {b} or {c}", a=shown[0], b=shown[1], c=shown[2])


@dataclass
class RunSettings:
    """How a thread runs. A field left None takes the stored value, then the graph's default."""

    model: str | None = None
    max_attempts: int | None = None
    concurrency: int | None = None
    backoff: float | None = None
    """Seconds before the first retry, doubled after each further failure; 0 retries at once."""
    node_timeout: float | str | None = None
    """Seconds one attempt of a node may take before it counts as a retryable failure."""
    deadline: float | str | None = None
    """Seconds the whole run may take; past it the run stops at a node boundary (status timeout)."""
    rpm: int | None = None
    """Model requests a minute, over the whole run; 0 for no limit."""
    tpm: int | None = None
    """Model tokens a minute (prompt and reply, as the model reports them); 0 for no limit."""
    max_tokens: int | None = None
    """Tokens (prompt and reply) the thread may spend over all its runs; past it the run stops
    at a node boundary (status budget_exceeded). 0 for no limit."""
    max_cost: float | None = None
    """Estimated USD the thread may spend over all its runs (runtime/policy/prices.py); 0 for no limit."""
    cheap_model: str | None = None
    """A cheaper model for routine steps, and for every step once under 20% of the budget is left."""
    background: bool | None = None
    """Nobody is at the terminal: sensitive actions always wait for `agent approve`."""

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def resolve(self, stored: dict[str, Any] | None = None, graph_defaults: dict[str, Any] | None = None) -> "RunSettings":
        """The settings to run with: given > stored > graph defaults > base defaults, validated."""
        given = self.given()
        for key in ("node_timeout", "deadline"):
            if isinstance(given.get(key), str):
                given[key] = parse_duration(given[key], key) or 0.0
        merged = {**BASE_DEFAULTS, **(graph_defaults or {}), **(stored or {}), **given}
        known = {f.name for f in fields(self)}
        resolved = RunSettings(**{k: v for k, v in merged.items() if k in known})
        resolved.model = model_label(resolved.model)
        resolved._check()
        # 0 means "no limit" for the time limits, the rates and the budgets.
        resolved.node_timeout = float(resolved.node_timeout) if resolved.node_timeout else None
        resolved.deadline = float(resolved.deadline) if resolved.deadline else None
        resolved.rpm = resolved.rpm or None
        resolved.tpm = resolved.tpm or None
        resolved.max_tokens = resolved.max_tokens or None
        resolved.max_cost = float(resolved.max_cost) if resolved.max_cost else None
        resolved.background = bool(resolved.background)
        return resolved

    def _check(self) -> None:
        """Every number by the rule of runtime/policy/numbers.py; budgets within the system-wide ceilings."""
        check_number(self.max_attempts, "max_attempts", minimum=1, whole=True)
        check_number(self.concurrency, "concurrency", minimum=1, whole=True)
        check_number(self.backoff, "backoff", unit="seconds", note="0 retries at once")
        for name in ("node_timeout", "deadline"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, unit="seconds", note="0: none")
        for name in ("rpm", "tpm", "max_tokens"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, whole=True, note="0: no limit")
        if self.max_cost is not None:
            check_number(self.max_cost, "max_cost", unit="US dollars", note="0: no limit")
        for option, value, env in (("max_cost", self.max_cost, COST_CEILING_ENV), ("max_tokens", self.max_tokens, TOKENS_CEILING_ENV)):
            ceiling = system_ceiling(env)
            if ceiling is not None and value and value > ceiling:
                raise BadInput(
                    Message(
                        "{setting} {value:g} is above the system-wide ceiling of {ceiling:g} ({env})",
                        setting=Setting(option), value=value, ceiling=ceiling, env=env,
                    ),
                    f"ask for {ceiling:g} or less; runs may not exceed the ceiling",
                )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

