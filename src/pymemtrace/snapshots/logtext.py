"""The text rules shared by the log formats (docs/log_format.md): escaping
of text fields, integer fields, and the error a reader raises.

The one Python copy of the escaping rule: the C writers escape ``\\``,
tab, newline and carriage return as ``\\\\``, ``\\t``, ``\\n``, ``\\r`` so
that a record stays one line of tab-separated fields; :func:`unescape`
undoes it and :func:`escape` applies it (a report printing a message on
one line).
"""
from __future__ import annotations

_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPE_TABLE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    """Text as a writer puts it in a field: one line, no tab."""
    return text.translate(_ESCAPE_TABLE)


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
