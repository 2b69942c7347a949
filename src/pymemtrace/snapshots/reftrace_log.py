"""Reader of ReferenceTracing logs (docs/reference_tracing.md).

:func:`iter_records` yields the ``NEW:``/``DEL:`` records of a log one at a
time, as plain tuples ``(tag, event, clock, address, type, site)``, so that
a log of any length is read in constant memory; everything else (message,
metadata, ``MSG:``/``WARN:`` notes, the ``LIVE:`` trailer, ``END:``, whether
the log is complete) goes into the :class:`RefTraceLog` it is given.
Truncated logs are read up to the last whole record and flagged; a file
that is not such a log raises :class:`LogFormatError` with a one-line
reason.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

from pymemtrace.snapshots.logtext import Framing, LogFormatError, unescape

__all__ = ["LogFormatError", "Note", "RefTraceLog", "Site", "iter_records", "open_log"]

HDR_FIELDS = ["Event", "Clock", "Address", "Type", "Live", "File", "#line", "Function"]
INFERRED_FILE = "<inferred>"
# The MSG: a tracer writes in its log when a nested one takes over.
NESTED_FILE = re.compile(r"^# Detaching this Reference Tracing file wrapper\. New file: (?P<path>.+)$")


@dataclass(frozen=True)
class Site:
    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.function}"


@dataclass(frozen=True)
class Note:
    """A MSG: or WARN: record."""

    tag: str
    event: int
    clock: float
    text: str


# A NEW:/DEL: record as iter_records yields it.
RefRecord = Tuple[str, int, float, str, str, Site]


@dataclass
class RefTraceLog:
    """What a ReferenceTracing log says besides its NEW:/DEL: records."""

    path: str = ""
    message: Optional[str] = None
    meta: Dict[str, str] = field(default_factory=dict)
    complete: bool = False  # EOF seen
    truncated_line: bool = False
    notes: List[Note] = field(default_factory=list)
    trailer: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)  # LIVE: lines
    nested_files: List[str] = field(default_factory=list)  # as the MSG: records name them
    end: Optional[Tuple[int, float]] = None  # the END: record's event and clock


def iter_records(lines: Iterable[str], log: RefTraceLog) -> Iterator[RefRecord]:
    """Yield the NEW:/DEL: records of ``lines`` (see the module docstring).

    A bad record is an error, except as the last line of a file without
    ``EOF``: that is a record cut off by a killed writer, and is dropped.
    """
    framing = Framing(log, "ReferenceTracing")
    # Big logs repeat a few types and sites millions of times: build each once.
    names: Dict[str, str] = {}
    sites: Dict[Tuple[str, str, str], Site] = {}

    def header(rest: str) -> None:
        if rest.split("\t") != HDR_FIELDS:
            raise LogFormatError(f"{log.path}: not a ReferenceTracing log (unexpected HDR: columns)")

    def comment(line: str) -> None:
        key, sep, value = line[1:].strip().partition(":")
        if sep and " " not in key.strip():
            log.meta.setdefault(key.strip(), value.strip())

    for number, tag, rest in framing.records(lines, header, comment):
        fields = rest.split("\t")
        try:
            if tag == "NEW:" or tag == "DEL:":
                if len(fields) != 8:
                    raise ValueError(f"{len(fields)} fields, expected 8")
                event = int(fields[0])
                clock = float(fields[1])
                tname = names.get(fields[3])
                if tname is None:
                    tname = names[fields[3]] = unescape(fields[3])
                site_key = (fields[5], fields[6], fields[7])
                site = sites.get(site_key)
                if site is None:
                    site = sites[site_key] = Site(unescape(fields[5]), int(fields[6]), unescape(fields[7]))
                record = (tag, event, clock, fields[2], tname, site)
            elif tag in ("MSG:", "WARN:"):
                if len(fields) < 3:
                    raise ValueError("needs 3 fields")
                note = Note(tag[:-1], int(fields[0]), float(fields[1]), unescape("\t".join(fields[2:])))
                log.notes.append(note)
                nested = NESTED_FILE.match(note.text) if note.tag == "MSG" else None
                if nested is not None:
                    log.nested_files.append(nested.group("path"))
                continue
            elif tag == "LIVE:":
                if len(fields) != 4:
                    raise ValueError("needs 4 fields")
                log.trailer[unescape(fields[0])] = (int(fields[1]), int(fields[2]), int(fields[3]))
                continue
            elif tag == "END:":
                log.end = (int(fields[0]), float(fields[1]))
                continue
            else:
                continue  # Unknown tags are skipped.
        except (ValueError, IndexError) as exc:
            framing.reject(number, tag, exc)
            continue
        yield record


def open_log(path: Union[str, os.PathLike]):
    """The text stream :func:`iter_records` reads a log file from."""
    return io.open(os.fspath(path), "r", encoding="utf-8", errors="replace", newline="\n")
