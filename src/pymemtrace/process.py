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
Lines file (one object per line with an ``event`` key, each record handed
to the kernel in one write).  The file is written under a temporary name
in the same directory (``thread.partial_path``) and renamed to ``path``
when the STOP record is written: ``path`` holds a whole log or nothing; a
``kill -9`` leaves the temporary file, every line of it whole.

For the current process the sampling runs in a C thread
(``pymemtrace._native.Sampler``) that never holds the GIL; the logging
thread drains it in batches, so even ``interval=0.01`` costs the watched
program very little.  Another process (``pid=``) is sampled with psutil.

``python -m pymemtrace.process LOG [OUTDIR]`` summarises a log (a logging
output file or a JSON Lines file) per process, and with OUTDIR writes
gnuplot ``.dat``/``.plt`` files and a self-contained SVG chart per pid.

This module is the seed-named front end; the layers it wires together
(and re-exports, so every public name of the seed keeps working):
the probe :mod:`pymemtrace.probes.process`, the log records
:mod:`pymemtrace.snapshots.process_log`, the running statistics
:mod:`pymemtrace.analyses.process`, the text and charts
:mod:`pymemtrace.reporters.process_text` and
:mod:`pymemtrace.reporters.process_chart`.
"""
from __future__ import annotations

import argparse
import contextlib
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
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from pymemtrace import _output
from pymemtrace._argtypes import MAX_PID, number
from pymemtrace.analyses.process import ProcessSummary, Series, summarise
from pymemtrace.errors import PymemtraceError
from pymemtrace.probes import process as probe
from pymemtrace.probes.process import wait_for_exec
from pymemtrace.reporters._units import format_bytes
from pymemtrace.reporters.process_chart import rss_chart, write_plots
from pymemtrace.reporters.process_text import _labels_cell, format_summary
from pymemtrace.snapshots.process_log import (
    DATETIME_NOW_FORMAT,
    EVENT_SAMPLE,
    EVENT_START,
    EVENT_STOP,
    KEY_CPU_TIMES,
    KEY_ELAPSED_TIME,
    KEY_EVENT,
    KEY_LABEL,
    KEY_MEMORY_INFO,
    KEY_PROCESS_ID,
    KEY_TIMESTAMP,
    LOGGER_PREFIX,
    LOGGER_PREFIX_START,
    LOGGER_PREFIX_STOP,
    PREFIX_FOR_EVENT,
    LogContents,
    RecordReader,
    StreamedFile,
    jsonl_line,
    make_record,
    parse_lines,
    read_log,
)

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

# Names this module had before the split, still importable from here.
_REEXPORTED = (DATETIME_NOW_FORMAT, KEY_CPU_TIMES, KEY_ELAPSED_TIME, KEY_EVENT, KEY_LABEL,
               KEY_MEMORY_INFO, KEY_PROCESS_ID, KEY_TIMESTAMP, LogContents, Series,
               _labels_cell, format_bytes, parse_lines, rss_chart, wait_for_exec)

logger = logging.getLogger("pymemtrace.process")
_PREFIX_FOR_EVENT = PREFIX_FOR_EVENT

#: Longest interval accepted, in seconds (the C sampler's limit too).
MAX_INTERVAL = 86400.0
#: Shortest interval of the command lines, in seconds.
MIN_INTERVAL = 0.001
#: Seconds between two drains of the C sampler (records reach the log and
#: the file up to this late) when the interval is shorter.
DEFAULT_BATCH = 1.0

_native = probe._native
_Sample = probe.Reading
_from_native = probe.from_native
_open_process = probe.open_process
_create_time = probe.create_time


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
        self._process = probe.this_process() if own else _open_process(pid)
        self._pid = self._process.pid
        self._create_time = _create_time(self._process)
        self._use_native = own and probe.HAVE_NATIVE
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
        self._file: Optional[StreamedFile] = None
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
        # None until the thread ends; then whether its STOP record was written.
        self._stop_written: Optional[bool] = None

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
    def partial_path(self) -> Optional[str]:
        """While running: the temporary file that holds the records so far
        (renamed to ``path`` when the STOP record is written)."""
        return None if self._file is None else self._file.partial_path

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
                self._file = StreamedFile(self._path)
            if self._use_native:
                # START is sampled here; the thread's first sample comes one
                # interval later, and start() does not wait for the thread.
                self._sampler = probe.native_sampler(self._interval, self._capacity)
                first = probe.native_reading()
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
                final = probe.native_reading()
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
        self._stop_written = False
        self._write(EVENT_STOP, final, None)
        self._stop_written = True

    # -- helpers -----------------------------------------------------------

    def _psutil_sample(self) -> _Sample:
        return probe.psutil_reading(self._process)

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
        return make_record(wall, memory, cpu, self._pid, self._create_time, label)

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
            self._file.write(jsonl_line(event, record))
        self.records_written += 1
        if self._on_record is not None:
            self._on_record(event, record)

    def _close(self) -> None:
        """Stop the sampler; the file gets its name, or, cut short by an
        error writing it, is removed (the path never holds a partial log)."""
        if self._sampler is not None:
            self._sampler.stop()
        if self._file is not None:
            file, self._file = self._file, None
            failed = self._stop_written is not True or (
                isinstance(self.error, OSError) and self.error.filename == file.path)
            if failed:
                file.discard()
                return
            try:
                file.commit()
            except OSError as exc:
                if self.error is None:
                    self.error = exc
                logger.error("pymemtrace.process: cannot write %s: %s", file.path, exc)


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



def summarise_log(log_path: str, outdir: Optional[str] = None,
                  out: Optional[TextIO] = None) -> int:
    """Print the summary table of a log (and write plots); exit status.

    Raises :class:`PymemtraceError` with a one-line message when the log
    cannot be read or the plots cannot be written.
    """
    if out is None:
        out = sys.stdout
    try:
        if outdir is None:
            # The table alone: records are summarised as they are read,
            # in constant memory whatever the log's length.
            with open(log_path, encoding="utf-8", errors="replace") as stream:
                reader = RecordReader(stream)
                summaries = summarise(reader)
            records: Sequence[Dict[str, Any]] = ()
            skipped = reader.skipped
        else:
            contents = read_log(log_path)
            records, skipped = contents.records, contents.skipped
            summaries = summarise(records)
    except OSError as exc:
        raise PymemtraceError(f"cannot read {log_path}: {exc.strerror or exc}") from exc
    if not summaries:
        why = f" ({skipped} unreadable skipped)" if skipped else ""
        raise PymemtraceError(f"no process records in {log_path}{why}")
    print(format_summary(summaries, skipped), file=out)
    if outdir is not None:
        try:
            paths = write_plots(records, log_path, outdir)
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
    ``python -m pymemtrace.process [-p PID] [-i INTERVAL] [-l LEVEL]``.

    Every failure is one line on stderr: usage 2, anything else 1 (a
    reader that left, as ``| head -1``: 1 without a word)."""
    from pymemtrace._argtypes import one_line_errors

    prog = "python -m pymemtrace.process"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Summarise a log written by pymemtrace.process (logging output "
        "or JSON Lines) per process; with OUTDIR also write gnuplot files and "
        "an SVG chart per process.  Without LOG, log the memory of a process "
        "(-p, default this one) every -i seconds at level -l until it ends or ^C.",
        epilog="examples:\n  python -m pymemtrace.process run.jsonl plots/\n"
        "  python -m pymemtrace.process -p 1234 -i 0.5 -l 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    one_line_errors(parser, prog)
    parser.add_argument("log", metavar="LOG", nargs="?", help="log file to read")
    parser.add_argument("outdir", metavar="OUTDIR", nargs="?",
                        help="directory for .dat, .plt and .svg files")
    parser.add_argument("-p", "--pid", type=number(-1, MAX_PID, integer=True), default=-1,
                        help="without LOG: the process to log, -1 is this one "
                             "[default: %(default)s]")
    parser.add_argument("-i", "--interval", type=number(MIN_INTERVAL, MAX_INTERVAL),
                        default=1.0,
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
        status = summarise_log(args.log, args.outdir)
        sys.stdout.flush()
        return status
    except PymemtraceError as exc:
        _error(prog, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _output.silence_stdout()
        _error(prog, _output.READER_GONE)
        return 1
    except OSError as exc:
        if exc.errno not in _output.WRITE_ERRNOS:
            raise
        _output.silence_stdout()
        _error(prog, f"cannot write {exc.filename or 'stdout'}: {_output.reason(exc)}")
        return 1


def _error(prog: str, message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
