"""An example of a user's own graph: it summarises documents one node run at a time, reports its
progress, and answers with a message.

    agent run examples/summarize.py:graph --thread docs --input '{"documents": ["first text", "second text"]}'

What `agent` gives any graph it runs, shown here:

- Spend and budgets: every call of any LangChain chat model made inside the graph is counted and
  priced by the model that answered, and held to `--max-tokens` / `--max-cost`. Nothing here
  wraps the model or reports usage by hand.
- Progress: a graph reports it by writing `{"progress": {"done": n, "total": N}}` (optionally
  `"failed": f`) to LangGraph's custom stream; `agent run` shows a live bar with its rate and ETA,
  and `agent status` shows the same figures from another terminal.
- The answer: a completed run prints the graph's output; a graph whose output holds `messages`
  answers with its last message (`--json` gives the whole output as `values`).

The model is `SUMMARIZE_MODEL`: `offline` (the default: no key, no network) or the name of an
OpenAI model, reached through langchain-openai with `OPENAI_API_KEY` (and `OPENAI_BASE_URL`).
"""

from __future__ import annotations

import operator
import os
from typing import Annotated, Literal

from typing_extensions import TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages


class SummarizeInput(TypedDict, total=False):
    documents: list[str]
    """The texts to summarise."""


class SummarizeOutput(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    """The conversation; the last message is the answer."""


class SummarizeState(SummarizeInput, SummarizeOutput, total=False):
    summaries: Annotated[list[str], operator.add]
    """One summary per document, in order."""


def chat_model() -> BaseChatModel:
    """Any LangChain chat model will do: agent counts what it spends through LangChain's callbacks."""
    name = os.environ.get("SUMMARIZE_MODEL", "offline")
    if name == "offline":
        from runtime import make_model

        return make_model("offline")
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=name, max_retries=0)


async def summarize(state: SummarizeState) -> dict:
    """Summarise the next document, then say how far the graph has got."""
    done = len(state.get("summaries", []))
    documents = state["documents"]
    reply = await chat_model().ainvoke(f"Summarize in one line: {documents[done]}")
    get_stream_writer()({"progress": {"done": done + 1, "total": len(documents)}})
    return {"summaries": [str(reply.content)]}


def more(state: SummarizeState) -> Literal["summarize", "answer"]:
    return "summarize" if len(state.get("summaries", [])) < len(state.get("documents", [])) else "answer"


def answer(state: SummarizeState) -> dict:
    lines = [f"{i}. {summary}" for i, summary in enumerate(state.get("summaries", []), 1)]
    return {"messages": [AIMessage(f"Summarized {len(lines)} documents:\n" + "\n".join(lines))]}


builder = StateGraph(SummarizeState, input_schema=SummarizeInput, output_schema=SummarizeOutput)
builder.add_node("summarize", summarize)
builder.add_node("answer", answer)
builder.add_conditional_edges(START, more)
builder.add_conditional_edges("summarize", more)
builder.add_edge("answer", END)
graph = builder
"""Uncompiled: agent compiles it on its own checkpointer."""
