"""What tokens cost: a small default price table (prices.json beside this file), by model name.

A model spec's name is matched whole, or by its longest entry followed by `-` (a dated
snapshot such as `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`). A model the table does
not know has no cost (None), never a guessed one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class Price:
    input: float
    """USD per million prompt tokens."""
    output: float
    """USD per million completion tokens."""


@functools.cache
def price_table() -> dict[str, Price]:
    models = json.loads(PRICES_FILE.read_text(encoding="utf-8"))["models"]
    return {name: Price(float(p["input"]), float(p["output"])) for name, p in models.items()}


def model_name(spec: str | None) -> str:
    """`openai:gpt-4o-mini` -> `gpt-4o-mini`; `offline:latency=0.1` -> `offline`."""
    provider, _, rest = (spec or "offline").partition(":")
    return provider if provider == "offline" else rest


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
