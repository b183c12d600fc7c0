"""The built-in graphs compiled for LangGraph's own server (`langgraph dev`, LangGraph Studio),
as langgraph.json names them.

This is the platform's entry point, not part of agent's runner: agent compiles the builders with
its own SQLite checkpointer (runtime/), while the platform brings its checkpointer and store, so
these are compiled with neither. Our nodes take their chat model from the run context
(state.context.RunContext); a run that gives no context, or one without a model, gets the offline
model here, so a graph can be tried in Studio with no key. The model is built when a run starts,
by the one model factory (runtime.policy.models), imported only then: nodes never import runtime/.
"""


from dataclasses import dataclass, field
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graphs import builtin_names, load_graph
from state.context import RunContext


def _model(spec: str = "offline") -> Any:
    from runtime.policy.models import make_model

    return make_model(spec)


def _offline_model() -> Any:
    return _model()


@dataclass
class StudioContext(RunContext):
    """A RunContext whose model defaults to the offline one; a run's context may name another
    the way `--model` does (`{"model": "openai:gpt-4o-mini"}`)."""

    model: Any = field(default_factory=_offline_model)

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = _model(self.model)


class _StudioGraph(CompiledStateGraph):
    """A compiled graph that supplies a StudioContext when a run gives none (invoke and the rest go through these two)."""

    def stream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> Any:
        return super().stream(input, config, context=_context(context), **kwargs)

    def astream(self, input: Any, config: Any = None, *, context: Any = None, **kwargs: Any) -> Any:
        return super().astream(input, config, context=_context(context), **kwargs)


def _context(context: Any) -> Any:
    if context is None:
        return StudioContext()
    if isinstance(context, RunContext) and context.model is None:
        context.model = _offline_model()
    return context


def compile_for_studio(name: str) -> CompiledStateGraph:
    """Built-in graph `name` compiled without a checkpointer, with StudioContext as its context."""
    builder = load_graph(name).build()
    if builder.context_schema is RunContext:
        builder.context_schema = StudioContext  # a dict given as context becomes a StudioContext
    graph = builder.compile(name=name)
    graph.__class__ = _StudioGraph  # same object, with the context default above
    return graph


# One module attribute per built-in graph (task_queue, risky, research, ...), as langgraph.json names them.
globals().update({name: compile_for_studio(name) for name in builtin_names()})
