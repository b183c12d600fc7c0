"""What tokens cost: a small default price table (prices.json beside this file), by model name.

A model spec's name is matched whole, or by its longest entry followed by `-` (a dated
snapshot such as `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`). A model the table does
not know has no cost (None), never a guessed one.

`AGENT_PRICES=path.json` names a file of the same format whose entries are merged over the
defaults (a model it names replaces the default's price; others are added). Every run prices
what it spends, so a run checks the file (`check_prices`) before it writes anything.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BadInput

PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class Price:
    input: float
    """USD per million prompt tokens."""
    output: float
    """USD per million completion tokens."""


PRICES_ENV = "AGENT_PRICES"


class PricesError(BadInput):
    """A prices file that cannot be read or is not in prices.json's format (exit 2)."""


def price_table() -> dict[str, Price]:
    """The default table, with the entries of the file `AGENT_PRICES` names merged over it."""
    override = os.environ.get(PRICES_ENV) or None
    return _table(override, _mtime(override))


def _mtime(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None


@functools.cache
def _table(override: str | None, _mtime: float | None) -> dict[str, Price]:
    table = _read(PRICES_FILE)
    if override:
        table = {**table, **_read(override)}
    return table


def check_prices() -> None:
    """Raise PricesError (exit 2) if the prices file AGENT_PRICES names cannot be used."""
    price_table()


FORMAT = '{"models": {"NAME": {"input": USD, "output": USD}}}, USD per million tokens'


def _read(path: str | os.PathLike) -> dict[str, Price]:
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise PricesError(f"cannot read the prices file {path}: {reason}", f"fix or unset {PRICES_ENV}") from None
    try:
        return _prices(json.loads(text))
    except json.JSONDecodeError as exc:
        problem = f"it is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        problem = "it is nested too deeply"
    except ValueError as exc:
        problem = str(exc)
    raise PricesError(
        f"the prices file {path} is not in the format of runtime/policy/prices.json: {problem}",
        f"fix or unset {PRICES_ENV}; the format: {FORMAT}",
    )


def _prices(data: object) -> dict[str, Price]:
    """The table of a parsed prices file; ValueError names the first thing wrong with it."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError('it has no "models" object')
    return {str(name): Price(_usd(entry, name, "input"), _usd(entry, name, "output")) for name, entry in models.items()}


def _usd(entry: object, name: str, side: str) -> float:
    value = entry.get(side) if isinstance(entry, dict) else None
    try:
        usd = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        usd = math.nan
    if not math.isfinite(usd) or usd < 0:
        shown = "nothing" if value is None else json.dumps(value)
        raise ValueError(f"the {side} price of {name!r} must be a number of USD, 0 or more, not {shown}")
    return usd


def model_name(spec: str | None) -> str:
    """`openai:gpt-4o-mini` -> `gpt-4o-mini`; `offline:latency=0.1` -> `offline`; a model's own
    name (as the model that answered gives it: `gpt-4o-mini-2024-07-18`) stays as it is."""
    provider, colon, rest = (spec or "offline").partition(":")
    return provider if provider == "offline" or not colon else rest


def price_for(spec: str | None) -> Price | None:
    name = model_name(spec)
    table = price_table()
    if name in table:
        return table[name]
    matches = [key for key in table if name.startswith(key + "-")]
    return table[max(matches, key=len)] if matches else None


def cost_usd(spec: str | None, input_tokens: int, output_tokens: int) -> float | None:
    """The estimated cost of these tokens on this model, or None for a model without a price."""
    price = price_for(spec)
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000
