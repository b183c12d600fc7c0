"""A multi-step model task: plan, steps that build on earlier findings, then a synthesis."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from nodes.errors import retry_policy
from nodes.research import MAX_STEPS, plan, research_step, route_step, synthesize
from state.context import RunContext
from state.research import ResearchInput, ResearchOutput, ResearchState

DESCRIPTION = "Plan a question into steps, research each over the findings so far, then synthesize."
VERSION = "1"


def build(max_attempts: int = 3, backoff: float = 0.5, node_timeout: float | None = None) -> StateGraph:
    """`node_timeout` reaches the nodes through the run context (RunContext.node_timeout)."""
    retry = retry_policy(max_attempts, backoff)
    graph = StateGraph(ResearchState, context_schema=RunContext, input_schema=ResearchInput, output_schema=ResearchOutput)
    graph.add_node("plan", plan, retry_policy=retry)
    graph.add_node("research_step", research_step, retry_policy=retry)
    graph.add_node("synthesize", synthesize, retry_policy=retry)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route_step, ["research_step", "synthesize"])
    graph.add_conditional_edges("research_step", route_step, ["research_step", "synthesize"])
    graph.add_edge("synthesize", END)
    return graph


def validate_input(data: dict[str, Any]) -> dict[str, Any]:
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError('the input needs a "question", e.g. {"question": "Why is the sky blue?"}')
    steps = data.get("steps", 3)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f'"steps" must be a whole number from 1 to {MAX_STEPS}')
    return data
