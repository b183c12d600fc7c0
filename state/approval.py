"""State of the `approval` graph: a plan of actions, some sensitive, each carried out (simulated)
only once a person has approved it."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from typing_extensions import TypedDict


class Action(TypedDict, total=False):
    kind: str
    """What to do: `send_email`, `delete_data`, `make_purchase` and `change_permissions` are
    sensitive (they wait for approval); any other kind (`read_data`, `draft_report`, ...) is not."""

    target: str
    """Whom or what it is done to: an address, a table, a vendor, an account."""

    detail: str
    """The specifics: the subject, the rows, the amount, the role."""


class ApprovalInput(TypedDict, total=False):
    """What a user passes to `agent run approval --input ...`."""

    request: str
    """The task in words (shown in the report)."""

    actions: list[Action]
    """The plan, in order (default: a small plan with one action of each sensitive kind)."""


class PlannedAction(Action, total=False):
    id: str
    """`a1`, `a2`, ...: the action's place in the plan."""

    sensitive: bool
    """Whether the action waits for a person, for those who read the plan. `perform` does not
    read it: it decides from the kind (nodes/approval.needs_approval), which an edit of the
    state cannot turn off."""


class PerformInput(TypedDict):
    """What one `perform` task is sent (one per planned action, side by side)."""

    action: PlannedAction


class ApprovalOutput(TypedDict, total=False):
    """What a run of `approval` answers with (`agent run` prints it)."""

    report: str
    """A summary of what was done and what was refused."""


class ApprovalState(ApprovalInput, total=False):
    plan: list[PlannedAction]
    """The actions with their ids and whether each is sensitive, written by `plan`."""

    performed: Annotated[list[dict[str, Any]], operator.add]
    """Each action's outcome: the action, `outcome` (`done` or `rejected`) and `effect`, what it
    did or would have done. Every effect is simulated: nothing is sent, deleted or bought."""

    decisions: Annotated[list[dict[str, Any]], operator.add]
    """Each decision on a sensitive action: `action_id`, `action`, `approved`, `by` (the OS user),
    `at` (UTC, ISO 8601), `reason`, `via` (`agent approve`, `agent reject` or `--yes`). Written
    only by `perform`, from an answer: `--set` may not write it (graphs/approval.PROTECTED_KEYS)."""

    report: str
    """A summary of what was done and what was refused."""
