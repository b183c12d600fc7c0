"""Keep secrets out of anything that is shown or stored."""

from __future__ import annotations

import os
import re

_SECRET_ENV = ("OPENAI_API_KEY",)
_KEY_PATTERN = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*]{6,}")


def redact(text: str) -> str:
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)
