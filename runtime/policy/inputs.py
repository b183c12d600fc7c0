"""JSON a user gives: a run's input (text or a file), a `--set` value, a schedule's input.

One reader for every face, so that odd input is bad input (exit 2 at the CLI), never a crash:
text that is not JSON; NaN and Infinity (Python reads them, JSON has no such values) and
numbers too large to be finite; values nested deeper than MAX_DEPTH levels (deeper than any
real input, and than a checkpoint can store); a file that cannot be read, is not UTF-8 text,
or is larger than MAX_FILE_BYTES.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from runtime.errors import BadInput, Message, Setting

MAX_DEPTH = 100
"""Levels of lists and objects one value may nest (LangGraph's checkpoint format stops at 255)."""
MAX_FILE_BYTES = 64 * 1024 * 1024
"""An input file larger than this is refused (a large list of items belongs in `items_file`)."""


class _Refused(ValueError):
    """A JSON number too large to be finite (raised inside the decoder)."""


class _Constant(ValueError):
    """NaN, Infinity or -Infinity: Python's decoder reads them, JSON has no such values."""


def decode_json(text: str, what: str | Setting) -> Any:
    """`text` as JSON, by the rules above. Raises json.JSONDecodeError for text that is not JSON
    (the caller decides whether that is an error) and BadInput for JSON that is refused."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except _Constant as exc:  # not JSON: the caller treats it as it treats any text that is not
        raise json.JSONDecodeError(f"{exc} is not a JSON value", text, max(text.find(str(exc)), 0)) from None
    except _Refused as exc:
        raise BadInput(
            Message("{what} holds {number}, which is not a finite number", what=what, number=exc), "give numbers as plain finite JSON numbers"
        ) from None
    except RecursionError:
        raise BadInput(Message("{what} is nested more than {depth} levels deep", what=what, depth=MAX_DEPTH)) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadInput(Message("{what} is not usable JSON: {why}", what=what, why=exc)) from None
    check_value(value, what)
    return value


def parse_json(text: str, what: str | Setting, hint: str | Message | None = None) -> Any:
    """`text` as JSON; anything that is not (or is refused) is BadInput naming `what`."""
    try:
        return decode_json(text, what)
    except json.JSONDecodeError as exc:
        problem = Message("{what} is not valid JSON ({why} at line {line} column {column})", what=what, why=exc.msg, line=exc.lineno, column=exc.colno)
        raise BadInput(problem, hint) from None


def check_value(value: Any, what: str | Setting) -> None:
    """Refuse a value (from JSON or from Python) nested deeper than MAX_DEPTH, or holding a
    float that is NaN or infinite. Iterative, so any depth is checked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise BadInput(
                Message("{what} holds {number}, which is not a finite number", what=what, number=item), "give numbers as plain finite JSON numbers"
            )
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= MAX_DEPTH:
            raise BadInput(Message("{what} is nested more than {depth} levels deep", what=what, depth=MAX_DEPTH))
        stack.extend((child, depth + 1) for child in children)


def read_text_file(path: str | Path, what: str) -> str:
    """A file's text: refused when it cannot be read, is larger than MAX_FILE_BYTES or is not UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadInput(f"{what} {path} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} {path} is not UTF-8 text (byte {exc.start + 1} cannot be read as UTF-8; is it a binary file?)") from None


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(text)
    return value
