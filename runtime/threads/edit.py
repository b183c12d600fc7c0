"""Editing a thread's state before it continues: `agent resume --thread T --set key=value`.

An edit goes through LangGraph's `update_state`, so it is a checkpoint of its own (source
`update`) whose parent is the checkpoint it edits: edit the latest one and the thread goes on
with the new values; edit an older one and the thread forks there. The edit stands for the node
that wrote the edited checkpoint, so the tasks that run next are those that would have run.

`--set` sets: a key with a reducer (a list that accumulates, a counter that adds up) gets the
value given, not the value combined with the old one. A graph's records (its PROTECTED_KEYS,
such as the approval graph's `decisions`) cannot be set: only its nodes write them.
"""

from __future__ import annotations

import json
import types
import typing
from typing import TYPE_CHECKING, Any, Iterable

from runtime.errors import BadInput, Command, ForShell, Message, OneOf, Placeholder, Setting
from runtime.policy.inputs import check_value, decode_json

if TYPE_CHECKING:
    from graphs import GraphSpec

_JSON_START = ('{', '[', '"')


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """`key=value` strings to a dict. A value is JSON (`3`, `true`, `["a"]`, `{"k": 1}`, `null`),
    or else the plain string; one that starts like a JSON object, list or string must be valid JSON."""
    edits: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(
                Message("{setting} {value!r} is not key=value", setting=Setting("edits"), value=pair),
                Message("e.g. {a} or {b}", a=Setting("edits", {"question": "Why is the sea salty?"}), b=Setting("edits", {"steps": 2})),
            )
        try:
            value = decode_json(text, Setting("edits", key=key))
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith(_JSON_START):
                raise BadInput(
                    Message(
                        "{setting}: the value is not valid JSON ({why} at column {column})",
                        setting=Setting("edits", key=key), why=exc.msg, column=exc.colno,
                    ),
                    Message("{quote}e.g. {example}", quote=ForShell("quote it for the shell, "), example=Setting("edits", {key: ["a", "b"]})),
                ) from None
            value = text
        edits[key] = value
    return edits


def state_keys(spec: GraphSpec) -> dict[str, Any]:
    """The keys of the graph's state, each with its declared type (Any where none is known)."""
    builder = spec.build()
    try:
        hints = typing.get_type_hints(builder.state_schema, include_extras=True)
    except Exception:
        hints = {}
    keys = {name: hints.get(name, Any) for name in builder.channels if not name.startswith(("__", "branch:"))}
    return keys


def check_edits(spec: GraphSpec, edits: dict[str, Any], thread_id: str | None = None) -> dict[str, Any]:
    """Refuse keys the state does not have and values of the wrong type, before anything is
    written; `thread_id` is named in the commands a refusal suggests."""
    if not isinstance(edits, dict) or not edits:
        raise BadInput("no edits given", Message("e.g. {}", Setting("edits", {"steps": 2})))
    keys = state_keys(spec)
    if unknown := sorted(set(edits) - set(keys)):
        raise BadInput(f"unknown state key(s) {', '.join(unknown)} for graph {spec.spec}", f"its state keys: {', '.join(sorted(keys))}")
    if protected := sorted(set(edits) & spec.protected):
        raise BadInput(
            f"{', '.join(protected)} of graph {spec.spec} can only be written by the graph itself: it is a record, not a setting",
            Message(
                "a decision is recorded by answering the approval: {}",
                OneOf(*(Command(verb, thread_id=thread_id or Placeholder("THREAD"), ids=["ID"]) for verb in ("approve", "reject"))),
            ),
        )
    for key, value in edits.items():
        check_value(value, f"the value of {key}")
        if (problem := _type_problem(value, keys[key])) is not None:
            raise BadInput(
                Message("{setting}: {problem}", setting=Setting("edits", key=key), problem=problem, value=value),
                Message(
                    "values are JSON ({a}, {b}, {c}); anything else is a string",
                    a=Setting("edits", {"n": 3}), b=Setting("edits", {"flag": True}), c=Setting("edits", {"names": ["a"]}),
                ),
            )
    return edits


async def apply_edits(graph: Any, config: dict[str, Any], edits: dict[str, Any]) -> str:
    """Write `edits` (checked by `check_edits`) at the checkpoint `config` names, the latest
    without one, as a checkpoint of their own; returns its id, which the run goes on from."""
    target = {"configurable": dict(config["configurable"])}
    values, as_node = _as_update(graph, edits), None
    snapshot = await graph.aget_state(target)
    if tuple(snapshot.next) == ("__start__",):
        # The input checkpoint: the input is still waiting in __start__, not yet in the
        # state; the edit is applied to it and stands for the input.
        saved = await graph.checkpointer.aget_tuple(target)
        pending = saved.checkpoint["channel_values"].get("__start__") if saved else None
        values, as_node = {**(pending if isinstance(pending, dict) else {}), **values}, "__start__"
    updated = await graph.aupdate_state(target, values, as_node=as_node)
    return updated["configurable"]["checkpoint_id"]


def _as_update(graph: Any, edits: dict[str, Any]) -> dict[str, Any]:
    from langgraph.channels.binop import BinaryOperatorAggregate
    from langgraph.types import Overwrite

    channels = graph.builder.channels
    return {k: Overwrite(v) if isinstance(channels.get(k), BinaryOperatorAggregate) else v for k, v in edits.items()}


_SIMPLE = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a JSON list", dict: "a JSON object"}


def _type_problem(value: Any, annotation: Any) -> str | None:
    """Why `value` does not fit `annotation`, for the plain types state schemas use; None if it fits
    (or the type is too elaborate to check here: LangGraph's own validation then applies)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_problem(value, typing.get_args(annotation)[0])
    if annotation is Any or annotation is None:
        return None
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else f"must be one of {', '.join(json.dumps(c) for c in choices)}"
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        problems = [_type_problem(value, option) for option in options if option is not type(None)]
        return None if any(p is None for p in problems) else problems[0] if problems else None
    base = origin or annotation
    if base not in _SIMPLE:
        return None
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return None
    if base is int and isinstance(value, bool):
        return f"must be {_SIMPLE[int]}, not {json.dumps(value)}"
    if not isinstance(value, base):
        return f"must be {_SIMPLE[base]}, not {json.dumps(value, default=str)[:60]}"
    return None
