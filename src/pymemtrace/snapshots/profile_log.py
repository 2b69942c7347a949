"""Reader of the Profile/Trace log format (docs/log_format.md).

``read_log(path)`` returns a :class:`ProfileLog` holding every record as a
:class:`Record` dataclass; ``iter_records(lines, log)`` yields them one at
a time as plain tuples (constant memory, for long logs).  Truncated files
(a killed process: no ``LAST:``, no ``EOF``, maybe half a last line) are
read up to the last whole record and flagged ``complete=False``.  A file that is not such a log raises
:class:`LogFormatError` with a one-line reason.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple, Union

from pymemtrace.snapshots.logtext import Framing, LogFormatError, signed_int, unescape

__all__ = [
    "LogFormatError", "ProfileLog", "Record", "RecordTuple", "Message", "read_log", "parse_lines",
    "iter_records", "open_log",
]

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


# A record as iter_records yields it: Record's fields, in order, in a tuple.
RecordTuple = Tuple[str, int, int, float, str, str, int, str, int, int, Optional[int]]


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
    messages_dropped: int = 0  # MSG: records not kept (iter_records' max_kept)

    @property
    def kind(self) -> str:
        tracer = self.meta.get("tracer", "")
        return tracer or "Profile/Trace"


def _parse_fields(tag: str, fields: List[str], threaded: bool) -> RecordTuple:
    """One record's fields as a plain tuple in :class:`Record`'s field order."""
    want = 10 if threaded else 9
    if len(fields) != want:
        raise ValueError(f"{tag} has {len(fields)} fields, expected {want}")
    return (
        tag[:-1],
        int(fields[0]),
        signed_int(fields[1]),
        float(fields[2]),
        fields[3],
        unescape(fields[4]),
        int(fields[5]),
        unescape(fields[6]),
        int(fields[7]),
        signed_int(fields[8]),
        int(fields[9]) if threaded else None,
    )


def _parse_record(tag: str, fields: List[str], threaded: bool) -> Record:
    return Record(*_parse_fields(tag, fields, threaded))


def iter_records(lines, log: ProfileLog, max_kept: Optional[int] = None) -> Iterator[RecordTuple]:
    """Yield the FRST/NEXT/PREV/LAST records of ``lines`` one at a time.

    Each record is a plain tuple in :class:`Record`'s field order
    (``Record(*t)`` makes the dataclass), so that a long log is read in
    constant memory.  Everything else (message, comments, metadata, the
    ``MSG:`` records, ``complete``, ``truncated_line``) goes into ``log``,
    which is complete once the iterator is exhausted.  ``max_kept`` bounds
    the comments and messages kept in ``log`` (the rest are counted in
    ``log.messages_dropped``); None keeps them all.

    A bad record is an error, except as the last line of a file without
    ``EOF``: that is a record cut off by a killed writer, and is dropped.
    Errors raise :class:`LogFormatError` with a one-line reason.
    """
    framing = Framing(log, "Profile/Trace")
    threaded = False

    def header(rest: str) -> None:
        nonlocal threaded
        fields = rest.split("\t") if rest else []
        if fields[: len(HDR_PREFIX)] != HDR_PREFIX or len(fields) not in (9, 10):
            raise LogFormatError(f"{log.path}: not a Profile/Trace log (unexpected HDR: columns)")
        log.measure = fields[7]
        threaded = log.threaded = len(fields) == 10

    def comment(line: str) -> None:
        if max_kept is not None and len(log.comments) >= max_kept:
            return
        text = line[1:].strip()
        log.comments.append(text)
        key, sep, value = text.partition(":")
        if sep and " " not in key.strip():
            log.meta.setdefault(key.strip(), value.strip())

    for number, tag, rest in framing.records(lines, header, comment):
        fields = rest.split("\t") if rest else []
        try:
            if tag in EVENT_TAGS:
                record = _parse_fields(tag, fields, threaded)
            elif tag == "MSG:":
                if len(fields) < 3:
                    raise ValueError("MSG: needs 3 fields")
                message = Message(int(fields[0]), float(fields[1]), unescape("\t".join(fields[2:])))
                if max_kept is not None and len(log.messages) >= max_kept:
                    log.messages_dropped += 1
                else:
                    log.messages.append(message)
                continue
            else:
                continue  # Unknown tags are skipped (the format allows additions).
        except ValueError as exc:
            framing.reject(number, tag, exc)
            continue
        yield record


def parse_lines(lines, path: str = "<lines>") -> ProfileLog:
    """Parse text lines as read from a log file (each ending in a newline).

    Every record is kept in ``log.records``; :func:`iter_records` reads
    them one at a time instead.
    """
    log = ProfileLog(path=path)
    log.records = [Record(*t) for t in iter_records(lines, log)]
    return log


def open_log(path: Union[str, os.PathLike]):
    """The text stream ``read_log`` and ``iter_records`` read a log file from."""
    return io.open(os.fspath(path), "r", encoding="utf-8", errors="replace", newline="\n")


def read_log(path: Union[str, os.PathLike]) -> ProfileLog:
    """Read a Profile/Trace log file."""
    path = os.fspath(path)
    try:
        with open_log(path) as stream:
            return parse_lines(stream, path)
    except UnicodeDecodeError:  # pragma: no cover - errors="replace"
        raise LogFormatError(f"{path}: not a text file") from None
