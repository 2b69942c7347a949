"""The log of ``pymemtrace.process``: its records, and how they are read and saved.

A record is a dict with the keys ``timestamp``, ``memory_info``,
``cpu_times``, ``elapsed_time`` (seconds since the process started),
``pid`` and, for records that follow a message, ``label``.  It is written
as a logging line ``ProcessLoggingThread-JSON[-START|-STOP] {json}``
and/or as one line of a JSON Lines file (``{"event": "START"|"SAMPLE"|"STOP", ...}``).

:class:`StreamedFile` (from :mod:`pymemtrace._output`, re-exported) is how
a log (or any streamed output) is saved: lines
go to a temporary file next to the final path, each with one ``write()``
call, and the file is renamed to its path when the log is complete.  So
the path holds a whole log or nothing.  While the log is being written,
and after a crash or ``kill -9`` (which leave it behind on purpose: every
line in it is whole and is all the data there is), the records are in
``.NAME.XXXXXXXX.tmp`` in the same directory (:attr:`StreamedFile.partial_path`).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional

from pymemtrace._output import StreamedFile  # noqa: F401 - re-exported: logs are saved with it

#: Unique string in every log line of a record.
LOGGER_PREFIX = "ProcessLoggingThread-JSON"
LOGGER_PREFIX_START = f"{LOGGER_PREFIX}-START"
LOGGER_PREFIX_STOP = f"{LOGGER_PREFIX}-STOP"
#: Format of the ``timestamp`` value (local time), e.g. '2019-06-07 11:57:58.390921'.
DATETIME_NOW_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
KEY_TIMESTAMP = "timestamp"
KEY_ELAPSED_TIME = "elapsed_time"
KEY_LABEL = "label"
KEY_PROCESS_ID = "pid"
KEY_MEMORY_INFO = "memory_info"
KEY_CPU_TIMES = "cpu_times"
#: Only in the JSON Lines file: "START", "SAMPLE" or "STOP".
KEY_EVENT = "event"
EVENT_START = "START"
EVENT_SAMPLE = "SAMPLE"
EVENT_STOP = "STOP"
PREFIX_FOR_EVENT = {
    EVENT_START: LOGGER_PREFIX_START,
    EVENT_SAMPLE: LOGGER_PREFIX,
    EVENT_STOP: LOGGER_PREFIX_STOP,
}


def make_record(wall: float, memory: Dict[str, Any], cpu: Dict[str, Any], pid: int,
                create_time: float, label: Optional[str] = None) -> Dict[str, Any]:
    """The record of one reading (wall-clock time, memory_info, cpu_times)."""
    record = {
        KEY_TIMESTAMP: datetime.datetime.fromtimestamp(wall).strftime(DATETIME_NOW_FORMAT),
        KEY_MEMORY_INFO: memory,
        KEY_CPU_TIMES: cpu,
        KEY_ELAPSED_TIME: round(wall - create_time, 6),
        KEY_PROCESS_ID: pid,
    }
    if label is not None:
        record[KEY_LABEL] = label
    return record


def log_message(event: str, record: Dict[str, Any]) -> str:
    """The logging message of a record (the seed's format)."""
    return f"{PREFIX_FOR_EVENT[event]} {json.dumps(record)}"


def jsonl_line(event: str, record: Dict[str, Any]) -> str:
    """The JSON Lines line of a record, newline included."""
    return json.dumps({KEY_EVENT: event, **record}) + "\n"


@dataclasses.dataclass
class LogContents:
    """Records found in a log, in file order, and lines that could not be read."""

    records: List[Dict[str, Any]]
    skipped: int = 0


def _valid(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    memory = record.get(KEY_MEMORY_INFO)
    return (
        isinstance(record.get(KEY_PROCESS_ID), int)
        and isinstance(memory, dict)
        and isinstance(memory.get("rss"), int)
        and isinstance(record.get(KEY_ELAPSED_TIME), (int, float))
    )


class RecordReader:
    """Records from logging output lines and/or JSON Lines, one at a time.

    Lines holding ``ProcessLoggingThread-JSON`` are records of a logging
    output; lines starting with ``{`` are JSON Lines records; other lines
    are ignored.  Records that do not parse are counted in ``skipped``.
    Iterating keeps nothing: a log of any length is read in constant memory.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = lines
        self.skipped = 0

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for line in self._lines:
            at = line.find(LOGGER_PREFIX)
            if at >= 0:
                rest = line[at + len(LOGGER_PREFIX):]
                event = EVENT_SAMPLE
                for name in (EVENT_START, EVENT_STOP):
                    if rest.startswith("-" + name):
                        event, rest = name, rest[len(name) + 1:]
                text = rest.strip()
            elif line.lstrip().startswith("{"):
                text, event = line.strip(), None
            else:
                continue
            try:
                record = json.loads(text)
            except (ValueError, RecursionError):
                self.skipped += 1
                continue
            if not _valid(record):
                self.skipped += 1
                continue
            if event is not None:
                record[KEY_EVENT] = event
            elif record.get(KEY_EVENT) not in PREFIX_FOR_EVENT:
                record[KEY_EVENT] = EVENT_SAMPLE
            yield record


def parse_lines(lines: Iterable[str]) -> LogContents:
    """Every record of ``lines`` (see :class:`RecordReader`), in a list."""
    reader = RecordReader(lines)
    records = list(reader)
    return LogContents(records, reader.skipped)


def read_log(path) -> LogContents:
    """Records of the log at ``path``; OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        return parse_lines(stream)
