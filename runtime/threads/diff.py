"""What changed in a thread's state between two checkpoints: `agent diff --thread T`.

By default the latest checkpoint against its parent, so the last step. Only the state is
compared: a queue's items and results live in the store (they belong to the thread, not to a
checkpoint) and are read with `iter_results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.store.database import Database
from runtime.threads.history import StateView, get_state


@dataclass
class Change:
    key: str
    change: str
    """`added`, `removed` or `changed`."""
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "change": self.change, "before": self.before, "after": self.after}


@dataclass
class StateDiff:
    thread_id: str
    before: dict[str, Any] | None
    """The older checkpoint (`checkpoint_id`, `step`, `created_at`), None for the empty state
    before a thread's first checkpoint."""
    after: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    """Sorted by key."""
    unchanged: list[str] = field(default_factory=list)

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
    old = from_view.values if from_view else {}
    new = to_view.values
    changes: list[Change] = []
    unchanged: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append(Change(key, "added", after=new[key]))
        elif key not in new:
            changes.append(Change(key, "removed", before=old[key]))
        elif old[key] != new[key]:
            changes.append(Change(key, "changed", before=old[key], after=new[key]))
        else:
            unchanged.append(key)
    return StateDiff(thread_id, _point(from_view) if from_view else None, _point(to_view), changes, unchanged)


def _point(view: StateView) -> dict[str, Any]:
    return {"checkpoint_id": view.checkpoint_id, "step": view.step, "created_at": view.created_at, "next": view.next}
