"""Token usage as the chat model reported it."""

from __future__ import annotations

from typing import Any


def token_usage(message: Any) -> dict[str, int]:
    usage = getattr(message, "usage_metadata", None) or {}
    return {
        "input_tokens": int(usage.get("input_tokens", 0) or 0),
        "output_tokens": int(usage.get("output_tokens", 0) or 0),
    }


def estimate_tokens(prompt: Any) -> int:
    """A prompt's tokens before the model has counted them: about four characters a token."""
    return max(1, len(str(prompt)) // 4)


def text_of(message: Any) -> str:
    """A chat message's text (a message object, or a message as a dict): its string content, or
    the text parts of its content blocks."""
    content = message.get("content", "") if isinstance(message, dict) else getattr(message, "content", message)
    if isinstance(content, str):
        return content
    # Content blocks: keep the text parts.
    parts = [b.get("text", "") if isinstance(b, dict) else str(b) for b in content or []]
    return "".join(parts)
