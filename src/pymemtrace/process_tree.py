"""Watch the memory of a process and of every process it starts.

``python -m pymemtrace.process_tree -p PID`` (or ``pymemtrace tree -p PID``,
or ``pymemtrace tree -- CMD ARGS`` to run a command and watch it) prints, at
each interval, one row per process of the tree rooted at PID, indented by
depth, each metric with its change since that process's previous sample.
Processes that start are marked ``new``; processes that end are shown once
as ``exited``; metrics the system refuses to give are shown as ``denied``.
Monitoring ends when the root process exits (or after ``--count`` samples or
``--duration`` seconds, or at Ctrl-C).

``--json PATH`` also writes JSON Lines: one object per line, each line
written with a single ``write()`` call, so the file stays valid whatever
moment the monitor is killed at (even by ``kill -9``).  See
``docs/process_tree.md`` for the schema.

The monitor's own cost is kept low: one :class:`psutil.Process` per process
kept across samples (so ``cpu_percent`` compares against the previous
sample) and every process read inside ``oneshot()``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

from pymemtrace import _output
from pymemtrace._argtypes import MAX_DURATION, MAX_PID, number, one_line_errors
from pymemtrace.errors import PymemtraceError, UsageError

__all__ = [
    "SCHEMA",
    "METRICS",
    "Metric",
    "ProcessRow",
    "Sample",
    "ProcessTreeMonitor",
    "TableWriter",
    "JsonLinesWriter",
    "add_arguments",
    "run",
    "main",
]

#: Value of the ``schema`` key of every JSON Lines record.
SCHEMA = "pymemtrace.process_tree/1"

PROG = "python -m pymemtrace.process_tree"

EXAMPLE = """\
  pymemtrace tree -p 1234 -i 2 --json tree.jsonl
  pymemtrace tree -i 0.5 --count 20 -- python -m my_service --workers 4"""


class _Unsupported(Exception):
    """The metric does not exist on this platform."""


# ---------------------------------------------------------------------------
# Metrics: how to read each one from a psutil.Process (inside oneshot()).


def _page_faults(proc: psutil.Process) -> int:
    """Minor + major page faults since the process started."""
    info = proc.memory_info()
    if hasattr(info, "pfaults"):  # macOS
        return int(info.pfaults)
    if sys.platform.startswith("linux"):
        # psutil does not expose them on Linux: fields 10 (minflt) and 12
        # (majflt) of /proc/PID/stat, counted after the ")" closing comm.
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as f:
                data = f.read()
        except (FileNotFoundError, ProcessLookupError):
            raise psutil.NoSuchProcess(proc.pid) from None
        except PermissionError:
            raise psutil.AccessDenied(proc.pid) from None
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[7]) + int(fields[9])
    raise _Unsupported


def _ctx_switches(proc: psutil.Process) -> int:
    ctx = proc.num_ctx_switches()
    return ctx.voluntary + ctx.involuntary


def _net_connections(proc: psutil.Process) -> int:
    # psutil >= 6 names it net_connections(); older versions connections().
    method = getattr(proc, "net_connections", None) or proc.connections
    return len(method(kind="all"))


def _cmdline(proc: psutil.Process) -> str:
    return " ".join(proc.cmdline())


@dataclasses.dataclass(frozen=True)
class Metric:
    """One measured quantity of a process.

    ``kind`` decides the formatting: ``bytes``, ``count``, ``seconds``,
    ``percent`` or ``text``.  ``delta`` says whether the change since the
    previous sample is reported (for ``text`` the change is the old value).
    """

    key: str
    header: str
    kind: str
    read: Callable[[psutil.Process], Any]
    delta: bool = True


METRICS: Dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("rss", "rss", "bytes", lambda p: p.memory_info().rss),
        Metric("uss", "uss", "bytes", lambda p: p.memory_full_info().uss),
        Metric("cpu_percent", "cpu", "percent", lambda p: p.cpu_percent(), False),
        Metric("page_faults", "faults", "count", _page_faults),
        Metric("cpu_user", "user", "seconds", lambda p: p.cpu_times().user),
        Metric("cpu_system", "sys", "seconds", lambda p: p.cpu_times().system),
        Metric("ctx_switches", "ctx", "count", _ctx_switches),
        Metric("threads", "threads", "count", lambda p: p.num_threads()),
        Metric("status", "status", "text", lambda p: p.status()),
        Metric("open_files", "files", "count", lambda p: len(p.open_files())),
        Metric("net_connections", "net", "count", _net_connections),
        Metric("cmdline", "cmdline", "text", _cmdline, False),
    )
}

# Command-line flag (argparse dest) -> the metrics it adds, in column order.
_FLAG_METRICS = (
    ("uss", ("uss",)),
    ("page_faults", ("page_faults",)),
    ("cpu_times", ("cpu_user", "cpu_system")),
    ("context_switches", ("ctx_switches",)),
    ("threads", ("threads",)),
    ("status", ("status",)),
    ("open_files", ("open_files",)),
    ("net_connections", ("net_connections",)),
    ("cmdline", ("cmdline",)),
)
# What -a/--all turns on: the seed tool's "-cfgstn" set.
_ALL_FLAGS = ("page_faults", "cpu_times", "threads", "status", "open_files",
              "net_connections")


def select_metrics(args: argparse.Namespace) -> List[Metric]:
    """The metrics asked for on the command line, always starting with rss."""
    keys = ["rss", "cpu_percent"]
    for flag, metric_keys in _FLAG_METRICS:
        if getattr(args, flag, False) or (args.all and flag in _ALL_FLAGS):
            keys.extend(metric_keys)
    return [METRICS[k] for k in keys]


# ---------------------------------------------------------------------------
# Sampling.

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


class _Tracked:
    """A process followed across samples (one psutil.Process kept alive)."""

    __slots__ = ("proc", "ppid", "name", "depth", "previous")

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.ppid: Optional[int] = None
        self.name = "?"
        self.depth = 0
        # metric key -> value at the previous sample (None before the first)
        self.previous: Optional[Dict[str, Any]] = None


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


class ProcessTreeMonitor:
    """Samples a process and all its descendants.

    Raises :class:`PymemtraceError` ("no process with pid N") when ``pid``
    does not exist.  ``sample()`` never raises psutil's NoSuchProcess,
    ZombieProcess or AccessDenied: they become ``exited`` rows and
    ``denied`` metrics.
    """

    def __init__(self, pid: int, metrics: Sequence[Metric]) -> None:
        try:
            root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise PymemtraceError(f"no process with pid {pid}") from None
        except psutil.AccessDenied:
            raise PymemtraceError(f"access denied to pid {pid}") from None
        self.pid = pid
        self.metrics = list(metrics)
        self._root = _Tracked(root)
        # pid -> _Tracked for the descendants followed at the last sample.
        self._children: Dict[int, _Tracked] = {}
        # (pid, create_time) of zombies already reported as exited, so that
        # they are not reported again while their parent has not reaped them.
        self._dead: set = set()
        self._t0 = time.monotonic()
        self._index = 0
        #: True once the root process has exited (reported in a sample).
        self.root_exited = False

    # -- one process --------------------------------------------------------

    def _read(self, tracked: _Tracked, state: str) -> ProcessRow:
        """Read one process; NoSuchProcess/ZombieProcess propagate."""
        proc = tracked.proc
        values: Dict[str, Any] = {}
        deltas: Dict[str, Any] = {}
        denied: List[str] = []
        unsupported: List[str] = []
        with proc.oneshot():
            try:
                tracked.name = proc.name()
            except psutil.AccessDenied:
                pass
            try:
                tracked.ppid = proc.ppid()
            except psutil.AccessDenied:
                pass
            if _is_zombie(proc):
                raise psutil.ZombieProcess(proc.pid, tracked.name, tracked.ppid)
            previous = tracked.previous
            for metric in self.metrics:
                try:
                    value = metric.read(proc)
                except psutil.AccessDenied:
                    denied.append(metric.key)
                    continue
                except _Unsupported:
                    unsupported.append(metric.key)
                    continue
                values[metric.key] = value
                if metric.delta and previous is not None and metric.key in previous:
                    old = previous[metric.key]
                    if metric.kind == "text":
                        if value != old:
                            deltas[metric.key] = old
                    else:
                        deltas[metric.key] = value - old
        tracked.previous = values
        return ProcessRow(proc.pid, tracked.ppid, tracked.depth, tracked.name,
                          state, values, deltas, denied, unsupported)

    def _gone(self, tracked: _Tracked, state: str = "exited") -> ProcessRow:
        depth = 0 if tracked is self._root else max(tracked.depth, 1)
        return ProcessRow(tracked.proc.pid, tracked.ppid, depth, tracked.name, state)

    def descendants(self) -> List[psutil.Process]:
        """The processes of the tree below the root at the last sample."""
        return [tracked.proc for tracked in self._children.values()]

    # -- the tree -----------------------------------------------------------

    def _descendants(self) -> List[psutil.Process]:
        try:
            return self._root.proc.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []

    def sample(self) -> Sample:
        """Read the whole tree once."""
        now = time.time()
        elapsed = time.monotonic() - self._t0
        index = self._index
        self._index += 1
        root = self._root
        try:
            root_row = self._read(root, "new" if index == 0 else "running")
        except psutil.NoSuchProcess:  # includes ZombieProcess
            root_row = self._gone(root)
            self.root_exited = True

        gone: List[ProcessRow] = []
        current: Dict[int, _Tracked] = {}
        live = set()
        for proc in ([] if self.root_exited else self._descendants()):
            tracked = self._children.get(proc.pid)
            if tracked is not None and tracked.proc != proc:
                # The pid was reused: the process we followed has exited.
                gone.append(self._gone(tracked))
                tracked = None
            ident = (proc.pid, _create_time(proc))
            if tracked is None:
                if ident in self._dead:
                    live.add(ident)
                    continue
                tracked = _Tracked(proc)
            current[proc.pid] = tracked
        self._dead &= live

        # Depths from the parent links of the previous reading; refined
        # after reading (ppid is read inside oneshot with the metrics).
        rows: Dict[int, ProcessRow] = {}
        for pid, tracked in current.items():
            state = "running" if pid in self._children else "new"
            try:
                rows[pid] = self._read(tracked, state)
            except psutil.NoSuchProcess:
                gone.append(self._gone(tracked))
                if _is_zombie(tracked.proc):
                    self._dead.add((pid, _create_time(tracked.proc)))
        for pid, tracked in self._children.items():
            if pid not in current:
                try:
                    left = tracked.proc.is_running() and not _is_zombie(tracked.proc)
                except psutil.Error:
                    left = False
                gone.append(self._gone(tracked, "left" if left else "exited"))
        self._children = {pid: current[pid] for pid in rows}
        ordered = self._tree_order(root_row, rows)
        ordered.extend(gone)
        return Sample(index, now, elapsed, root.proc.pid, ordered)

    def _tree_order(self, root_row: ProcessRow,
                    rows: Dict[int, ProcessRow]) -> List[ProcessRow]:
        """Depth-first order from the root, children by pid."""
        kids: Dict[int, List[int]] = {}
        for pid, row in rows.items():
            parent = row.ppid if row.ppid in rows else root_row.pid
            kids.setdefault(parent, []).append(pid)
        ordered = [root_row]
        root_row.depth = self._root.depth = 0
        stack: List[Tuple[int, int]] = [
            (pid, 1) for pid in sorted(kids.get(root_row.pid, ()), reverse=True)
        ]
        while stack:
            pid, depth = stack.pop()
            row = rows[pid]
            row.depth = self._children[pid].depth = depth
            ordered.append(row)
            for child in sorted(kids.get(pid, ()), reverse=True):
                stack.append((child, depth + 1))
        return ordered


def _create_time(proc: psutil.Process) -> Optional[float]:
    try:
        return proc.create_time()
    except psutil.Error:
        return None


# ---------------------------------------------------------------------------
# Formatting.

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_bytes_delta(delta: int) -> str:
    """``+1.2 MiB``, ``-4.0 KiB``, ``+0 B``: scaled so small changes show."""
    size = abs(delta)
    sign = "-" if delta < 0 else "+"
    for unit, scale in _UNITS:
        if size >= scale:
            return f"{sign}{size / scale:,.1f} {unit}"
    return f"{sign}{size} B"


def format_value(metric: Metric, value: Any) -> str:
    kind = metric.kind
    if kind == "bytes":
        return f"{value / (1 << 20):,.1f} MiB"
    if kind == "count":
        return f"{value:,d}"
    if kind == "seconds":
        return f"{value:,.2f}s"
    if kind == "percent":
        return f"{value:.1f}%"
    return str(value)


def format_delta(metric: Metric, delta: Any) -> str:
    kind = metric.kind
    if kind == "bytes":
        text = format_bytes_delta(delta)
    elif kind == "count":
        text = f"{delta:+,d}"
    elif kind == "seconds":
        text = f"{delta:+,.2f}s"
    elif kind == "percent":
        text = f"{delta:+.1f}%"
    else:
        text = f"was {delta}"
    return f"({text})"


# Widths of typical values and changes of each kind, so that the header is
# rarely printed again because a column had to widen.
_TYPICAL_WIDTHS = {
    "bytes": (len("9,999.9 MiB"), len("(+999.9 KiB)")),
    "count": (len("99,999"), len("(+9,999)")),
    "seconds": (len("999.99s"), len("(+9.99s)")),
    "percent": (len("100.0%"), 0),
    "text": (len("sleeping"), len("(was sleeping)")),
}

_NOTES = {"new": "new", "running": "", "exited": "exited",
          "left": "left the tree"}


class TableWriter:
    """Aligned text table, or ``sep``-separated values when ``sep`` is set.

    Table mode: the header is printed before the first sample and again
    whenever a column has to widen; the time (seconds since the monitor
    started) is shown on the root row of each sample.
    """

    def __init__(self, out: IO[str], metrics: Sequence[Metric], sep: str = "") -> None:
        self.out = out
        self.sep = sep
        self.metrics = list(metrics)
        # cmdline is free text: always the last, unaligned column.
        self._aligned = [m for m in self.metrics if m.key != "cmdline"]
        self._cmdline = any(m.key == "cmdline" for m in self.metrics)
        self._widths: List[int] = []
        self._specs: List[Tuple[str, str, str, int]] = []
        self._header_done = False

    # -- table mode ---------------------------------------------------------

    def _columns(self) -> List[Tuple[str, str, str, int]]:
        """(header, alignment, separator before, minimum width) per column."""
        columns = [("time(s)", ">", "", 7), ("pid", "<", "  ", 7),
                   ("name", "<", "  ", 15)]
        for m in self._aligned:
            value_width, delta_width = _TYPICAL_WIDTHS[m.kind]
            columns.append((m.header, ">", "  ", value_width))
            if m.delta:
                # The change sits right after its value: "1.0 MiB (+4.0 KiB)".
                columns.append(("", "<", " ", delta_width))
        columns.append(("note", "<", "  ", 0))
        return columns

    def _cells(self, sample: Sample, row: ProcessRow, first: bool) -> List[str]:
        indent = "  " * row.depth
        cells = [f"{sample.elapsed:.1f}" if first else "", f"{indent}{row.pid}",
                 row.name]
        for m in self._aligned:
            if m.key in row.values:
                cells.append(format_value(m, row.values[m.key]))
                if m.delta:
                    d = row.deltas.get(m.key)
                    cells.append("" if d is None else format_delta(m, d))
            else:
                cells.append("denied" if m.key in row.denied else
                             "n/a" if m.key in row.unsupported else "")
                if m.delta:
                    cells.append("")
        note = _NOTES[row.state]
        if row.state in ("new", "running") and row.denied and not row.values:
            note = "access denied"
        cells.append(note)
        return cells

    def _line(self, cells: List[str]) -> str:
        parts = []
        for cell, width, (_, align, sep, _) in zip(cells, self._widths, self._specs):
            parts.append(sep)
            parts.append(cell.rjust(width) if align == ">" else cell.ljust(width))
        return "".join(parts).rstrip()

    def _table(self, sample: Sample) -> str:
        if not self._widths:
            self._specs = self._columns()
            self._widths = [spec[3] for spec in self._specs]
        header = [spec[0] for spec in self._specs]
        body = [self._cells(sample, row, i == 0) for i, row in enumerate(sample.rows)]
        widths = [max(len(c) for c in column) for column in zip(header, *body)]
        lines = []
        # The last column (the note) is free to grow: it needs no new header.
        widths[-1] = 0
        if not self._header_done or any(w > old for w, old in zip(widths, self._widths)):
            self._widths = [max(w, old) for w, old in zip(widths, self._widths)]
            lines.append(self._line(header))
            self._header_done = True
        for cells, row in zip(body, sample.rows):
            line = self._line(cells)
            if self._cmdline and "cmdline" in row.values:
                # One row per process: control characters are escaped.
                text = row.values["cmdline"].encode("unicode_escape").decode("ascii")
                line = f"{line}  {text}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    # -- separated-values mode ----------------------------------------------

    def _quote(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if self.sep in text or '"' in text or "\n" in text:
            text = '"' + text.replace('"', '""') + '"'
        return text

    def _separated(self, sample: Sample) -> str:
        lines = []
        if not self._header_done:
            names = ["time", "pid", "ppid", "depth", "name", "state"]
            for m in self.metrics:
                names.append(m.key)
                if m.delta:
                    names.append(f"{m.key}_delta")
            lines.append(self.sep.join(names))
            self._header_done = True
        for row in sample.rows:
            cells = [f"{sample.elapsed:.3f}", row.pid, row.ppid, row.depth,
                     row.name, row.state]
            for m in self.metrics:
                if m.key in row.values:
                    cells.append(row.values[m.key])
                else:
                    cells.append("denied" if m.key in row.denied else "")
                if m.delta:
                    cells.append(row.deltas.get(m.key))
            lines.append(self.sep.join(self._quote(c) for c in cells))
        return "\n".join(lines) + "\n"

    def write(self, sample: Sample) -> None:
        self.out.write(self._separated(sample) if self.sep else self._table(sample))
        self.out.flush()


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def _finite(value: Any) -> Any:
    # json.dumps would write NaN/Infinity, which is not JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonLinesWriter:
    """JSON Lines records, each line written with one ``write()`` call.

    The file is opened unbuffered in binary mode; every record is encoded
    first and handed to the kernel in a single write, so a monitor killed at
    any moment (``kill -9`` included) leaves only whole lines behind.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if path == "-":
                self._fd = os.dup(sys.stdout.fileno())
            else:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                   | getattr(os, "O_CLOEXEC", 0), 0o644)
        except (OSError, ValueError) as exc:
            raise PymemtraceError(f"cannot write {path}: {_reason(exc)}") from None

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

    def start(self, root: int, interval: float, metrics: Sequence[Metric],
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
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return _finite(obj)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:1].lower() + text[1:]


