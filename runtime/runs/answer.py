"""A run's result: the values of the keys its graph outputs, and the same as text for a terminal.

A graph's output is what `graph.invoke` would return: the keys of its output schema
(`StateGraph(..., output_schema=...)`), or of its whole state when it declares none. On a
terminal a graph whose output holds a conversation (`messages`) answers with its last message;
any other with its output keys, a single text value shown as it is. Under `--json` the output is whole, in the run's summary.
"""

from __future__ import annotations

import json
from typing import Any

from nodes.usage import text_of


def output_values(graph: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The values of the compiled graph's output keys present in `values` (a state snapshot's)."""
    keys = getattr(graph, "output_channels", None)
    if isinstance(keys, str):  # a graph whose output is one root channel
        keys = [keys]
    if not keys:
        return dict(values)
    return {key: values[key] for key in keys if key in values}


def answer_text(output: dict[str, Any], values: dict[str, Any]) -> str | None:
    """The output as text for a terminal, or None when there is nothing to show."""
    messages = values.get("messages")
    if "messages" in output and isinstance(messages, list) and messages:
        return text_of(messages[-1])
    shown = {key: value for key, value in output.items() if value not in (None, "", [], {})}
    if not shown:
        return None
    if len(shown) == 1 and isinstance(next(iter(shown.values())), str):
        return next(iter(shown.values()))
    return "\n".join(f"{key}: {_value_text(value)}" for key, value in shown.items())


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value if "\n" not in value else "\n  " + value.replace("\n", "\n  ")
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
