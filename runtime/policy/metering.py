"""Counting every chat model call of a run, whoever makes it: a LangChain callback handler.

The runner hands one `SpendCallback` to the graph in the run's config; LangChain passes the
run's callbacks down to every chat model called inside its nodes (ours, and the models a user's
own graph builds, of any provider), so no model needs wrapping. When a call returns, the handler
tells the run's meter (runtime/policy/budget.py) the tokens its `usage_metadata` reports, priced
by the model that answered: the name in the reply (`response_metadata["model_name"]`), or else
the name LangChain reported when the call started (`ls_model_name`). A call that failed
reports nothing, as it cost nothing that was counted.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from runtime.policy.budget import SpendMeter


UNNAMED = "(a model that gave no name)"
"""What a call is priced as when neither its reply nor its start named the model: nothing."""


class SpendCallback(BaseCallbackHandler):
    """Tells the meter what each chat model call of the run spent."""

    run_inline = True
    """Called where the call ends (the meter is thread-safe), not from an executor."""
    raise_error = True
    """The meter's own failure is a bug to see, not to log and go past."""
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, meter: SpendMeter) -> None:
        self.meter = meter
        self._started: dict[UUID, str | None] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._remember(run_id, metadata)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._remember(run_id, metadata)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            started = self._started.pop(run_id, None)
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                usage = getattr(message, "usage_metadata", None)
                if not usage:
                    continue
                answered = (getattr(message, "response_metadata", None) or {}).get("model_name") or started or UNNAMED
                self.meter.record(answered, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._started.pop(run_id, None)

    def _remember(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        with self._lock:
            self._started[run_id] = (metadata or {}).get("ls_model_name")
