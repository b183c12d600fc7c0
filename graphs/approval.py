"""A plan of actions where the sensitive ones (email, deletion, purchase, permissions) wait for a
person's approval; every effect is simulated and recorded, never carried out."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from nodes.approval import dispatch, perform, plan, report
from state.approval import ApprovalInput, ApprovalOutput, ApprovalState
from state.context import RunContext

DESCRIPTION = "Carry out a plan of actions; sensitive ones (email, delete, purchase, permissions) wait for agent approve."
VERSION = "1"
PROTECTED_KEYS = ("decisions", "performed")
"""State keys only the graph's nodes write: the record of decisions (who approved what, when)
and of what was done. An edit of the state (`agent resume --set`) may not write them."""


def build(max_attempts: int = 3, backoff: float = 0.5, node_timeout: float | None = None) -> StateGraph:
    """No model calls and no retries: the actions are simulated."""
    graph = StateGraph(ApprovalState, context_schema=RunContext, input_schema=ApprovalInput, output_schema=ApprovalOutput)
    graph.add_node("plan", plan)
    graph.add_node("perform", perform)
    graph.add_node("report", report)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", dispatch, ["perform"])
    graph.add_edge("perform", "report")
    graph.add_edge("report", END)
    return graph


def validate_input(data: dict[str, Any]) -> dict[str, Any]:
    actions = data.get("actions")
    if actions is None:
        return data
    if not isinstance(actions, list) or not actions:
        raise ValueError('"actions" must be a non-empty list, e.g. [{"kind": "send_email", "target": "a@example.com", "detail": "hi"}]')
    for i, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("kind"), str) or not action["kind"]:
            raise ValueError(f'action {i + 1} needs a "kind" (send_email, delete_data, make_purchase, change_permissions, or any other)')
        for key in ("target", "detail"):
            if key in action and not isinstance(action[key], str):
                raise ValueError(f'action {i + 1}: "{key}" must be a string')
        if unknown := set(action) - {"kind", "target", "detail"}:
            raise ValueError(f"action {i + 1}: unknown key(s) {', '.join(sorted(unknown))} (kind, target, detail)")
    return data
