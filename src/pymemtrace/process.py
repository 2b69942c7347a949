"""Log the memory and CPU use of a process at regular intervals.

The API of the seed system, with a C sampler underneath::

    import logging
    from pymemtrace import process

    logging.basicConfig(level=logging.INFO)
    with process.log_process(interval=0.1, path="run.jsonl") as proc:
        load_data()
        proc.add_message_to_queue("data loaded")
        crunch()

Every record is one logging call at ``log_level`` on the logger
``pymemtrace.process``, of the form ``ProcessLoggingThread-JSON {json}``
(``-START``/``-STOP`` for the first and last record), with the keys
``timestamp``, ``memory_info``, ``cpu_times``, ``elapsed_time`` (seconds
since the process started), ``pid`` and, for records that follow a
message, ``label``.  With ``path=`` the same records also go to a JSON
Lines file (one object per line with an ``event`` key, flushed per
record, so the file stays readable while the process runs or after it is
killed).

For the current process the sampling runs in a C thread
(``pymemtrace._native.Sampler``) that never holds the GIL; the logging
thread drains it in batches, so even ``interval=0.01`` costs the watched
program very little.  Another process (``pid=``) is sampled with psutil.

``python -m pymemtrace.process LOG [OUTDIR]`` summarises a log (a logging
output file or a JSON Lines file) per process, and with OUTDIR writes
gnuplot ``.dat``/``.plt`` files and a self-contained SVG chart per pid.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import math
import numbers
import os
import queue
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

import psutil

from pymemtrace import _output
from pymemtrace.errors import PymemtraceError

try:  # the C core; without it every process is sampled with psutil
    from pymemtrace import _native
except ImportError:  # pragma: no cover - the extension is always built here
    _native = None

__all__ = [
    "LOGGER_PREFIX",
    "LOGGER_PREFIX_START",
    "LOGGER_PREFIX_STOP",
    "ProcessLoggingThread",
    "ProcessSummary",
    "log_process",
    "log_process_dec",
    "read_log",
    "summarise",
    "format_summary",
    "write_plots",
    "main",
]

logger = logging.getLogger("pymemtrace.process")

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
_PREFIX_FOR_EVENT = {
    EVENT_START: LOGGER_PREFIX_START,
    EVENT_SAMPLE: LOGGER_PREFIX,
    EVENT_STOP: LOGGER_PREFIX_STOP,
}

#: Longest interval accepted, in seconds (the C sampler's limit too).
MAX_INTERVAL = 86400.0
#: Seconds between two drains of the C sampler (records reach the log and
#: the file up to this late) when the interval is shorter.
DEFAULT_BATCH = 1.0


def _check_interval(interval: Any) -> float:
    if (
        isinstance(interval, bool)
        or not isinstance(interval, numbers.Real)
        or not math.isfinite(interval)
        or not 0 < interval <= MAX_INTERVAL
    ):
        raise ValueError(
            f"interval must be a number of seconds > 0 and <= {MAX_INTERVAL:g}, "
            f"got {interval!r}"
        )
    return float(interval)


def log_level_arg(text: str) -> int:
    """argparse type of the seed's ``-l``/``--log_level``: a number (20) or
    a name (INFO, info)."""
    try:
        return _check_log_level(int(text) if text.strip().lstrip("-").isdigit() else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"log level must be a number (10, 20, ...) or a name (DEBUG, INFO, ...), "
            f"got {text!r}"
        ) from None


#: Format of the log lines when ``-l`` turns logging on (the seed's).
LOG_FORMAT = "%(asctime)s - %(filename)s#%(lineno)d - %(process)5d - " \
    "(%(threadName)-10s) - %(levelname)-8s - %(message)s"


def _check_log_level(log_level: Any) -> int:
    if isinstance(log_level, str):
        value = logging.getLevelName(log_level.upper())
        if isinstance(value, int):
            return value
    elif isinstance(log_level, int) and not isinstance(log_level, bool) and log_level >= 0:
        return log_level
    raise ValueError(f"log_level must be a logging level such as logging.INFO, got {log_level!r}")


def _open_process(pid: int) -> psutil.Process:
    """psutil.Process(pid), its errors turned into clear built-in ones."""
    try:
        proc = psutil.Process(pid)
        proc.create_time()
        return proc
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"no process with pid {pid}") from exc
    except psutil.AccessDenied as exc:
        raise PermissionError(f"access denied to process {pid}") from exc


def _create_time(proc: psutil.Process) -> float:
    """Start time of the process, seconds since the epoch.

    On Linux psutil adds the start tick to the boot time, which /proc/stat
    gives in whole seconds: elapsed times would be off by up to a second.
    The age from CLOCK_BOOTTIME is exact to a clock tick.
    """
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as stream:
                data = stream.read()
            start_ticks = int(data[data.rindex(b")") + 2:].split()[19])
            age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
            return time.time() - age
        except (OSError, ValueError, IndexError, AttributeError):
            pass
    return proc.create_time()


def wait_for_exec(pid: int, timeout: float = 1.0) -> None:
    """Wait until a child started by ``subprocess.Popen`` has its program
    loaded.  Popen returns when the exec has begun (the close-on-exec pipe
    closes), while the kernel may still be mapping the new program: a
    sample then reads an empty address space (RSS of one page).  On Linux
    the code range of /proc/PID/stat is set once the program is mapped;
    elsewhere, or when the child ends, this returns at once."""
    if not sys.platform.startswith("linux"):
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stream:
                data = stream.read()
            fields = data[data.rindex(b")") + 2:].split()
            if fields[0] in (b"Z", b"X") or int(fields[23]) != 0:  # state, startcode
                return
        except (OSError, ValueError, IndexError):
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.0005)


# A sample inside this module: (monotonic s, wall s, memory_info, cpu_times).
_Sample = Tuple[float, float, Dict[str, Any], Dict[str, Any]]


def _from_native(sample: Tuple[float, float, int, float, float]) -> _Sample:
    mono, wall, rss, user, system = sample
    return mono, wall, {"rss": rss}, {"user": round(user, 6), "system": round(system, 6)}


class ProcessLoggingThread(threading.Thread):
    """A thread that logs a process's memory and CPU use every ``interval`` s.

    ``pid=-1`` (or this process's pid) watches this process through the C
    sampler; any other pid is watched through psutil.  Keyword-only
    extras: ``path`` (also write a JSON Lines file), ``label`` (label of the
    START record), ``capacity`` (samples the C ring holds; default: four batches' worth),
    ``batch`` (seconds between drains of the C ring: records are written in
    batches, up to this late; default 1 s, or the interval when longer, at
    most 5 s), ``on_record`` (called from the thread as ``on_record(event, record)``
    after each record is written).

    Raises ValueError for a bad interval or log level, ProcessLookupError
    (an OSError) when no process has that pid, PermissionError when it
    cannot be read; ``start()`` raises OSError naming ``path`` when the file
    cannot be written.  Stop with ``join()`` (which writes the STOP record
    first) or use :func:`log_process`.
    """

    def __init__(
        self,
        group=None,
        target=None,
        name=None,
        daemon=None,
        interval=1.0,
        log_level=logging.INFO,
        pid=-1,
        *,
        path=None,
        label: Optional[str] = None,
        capacity: Optional[int] = None,
        batch: Optional[float] = None,
        on_record: Optional[Callable[[str, Dict[str, Any]], None]] = None,
    ):
        self._interval = _check_interval(interval)
        self._log_level = _check_log_level(log_level)
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"pid must be an integer, got {pid!r}")
        if pid != -1 and pid <= 0:
            raise ValueError(f"pid must be a positive process id or -1 (this process), got {pid}")
        if batch is None:
            # Each drain takes the GIL from the watched program once: on a
            # busy machine a GIL handoff can cost it milliseconds, so drain
            # about once a second whatever the interval.
            batch = DEFAULT_BATCH if self._interval <= DEFAULT_BATCH else min(self._interval, 5.0)
        try:
            self._batch = _check_interval(batch)
        except ValueError:
            raise ValueError(f"batch must be a number of seconds > 0, got {batch!r}") from None
        if capacity is None:
            # Room for four batches: a logging thread held up for a while
            # loses nothing.
            capacity = max(1024, min(1 << 20, int(4 * self._batch / self._interval) + 1))
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity!r}")
        own = pid in (-1, os.getpid())
        self._process = psutil.Process() if own else _open_process(pid)
        self._pid = self._process.pid
        self._create_time = _create_time(self._process)
        self._use_native = own and _native is not None
        super().__init__(
            group=group,
            target=target,
            name=name or "ProcMon",
            daemon=True if daemon is None else daemon,
        )
        self._path = os.fspath(path) if path is not None else None
        self._label = None if label is None else str(label)
        self._capacity = capacity
        self._on_record = on_record
        #: Messages waiting to label a record: (time.monotonic(), text).
        self.process_queue: "queue.Queue[Tuple[float, str]]" = queue.Queue()
        self._pending_labels: List[Tuple[float, str]] = []
        self._stop_event = threading.Event()
        self._start_called = False
        self._file: Optional[TextIO] = None
        self._sampler = None
        self._last: Optional[_Sample] = None
        #: Records written (all events).
        self.records_written = 0
        #: Samples the C ring dropped because the thread fell behind.
        self.dropped = 0
        #: The exception that ended sampling early, else None.
        self.error: Optional[BaseException] = None
        #: True when the watched process exited before the thread stopped.
        self.process_exited = False

    # -- public ------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def path(self) -> Optional[str]:
        return self._path

    @property
    def uses_native_sampler(self) -> bool:
        """True when samples come from the C thread (this process)."""
        return self._use_native

    def add_message_to_queue(self, msg: str) -> None:
        """Label the next record with ``msg`` (one record per message)."""
        self.process_queue.put((time.monotonic(), str(msg)))

    def start(self) -> None:
        """Open the file, write the START record, start sampling."""
        if self._start_called:
            raise RuntimeError("threads can only be started once")
        self._start_called = True
        try:
            if self._path is not None:
                self._file = open(self._path, "w", encoding="utf-8")
            if self._use_native:
                # START is sampled here; the thread's first sample comes one
                # interval later, and start() does not wait for the thread.
                self._sampler = _native.Sampler(self._interval, capacity=self._capacity)
                first = _from_native(_native.process_sample())
                self._sampler.start(immediate=False)
            else:
                first = self._psutil_sample()
            self._write(EVENT_START, first, self._label)
            super().start()
        except BaseException:
            self._close()
            raise

    def stop(self) -> None:
        """Ask the thread to write its STOP record and end (does not wait)."""
        if self._sampler is not None:
            # Both threads wind down at once: the C thread ends while the
            # logging thread wakes up.
            self._sampler.request_stop()
        self._stop_event.set()

    def join(self, timeout: Optional[float] = None) -> None:
        """Stop the thread and wait for it (its STOP record is then written)."""
        self.stop()
        super().join(timeout)

    # -- the thread --------------------------------------------------------

    def run(self) -> None:
        try:
            if self._use_native:
                self._run_native()
            else:
                self._run_psutil()
        except Exception as exc:  # noqa: BLE001 - reported, never silent
            self.error = exc
            logger.error("pymemtrace.process: sampling of pid %d stopped: %s", self._pid, exc)
        finally:
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001 - e.g. disk full, on_record
                if self.error is None:
                    self.error = exc
                logger.error("pymemtrace.process: cannot write the STOP record: %s", exc)
            finally:
                self._close()

    def _run_native(self) -> None:
        # Drain in batches: the GIL is taken once per batch, however short
        # the interval.
        while not self._stop_event.wait(self._batch):
            self._drain_native()

    def _drain_native(self) -> None:
        for sample in self._sampler.drain():
            self._write_sample(_from_native(sample))

    def _run_psutil(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                sample = self._psutil_sample()
            except ProcessLookupError:
                self.process_exited = True
                return
            self._write_sample(sample)

    def _finish(self) -> None:
        final: Optional[_Sample] = None
        if self._sampler is not None:
            self._sampler.stop()
            try:
                self._drain_native()
                final = _from_native(_native.process_sample())
            except OSError as exc:
                if self.error is None:
                    self.error = exc
                    logger.error("pymemtrace.process: sampling stopped: %s", exc)
            self.dropped = self._sampler.dropped
        elif not self.process_exited:
            try:
                final = self._psutil_sample()
            except ProcessLookupError:
                self.process_exited = True
        if final is None:
            final = self._last
        if final is None:  # pragma: no cover - START always sets _last
            return
        self._collect_labels()
        for _, text in self._pending_labels:
            self._write(EVENT_SAMPLE, final, text)
        self._pending_labels.clear()
        self._write(EVENT_STOP, final, None)

    # -- helpers -----------------------------------------------------------

    def _psutil_sample(self) -> _Sample:
        try:
            with self._process.oneshot():
                memory = self._process.memory_info()._asdict()
                cpu = self._process.cpu_times()._asdict()
                # An exited child not yet waited for reads as all zeros.
                if not memory.get("rss") and self._process.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(self._pid)
        except psutil.NoSuchProcess as exc:
            raise ProcessLookupError(f"process {self._pid} has exited") from exc
        except psutil.AccessDenied as exc:
            raise PermissionError(f"access denied to process {self._pid}") from exc
        return time.monotonic(), time.time(), memory, cpu

    def _collect_labels(self) -> None:
        while True:
            try:
                item = self.process_queue.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, tuple):  # put() straight on the queue, as the seed did
                item = (0.0, str(item))
            self._pending_labels.append(item)

    def _write_sample(self, sample: _Sample) -> None:
        """One record, or one per message queued before the sample was taken."""
        if self.process_queue.qsize() or self._pending_labels:
            self._collect_labels()
            due = [p for p in self._pending_labels if p[0] <= sample[0]]
            if due:
                self._pending_labels = self._pending_labels[len(due):]
                for _, text in due:
                    self._write(EVENT_SAMPLE, sample, text)
                return
        self._write(EVENT_SAMPLE, sample, None)

    def _record(self, sample: _Sample, label: Optional[str]) -> Dict[str, Any]:
        _, wall, memory, cpu = sample
        record = {
            KEY_TIMESTAMP: datetime.datetime.fromtimestamp(wall).strftime(DATETIME_NOW_FORMAT),
            KEY_MEMORY_INFO: memory,
            KEY_CPU_TIMES: cpu,
            KEY_ELAPSED_TIME: round(wall - self._create_time, 6),
            KEY_PROCESS_ID: self._pid,
        }
        if label is not None:
            record[KEY_LABEL] = label
        return record

    def _write(self, event: str, sample: _Sample, label: Optional[str]) -> None:
        self._last = sample
        to_log = logger.isEnabledFor(self._log_level)
        if not (to_log or self._file is not None or self._on_record is not None):
            self.records_written += 1
            return
        record = self._record(sample, label)
        if event == EVENT_STOP and self._sampler is not None:
            record["dropped"] = self.dropped
        if to_log:
            logger.log(self._log_level, "%s %s", _PREFIX_FOR_EVENT[event], json.dumps(record))
        if self._file is not None:
            self._file.write(json.dumps({KEY_EVENT: event, **record}) + "\n")
            self._file.flush()
        self.records_written += 1
        if self._on_record is not None:
            self._on_record(event, record)

    def _close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


@contextlib.contextmanager
def log_process(
    interval=1.0,
    log_level=logging.INFO,
    pid=-1,
    *,
    path=None,
    label: Optional[str] = None,
    **kwargs,
):
    """Log process data every ``interval`` seconds while the block runs.

    Yields the :class:`ProcessLoggingThread` (for ``add_message_to_queue``).
    The thread stops, writing its STOP record, when the block ends, also
    when it raises.
    """
    thread = ProcessLoggingThread(
        interval=interval, log_level=log_level, pid=pid, path=path, label=label, **kwargs
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.join()


def log_process_dec(interval=1.0, log_level=logging.INFO, pid=-1, **kwargs):
    """Decorator: run the function inside :func:`log_process`.

    Use as ``@log_process_dec(interval=0.1)`` or bare ``@log_process_dec``.
    """
    if callable(interval) and not isinstance(interval, numbers.Real):
        return log_process_dec()(interval)
    _check_interval(interval)
    _check_log_level(log_level)

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kw):
            with log_process(interval, log_level, pid, **kwargs):
                return func(*args, **kw)

        return wrapper

    return decorator


# ---------------------------------------------------------------------------
# Reading and summarising logs.


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


def parse_lines(lines: Iterable[str]) -> LogContents:
    """Records from logging output lines and/or JSON Lines.

    Lines holding ``ProcessLoggingThread-JSON`` are records of a logging
    output; lines starting with ``{`` are JSON Lines records; other lines
    are ignored.  Records that do not parse are counted in ``skipped``.
    """
    records: List[Dict[str, Any]] = []
    skipped = 0
    for line in lines:
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
        except ValueError:
            skipped += 1
            continue
        if not _valid(record):
            skipped += 1
            continue
        if event is not None:
            record[KEY_EVENT] = event
        elif record.get(KEY_EVENT) not in _PREFIX_FOR_EVENT:
            record[KEY_EVENT] = EVENT_SAMPLE
        records.append(record)
    return LogContents(records, skipped)


def read_log(path) -> LogContents:
    """Records of the log at ``path``; OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        return parse_lines(stream)


@dataclasses.dataclass
class ProcessSummary:
    """RSS over one process's records."""

    pid: int
    samples: int
    first_rss: int
    last_rss: int
    min_rss: int
    max_rss: int
    t_first: float
    t_last: float
    labels: List[Tuple[float, str]]
    dropped: int = 0

    @property
    def growth(self) -> int:
        return self.last_rss - self.first_rss

    @property
    def duration(self) -> float:
        return self.t_last - self.t_first

    @property
    def rate(self) -> float:
        """Growth in bytes per second (0 when the log covers no time)."""
        return self.growth / self.duration if self.duration > 0 else 0.0


def summarise(records: Sequence[Dict[str, Any]]) -> Dict[int, ProcessSummary]:
    """One :class:`ProcessSummary` per pid, in order of first appearance."""
    out: Dict[int, ProcessSummary] = {}
    for record in records:
        pid = record[KEY_PROCESS_ID]
        rss = record[KEY_MEMORY_INFO]["rss"]
        t = float(record[KEY_ELAPSED_TIME])
        s = out.get(pid)
        if s is None:
            s = out[pid] = ProcessSummary(pid, 0, rss, rss, rss, rss, t, t, [])
        s.samples += 1
        s.last_rss = rss
        s.min_rss = min(s.min_rss, rss)
        s.max_rss = max(s.max_rss, rss)
        s.t_last = t
        if record.get(KEY_LABEL) is not None:
            s.labels.append((t, str(record[KEY_LABEL])))
        if isinstance(record.get("dropped"), int):
            s.dropped += record["dropped"]
    return out


def format_bytes(value: float, signed: bool = False) -> str:
    """1536 -> '1.5 KiB' (binary units)."""
    sign = "+" if signed and value > 0 else ("-" if value < 0 else "")
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            if unit == "B":
                return f"{sign}{value:.0f} {unit}"
            return f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _labels_cell(labels: List[Tuple[float, str]], width: int = 40) -> str:
    if not labels:
        return "-"
    text = ", ".join(label for _, label in labels)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"{len(labels)}: {text}"


def format_summary(summaries: Dict[int, ProcessSummary], skipped: int = 0) -> str:
    """The per-pid table printed by ``python -m pymemtrace.process LOG``."""
    header = ("pid", "samples", "first RSS", "last RSS", "min RSS", "max RSS",
              "growth", "rate", "duration", "labels")
    rows = [header]
    for s in summaries.values():
        rows.append(
            (
                str(s.pid),
                str(s.samples),
                format_bytes(s.first_rss),
                format_bytes(s.last_rss),
                format_bytes(s.min_rss),
                format_bytes(s.max_rss),
                format_bytes(s.growth, signed=True),
                format_bytes(s.rate, signed=True) + "/s",
                f"{s.duration:.2f} s",
                _labels_cell(s.labels),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, len(row) - 1) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not summaries:
        lines.append("(no records)")
    if skipped:
        lines.append(f"skipped {skipped} unreadable line{'s' if skipped != 1 else ''}")
    return "\n".join(lines)


def write_plots(records: Sequence[Dict[str, Any]], log_path: str, outdir: str) -> List[str]:
    """gnuplot .dat/.plt and an SVG chart per pid in ``outdir``; returns the paths."""
    from pymemtrace.reporters import gnuplot

    os.makedirs(outdir, exist_ok=True)
    by_pid: Dict[int, List[Dict[str, Any]]] = {}
    for record in records:
        by_pid.setdefault(record[KEY_PROCESS_ID], []).append(record)
    written = []
    base = os.path.basename(log_path) or "process"
    for pid, recs in by_pid.items():
        name = f"{base}_{pid}"
        dat = os.path.join(outdir, name + ".dat")
        plt = os.path.join(outdir, name + ".plt")
        svg = os.path.join(outdir, name + ".svg")
        gnuplot.write_process_dat(dat, recs)
        gnuplot.write_process_plt(plt, name, recs)
        _output.write_file(svg, rss_chart(recs, title=f"RSS of pid {pid} ({base})"))
        written += [dat, plt, svg]
    return written


def rss_chart(records: Sequence[Dict[str, Any]], title: str = "RSS over time") -> str:
    """An SVG chart of RSS (MiB) against elapsed time, labels marked."""
    from pymemtrace.reporters import svg_chart

    points = [(float(r[KEY_ELAPSED_TIME]), r[KEY_MEMORY_INFO]["rss"] / 2**20) for r in records]
    markers = [(float(r[KEY_ELAPSED_TIME]), str(r[KEY_LABEL]))
               for r in records if r.get(KEY_LABEL) is not None]
    return svg_chart.line_chart(
        points,
        title=title,
        x_label="time since process start (s)",
        y_label="RSS (MiB)",
        markers=markers,
    )


def summarise_log(log_path: str, outdir: Optional[str] = None,
                  out: Optional[TextIO] = None) -> int:
    """Print the summary table of a log (and write plots); exit status.

    Raises :class:`PymemtraceError` with a one-line message when the log
    cannot be read or the plots cannot be written.
    """
    if out is None:
        out = sys.stdout
    try:
        contents = read_log(log_path)
    except OSError as exc:
        raise PymemtraceError(f"cannot read {log_path}: {exc.strerror or exc}") from exc
    if not contents.records:
        skipped = f" ({contents.skipped} unreadable skipped)" if contents.skipped else ""
        raise PymemtraceError(f"no process records in {log_path}{skipped}")
    print(format_summary(summarise(contents.records), contents.skipped), file=out)
    if outdir is not None:
        try:
            paths = write_plots(contents.records, log_path, outdir)
        except OSError as exc:
            where = exc.filename or outdir
            raise PymemtraceError(f"cannot write {where}: {exc.strerror or exc}") from exc
        for path in paths:
            print(f"wrote {path}", file=out)
    return 0


def _watch(pid: int, interval: float, log_level: int) -> int:
    """The seed's demonstration: log a process (-1: this one) until it ends
    or ^C."""
    try:
        thread = ProcessLoggingThread(interval=interval, log_level=log_level, pid=pid)
        thread.start()
    except (ValueError, OSError) as exc:
        raise PymemtraceError(str(exc)) from exc
    try:
        while thread.is_alive() and not thread.process_exited:
            time.sleep(min(interval, 0.25))
    except KeyboardInterrupt:
        pass
    finally:
        thread.join()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pymemtrace.process LOG [OUTDIR]``, or the seed's
    ``python -m pymemtrace.process [-p PID] [-i INTERVAL] [-l LEVEL]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pymemtrace.process",
        description="Summarise a log written by pymemtrace.process (logging output "
        "or JSON Lines) per process; with OUTDIR also write gnuplot files and "
        "an SVG chart per process.  Without LOG, log the memory of a process "
        "(-p, default this one) every -i seconds at level -l until it ends or ^C.",
        epilog="examples:\n  python -m pymemtrace.process run.jsonl plots/\n"
        "  python -m pymemtrace.process -p 1234 -i 0.5 -l 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    def one_line_error(message: str) -> None:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = one_line_error  # type: ignore[method-assign]
    parser.add_argument("log", metavar="LOG", nargs="?", help="log file to read")
    parser.add_argument("outdir", metavar="OUTDIR", nargs="?",
                        help="directory for .dat, .plt and .svg files")
    parser.add_argument("-p", "--pid", type=int, default=-1,
                        help="without LOG: the process to log, -1 is this one "
                             "[default: %(default)s]")
    parser.add_argument("-i", "--interval", type=float, default=1.0,
                        help="without LOG: seconds between samples [default: %(default)s]")
    parser.add_argument("-l", "--log_level", "--log-level", dest="log_level",
                        type=log_level_arg, default=logging.INFO,
                        help="without LOG: the level of the log lines, a number "
                             "(debug=10, info=20, ...) or a name [default: %(default)s]")
    args = parser.parse_args(argv)
    try:
        if args.log is None:
            logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
            return _watch(args.pid, args.interval, args.log_level)
        return summarise_log(args.log, args.outdir)
    except PymemtraceError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