# ---------------------------------------------------------------------------
# Command line.


#: Range of --interval, in seconds.
MIN_INTERVAL, MAX_INTERVAL = 0.001, 86400.0
#: Most samples --count asks for.
MAX_COUNT = 10**9


def _log_level(text: str) -> int:
    from pymemtrace import process

    return process.log_level_arg(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pymemtrace tree`` and ``python -m pymemtrace.process_tree``."""
    add = parser.add_argument
    add("-i", "--interval", type=number(MIN_INTERVAL, MAX_INTERVAL), default=1.0, metavar="SECONDS",
        help="time between samples [default: %(default)s]")
    add("-p", "--pid", type=number(-1, MAX_PID, integer=True), default=-1,
        help="root of the tree to watch; -1 is this monitor itself "
             "[default: %(default)s]")
    add("-l", "--log-level", "--log_level", dest="log_level", type=_log_level,
        metavar="LEVEL",
        help="log what the monitor does on stderr at this level: a number "
             "(debug=10, info=20, ...) or a name (the seed's option)")
    add("--sep", default="", metavar="TEXT",
        help="write values separated by TEXT (e.g. ',') with raw numbers "
             "instead of a table")
    add("-1", "--omit-first", action="store_true",
        help="do not write the first sample (every written row then has changes)")
    add("-n", "--net-connections", action="store_true",
        help="number of network connections")
    add("-u", "--uss", action="store_true",
        help="unique set size: memory freed if the process exited (slower)")
    add("-g", "--page-faults", action="store_true", help="page faults")
    add("-c", "--cpu-times", action="store_true", help="user and system CPU time")
    add("-x", "--context-switches", action="store_true", help="context switches")
    add("-t", "--threads", action="store_true", help="number of threads")
    add("-s", "--status", action="store_true", help="process status")
    add("-f", "--open-files", action="store_true", help="number of open files")
    add("--cmdline", action="store_true", help="command line of each process")
    add("-a", "--all", action="store_true", help="same as -cfgstn")
    add("--json", metavar="PATH",
        help="also write JSON Lines to PATH ('-' for stdout, then no table)")
    add("-o", "--output", metavar="PATH",
        help="write the table to PATH instead of stdout")
    add("--count", type=number(1, MAX_COUNT, integer=True), metavar="N", help="stop after N samples")
    add("-d", "--duration", type=number(MIN_INTERVAL, MAX_DURATION), metavar="SECONDS",
        help="stop after SECONDS")
    # dest is not "command": the pymemtrace parser keeps the subcommand there.
    add("watch_command", nargs=argparse.REMAINDER, metavar="-- command ...",
        help="run this command and watch its tree; its exit ends monitoring "
             "and becomes the exit status")


@dataclasses.dataclass
class Config:
    pid: int
    interval: float
    metrics: List[Metric]
    sep: str
    omit_first: bool
    json_path: Optional[str]
    output: Optional[str]
    count: Optional[int]
    duration: Optional[float]
    command: List[str]


def config_from_args(args: argparse.Namespace) -> Config:
    """Check the parsed options; raises UsageError (exit status 2)."""
    interval = args.interval
    if not math.isfinite(interval) or not 0 < interval <= MAX_INTERVAL:
        raise UsageError(f"interval must be a positive number of seconds, not {interval:g}")
    if args.duration is not None and (
        not math.isfinite(args.duration) or not 0 < args.duration <= MAX_DURATION
    ):
        raise UsageError(f"duration must be a positive number of seconds, not {args.duration:g}")
    if args.count is not None and not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"count must be at least 1, not {args.count}")
    command = list(args.watch_command or [])
    if command and command[0] == "--":
        command = command[1:]
    pid = args.pid
    if command and pid != -1:
        raise UsageError("give either --pid or a command, not both")
    if pid == 0 or pid < -1 or pid > MAX_PID:
        raise UsageError(f"pid must be a positive integer (or -1 for this process), not {pid}")
    if args.json == "-" and not args.output and not args.sep:
        output = os.devnull  # JSON on stdout replaces the table
    else:
        output = args.output
    return Config(
        pid=os.getpid() if pid == -1 and not command else pid,
        interval=interval,
        metrics=select_metrics(args),
        sep=args.sep,
        omit_first=args.omit_first,
        json_path=args.json,
        output=output,
        count=args.count,
        duration=args.duration,
        command=command,
    )


class _Waiter:
    """Sleeps until a deadline, waking early when the root process exits.

    Uses a pidfd (Linux 5.3+, Python 3.9+) so waiting costs nothing;
    falls back to plain sleeping elsewhere.
    """

    def __init__(self, pid: int) -> None:
        self._fd = -1
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None and pid != os.getpid():
            try:
                self._fd = pidfd_open(pid)
            except OSError:
                self._fd = -1

    def wait(self, timeout: float) -> bool:
        """Return True when the root exited during the wait."""
        if timeout <= 0:
            return False
        if self._fd < 0:
            time.sleep(timeout)
            return False
        ready, _, _ = select.select([self._fd], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _start_command(command: List[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(command)
    except FileNotFoundError:
        error = PymemtraceError(f"command not found: {command[0]}")
        error.exit_code = 127
        raise error from None
    except OSError as exc:
        error = PymemtraceError(f"cannot run {command[0]}: {_reason(exc)}")
        error.exit_code = 126
        raise error from None


def _returncode_status(returncode: int) -> int:
    """The shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run(args: argparse.Namespace) -> int:
    """Run the monitor as the command line asked; return the exit status."""
    cfg = config_from_args(args)
    if getattr(args, "log_level", None) is not None:
        import logging

        from pymemtrace import process

        logging.basicConfig(level=args.log_level, format=process.LOG_FORMAT)
        logging.getLogger("pymemtrace.process_tree").info(
            "watching %s every %g s",
            f"the tree of {' '.join(cfg.command)}" if cfg.command else f"pid {cfg.pid}",
            cfg.interval,
        )
    opened: List[Any] = []
    popen: Optional[subprocess.Popen] = None
    old_term = None
    samples_written = 0
    reason = "interrupted"
    status = 130
    table_file = None
    try:
        json_out = JsonLinesWriter(cfg.json_path) if cfg.json_path else None
        if json_out is not None:
            opened.append(json_out)
        if cfg.output:
            try:
                table_file = open(cfg.output, "w", encoding="utf-8")
            except OSError as exc:
                raise PymemtraceError(f"cannot write {cfg.output}: {_reason(exc)}") from None
            out: IO[str] = table_file
        else:
            out = sys.stdout
        table = TableWriter(out, cfg.metrics, cfg.sep)

        if cfg.command:
            popen = _start_command(cfg.command)
            pid = popen.pid
            if _in_main_thread():
                # SIGTERM to the monitor goes on to the command; monitoring
                # continues until the command exits.
                old_term = signal.signal(
                    signal.SIGTERM, lambda signum, frame: popen.send_signal(signum))
        else:
            pid = cfg.pid
            if _in_main_thread():
                # SIGTERM ends the watch as Ctrl-C does: the JSON Lines
                # get their "end" record; exit status 143.
                old_term = signal.signal(signal.SIGTERM, _terminated)
        monitor = ProcessTreeMonitor(pid, cfg.metrics)
        waiter = _Waiter(pid)
        opened.append(waiter)
        if json_out is not None:
            json_out.start(pid, cfg.interval, cfg.metrics, cfg.command)

        t0 = time.monotonic()
        tick = 0
        try:
            while True:
                sample = monitor.sample()
                if not (cfg.omit_first and sample.index == 0):
                    _write_table(table, sample, cfg.output)
                    if json_out is not None:
                        json_out.write(sample)
                    samples_written += 1
                if monitor.root_exited:
                    reason = "root exited"
                    break
                if cfg.count is not None and samples_written >= cfg.count:
                    reason = "count reached"
                    break
                elapsed = time.monotonic() - t0
                if cfg.duration is not None and elapsed >= cfg.duration:
                    reason = "duration reached"
                    break
                # Next tick on the fixed grid t0 + k * interval (skip ticks
                # missed because sampling was slow).
                tick = max(tick + 1, int(elapsed / cfg.interval) + 1)
                deadline = t0 + tick * cfg.interval
                if cfg.duration is not None:
                    deadline = min(deadline, t0 + cfg.duration)
                waiter.wait(deadline - time.monotonic())
            status = 0
        except _Terminated:
            reason = "terminated"
            status = 128 + signal.SIGTERM
        except KeyboardInterrupt:
            reason = "interrupted"
            status = 130
        except BrokenPipeError:
            # The reader of our output went away (e.g. `| head`): exit 1
            # without a word, as git does.
            _silence_stdout()
            reason = "output closed"
            status = 1

        returncode = None
        if popen is not None:
            if reason == "root exited":
                returncode = popen.wait()
                status = _returncode_status(returncode)
            else:
                # Ctrl-C reached the command too (same process group); when
                # we stop for --count/--duration, ask it to stop.
                if reason != "interrupted":
                    _terminate(monitor.descendants())
                returncode = _stop(popen, None if reason == "interrupted"
                                   else signal.SIGTERM)
        if json_out is not None:
            json_out.end(pid, time.monotonic() - t0, samples_written, reason, returncode)
        if table_file is not None:
            _close_table(table_file, cfg.output)
        return status
    finally:
        if table_file is not None and not table_file.closed:
            try:
                table_file.close()
            except OSError:
                pass  # the error that got us here says more
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if popen is not None and popen.returncode is None:
            _stop(popen, signal.SIGTERM)
        for thing in reversed(opened):
            thing.close()


def _write_table(table: TableWriter, sample: Sample, path: Optional[str]) -> None:
    """One sample to the table; a full disk behind -o PATH is one line."""
    try:
        table.write(sample)
    except BrokenPipeError:
        raise
    except OSError as exc:
        if path is None:
            raise  # stdout: the caller's main says "cannot write stdout"
        raise PymemtraceError(f"cannot write {path}: {_reason(exc)}") from None


def _close_table(table_file: IO[str], path: Optional[str]) -> None:
    try:
        table_file.close()
    except OSError as exc:
        raise PymemtraceError(f"cannot write {path}: {_reason(exc)}") from None


class _Terminated(KeyboardInterrupt):
    """SIGTERM while watching a pid."""


def _terminated(signum, frame) -> None:
    raise _Terminated


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


#: Seconds the command is given to exit before it is killed.
STOP_GRACE = 5.0


def _terminate(procs: Sequence[psutil.Process]) -> None:
    """SIGTERM to the command's descendants when we stop it early."""
    for proc in procs:
        try:
            if proc.is_running():  # checks the pid was not reused
                proc.terminate()
        except psutil.Error:
            pass


def _stop(popen: subprocess.Popen, signum: Optional[int]) -> int:
    """Stop the command: signal it, wait a little, then kill it."""
    try:
        if signum is not None and popen.poll() is None:
            popen.send_signal(signum)
        return popen.wait(timeout=STOP_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        popen.kill()
        return popen.wait()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Watch the memory of a process and of all its child processes.",
        epilog="examples:\n" + EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one_line_errors(parser, prog)
    add_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pymemtrace.process_tree``: same as ``pymemtrace tree``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PymemtraceError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno not in _output.WRITE_ERRNOS:
            raise
        _silence_stdout()
        print(f"{PROG}: error: cannot write stdout: {_reason(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
