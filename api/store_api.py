"""The store's items (LangGraph's BaseStore, in the same database): put, get, delete, search,
list namespaces. The namespaces a thread keeps its own records under (a queue's items and
results, run records) may be read here but are written only by the runs themselves.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.assistants import server_of
from runtime.errors import AgentError, BadInput

router = APIRouter(tags=["store"])
FILTER_KEY = re.compile(r"[A-Za-z0-9_.-]+")
RESERVED = {"items", "results", "spread", "apiruns", "apithread"}
"""Namespaces' first parts that hold the runtime's records (state/storage.py, api/book.py)."""


class NotYours(AgentError):
    http_status = 403


class ItemPut(BaseModel):
    model_config = ConfigDict(extra="allow")
    namespace: list[str] = Field(min_length=1)
    key: str = Field(min_length=1)
    value: dict[str, Any]


class ItemDelete(BaseModel):
    model_config = ConfigDict(extra="allow")
    namespace: list[str] = Field(min_length=1)
    key: str = Field(min_length=1)


class ItemSearch(BaseModel):
    model_config = ConfigDict(extra="allow")
    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)
    query: str | None = None


class NamespaceList(BaseModel):
    model_config = ConfigDict(extra="allow")
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(None, ge=1)
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=1_000_000_000)


def _checked(namespace: list[str], writing: bool) -> tuple[str, ...]:
    for label in namespace:
        if not isinstance(label, str) or not label or "." in label or not label.isprintable():
            raise BadInput(f"namespace label {label!r} is empty or holds a '.'", 'e.g. ["users", "ana"]')
    if writing and namespace[0] in RESERVED:
        raise NotYours(f"namespace {'.'.join(namespace)!r} holds a thread's own records; only its runs write there", "use a namespace of your own")
    return tuple(namespace)


def _item(item: Any) -> dict[str, Any]:
    return {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at.isoformat() if item.created_at else None,
        "updated_at": item.updated_at.isoformat() if item.updated_at else None,
        **({"score": item.score} if getattr(item, "score", None) is not None else {}),
    }


@router.put("/store/items", status_code=204)
async def put_item(request: Request, body: ItemPut) -> Response:
    store = server_of(request).store
    await store.aput(_checked(body.namespace, True), body.key, body.value)
    return Response(status_code=204)


@router.get("/store/items")
async def get_item(request: Request, key: str, namespace: str | None = None) -> dict[str, Any]:
    store = server_of(request).store
    labels = namespace.split(".") if namespace else []
    if not labels:
        raise BadInput("`namespace` is missing", "e.g. ?namespace=users.ana&key=prefs")
    item = await store.aget(_checked(labels, False), key)
    if item is None:
        raise _missing(labels, key)
    return _item(item)


def _missing(labels: list[str], key: str) -> AgentError:
    error = BadInput(f"no item {key!r} in namespace {'.'.join(labels)!r}", "POST /store/items/search lists what a namespace holds")
    error.http_status = 404
    return error


@router.delete("/store/items", status_code=204)
async def delete_item(request: Request, body: ItemDelete) -> Response:
    store = server_of(request).store
    await store.adelete(_checked(body.namespace, True), body.key)
    return Response(status_code=204)


@router.post("/store/items/search")
async def search_items(request: Request, body: ItemSearch | None = None) -> dict[str, Any]:
    store, body = server_of(request).store, body or ItemSearch()
    prefix = _checked(body.namespace_prefix, False) if body.namespace_prefix else ()
    for name in body.filter or {}:
        if not FILTER_KEY.fullmatch(name):
            raise BadInput(f"filter key {name!r} is not a field name", "letters, digits, `_`, `.` and `-` only; e.g. {\"status\": \"done\"}")
    found = await store.asearch(prefix, filter=body.filter, limit=body.limit, offset=body.offset, query=body.query)
    return {"items": [_item(item) for item in found]}


@router.post("/store/namespaces")
async def list_namespaces(request: Request, body: NamespaceList | None = None) -> dict[str, Any]:
    store, body = server_of(request).store, body or NamespaceList()
    found = await store.alist_namespaces(
        prefix=_checked(body.prefix, False) if body.prefix else None,
        suffix=_checked(body.suffix, False) if body.suffix else None,
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
    )
    return {"namespaces": [list(ns) for ns in found]}
