"""Nodes of the `approval` graph: plan, carry out each action side by side, report.

A sensitive action waits for a person: `perform` calls LangGraph's `interrupt()` with what it
would do, the run stops (status `interrupted`), and `agent approve` / `agent reject` resume it
with the decision (`Command(resume={interrupt_id: decision})`). Actions run as parallel `Send`
tasks, so several can wait at once, each with its own interrupt id, and be answered one by one.
With `--yes` (not in a background run) they are approved up front, in the user's name. Every
effect is simulated: what would be done is recorded, nothing is sent, deleted or bought.

Whether an action needs a decision is policy, decided here from the action's kind
(`needs_approval`), never from anything the state says about it: the state can be edited
(`agent resume --set plan=...`), the policy cannot. An answer that is not a decision (who, when,
approved or not) is no decision: the action asks again.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt

from state.approval import Action, ApprovalState, PerformInput, PlannedAction
from state.context import RunContext

SENSITIVE = ("send_email", "delete_data", "make_purchase", "change_permissions")

DEFAULT_PLAN: list[Action] = [
    {"kind": "read_data", "target": "customers", "detail": "accounts inactive for two years"},
    {"kind": "send_email", "target": "owners@example.com", "detail": "notice: inactive accounts will be closed"},
    {"kind": "delete_data", "target": "customers", "detail": "rows of accounts inactive for two years"},
]

_EFFECT = {
    "send_email": "send an email to {target}: {detail}",
    "delete_data": "delete from {target}: {detail}",
    "make_purchase": "buy from {target}: {detail}",
    "change_permissions": "change the permissions of {target}: {detail}",
}


def action_kind(action: Action) -> str | None:
    """The kind as policy reads it: `Delete-Data ` is `delete_data`; None when it is not a string."""
    kind = action.get("kind")
    if not isinstance(kind, str):
        return None
    return "_".join(kind.strip().casefold().replace("-", " ").split())


def needs_approval(action: Action) -> bool:
    """The policy: a sensitive kind, or a kind that cannot be read, waits for a person."""
    kind = action_kind(action)
    return kind is None or kind in SENSITIVE


def describe_action(action: Action) -> str:
    """What an action would do, in words."""
    template = _EFFECT.get(action_kind(action) or "", "{kind} on {target}: {detail}")
    return template.format(kind=action.get("kind", "?"), target=action.get("target", "?"), detail=action.get("detail", ""))


def plan(state: ApprovalState) -> dict:
    actions = state.get("actions") or DEFAULT_PLAN
    planned: list[PlannedAction] = [{**a, "id": f"a{i + 1}", "sensitive": needs_approval(a)} for i, a in enumerate(actions)]
    return {"plan": planned}


def dispatch(state: ApprovalState) -> list[Send]:
    """One `perform` task per action, side by side."""
    return [Send("perform", {"action": action}) for action in state.get("plan", [])]


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def is_decision(answer: Any) -> bool:
    """An answer records a decision only with whether it was approved, who decided and when."""
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("approved"), bool)
        and all(isinstance(answer.get(key), str) and answer[key].strip() for key in ("by", "at"))
    )


async def perform(task: PerformInput, runtime: Runtime[RunContext]) -> dict:
    action = task["action"]
    effect = describe_action(action)
    if not needs_approval(action):  # the kind decides; a `sensitive` flag in the state does not
        return {"performed": [{"action": action, "outcome": "done", "effect": f"(simulated) {effect}"}]}
    ctx = runtime.context
    if ctx.approved_by and not ctx.background:
        decision: Any = {"approved": True, "by": ctx.approved_by, "at": _utc(ctx.clock.now()), "reason": None, "via": "--yes"}
    else:
        question = {"action_id": action.get("id"), "kind": action.get("kind"), "target": action.get("target"),
                    "detail": action.get("detail"), "would": effect}  # fmt: skip
        decision = interrupt(question)
        while not is_decision(decision):  # no decision: ask again (a new interrupt id)
            decision = interrupt({**question, "note": "the previous answer was not a decision (approved, by, at)"})
    # What was decided on is what is done here, whatever the answer says it was about.
    record = {"action_id": action.get("id"), "action": effect, **{k: v for k, v in decision.items() if k not in ("action_id", "action")}}
    if record["approved"]:
        done = {"action": action, "outcome": "done", "effect": f"(simulated) {effect}"}
    else:
        done = {"action": action, "outcome": "rejected", "effect": f"not done: {effect}", "reason": decision.get("reason")}
    return {"performed": [done], "decisions": [record]}


def report(state: ApprovalState) -> dict:
    performed = state.get("performed", [])
    done = sum(1 for p in performed if p["outcome"] == "done")
    rejected = len(performed) - done
    lines = [f"{state.get('request') or 'Plan'}: {done} action(s) done (simulated), {rejected} rejected."]
    order = {a.get("id"): i for i, a in enumerate(state.get("plan", []))}
    for p in sorted(performed, key=lambda p: order.get(p["action"].get("id"), 0)):
        lines.append(f"- {p['action'].get('id')}: {p['effect']}" + (f" (reason: {p['reason']})" if p.get("reason") else ""))
    return {"report": "\n".join(lines)}
