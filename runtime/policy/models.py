"""The model factory: the one place where chat models are built.

`offline` is a deterministic local chat model: no key, no network, and token usage reported
as a real endpoint would, so costs and budgets work offline. Options after a colon tune it
for demonstrations and tests, e.g. `offline:latency=0.1,fail_first=1`:

- `latency`: seconds each call takes;
- `fail_first`: each distinct prompt fails this many times (503) before it succeeds;
- `fail_on`: prompts containing this text always fail (503);
- `reject_on`: prompts containing this text are refused as bad requests (400);
- `reply_chars`: every reply is exactly this many characters (deterministic padding);
- `rate_limit_first`: the first N calls of the model, whatever their prompt, get a 429
  with a Retry-After of `retry_after` seconds (default 0).

`openai:<name>` is any OpenAI-compatible endpoint via langchain-openai (`OPENAI_API_KEY`,
`OPENAI_BASE_URL`). The client's own retries are off: the graph's RetryPolicy is the one
layer that retries. This is where the endpoint's text enters the project, so this is where it
is made safe: every failure of a call becomes an `EndpointError` with a redacted message (an
endpoint may echo the key in an error body), and the client's exception, with the request and
response it holds, goes no further.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import re
import threading
import time
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from nodes.errors import EndpointError, OperationError, classify
from nodes.model_call import retry_after
from runtime.errors import BadInput, Message, Setting
from runtime.policy.numbers import check_number, env_number
from runtime.redact import redact

DEFAULT_MODEL = "offline"
DEFAULT_TIMEOUT = 60.0


class OfflineChatModel(BaseChatModel):
    """Deterministic answers computed from the prompt; usage counted at ~4 characters a token."""

    latency: float = 0.0
    fail_first: int = 0
    fail_on: str | None = None
    reject_on: str | None = None
    reply_chars: int | None = None
    rate_limit_first: int = 0
    retry_after: float = 0.0

    def model_post_init(self, __context: Any) -> None:
        self._calls: dict[str, int] = {}
        self._all_calls = 0
        self._lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "offline"

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        with self._lock:
            calls = self._calls[digest] = self._calls.get(digest, 0) + 1
            self._all_calls += 1
            overall = self._all_calls
        if overall <= self.rate_limit_first:
            raise RateLimited("offline model is rate limited (simulated)", self.retry_after)
        if self.reject_on and self.reject_on in prompt:
            raise OperationError("offline model refused the prompt (bad request)", 400)
        if (self.fail_on and self.fail_on in prompt) or calls <= self.fail_first:
            raise OperationError("offline model is unavailable (simulated)", 503)
        text = offline_reply(prompt, digest)
        if self.reply_chars is not None:
            text = (text + " " + digest * (1 + self.reply_chars // 64))[: self.reply_chars]
        usage = {
            "input_tokens": max(1, len(prompt) // 4),
            "output_tokens": max(1, len(text) // 4),
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(content=text, usage_metadata=usage, response_metadata={"model_name": "offline"})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        return self._answer(messages)

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._answer(messages)


class RateLimited(OperationError):
    """A simulated 429 that names its Retry-After, as a real endpoint's header would."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


def offline_reply(prompt: str, digest: str) -> str:
    """A short, stable reply; asked for "exactly N lines", it gives N lines."""
    words = re.findall(r"[\w'-]+", prompt)
    lines = re.search(r"exactly (\d+) lines", prompt)
    if lines:
        topic = " ".join(words[:12])
        return "\n".join(f"{i}. Look into part {i} of: {topic}" for i in range(1, int(lines.group(1)) + 1))
    return f"[offline {digest[:8]}] " + " ".join(words[:24])


