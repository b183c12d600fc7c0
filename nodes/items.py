"""Reading a queue's items from the input or from a file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class ItemsError(ValueError):
    """The items cannot be read; the message says why and what to do."""


def read_items(
    items: list[Any] | None = None,
    items_file: str | None = None,
    items_column: str | None = None,
) -> list[Any]:
    """The queue's items, from `items` or from `items_file` (exactly one of them)."""
    if items is not None and items_file is not None:
        raise ItemsError("give either 'items' or 'items_file', not both")
    if items is not None:
        if not isinstance(items, list):
            raise ItemsError("'items' must be a JSON list")
        return items
    if items_file is None:
        raise ItemsError("the input needs 'items' (a list) or 'items_file' (a path)")
    path = Path(items_file)
    if path.is_dir():
        return _read_directory(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ItemsError(f"items file {items_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemsError(f"cannot read items file {items_file}: {exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json_list(text, items_file)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(text, items_file)
    if suffix == ".csv":
        return _read_csv(text, items_file, items_column)
    return [line for line in text.splitlines() if line.strip()]


def _read_json_list(text: str, name: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ItemsError(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, list):
        raise ItemsError(f"{name} must hold a JSON list of items")
    return value


def _read_jsonl(text: str, name: str) -> list[Any]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ItemsError(f"{name} line {lineno} is not valid JSON ({exc.msg})") from None
    return out


def _read_csv(text: str, name: str, column: str | None) -> list[Any]:
    rows = csv.DictReader(text.splitlines())
    fields = rows.fieldnames or []
    if not fields:
        raise ItemsError(f"{name} has no header row")
    column = column or fields[0]
    if column not in fields:
        raise ItemsError(f"{name} has no column {column!r}; its columns: {', '.join(fields)}")
    return [row[column] for row in rows if (row.get(column) or "").strip()]


def _read_directory(path: Path) -> list[Any]:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    try:
        return [p.read_text(encoding="utf-8") for p in files]
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemsError(f"cannot read an item in {path}: {exc}") from None


def render_prompt(template: str, item: Any) -> str:
    """The template with `{item}` replaced; other braces are left as they are."""
    text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
    return template.replace("{item}", text)
