"""Where graphs keep per-item data in the LangGraph store.

A thread's items and results live under namespaces that name the thread, one entry per item,
keyed by the zero-padded index so that key order is item order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing langchain_core is slow; read-only commands use the names only
    from langchain_core.runnables import RunnableConfig


def thread_label(thread_id: str) -> str:
    # Store namespace labels may not contain '.', so it is escaped (and '%' with it).
    return thread_id.replace("%", "%25").replace(".", "%2E")


def results_namespace(thread_id: str) -> tuple[str, ...]:
    return ("results", thread_label(thread_id))


def items_namespace(thread_id: str) -> tuple[str, ...]:
    return ("items", thread_label(thread_id))


def item_key(index: int) -> str:
    return f"{index:09d}"


def thread_of(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


def require_store(store: Any) -> Any:
    if store is None:
        raise RuntimeError("this graph keeps items in a LangGraph store; compile it with store=...")
    return store
