"""The serializer every saver of the project uses: LangGraph's, keeping secrets out of stored errors.

Built on first use: importing LangGraph is slow, and read-only commands do without it.
"""

from __future__ import annotations

import functools
from typing import Any

from runtime.redact import redact


def redacting_serializer() -> Any:
    """A new serializer (LangGraph's JsonPlusSerializer) that redacts the exceptions it stores."""
    return _redacting_serializer_class()()


@functools.cache
def _redacting_serializer_class() -> type:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    class _RedactingSerializer(JsonPlusSerializer):
        """A failed task's exception is saved (as its repr) among the thread's writes, and an HTTP
        error can echo a masked API key (OpenAI's 401 does); it is redacted before it is written.
        """

        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            if isinstance(obj, BaseException):
                obj = redact(repr(obj))  # what JsonPlusSerializer stores for an exception, redacted
            return super().dumps_typed(obj)

    return _RedactingSerializer
