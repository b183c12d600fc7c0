"""Keep secrets out of anything that is shown or stored.

Text from outside (an endpoint's error body, an exception's message) may hold a key in many
forms: whole, cut short, masked (`sk-ab****wxyz`, as OpenAI's 401 says it), behind `Bearer`, in a
URL's query string or user info, or as the value of a `key=` / `"api_key": ...` pair. `redact`
replaces each with `[redacted]`. It knows the secrets of this process's environment (every
variable whose name says it holds one), so it finds them in whatever shape they come, and it
finds the shapes themselves (a masked key, a bearer token, a `key=` value) whoever they belong to.
"""

from __future__ import annotations

import os
import re

REDACTED = "[redacted]"

_SECRET_NAMES = re.compile(r"(API_?KEY|ACCESS_KEY|SECRET(_KEY)?|TOKEN|PASSWORD|PASSWD)$", re.IGNORECASE)
"""Environment variables whose value is a secret: OPENAI_API_KEY, GITHUB_TOKEN, DB_PASSWORD, ..."""

MIN_SECRET = 8
"""Shorter values are not searched for (they would match ordinary words); nor are shorter parts of one."""

_SHAPES = [
    # A masked key: what is left of it around a run of asterisks.
    (re.compile(r"[\w.\-]*\*{3,}[\w.\-]*"), REDACTED),
    # OpenAI-style keys, whoever they belong to.
    (re.compile(r"\b(sk|rk|pk)-[\w\-]{6,}"), REDACTED),
    # Credentials of an Authorization header.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[\w.~+/=\-]+"), rf"\1\2{REDACTED}"),
    # The value of an `api_key=...`, `password: ...` or `"client_secret": "..."` pair, in a
    # header, a JSON body or a message.
    (
        re.compile(
            r"(?i)\b((?:x-)?api[-_]?key|access[-_]?token|auth[-_]?token|refresh[-_]?token|client[-_]?secret|"
            r"secret[-_]?key|secret|password|passwd|authorization)"
            r"""(["']?\s*[:=]\s*["']?)(?!\[redacted\])(?!(?:bearer|basic)\s)[^\s"'&,;}\]]+"""
        ),
        rf"\1\2{REDACTED}",
    ),
    # Shorter names only as a URL's query parameters: ?key=..., &token=..., &sig=...
    (re.compile(r"(?i)([?&](?:key|token|sig|signature|code)=)(?!\[redacted\])[^&\s\"'#]+"), rf"\1{REDACTED}"),
    # The password of a URL's user info: scheme://user:password@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@"), rf"\1{REDACTED}@"),
]


def redact(text: str) -> str:
    """`text` with every secret it holds replaced by `[redacted]`."""
    for secret in environment_secrets():
        text = _without(text, secret)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def environment_secrets() -> list[str]:
    """The values of this process's secret variables, longest first."""
    values = {value for name, value in os.environ.items() if _SECRET_NAMES.search(name) and len(value) >= MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def _without(text: str, secret: str) -> str:
    """`text` without `secret` or any part of it of MIN_SECRET characters or more (an echo that
    was cut short, or the key's first or last characters)."""
    if secret in text:
        text = text.replace(secret, REDACTED)
    grams = {secret[i : i + MIN_SECRET] for i in range(len(secret) - MIN_SECRET + 1)}
    out, start, i = [], 0, 0
    while i <= len(text) - MIN_SECRET:
        if text[i : i + MIN_SECRET] not in grams:
            i += 1
            continue
        end = i + MIN_SECRET
        while end < len(text) and text[i : end + 1] in secret:
            end += 1
        out += [text[start:i], REDACTED]
        start = i = end
    return "".join(out) + text[start:]
