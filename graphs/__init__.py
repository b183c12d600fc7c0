"""The graph registry: built-in graphs by name, and users' graphs by `file.py:attr` or `module:attr`.

Graphs are returned uncompiled; whoever opens the database compiles them with its checkpointer.
"""

from __future__ import annotations

import copy as _copy
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import typing
import weakref
from dataclasses import dataclass, field
from dataclasses import replace as _dc_replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from langgraph.graph import StateGraph
from langgraph.types import TimeoutPolicy

from nodes.errors import retry_policy

BUILTIN = {
    "task_queue": "graphs.task_queue",
    "risky": "graphs.risky",
    "research": "graphs.research",
    "approval": "graphs.approval",
}


class GraphLoadError(ValueError):
    """A graph name or spec that names no usable graph; the message says what went wrong.
    `unknown` is set for a bare name that is no built-in graph (`choices` are the built-in
    ones): the runtime then words what to do as each face says it."""

    def __init__(self, message: str, unknown: str | None = None, choices: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.unknown = unknown
        self.choices = choices


_INPUT_KEYS: "weakref.WeakKeyDictionary[Callable[..., StateGraph], set[str] | None]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GraphSpec:
    """A graph ready to compile, and what a thread records about it."""

    spec: str
    """The name or `path.py:attr` / `module:attr` as the thread stores it."""

    version: str
    description: str
    build: Callable[..., StateGraph]
    builtin: bool
    validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    """Run settings this graph prefers (max_attempts, node_timeout, deadline, ...)."""
    protected: frozenset[str] = frozenset()
    """State keys only the graph's nodes write (the module's PROTECTED_KEYS): records such as
    decisions, which an edit of the state may not write."""

    def input_keys(self) -> set[str] | None:
        """Keys the input schema declares, or None when it is not a TypedDict (worked out once
        per graph: a worker checks thousands of inputs of the same graph)."""
        if self.build not in _INPUT_KEYS:
            _INPUT_KEYS[self.build] = self._declared_input_keys()
        keys = _INPUT_KEYS[self.build]
        return set(keys) if keys is not None else None

    def _declared_input_keys(self) -> set[str] | None:
        schema = self.build().input_schema
        try:
            hints = typing.get_type_hints(schema)
        except Exception:
            return None
        if not (isinstance(schema, type) and issubclass(schema, dict)):
            return None
        return set(hints)


def builtin_names() -> list[str]:
    return list(BUILTIN)


def split_spec(spec: str) -> tuple[Path | None, str | None, str]:
    """A user's spec as (file, None, attr) for `path/to/file.py:attr` (the file made absolute)
    or (None, module, attr) for `package.module:attr`; nothing is imported."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        return Path(target).expanduser().resolve(), None, attr
    return None, target, attr


def locate(spec: str) -> Path | None:
    """The file a user's spec would import, found without running any of its code (a module is
    looked for on sys.path as the import system would, without importing its packages); None
    when there is none."""
    path, module, _ = split_spec(spec)
    if path is not None:
        return path if path.is_file() else None
    from importlib.machinery import PathFinder

    search, found = None, None
    for depth, _part in enumerate(module.split(".")):
        found = PathFinder.find_spec(".".join(module.split(".")[: depth + 1]), search)
        if found is None:
            return None
        search = found.submodule_search_locations
    return Path(found.origin) if found is not None and found.origin and found.has_location else None


def load_graph(spec: str) -> GraphSpec:
    """Resolve a graph name or spec; raise GraphLoadError with a hint when it cannot."""
    if spec in BUILTIN:
        module = importlib.import_module(BUILTIN[spec])
        return GraphSpec(
            spec=spec,
            version=module.VERSION,
            description=module.DESCRIPTION,
            build=module.build,
            builtin=True,
            validate=getattr(module, "validate_input", None),
            defaults=dict(getattr(module, "DEFAULTS", {})),
            protected=frozenset(getattr(module, "PROTECTED_KEYS", ())),
        )
    if ":" not in spec:
        raise GraphLoadError(
            f"unknown graph {spec!r}; choose one of {', '.join(BUILTIN)} or name your own as path/to/file.py:attr or package.module:attr",
            unknown=spec,
            choices=tuple(BUILTIN),
        )
    path, target, attr = split_spec(spec)
    if path is not None:
        target = str(path)
        module = _import_file(path)
        spec = f"{path}:{attr}"
        source_file = path
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise GraphLoadError(f"cannot import module {target!r} for graph {spec!r}: {exc}") from None
        except Exception as exc:
            raise GraphLoadError(f"importing module {target} failed: {type(exc).__name__}: {exc}") from None
        source_file = Path(module.__file__) if getattr(module, "__file__", None) else None
    if not hasattr(module, attr):
        raise GraphLoadError(f"{target} has no attribute {attr!r}; name a StateGraph or a function that builds one")
    obj = getattr(module, attr)
    build = _builder_for(obj, spec)
    build()  # an attribute that is no graph fails here, as a GraphLoadError, not later at compile time
    doc = (inspect.getdoc(module) or "").strip().splitlines()
    return GraphSpec(
        spec=spec,
        version=_file_version(source_file),
        description=doc[0] if doc else f"user graph {attr} from {target}",
        build=build,
        builtin=False,
        protected=frozenset(getattr(module, "PROTECTED_KEYS", ())),
    )


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise GraphLoadError(f"graph file {path} does not exist")
    name = "agent_user_graph_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise GraphLoadError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Let the file import its neighbours, as `langgraph dev` does.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise GraphLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _builder_for(obj: Any, spec: str) -> Callable[..., StateGraph]:
    def as_state_graph(value: Any) -> StateGraph:
        if isinstance(value, StateGraph):
            return value
        builder = getattr(value, "builder", None)  # a compiled graph keeps its builder
        if isinstance(builder, StateGraph):
            return builder
        raise GraphLoadError(f"{spec} is of type {type(value).__name__}, not a StateGraph or a function that builds one")

    def produce() -> StateGraph:
        if isinstance(obj, StateGraph) or not callable(obj):
            return as_state_graph(obj)
        if isinstance(getattr(obj, "builder", None), StateGraph):
            return obj.builder
        try:
            value = obj()
        except GraphLoadError:
            raise
        except Exception as exc:
            raise GraphLoadError(f"building {spec} failed: {type(exc).__name__}: {exc}") from None
        return as_state_graph(value)

    def build(max_attempts: int | None = None, backoff: float = 0.5, node_timeout: float | None = None) -> StateGraph:
        graph = produce()
        if max_attempts is not None or node_timeout:
            graph = _with_run_policies(graph, max_attempts, backoff, node_timeout)
        return graph

    return build


def _with_run_policies(graph: StateGraph, max_attempts: int | None, backoff: float, node_timeout: float | None) -> StateGraph:
    """A copy of a user's graph whose nodes get the run's RetryPolicy and timeout, except where
    the node sets its own. Timeouts apply to async nodes only (LangGraph cancels through asyncio)."""
    copy = _copy.copy(graph)
    copy.nodes = dict(graph.nodes)
    for name, node in graph.nodes.items():
        changes: dict[str, Any] = {}
        if max_attempts is not None and not node.retry_policy:
            changes["retry_policy"] = retry_policy(max_attempts, backoff)
        if node_timeout and node.timeout is None and getattr(node.runnable, "func", True) is None:
            changes["timeout"] = TimeoutPolicy(run_timeout=node_timeout)
        if changes:
            copy.nodes[name] = _dc_replace(node, **changes)
    return copy


def _file_version(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "unknown"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
