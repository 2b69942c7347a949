"""The text rules shared by the log formats (docs/log_format.md): escaping
of text fields, integer fields, the error a reader raises, and the framing
of a log's lines (:class:`Framing`: message, SOF, comments, HDR, records,
EOF, a cut-off end) that the Profile/Trace and ReferenceTracing readers share.

The one Python copy of the escaping rule: the C writers escape ``\\``,
tab, newline and carriage return as ``\\\\``, ``\\t``, ``\\n``, ``\\r`` so
that a record stays one line of tab-separated fields; :func:`unescape`
undoes it and :func:`escape` applies it (a report printing a message on
one line).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple

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


class Framing:
    """The frame of a log, read line by line; the records inside are the
    caller's.

    A log is an optional first line (the message), ``SOF``, then comments
    (``#``), blank lines, one ``HDR:`` line and records (``TAG:\tfields``),
    and ``EOF``.  :meth:`records` yields ``(line number, tag, rest)`` for
    each record line after the HDR: (``rest``: the fields, still joined by
    tabs).  A record the caller cannot parse goes to :meth:`reject`: the
    error is raised at the next record, or at the end when the log is
    complete; as the last line of a log without ``EOF`` it is a record cut
    off by a killed writer, and is dropped (``truncated_line``).  So is a
    last line without its newline.

    ``log`` gets ``message``, ``complete`` and ``truncated_line``; ``kind``
    names the format in the errors (:class:`LogFormatError`, one line).
    """

    def __init__(self, log, kind: str) -> None:
        self.log = log
        self.kind = kind
        self._bad: Optional[str] = None

    def reject(self, number: int, tag: str, exc: Exception) -> None:
        """The record on line ``number`` is bad (see the class docstring)."""
        self._bad = f"{self.log.path}:{number}: bad {tag} record ({exc})"

    def records(
        self,
        lines: Iterable[str],
        header: Callable[[str], None],
        comment: Callable[[str], None],
    ) -> Iterator[Tuple[int, str, str]]:
        """Yield the record lines of ``lines`` as ``(number, tag, rest)``.

        ``header(rest)`` takes the HDR: line's fields (and raises
        LogFormatError when they are not this kind's); ``comment(line)``
        takes each ``#`` line.  The log is checked whole once the iterator
        is exhausted.
        """
        log = self.log
        path = log.path
        seen_sof = False
        seen_hdr = False
        for number, raw in enumerate(lines, 1):
            if raw.endswith("\n"):
                line = raw[:-1].rstrip("\r")
            elif raw == "EOF":
                line = raw
            else:
                # A last line without its newline: the writer was cut off.
                log.truncated_line = True
                break
            if not seen_sof:
                if line == "SOF":
                    seen_sof = True
                elif number == 1:
                    log.message = unescape(line)
                else:
                    raise LogFormatError(f"{path}: not a {self.kind} log (no SOF line at the top)")
                continue
            if line == "EOF":
                log.complete = True
                break
            if not line:
                continue
            if line[0] == "#":
                comment(line)
                continue
            tag, _, rest = line.partition("\t")
            if tag == "HDR:":
                header(rest)
                seen_hdr = True
                continue
            if not seen_hdr:
                raise LogFormatError(f"{path}:{number}: record before the HDR: line")
            if self._bad is not None:
                raise LogFormatError(self._bad)
            yield number, tag, rest
        if self._bad is not None:
            if log.complete:
                raise LogFormatError(self._bad)
            log.truncated_line = True
        if not seen_sof:
            raise LogFormatError(f"{path}: not a {self.kind} log (empty, or no SOF line)")
        if not seen_hdr:
            raise LogFormatError(f"{path}: not a {self.kind} log (no HDR: line)")
