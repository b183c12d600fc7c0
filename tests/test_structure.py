"""The shape of the house, read from the code's own imports and definitions.

Faces (`cli.py`, `commands/`, `studio.py`) import the runtime; the runtime never imports a face;
graphs import nodes and state, nodes import state, state imports nothing of ours above it.
Inside `runtime/` the rooms are layered too: the errors and redaction every room uses, then
storage, policy, threads, runs and schedules, then the doctor and the public API above them all.
No import circle, no module using another module's private names, and nothing too long to read.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("cli", "studio", "commands", "runtime", "graphs", "nodes", "state")

RUNTIME_ROOMS = ["runtime.errors", "runtime.redact", "runtime.store", "runtime.policy", "runtime.threads", "runtime.runs", "runtime.fleet", "runtime.schedules", "runtime.doctor", "runtime"]
"""Lowest first: a runtime module imports only from its own room and the rooms before it."""

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: list[tuple[str, int]] = field(default_factory=list)
    """(module imported, line) for every import of ours outside `if TYPE_CHECKING:`."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in OURS


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _load() -> dict[str, Module]:
    paths = [ROOT / "cli.py", ROOT / "studio.py"] + [p for top in OURS[2:] for p in sorted((ROOT / top).rglob("*.py"))]
    modules: dict[str, Module] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        modules[_module_name(path)] = Module(_module_name(path), path, tree)
    for module in modules.values():
        parents = {child: node for node in ast.walk(module.tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(module.tree):
            if _under_type_checking(node, parents):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from runtime.threads import registry` imports the module runtime.threads.registry
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
            else:
                continue
            module.imports.extend((t, node.lineno) for t in targets if _is_ours(t))
    return modules


MODULES = _load()


def _layer(name: str) -> str:
    top = name.split(".")[0]
    return {"cli": "face", "studio": "face", "commands": "face"}.get(top, top)


def _room(name: str) -> int:
    return max(i for i, room in enumerate(RUNTIME_ROOMS) if name == room or name.startswith(room + "."))


ALLOWED = {
    "face": {"face", "runtime", "graphs", "nodes", "state"},
    "runtime": {"runtime", "graphs", "nodes", "state"},
    "graphs": {"graphs", "nodes", "state"},
    "nodes": {"nodes", "state"},
    "state": {"state"},
}


def test_every_import_runs_down_the_layers() -> None:
    wrong = [
        f"{m.path.relative_to(ROOT)}:{line} imports {target}"
        for m in MODULES.values()
        for target, line in m.imports
        if _layer(target) not in ALLOWED[_layer(m.name)]
    ]
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_runtime_rooms_import_only_the_rooms_below_them() -> None:
    wrong = [
        f"{m.path.relative_to(ROOT)}:{line} imports {target}"
        for m in MODULES.values()
        if m.name.startswith("runtime")
        for target, line in m.imports
        if target.startswith("runtime") and _room(target) > _room(m.name)
    ]
    assert not wrong, "runtime imports that run back up its rooms:\n" + "\n".join(wrong)


def test_no_import_circle() -> None:
    graph = {name: {t for t, _ in m.imports if t in MODULES and t != name} for name, m in MODULES.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def _private_names_defined() -> dict[str, set[str]]:
    """Every single-underscore name our code defines (functions, classes, attributes, module
    globals), with the modules that define it."""
    defined: dict[str, set[str]] = {}
    for m in MODULES.values():
        for node in ast.walk(m.tree):
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.attr if isinstance(t, ast.Attribute) else t.id for t in targets if isinstance(t, (ast.Attribute, ast.Name))]
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    defined.setdefault(name, set()).add(m.name)
    return defined


def test_no_module_uses_another_modules_private_names() -> None:
    defined = _private_names_defined()
    wrong = []
    for m in MODULES.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and node.module and _is_ours(node.module):
                wrong += [f"{m.path.relative_to(ROOT)}:{node.lineno} imports {a.name} from {node.module}" for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr in defined and m.name not in defined[node.attr]:
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    wrong.append(f"{m.path.relative_to(ROOT)}:{node.lineno} uses {ast.unparse(node)} (private to {', '.join(sorted(defined[node.attr]))})")
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


@pytest.mark.parametrize("top", ["cli.py", "studio.py", "api", "commands", "runtime", "graphs", "nodes", "state", "bench"])
def test_no_function_or_module_is_too_long_to_read(top: str) -> None:
    where = ROOT / top
    long = []
    for path in [where] if where.is_file() else sorted(where.rglob("*.py")):
        text = path.read_text()
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (size := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {size} lines")
    assert not long, f"over {MAX_FUNCTION_LINES} lines a function or {MAX_MODULE_LINES} a module:\n" + "\n".join(long)


def test_the_rules_see_the_whole_house() -> None:
    """The checks above read every package of ours and find the arrows that are there."""
    assert {"cli", "studio", "commands.run", "runtime.store.saver", "graphs", "nodes.queue", "state.context"} <= set(MODULES)
    assert any(t.startswith("runtime") for t, _ in MODULES["commands.run"].imports)
    assert any(t.startswith("nodes") for t, _ in MODULES["graphs.task_queue"].imports)


def test_the_public_api_is_listed_once_and_editors_see_the_same() -> None:
    """`runtime`'s lazy table and its TYPE_CHECKING imports name the same things, each of which
    exists where it is said to be."""
    import importlib

    import runtime

    tree = MODULES["runtime"].tree
    seen: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                seen[imp.module] = tuple(a.name for a in imp.names)
    public = runtime._PUBLIC
    assert {m: set(n) for m, n in seen.items()} == {m: set(n) for m, n in public.items()}
    for module, names in public.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is getattr(runtime, name)
