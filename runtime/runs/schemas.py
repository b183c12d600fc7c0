"""A compiled graph's JSON Schemas, as LangGraph's server answers `GET /assistants/{id}/schemas`.

Each part is worked out the way langgraph-api does it (`langgraph_api.api.assistants._graph_schemas`),
so Studio and other clients of that endpoint read the same document from our server as from
`langgraph dev`. As there, a part that cannot be described is None and the others still answer.
One difference: when the context cannot be described, langgraph-api answers with the graph's
deprecated `config_schema()`, a pydantic class that is no JSON (and fails in turn when the context
is what cannot be described); here it is None.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

from langchain_core.utils.pydantic import create_model
from langgraph.pregel import Pregel
from pydantic import TypeAdapter

log = logging.getLogger(__name__)

# Keys LangGraph's server puts into `configurable` itself, so they are not the assistant's settings.
EXCLUDED_CONFIG_KEYS = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns", "thread_id")


def graph_schemas(graph: Pregel, graph_id: str) -> dict[str, Any]:
    """`graph_id` and the input, output, state, config and context schemas of the compiled graph
    `graph`, each a JSON-serialisable dict or None."""
    parts: dict[str, Callable[[], Any]] = {
        "input_schema": graph.get_input_jsonschema,
        "output_schema": graph.get_output_jsonschema,
        "state_schema": lambda: state_jsonschema(graph),
        "config_schema": lambda: configurable_jsonschema(graph),
        "context_schema": graph.get_context_jsonschema,
    }
    return {"graph_id": graph_id, **{key: _described(graph, key, build) for key, build in parts.items()}}


def _described(graph: Pregel, key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except Exception as exc:
        log.warning("cannot describe the %s of graph %s: %s: %s", key, graph.name, type(exc).__name__, exc)
        return None


def state_jsonschema(graph: Pregel) -> dict[str, Any]:
    """Every channel the graph streams, by the type an update to it takes; a channel whose type
    pydantic cannot describe is described as any value."""
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        update_type = graph.channels[key].UpdateType
        try:
            create_model(key, __root__=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def configurable_jsonschema(graph: Pregel) -> dict[str, Any]:
    """The `configurable` part of the graph's config (its context schema, in LangGraph 1.x),
    without the keys the server sets itself; {} when the graph declares none."""
    with warnings.catch_warnings():  # deprecated since LangGraph 1.0, still what the server calls
        warnings.simplefilter("ignore", DeprecationWarning)
        config_schema = graph.config_schema()
    model_fields = getattr(config_schema, "model_fields", None) or getattr(config_schema, "__fields__", None)
    if model_fields is None or "configurable" not in model_fields:
        return {}
    json_schema = TypeAdapter(model_fields["configurable"].annotation).json_schema()
    if json_schema:
        for key in EXCLUDED_CONFIG_KEYS:
            json_schema["properties"].pop(key, None)
    config_type = getattr(graph, "config_type", None)
    if config_type is not None and hasattr(config_type, "__name__"):
        json_schema["title"] = config_type.__name__
    return json_schema
