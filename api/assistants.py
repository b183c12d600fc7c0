"""Assistants: one for each graph the server was started with (built-in, and those of its
`langgraph.json`), as LangGraph's server makes one per graph. Search, get, the graph's drawing
and its JSON schemas. No request can name a graph the server was not started with: an id that
is a file or module path is unknown, never imported.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api import book
from runtime.errors import UnknownGraph
from runtime.policy.times import iso_time

router = APIRouter(tags=["assistants"])
STARTED = iso_time(time.time())


class AssistantSearch(BaseModel):
    model_config = ConfigDict(extra="allow")
    graph_id: str | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)


def server_of(request: Request) -> Any:
    return request.app.state.server


def resolve(server: Any, assistant_id: str) -> tuple[str, str]:
    """(graph id, the spec its runs use) for an assistant id: a graph's name or its assistant's uuid."""
    if assistant_id in server.graphs:
        return assistant_id, server.graphs[assistant_id]
    for graph_id, spec in server.graphs.items():
        if book.assistant_uuid(graph_id) == assistant_id:
            return graph_id, spec
    raise UnknownGraph(
        f"no assistant {assistant_id!r} on this server",
        f"its assistants are the graphs it was started with: {', '.join(server.graphs)}",
    )


def assistant(server: Any, graph_id: str) -> dict[str, Any]:
    description = _description(server.graphs[graph_id])
    return {
        "assistant_id": book.assistant_uuid(graph_id),
        "graph_id": graph_id,
        "name": graph_id,
        "description": description,
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": STARTED,
        "updated_at": STARTED,
    }


@lru_cache(maxsize=64)
def _description(spec: str) -> str | None:
    from graphs import load_graph

    return load_graph(spec).description


@lru_cache(maxsize=64)
def compiled(spec: str) -> Any:
    """The graph compiled with no checkpointer: for its drawing and schemas."""
    from graphs import load_graph

    return load_graph(spec).build().compile()


@router.post("/assistants/search")
async def search_assistants(request: Request, body: AssistantSearch | None = None) -> list[dict[str, Any]]:
    server, body = server_of(request), body or AssistantSearch()
    found = [assistant(server, graph_id) for graph_id in server.graphs]
    found = [a for a in found if body.graph_id in (None, a["graph_id"]) and body.name in (None, a["name"])]
    found = [a for a in found if all(a["metadata"].get(k) == v for k, v in (body.metadata or {}).items())]
    return found[body.offset : body.offset + body.limit]


@router.post("/assistants/count")
async def count_assistants(request: Request, body: AssistantSearch | None = None) -> int:
    return len(await search_assistants(request, (body or AssistantSearch()).model_copy(update={"limit": 1000, "offset": 0})))


@router.get("/assistants/{assistant_id}")
async def get_assistant(request: Request, assistant_id: str) -> dict[str, Any]:
    server = server_of(request)
    graph_id, _ = resolve(server, assistant_id)
    return assistant(server, graph_id)


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(request: Request, assistant_id: str, xray: bool | int = False) -> dict[str, Any]:
    server = server_of(request)
    _, spec = resolve(server, assistant_id)
    graph = await server.call(compiled, spec)
    return graph.get_graph(xray=xray).to_json()


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(request: Request, assistant_id: str) -> dict[str, Any]:
    from runtime.runs.schemas import graph_schemas

    server = server_of(request)
    graph_id, spec = resolve(server, assistant_id)
    return await server.call(lambda: graph_schemas(compiled(spec), graph_id))


@router.get("/assistants/{assistant_id}/subgraphs")
async def get_subgraphs(request: Request, assistant_id: str) -> dict[str, Any]:
    resolve(server_of(request), assistant_id)
    return {}
