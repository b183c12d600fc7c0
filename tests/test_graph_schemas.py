"""Every built-in graph describes itself as LangGraph's server does (`GET /assistants/{id}/schemas`,
what Studio reads): input, output, state, config and context, each as JSON Schema.

The graphs are compiled both ways: as the runtime compiles them (with a checkpointer) and as
`studio.py` hands them to `langgraph dev`.
"""

from __future__ import annotations

import json

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs import builtin_names, load_graph
from runtime.runs.schemas import graph_schemas
from state.context import RunContext, SystemClock

INPUT_FIELDS = {
    "task_queue": {"items", "items_file", "items_column", "prompt"},
    "risky": {"operation", "fail_times", "failure", "max_attempts", "duration", "backoff"},
    "research": {"question", "steps"},
    "approval": {"request", "actions"},
}
OUTPUT_FIELDS = {
    "task_queue": {"total", "done", "failed"},  # no output schema: the whole state
    "risky": {"operation", "outcome", "result", "attempts", "give_up_reason"},
    "research": {"answer"},
    "approval": {"report"},
}
SETTINGS = {"max_attempts", "concurrency", "backoff", "node_timeout", "rpm", "tpm", "model_spec", "background"}
IN_PROCESS = {"clock", "limiter", "meter", "cheap_model", "spread"}
PARTS = ("input_schema", "output_schema", "state_schema", "config_schema", "context_schema")
DESCRIBED = ("type", "$ref", "anyOf", "allOf", "oneOf", "enum", "const")
"""Keys of a JSON Schema that say what a value is; a field pydantic could not describe has none."""


def compiled(name: str, face: str):
    if face == "runtime":
        return load_graph(name).build().compile(checkpointer=InMemorySaver())
    import studio

    return getattr(studio, name)


@pytest.fixture(params=["runtime", "studio"])
def face(request):
    return request.param


def test_every_builtin_graph_is_covered():
    assert set(INPUT_FIELDS) == set(OUTPUT_FIELDS) == set(builtin_names())


@pytest.mark.parametrize("name", builtin_names())
def test_every_part_is_described_as_json(name, face):
    schemas = graph_schemas(compiled(name, face), name)
    assert list(schemas) == ["graph_id", *PARTS]
    assert schemas["graph_id"] == name
    for part in PARTS:
        assert isinstance(schemas[part], dict) and schemas[part].get("properties"), (name, part, schemas[part])
    assert json.loads(json.dumps(schemas)) == schemas


@pytest.mark.parametrize("name", builtin_names())
def test_input_and_output_name_the_graphs_fields(name, face):
    schemas = graph_schemas(compiled(name, face), name)
    assert set(schemas["input_schema"]["properties"]) == INPUT_FIELDS[name]
    assert OUTPUT_FIELDS[name] <= set(schemas["output_schema"]["properties"])


@pytest.mark.parametrize("name", builtin_names())
def test_every_state_field_is_described_by_its_type(name):
    """The state schema falls back to "any value" for a field it cannot describe (a nested
    TypedDict from `typing`); every field of ours says what it holds."""
    properties = graph_schemas(compiled(name, "runtime"), name)["state_schema"]["properties"]
    assert INPUT_FIELDS[name] <= set(properties)
    vague = sorted(key for key, schema in properties.items() if not any(k in schema for k in DESCRIBED))
    assert vague == []


def test_nested_input_types_are_spelled_out():
    schema = graph_schemas(compiled("approval", "runtime"), "approval")["input_schema"]
    actions = schema["properties"]["actions"]
    assert actions["type"] == "array"
    action = schema["$defs"][actions["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(action["properties"]) == {"kind", "target", "detail"}


@pytest.mark.parametrize("name", builtin_names())
def test_the_context_describes_the_settings_and_skips_in_process_objects(name, face):
    schemas = graph_schemas(compiled(name, face), name)
    for part in ("context_schema", "config_schema"):
        fields = set(schemas[part]["properties"])
        assert SETTINGS <= fields, part
        assert not fields & IN_PROCESS, part
    assert schemas["context_schema"]["properties"]["max_attempts"] == {"default": 3, "title": "Max Attempts", "type": "integer"}


def test_the_run_context_still_carries_its_in_process_objects():
    clock, limiter = SystemClock(), object()
    context = RunContext(model="m", clock=clock, limiter=limiter, max_attempts=2)
    assert (context.model, context.clock, context.limiter, context.max_attempts) == ("m", clock, limiter, 2)
    assert isinstance(RunContext().clock, SystemClock)
