"""Snapshots of a process tree: one row per process per sample, and their JSON Lines.

``pymemtrace tree --json PATH`` writes one JSON object per line
(``docs/process_tree.md`` has the schema): a ``start`` record, one
``sample`` record per sample with a row per process, an ``end`` record.
Each line is handed to the kernel in one ``write()``; the file is saved
through :class:`~pymemtrace.snapshots.process_log.StreamedFile` (a
temporary name renamed when the log ends); ``-`` writes to stdout.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from pymemtrace.errors import PymemtraceError
from pymemtrace.snapshots.process_log import StreamedFile

#: Value of the ``schema`` key of every JSON Lines record.
SCHEMA = "pymemtrace.process_tree/1"

#: Row states.  ``new``: first sample of this process; ``running``: seen
#: before; ``exited``: ended since the previous sample (shown once);
#: ``left``: still running but no longer a descendant of the root
#: (re-parented after its parent exited), no longer followed.
STATES = ("new", "running", "exited", "left")


@dataclasses.dataclass
class ProcessRow:
    """One process at one sample."""

    pid: int
    ppid: Optional[int]
    depth: int
    name: str
    state: str
    values: Dict[str, Any] = dataclasses.field(default_factory=dict)
    deltas: Dict[str, Any] = dataclasses.field(default_factory=dict)
    denied: List[str] = dataclasses.field(default_factory=list)
    unsupported: List[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "depth": self.depth,
            "name": self.name,
            "state": self.state,
            "metrics": self.values,
            "deltas": self.deltas,
            "denied": self.denied,
            "unsupported": self.unsupported,
        }


@dataclasses.dataclass
class Sample:
    """Every process of the tree at one moment; rows in tree order."""

    index: int
    time: float  # wall clock, seconds since the epoch
    elapsed: float  # seconds since the monitor started
    root: int
    rows: List[ProcessRow]


TreeSample = Sample


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def _finite(value: Any) -> Any:
    # json.dumps would write NaN/Infinity, which is not JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return _finite(obj)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:1].lower() + text[1:]


class JsonLinesWriter:
    """JSON Lines records, each line written with one ``write()`` call.

    Every record is encoded first and handed to the kernel in a single
    write, so a monitor killed at any moment (``kill -9`` included) leaves
    only whole lines behind (in the temporary file: see
    :class:`~pymemtrace.snapshots.process_log.StreamedFile`).  :meth:`close`
    gives the file its name; :meth:`discard` removes it.  Errors are
    :class:`PymemtraceError` ("cannot write PATH: reason").
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Optional[StreamedFile] = None
        self._fd = -1
        try:
            if path == "-":
                self._fd = os.dup(sys.stdout.fileno())
            else:
                self._file = StreamedFile(path)
                self._fd = self._file.fileno()
        except (OSError, ValueError) as exc:
            raise PymemtraceError(f"cannot write {path}: {_reason(exc)}") from None

    @property
    def partial_path(self) -> Optional[str]:
        return None if self._file is None else self._file.partial_path

    def _emit(self, record: Dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":"), default=_finite,
                           allow_nan=False) + "\n").encode()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise PymemtraceError(f"cannot write {self.path}: {_reason(exc)}") from None

    def _head(self, event: str, epoch: float, elapsed: float, root: int) -> Dict[str, Any]:
        return {"schema": SCHEMA, "event": event, "timestamp": _iso(epoch),
                "time": epoch, "elapsed": round(elapsed, 6), "root": root}

    def start(self, root: int, interval: float, metrics: Sequence[Any],
              command: Optional[Sequence[str]]) -> None:
        record = self._head("start", time.time(), 0.0, root)
        record.update(interval=interval, metrics=[m.key for m in metrics],
                      command=list(command) if command else None)
        self._emit(record)

    def write(self, sample: Sample) -> None:
        record = self._head("sample", sample.time, sample.elapsed, sample.root)
        record["sample"] = sample.index
        record["processes"] = [_clean(row.to_json()) for row in sample.rows]
        self._emit(record)

    def end(self, root: int, elapsed: float, samples: int, reason: str,
            returncode: Optional[int]) -> None:
        record = self._head("end", time.time(), elapsed, root)
        record.update(samples=samples, reason=reason, returncode=returncode)
        self._emit(record)

    def close(self) -> None:
        """The log is complete: the file gets its name."""
        if self._file is not None:
            self._fd = -1
            try:
                self._file.commit()
            except OSError as exc:
                raise PymemtraceError(f"cannot write {self.path}: {_reason(exc)}") from None
        elif self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """The log is cut short: nothing appears at its path."""
        if self._file is not None:
            self._fd = -1
            self._file.discard()
        else:
            self.close()
