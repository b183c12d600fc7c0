"""Where a run shows up outside `agent`: LangSmith traces and OpenTelemetry spans.

LangSmith, through LangChain's standard environment variables (`LANGSMITH_TRACING=true`,
`LANGSMITH_API_KEY`, and `LANGSMITH_PROJECT` / `LANGSMITH_ENDPOINT` where wanted): each run is
one trace, a root run `agent <graph>` whose metadata names the thread (`thread_id`, by which
LangSmith groups a thread's runs), the graph, the checkpoint the run started from and the one it
ended at, its status and its steps. Beneath it is LangGraph's own run, a child per node (with
`langgraph_step` and `langgraph_node`) and the model calls. Traces are sent before the run
returns, so a command that ends loses none.

OpenTelemetry (the `otel` extra): where `opentelemetry-api` is installed, a span `agent.run` per
run and a child span `agent.node` per node task, with the same facts as attributes, go to the
global tracer provider. Configure one as usual (`opentelemetry-instrument agent run ...`, or the
SDK in a notebook); without one the spans cost nothing.

Neither ever receives the run's settings or a key: only ids, names, counts and status.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator

if TYPE_CHECKING:
    from runtime.runs.plan import RunPlan

FLUSH_TIMEOUT = 10.0
"""Seconds the end of a run waits for its traces to reach LangSmith."""


def trace_config(plan: RunPlan) -> dict[str, Any]:
    """The run's name and metadata in LangGraph's config: every run and node under it carries them."""
    metadata = {"thread_id": plan.thread_id, "agent_graph": plan.spec.spec}
    if plan.checkpoint_id:
        metadata["agent_start_checkpoint_id"] = plan.checkpoint_id
    return {"run_name": plan.spec.spec, "metadata": metadata}


class RunTrace:
    """One run's root trace and spans: opened around the run, told of each node task, closed
    with how the run ended."""

    def __init__(self, plan: RunPlan) -> None:
        self.facts: dict[str, Any] = {"thread_id": plan.thread_id, "graph": plan.spec.spec}
        if plan.checkpoint_id:
            self.facts["start_checkpoint_id"] = plan.checkpoint_id
        self._tracer = _otel_tracer()
        self._run_span: Any = None
        self._node_spans: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def around(self) -> AsyncIterator[RunTrace]:
        """The run's LangSmith root run (when tracing is on) and its OpenTelemetry span."""
        if self._tracer is not None:
            self._run_span = self._tracer.start_span("agent.run", attributes=_attributes(self.facts))
        root, run_tree = _langsmith_root(self.facts), None
        try:
            async with root as run_tree:
                try:
                    yield self
                finally:
                    if run_tree is not None:
                        run_tree.metadata.update(self.facts)
                        run_tree.end(outputs={key: self.facts.get(key) for key in ("status", "steps", "end_checkpoint_id")})
        finally:
            if run_tree is not None:
                _flush(run_tree)
            if self._run_span is not None:
                for span in self._node_spans.values():
                    span.end()
                self._run_span.set_attributes(_attributes(self.facts))
                _mark_error(self._run_span, self.facts.get("error") if self.facts.get("status") == "failed" else None)
                self._run_span.end()

    def ended(self, status: str, steps: int, checkpoint_id: str | None, error: str | None) -> None:
        self.facts.update(status=status, steps=steps, end_checkpoint_id=checkpoint_id)
        if error:
            self.facts["error"] = error

    def node_started(self, task_id: str, node: str, step: int) -> None:
        if self._run_span is None:
            return
        from opentelemetry import trace

        context = trace.set_span_in_context(self._run_span)
        attributes = _attributes({"thread_id": self.facts["thread_id"], "node": node, "step": step, "task_id": task_id})
        self._node_spans[task_id] = self._tracer.start_span(f"agent.node {node}", context=context, attributes=attributes)

    def node_ended(self, task_id: str, error: str | None) -> None:
        span = self._node_spans.pop(task_id, None)
        if span is not None:
            _mark_error(span, error)
            span.end()


def _attributes(facts: dict[str, Any]) -> dict[str, Any]:
    return {f"agent.{key}": value for key, value in facts.items() if value is not None}


def _mark_error(span: Any, error: str | None) -> None:
    if error:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error))


def _otel_tracer() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:  # the `otel` extra is not installed
        return None
    return trace.get_tracer("agent")


def _langsmith_root(facts: dict[str, Any]) -> Any:
    """LangSmith's `trace` around the run when tracing is on; else a context that gives None."""
    from langsmith import utils

    if not utils.tracing_is_enabled():
        return contextlib.nullcontext()
    from langsmith.run_helpers import trace

    return trace(f"agent {facts['graph']}", "chain", inputs={"thread_id": facts["thread_id"]}, metadata=dict(facts))


def _flush(run_tree: Any) -> None:
    """Send what the run traced before the command ends (LangChain's tracers send in the background)."""
    from langchain_core.tracers.langchain import wait_for_all_tracers

    wait_for_all_tracers()
    client = getattr(run_tree, "client", None)
    if client is not None:
        client.flush(timeout=FLUSH_TIMEOUT)
