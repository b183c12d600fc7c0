"""Nodes of the `approval` graph: plan, carry out each action side by side, report.

A sensitive action waits for a person: `perform` calls LangGraph's `interrupt()` with what it
would do, the run stops (status `interrupted`), and `agent approve` / `agent reject` resume it
with the decision (`Command(resume={interrupt_id: decision})`). Actions run as parallel `Send`
tasks, so several can wait at once, each with its own interrupt id, and be answered one by one.
With `--yes` (not in a background run) they are approved up front, in the user's name. Every
effect is simulated: what would be done is recorded, nothing is sent, deleted or bought.
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


def describe_action(action: Action) -> str:
    """What an action would do, in words."""
    template = _EFFECT.get(action.get("kind", ""), "{kind} on {target}: {detail}")
    return template.format(kind=action.get("kind", "?"), target=action.get("target", "?"), detail=action.get("detail", ""))


def plan(state: ApprovalState) -> dict:
    actions = state.get("actions") or DEFAULT_PLAN
    planned: list[PlannedAction] = [
        {**a, "id": f"a{i + 1}", "sensitive": a.get("kind") in SENSITIVE} for i, a in enumerate(actions)
    ]
    return {"plan": planned}


def dispatch(state: ApprovalState) -> list[Send]:
    """One `perform` task per action, side by side."""
    return [Send("perform", {"action": action}) for action in state.get("plan", [])]


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def perform(task: PerformInput, runtime: Runtime[RunContext]) -> dict:
    action = task["action"]
    effect = describe_action(action)
    if not action.get("sensitive"):
        return {"performed": [{"action": action, "outcome": "done", "effect": f"(simulated) {effect}"}]}
    ctx = runtime.context
    if ctx.approved_by and not ctx.background:
        decision: Any = {"approved": True, "by": ctx.approved_by, "at": _utc(ctx.clock.now()), "reason": None, "via": "--yes"}
    else:
        decision = interrupt({"action_id": action["id"], "kind": action.get("kind"), "target": action.get("target"),
                              "detail": action.get("detail"), "would": effect})  # fmt: skip
    if not isinstance(decision, dict) or "approved" not in decision:
        decision = {"approved": False, "by": None, "at": None, "reason": f"unreadable decision {decision!r}", "via": None}
    record = {"action_id": action["id"], "action": effect, **decision, "approved": bool(decision["approved"])}
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
    order = {a["id"]: i for i, a in enumerate(state.get("plan", []))}
    for p in sorted(performed, key=lambda p: order.get(p["action"].get("id"), 0)):
        lines.append(f"- {p['action'].get('id')}: {p['effect']}" + (f" (reason: {p['reason']})" if p.get("reason") else ""))
    return {"report": "\n".join(lines)}