def make_model(spec: str | None = None) -> BaseChatModel:
    """Build the chat model a spec names; raise BadInput (exit 2) for a spec that names none."""
    spec = spec or os.environ.get("AGENT_MODEL") or DEFAULT_MODEL
    provider, _, rest = spec.partition(":")
    if provider == "offline":
        return OfflineChatModel(**_offline_options(rest))
    if provider == "openai":
        if not rest:
            raise BadInput(
                Message("{given} needs a model name", given=Setting("model", "openai"), value=spec),
                Message("e.g. {}", Setting("model", "openai:gpt-4o-mini")),
            )
        return _openai(rest)
    raise BadInput(
        Message("unknown model {value!r}", value=spec),
        Message("use {offline} or {openai}", offline=Setting("model", "offline"), openai=Setting("model", "openai:<name>")),
    )


def _offline_options(text: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    kinds = {
        "latency": float,
        "fail_first": int,
        "fail_on": str,
        "reject_on": str,
        "reply_chars": int,
        "rate_limit_first": int,
        "retry_after": float,
    }
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        if key not in kinds or not eq:
            raise BadInput(f"unknown offline model option {part!r}", f"options: {', '.join(kinds)} (e.g. offline:latency=0.1)")
        try:
            options[key] = kinds[key](value)
        except ValueError:
            raise BadInput(f"offline model option {key} needs a {kinds[key].__name__}, not {value!r}") from None
        if kinds[key] is not str:
            check_number(options[key], f"offline model option {key}", whole=kinds[key] is int)
    return options


def _openai(name: str) -> BaseChatModel:
    if not os.environ.get("OPENAI_API_KEY"):
        raise BadInput("OPENAI_API_KEY is not set", "export OPENAI_API_KEY=... (and OPENAI_BASE_URL for another endpoint)")
    import openai  # heavy: imported only when a real model is used

    return _endpoint_chat_model()(
        model=name,
        max_retries=0,
        timeout=float(env_number("AGENT_MODEL_TIMEOUT", exclusive=True, unit="seconds") or DEFAULT_TIMEOUT),
        stream_usage=True,
        # A connection pool per model: langchain-openai otherwise shares one per base URL across
        # the process, bound to the event loop of the first run, so a second run in the same
        # process (a notebook, run then resume) fails with "Event loop is closed".
        http_async_client=openai.DefaultAsyncHttpxClient(),
    )


@functools.cache
def _endpoint_chat_model() -> type:
    """ChatOpenAI whose failures leave it only as `endpoint_error`s (built on first use: heavy)."""
    from langchain_openai import ChatOpenAI

    class EndpointChatOpenAI(ChatOpenAI):
        # The exception is made outside the `except` block, so it does not carry the client's
        # exception along as its context.
        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            try:
                return super()._generate(*args, **kwargs)
            except Exception as exc:
                error = endpoint_error(exc)
            raise error

        async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
            try:
                return await super()._agenerate(*args, **kwargs)
            except Exception as exc:
                error = endpoint_error(exc)
            raise error

        def _stream(self, *args: Any, **kwargs: Any) -> Any:
            try:
                yield from super()._stream(*args, **kwargs)
                return
            except Exception as exc:
                error = endpoint_error(exc)
            raise error

        async def _astream(self, *args: Any, **kwargs: Any) -> Any:
            try:
                async for chunk in super()._astream(*args, **kwargs):
                    yield chunk
                return
            except Exception as exc:
                error = endpoint_error(exc)
            raise error

    return EndpointChatOpenAI


def endpoint_error(exc: Exception) -> EndpointError:
    """What the project keeps of a failed call to an endpoint: its kind, status, Retry-After and
    redacted message (a body that is not JSON, from a broken proxy or an overloaded server, as a 502)."""
    if isinstance(exc, EndpointError):  # made already, by a method this one called (_agenerate's _astream)
        return exc
    if isinstance(exc, json.JSONDecodeError):
        return EndpointError("the model endpoint returned a malformed response (not JSON)", "MalformedResponse", 502, "retryable")
    status = getattr(exc, "status_code", None)
    return EndpointError(
        redact(str(exc)) or type(exc).__name__,
        type(exc).__name__,
        status if isinstance(status, int) else None,
        classify(exc),
        retry_after(exc),
    )


def model_label(spec: str | None) -> str:
    """The spec as shown to a user (it never holds a secret)."""
    return spec or os.environ.get("AGENT_MODEL") or DEFAULT_MODEL
