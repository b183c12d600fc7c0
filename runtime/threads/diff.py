"""What changed in a thread's state between two checkpoints: `agent diff --thread T`.

By default the latest checkpoint against its parent, so the last step. Each change is named by
its path inside the state (`plan[2].status`, `notes[0]`, `meta.owner`), as an RFC 6902 JSON patch
from the older state to the newer one finds them (the `jsonpatch` library, which also pairs list
elements so an insertion is one change, not a shift of every element after it). Only the state
is compared: a queue's items and results live in the store (they belong to the thread, not to a
checkpoint) and are read with `iter_results`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from runtime.store.database import Database
from runtime.threads.history import StateView, get_state

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

OPS = {"add": "added", "remove": "removed", "replace": "changed"}
"""The patch's operations as a change says them (with `optimization=False` a patch has no
`move` or `copy`; its `test` operations carry the value a `remove` or `replace` finds)."""


@dataclass
class Change:
    op: str
    """`added`, `removed` or `changed`."""
    path: str
    """Where in the state: `key`, `key.field`, `key[2].field`."""
    old: Any = None
    """The value before (None when added), as JSON has it."""
    new: Any = None
    """The value after (None when removed), as JSON has it."""

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, "old": self.old, "new": self.new}


@dataclass
class StateDiff:
    thread_id: str
    before: dict[str, Any] | None
    """The older checkpoint (`checkpoint_id`, `step`, `created_at`), None for the empty state
    before a thread's first checkpoint."""
    after: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    """Sorted by path: keys by name, a list's elements by index."""
    unchanged: list[str] = field(default_factory=list)
    """The top-level keys whose values are equal."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "from": self.before,
            "to": self.after,
            "changes": [c.as_dict() for c in self.changes],
            "unchanged": self.unchanged,
        }


def diff_checkpoints(db: Database, thread_id: str, before: str | None = None, after: str | None = None) -> StateDiff:
    """Compare the state at `before` with the state at `after` (each an id, id prefix or step).

    `after` defaults to the latest checkpoint, `before` to the parent of `after`.
    """
    to_view = get_state(db, thread_id, after)
    from_view = get_state(db, thread_id, before) if before else (get_state(db, thread_id, to_view.parent_id) if to_view.parent_id else None)
    old, new = plain(from_view.values if from_view else {}), plain(to_view.values)
    unchanged = sorted(key for key in set(old) & set(new) if old[key] == new[key])
    return StateDiff(thread_id, _point(from_view) if from_view else None, _point(to_view), state_changes(old, new), unchanged)


def state_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The changes that make `old` into `new` (both JSON-like), one per path, sorted by path
    (a list's elements by index)."""
    import jsonpatch

    patch = jsonpatch.JsonPatch.from_diff(old, new, optimization=False, generate_test_ops=True)
    found: list[tuple[tuple[Any, ...], Change]] = []
    tested: dict[str, Any] = {}
    for operation in patch.patch:
        if operation["op"] == "test":
            tested[operation["path"]] = operation["value"]
            continue
        text, order = _located(jsonpatch.JsonPointer(operation["path"]).parts, new, old)
        found.append((order, Change(OPS[operation["op"]], text, tested.pop(operation["path"], None), operation.get("value"))))
    # The patch lists a dict's keys in no fixed order, a list's elements by rising index (each
    # index as the list has it after the changes before it): a stable sort keeps the latter.
    found.sort(key=lambda pair: pair[0])
    return [change for _, change in found]


def readable_path(parts: list[str], *documents: Any) -> str:
    """`plan[2].status` for the pointer parts ["plan", "2", "status"]: an index where the
    documents hold a list there, else a key (quoted as JSON when it is not a plain name)."""
    return _located(parts, *documents)[0]


def _located(parts: list[str], *documents: Any) -> tuple[str, tuple[Any, ...]]:
    """`readable_path`, and the parts to sort by (list indices as numbers)."""
    text, order = "", []
    for part in parts:
        if any(isinstance(doc, list) for doc in documents):
            text += f"[{part}]"
            order.append(int(part) if part.isdigit() else -1)  # `-` (the end) does not occur in a diff
            documents = tuple(doc[int(part)] for doc in documents if isinstance(doc, list) and part.isdigit() and int(part) < len(doc))
        else:
            text += (("." if text else "") + part) if IDENTIFIER.match(part) else f"[{json.dumps(part, ensure_ascii=False)}]"
            order.append(part)
            documents = tuple(doc[part] for doc in documents if isinstance(doc, dict) and part in doc)
    return text, tuple(order)


def plain(value: Any) -> Any:
    """`value` as JSON has it (what `--json` prints): a message or model as its fields, a tuple or
    set as a list, anything else unknown as its text."""
    return json.loads(json.dumps(value, default=_jsonable, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if callable(getattr(value, "model_dump", None)):
        return value.model_dump()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


def _point(view: StateView) -> dict[str, Any]:
    return {"checkpoint_id": view.checkpoint_id, "step": view.step, "created_at": view.created_at, "next": view.next}
