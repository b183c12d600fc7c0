"""Nodes of the `research` graph: plan, one node run per step, then a synthesis."""

from __future__ import annotations

import re
from typing import Literal

from langgraph.runtime import Runtime

from nodes.model_call import call_model
from nodes.usage import text_of, token_usage
from state.context import RunContext
from state.research import ResearchState

MAX_STEPS = 20


def _attempt(runtime: Runtime[RunContext]) -> int:
    return runtime.execution_info.node_attempt if runtime.execution_info else 1


def step_count(state: ResearchState) -> int:
    return max(1, min(MAX_STEPS, int(state.get("steps", 3))))


async def plan(state: ResearchState, runtime: Runtime[RunContext]) -> dict:
    n = step_count(state)
    prompt = (
        f"Plan research on this question: {state['question']}\n"
        f"Reply with exactly {n} lines, one research step a line."
    )
    chosen = runtime.context.choose_model(routine=True)
    message = await call_model(runtime.context, prompt, attempt=_attempt(runtime), model=chosen)
    steps = parse_plan(text_of(message), n, state["question"])
    return {"plan": steps, "step_index": 0, "models": [answered_by("plan", chosen)], **token_usage(message)}


def answered_by(step: str, chosen: tuple[str | None, object]) -> dict[str, str]:
    """A `models` entry: which model answered this step."""
    return {"step": step, "model": chosen[0] or "unknown"}


def parse_plan(text: str, n: int, question: str) -> list[str]:
    """Up to n non-empty lines, numbering stripped; padded if the model gave fewer."""
    lines = [re.sub(r"^\s*(\d+[.)]|[-*])\s*", "", line).strip() for line in text.splitlines()]
    steps = [line for line in lines if line][:n]
    while len(steps) < n:
        steps.append(f"Examine aspect {len(steps) + 1} of: {question}")
    return steps


async def research_step(state: ResearchState, runtime: Runtime[RunContext]) -> dict:
    index = state.get("step_index", 0)
    notes = "\n".join(f"- {note}" for note in state.get("notes", [])) or "- (none yet)"
    prompt = (
        f"Question: {state['question']}\n"
        f"Findings so far:\n{notes}\n"
        f"Now do step {index + 1}: {state['plan'][index]}"
    )
    chosen = runtime.context.choose_model(routine=True)
    message = await call_model(runtime.context, prompt, attempt=_attempt(runtime), model=chosen)
    return {"notes": [text_of(message)], "step_index": index + 1, "models": [answered_by(f"step {index + 1}", chosen)], **token_usage(message)}


def route_step(state: ResearchState) -> Literal["research_step", "synthesize"]:
    return "research_step" if state.get("step_index", 0) < len(state.get("plan", [])) else "synthesize"


async def synthesize(state: ResearchState, runtime: Runtime[RunContext]) -> dict:
    notes = "\n".join(f"{i + 1}. {note}" for i, note in enumerate(state.get("notes", [])))
    prompt = f"Question: {state['question']}\nFindings:\n{notes}\nWrite the final answer."
    chosen = runtime.context.choose_model(routine=False)
    message = await call_model(runtime.context, prompt, attempt=_attempt(runtime), model=chosen)
    return {"answer": text_of(message), "models": [answered_by("synthesize", chosen)], **token_usage(message)}
