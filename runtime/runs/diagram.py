"""A graph's shape, for `agent graph show NAME`: its nodes and edges, as Mermaid, ASCII or JSON."""

from __future__ import annotations

from typing import Any

from runtime.errors import BadInput, Message, Setting

FORMATS = ("ascii", "mermaid")


def graph_structure(graph: str) -> dict[str, Any]:
    """`graph` (a built-in name or `file.py:attr` / `module:attr`): its nodes and edges, in a stable shape."""
    spec, drawable = _drawable(graph)
    return {
        "graph": spec.spec,
        "description": spec.description,
        "nodes": [{"id": node.id, "name": node.name} for node in drawable.nodes.values()],
        "edges": [
            {"source": edge.source, "target": edge.target, "conditional": bool(edge.conditional), "label": edge.data}
            for edge in drawable.edges
        ],
    }


def draw_graph(graph: str, format: str = "ascii") -> str:
    """The graph drawn as text: `ascii` (boxes and lines, for a terminal) or `mermaid`."""
    if format not in FORMATS:
        raise BadInput(
            Message("unknown {setting} {value!r}", setting=Setting("format"), value=format),
            Message("use {ascii} or {mermaid}", ascii=Setting("format", "ascii"), mermaid=Setting("format", "mermaid")),
        )
    _, drawable = _drawable(graph)
    if format == "mermaid":
        return drawable.draw_mermaid()
    return _ascii(drawable)


def _ascii(drawable: Any) -> str:
    """grandalf, which lays the drawing out, cannot route an edge from a node to itself (a loop
    such as the queue's next chunk): those are drawn without it and listed under the drawing."""
    from langchain_core.runnables.graph import Graph

    loops = [edge for edge in drawable.edges if edge.source == edge.target]
    drawing = Graph(nodes=dict(drawable.nodes), edges=[edge for edge in drawable.edges if edge.source != edge.target]).draw_ascii()
    notes = [f"{edge.source} -> {edge.target} ({'conditional, ' if edge.conditional else ''}loops back to itself)" for edge in loops]
    return drawing + ("\n" + "\n".join(notes) if notes else "")


def _drawable(graph: str) -> tuple[Any, Any]:
    from runtime.runs.plan import load_spec

    spec = load_spec(graph)
    # No checkpointer: drawing reads the structure only.
    return spec, spec.build().compile().get_graph()
