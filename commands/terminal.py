"""Text made safe for a terminal: what every command and the progress display print goes
through `printable`."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` safe for a terminal: each character that is not printable (a control character a
    terminal reads as an escape sequence, a bidi override or invisible format character that
    reorders or hides what is shown, a line separator) becomes a `\\uXXXX` escape; newlines and
    tabs stay. JSON keeps its meaning: such characters only occur inside its strings, where the
    escape is the same character."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a UTF-16 surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
