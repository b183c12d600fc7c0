"""A model's requests a minute across a whole deployment: `AGENT_MODEL_RPM`.

`--rpm` holds one run's requests; a provider's limit holds every request made with one key, from
every thread of every worker on every machine. `AGENT_MODEL_RPM="openai:gpt-4o-mini=600,offline=120"`
names such limits, and every process on the same database keeps to them together: each model
request of a run whose model is named reserves one unit of the model's bucket in the database
(`rates.reserve`, runtime/store/seam.py) and waits the seconds the reservation says before it goes.

A limit is keyed by the model: `openai:NAME` as it is written, and `offline` for every offline
spec, whatever its options (`offline:latency=0.1` is the same model, played more slowly). The
bucket holds one request, so requests are spaced evenly, 60/N seconds apart, rather than sent
in bursts that a provider's own per-second smoothing would refuse. The bucket's clock is each
process's wall clock (time.time): machines whose clocks disagree by a second may, for a while,
let through a second's worth of requests more. A request stopped while it waits for its turn
(a drain, a cancel) leaves its unit reserved: the others wait a turn longer, never shorter.

A value that does not parse stops the command that reads it (BadInput, exit 2), never taken as
no limit: a run, a submit or a worker refuses to start.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from runtime.errors import BadInput
from runtime.store.parts import rates

if TYPE_CHECKING:
    from runtime.store.database import Database

MODEL_RPM_ENV = "AGENT_MODEL_RPM"
CAPACITY = 1.0
"""Requests a bucket holds: one, so that requests are evenly spaced."""

_EXAMPLE = f"e.g. {MODEL_RPM_ENV}=openai:gpt-4o-mini=600,offline=120 (requests a minute per model)"


def rate_key(spec: str) -> str:
    """The key a model's limit is kept under: `offline` for any offline spec, else the spec."""
    provider, _, _ = spec.partition(":")
    return "offline" if provider == "offline" else spec


def model_limits() -> dict[str, int]:
    """Requests a minute by model key, as AGENT_MODEL_RPM names them; empty when it is unset.
    BadInput for a value that does not parse."""
    limits: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in os.environ.get(MODEL_RPM_ENV, "").split(","))):
        spec, eq, number = (text.strip() for text in entry.rpartition("="))
        if not eq or not spec:
            raise BadInput(f"{MODEL_RPM_ENV} entry {entry!r} is not MODEL=REQUESTS_A_MINUTE", _EXAMPLE)
        key = _checked_key(spec)
        if key in limits:
            raise BadInput(f"{MODEL_RPM_ENV} names the model {key} twice", f"give each model one limit; {_EXAMPLE}")
        limits[key] = _checked_rpm(key, number)
    return limits


def _checked_key(spec: str) -> str:
    provider, _, name = spec.partition(":")
    if provider not in ("offline", "openai") or (provider == "openai" and not name):
        raise BadInput(f"{MODEL_RPM_ENV} names {spec!r}, which is not a model", f"name offline or openai:NAME; {_EXAMPLE}")
    return rate_key(spec)


def _checked_rpm(key: str, number: str) -> int:
    try:
        value = int(number)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(
            f"{MODEL_RPM_ENV}: the limit of {key} must be a whole number of requests a minute, 1 or more, not {number!r}",
            f"leave a model out for no shared limit; {_EXAMPLE}",
        )
    return value


def shared_admission(db: Database, model: str | None, cheap_model: str | None = None) -> Callable[[str | None, float], Awaitable[float]] | None:
    """The hook a run's limiter awaits before each model request (runtime/policy/limits.py), given
    the spec of the model the request goes to (None: the run's `model`): it reserves a unit of
    that model's shared bucket, off the event loop, and returns the seconds to wait (0 at once
    for a model AGENT_MODEL_RPM does not name). None when it names neither of the run's models."""
    limits = model_limits()
    named = {rate_key(spec) for spec in (model, cheap_model) if spec} & set(limits)
    if not named:
        return None

    def reserve(key: str) -> float:
        return rates.reserve(db.conn, key, limits[key] / 60, CAPACITY, time.time())

    async def admit(spec: str | None, tokens: float = 0.0) -> float:
        key = rate_key(spec or model or "")
        if key not in named:
            return 0.0
        return await asyncio.to_thread(reserve, key)

    return admit
