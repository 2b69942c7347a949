"""Helpers shared by the log readers: unescaping and integer fields."""
from __future__ import annotations

_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def unescape(text: str) -> str:
    """Undo the writers' escaping of ``\\\\``, ``\\t``, ``\\n``, ``\\r``."""
    if "\\" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def signed_int(text: str) -> int:
    """``+12``, ``-3`` or ``7`` as an int (ValueError otherwise)."""
    return int(text)


class LogFormatError(ValueError):
    """The file is not a log of the expected kind (message says why)."""
