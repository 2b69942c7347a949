"""Reader of the Profile/Trace log format (docs/log_format.md).

``read_log(path)`` returns a :class:`ProfileLog` holding every record as a
:class:`Record` dataclass.  Truncated files (a killed process: no ``LAST:``,
no ``EOF``, maybe half a last line) are read up to the last whole record and
flagged ``complete=False``.  A file that is not such a log raises
:class:`LogFormatError` with a one-line reason.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

from pymemtrace.util.logtext import LogFormatError, signed_int, unescape

__all__ = ["LogFormatError", "ProfileLog", "Record", "Message", "read_log", "parse_lines"]

EVENT_TAGS = ("FRST:", "NEXT:", "PREV:", "LAST:")
WHATS = ("CALL", "RETURN", "LINE", "EXCEPT", "C_CALL", "C_RETURN", "C_EXCEPT")
HDR_PREFIX = ["Event", "dEvent", "Clock", "What", "File", "#line", "Function"]


@dataclass(frozen=True)
class Record:
    """One FRST/NEXT/PREV/LAST line."""

    tag: str  # "FRST", "NEXT", "PREV" or "LAST"
    event: int
    d_event: int
    clock: float
    what: str
    file: str
    line: int
    function: str
    rss: int
    d_rss: int
    thread: Optional[int] = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.function}"


@dataclass(frozen=True)
class Message:
    """A MSG: line."""

    event: int
    clock: float
    text: str


@dataclass
class ProfileLog:
    """A parsed Profile/Trace log."""

    path: str = ""
    message: Optional[str] = None
    meta: Dict[str, str] = field(default_factory=dict)
    measure: str = "RSS"  # the header's column name: RSS or HEAP
    threaded: bool = False
    records: List[Record] = field(default_factory=list)
    messages: List[Message] = field(default_factory=list)
    comments: List[str] = field(default_factory=list)
    complete: bool = False  # EOF seen
    truncated_line: bool = False  # a partial last line was dropped

    @property
    def kind(self) -> str:
        tracer = self.meta.get("tracer", "")
        return tracer or "Profile/Trace"


def _parse_record(tag: str, fields: List[str], threaded: bool) -> Record:
    want = 10 if threaded else 9
    if len(fields) != want:
        raise ValueError(f"{tag} has {len(fields)} fields, expected {want}")
    return Record(
        tag=tag[:-1],
        event=int(fields[0]),
        d_event=signed_int(fields[1]),
        clock=float(fields[2]),
        what=fields[3],
        file=unescape(fields[4]),
        line=int(fields[5]),
        function=unescape(fields[6]),
        rss=int(fields[7]),
        d_rss=signed_int(fields[8]),
        thread=int(fields[9]) if threaded else None,
    )


def parse_lines(lines, path: str = "<lines>") -> ProfileLog:
    """Parse text lines as read from a log file (each ending in a newline).

    A bad record is an error, except as the last line of a file without
    ``EOF``: that is a record cut off by a killed writer, and is dropped.
    """
    log = ProfileLog(path=path)
    seen_sof = False
    seen_hdr = False
    bad: Optional[str] = None
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
                raise LogFormatError(f"{path}: not a Profile/Trace log (no SOF line at the top)")
            continue
        if line == "EOF":
            log.complete = True
            break
        if not line:
            continue
        if line.startswith("#"):
            text = line[1:].strip()
            log.comments.append(text)
            key, sep, value = text.partition(":")
            if sep and " " not in key.strip():
                log.meta.setdefault(key.strip(), value.strip())
            continue
        tag, _, rest = line.partition("\t")
        fields = rest.split("\t") if rest else []
        if tag == "HDR:":
            if fields[: len(HDR_PREFIX)] != HDR_PREFIX or len(fields) not in (9, 10):
                raise LogFormatError(f"{path}: not a Profile/Trace log (unexpected HDR: columns)")
            log.measure = fields[7]
            log.threaded = len(fields) == 10
            seen_hdr = True
            continue
        if not seen_hdr:
            raise LogFormatError(f"{path}:{number}: record before the HDR: line")
        if bad is not None:
            raise LogFormatError(bad)
        try:
            if tag in EVENT_TAGS:
                log.records.append(_parse_record(tag, fields, log.threaded))
            elif tag == "MSG:":
                if len(fields) < 3:
                    raise ValueError("MSG: needs 3 fields")
                log.messages.append(
                    Message(int(fields[0]), float(fields[1]), unescape("\t".join(fields[2:])))
                )
            # Unknown tags are skipped (the format allows additions).
        except ValueError as exc:
            bad = f"{path}:{number}: bad {tag} record ({exc})"
    if bad is not None:
        if log.complete:
            raise LogFormatError(bad)
        log.truncated_line = True
    if not seen_sof:
        raise LogFormatError(f"{path}: not a Profile/Trace log (empty, or no SOF line)")
    if not seen_hdr:
        raise LogFormatError(f"{path}: not a Profile/Trace log (no HDR: line)")
    return log


def read_log(path: Union[str, os.PathLike]) -> ProfileLog:
    """Read a Profile/Trace log file."""
    path = os.fspath(path)
    try:
        with io.open(path, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
            return parse_lines(stream, path)
    except UnicodeDecodeError:  # pragma: no cover - errors="replace"
        raise LogFormatError(f"{path}: not a text file") from None
