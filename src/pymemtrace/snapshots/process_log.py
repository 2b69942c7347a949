"""The log of ``pymemtrace.process``: its records, and how they are read and saved.

A record is a dict with the keys ``timestamp``, ``memory_info``,
``cpu_times``, ``elapsed_time`` (seconds since the process started),
``pid`` and, for records that follow a message, ``label``.  It is written
as a logging line ``ProcessLoggingThread-JSON[-START|-STOP] {json}``
and/or as one line of a JSON Lines file (``{"event": "START"|"SAMPLE"|"STOP", ...}``).

:class:`StreamedFile` is how a log (or any streamed output) is saved: lines
go to a temporary file next to the final path, each with one ``write()``
call, and the file is renamed to its path when the log is complete.  So
the path holds a whole log or nothing.  While the log is being written,
and after a crash or ``kill -9`` (which leave it behind on purpose: every
line in it is whole and is all the data there is), the records are in
``.NAME.XXXXXXXX.tmp`` in the same directory (:attr:`StreamedFile.partial_path`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import stat
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional

from pymemtrace import _output

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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class StreamedFile:
    """A file written line by line that appears at its path only when complete.

    Opening creates ``.NAME.XXXXXXXX.tmp`` (``O_EXCL``, as ``mkstemp``) in
    the directory of ``path``; :meth:`write` hands each piece to the kernel
    in one ``write()`` (unbuffered: a reader or a kill sees whole lines);
    :meth:`commit` renames it over ``path``; :meth:`discard` removes it.
    A path that exists and is not a regular file (``/dev/stdout``,
    ``/dev/full``, a FIFO) is written in place.  Errors are OSError naming
    ``path``.
    """

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self._tmp: Optional[str] = None
        self._fd = -1
        if not _output.is_owner():
            raise PermissionError(1, "a forked process does not write its parent's outputs",
                                  self.path)
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", self.path)
        try:
            if mode is not None and not stat.S_ISREG(mode):
                self._fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            else:
                directory = os.path.dirname(os.path.abspath(self.path))
                self._fd, self._tmp = tempfile.mkstemp(
                    prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    @property
    def partial_path(self) -> Optional[str]:
        """Where the lines are while the file is being written."""
        if self._fd < 0:
            return None
        return self._tmp or self.path

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8"))
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    def flush(self) -> None:
        """Nothing to do: every write already reached the kernel."""

    def fileno(self) -> int:
        return self._fd

    def commit(self) -> None:
        """Close the file and give it its name (idempotent)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
            if self._tmp is not None:
                os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp's files are 0600
                os.replace(self._tmp, self.path)
                self._tmp = None
        except OSError as exc:
            self._remove_tmp()
            raise type(exc)(exc.errno, exc.strerror, self.path) from None

    def discard(self) -> None:
        """Close the file and remove it: nothing appears at the path (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __enter__(self) -> "StreamedFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
