"""How a failure is classified: retry it, give the item up, or fail the run.

Classification reads attributes (`status_code`) and class names rather than importing the
OpenAI client, so read-only commands never pay for that import.
"""

from __future__ import annotations

import random
from typing import Literal

from langgraph.types import RetryPolicy

Failure = Literal["retryable", "item", "fatal"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""Rate limits, timeouts and server errors: the same request may succeed later."""

FATAL_STATUS = frozenset({401, 403, 404})
"""Wrong key, no permission, unknown model or endpoint: no item can succeed until fixed."""

_RETRYABLE_NAMES = frozenset(
    {
        "APITimeoutError",
        "APIConnectionError",
        "ConnectError",
        "ReadTimeout",
        "WriteTimeout",
        "ConnectTimeout",
        "PoolTimeout",
        "RemoteProtocolError",
        "ReadError",
        "NodeTimeoutError",
    }
)


class OperationError(Exception):
    """A failure raised by an operation this project simulates or wraps.

    `status_code` follows HTTP, so these classify exactly like errors from a real endpoint.
    """

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class EndpointError(Exception):
    """A model endpoint's failure as the model factory (runtime/policy/models.py) passes it on: the
    client exception's class name, HTTP status, Retry-After and redacted message, and how it was
    classified. Nothing else of the client's exception is kept: it holds the request (with its
    Authorization header), the response (its headers) and the body, any of which may echo the key.
    """

    def __init__(
        self,
        message: str,
        origin: str = "EndpointError",
        status_code: int | None = None,
        failure: Failure = "fatal",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.origin = origin
        """The class name of the client's exception (`RateLimitError`, `APIConnectionError`)."""
        self.status_code = status_code
        self.failure = failure
        self.retry_after = retry_after
        """Seconds the server asked to wait (its Retry-After), if it said."""

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.origin, self.status_code, self.failure, self.retry_after)


def classify(exc: BaseException) -> Failure:
    """`retryable`: try again after a backoff. `item`: only this input is bad, give it up.
    `fatal`: a configuration problem or a bug; stop the run so it can be fixed and resumed."""
    if isinstance(exc, EndpointError):
        return exc.failure
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status in RETRYABLE_STATUS:
            return "retryable"
        if status in FATAL_STATUS:
            return "fatal"
        if 400 <= status < 500:
            return "item"
        return "retryable" if status >= 500 else "fatal"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "retryable"
    if any(cls.__name__ in _RETRYABLE_NAMES for cls in type(exc).__mro__):
        return "retryable"
    return "fatal"


MAX_BACKOFF = 60.0
"""The longest wait between two attempts, in seconds (jitter aside)."""


def is_retryable(exc: BaseException) -> bool:
    """The `retry_on` of the project's `RetryPolicy`s."""
    return classify(exc) == "retryable"


def retry_policy(max_attempts: int, backoff: float) -> RetryPolicy:
    """LangGraph's RetryPolicy on the project's classification: exponential backoff from
    `backoff` seconds, doubling, capped at a minute, with LangGraph's jitter (up to +1 s)
    unless `backoff` is 0, which retries at once."""
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_interval=backoff,
        backoff_factor=2.0,
        max_interval=MAX_BACKOFF,
        jitter=backoff > 0,
        retry_on=is_retryable,
    )


def retry_wait(backoff: float, attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based), as `retry_policy` waits:
    `backoff` doubling, capped at a minute, plus up to 1 s of jitter unless `backoff` is 0."""
    if backoff <= 0:
        return 0.0
    return min(MAX_BACKOFF, backoff * 2.0 ** (attempt - 1)) + random.uniform(0, 1)


def describe(exc: BaseException) -> str:
    """One line for a user: class, HTTP status where there is one, and the message."""
    status = getattr(exc, "status_code", None)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    name = exc.origin if isinstance(exc, EndpointError) else type(exc).__name__
    prefix = name + (f" ({status})" if isinstance(status, int) else "")
    return f"{prefix}: {text}"
