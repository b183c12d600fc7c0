"""State of the `research` graph: plan, steps over accumulated notes, synthesis."""

from __future__ import annotations

import operator
from typing import Annotated

from typing_extensions import TypedDict


class ResearchInput(TypedDict, total=False):
    """What a user passes to `agent run research --input ...`."""

    question: str
    """The question to research."""

    steps: int
    """How many research steps the plan has (default 3, at most 20)."""


class ResearchOutput(TypedDict, total=False):
    """What a run of `research` answers with (`agent run` prints it)."""

    answer: str
    """The final synthesis."""


class ResearchState(ResearchInput, total=False):
    plan: list[str]
    """One line per research step, written by `plan`."""

    step_index: int
    """The next plan step to run."""

    notes: Annotated[list[str], operator.add]
    """Each step's findings, in order; later steps read the earlier ones."""

    answer: str
    """The final synthesis."""

    input_tokens: Annotated[int, operator.add]
    output_tokens: Annotated[int, operator.add]

    models: Annotated[list[dict[str, str]], operator.add]
    """Which model answered each step, in order: `{"step": "plan" | "step N" | "synthesize",
    "model": SPEC}` (with --cheap-model, plan and steps go to the cheap one, the synthesis to
    the strong one unless the budget runs low)."""
