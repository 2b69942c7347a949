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

This module is the seed-named front end: :class:`ProcessLoggingThread`
turns the readings of the probe's thread
(:class:`pymemtrace.probes.process.SamplingThread`) into the records of
:mod:`pymemtrace.snapshots.process_log`, logged and written.  It re-exports
the rest, so every public name of the seed keeps working: the running
statistics :mod:`pymemtrace.analyses.process`, the text and charts
:mod:`pymemtrace.reporters.process_text` and
:mod:`pymemtrace.reporters.process_chart`, and the command line
:mod:`pymemtrace.cli.seed_process` (``main``).  :func:`summarise_log`
wires a log's reader, the statistics and the table together.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import numbers
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence, TextIO

from pymemtrace.analyses.process import ProcessSummary, Series, summarise
from pymemtrace.cli.seed_process import LOG_FORMAT, MIN_INTERVAL, log_level_arg, main
from pymemtrace.errors import PymemtraceError
from pymemtrace.probes.process import (
    DEFAULT_BATCH,
    MAX_INTERVAL,
    Reading,
    SamplingThread,
    wait_for_exec,
)
from pymemtrace.probes.process import check_interval as _check_interval
from pymemtrace.probes.process import check_log_level as _check_log_level
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
_REEXPORTED = (DATETIME_NOW_FORMAT, DEFAULT_BATCH, EVENT_SAMPLE, EVENT_START, KEY_CPU_TIMES, KEY_ELAPSED_TIME,
               KEY_EVENT, KEY_LABEL, KEY_MEMORY_INFO, KEY_PROCESS_ID, KEY_TIMESTAMP, LOG_FORMAT,
               LogContents, MAX_INTERVAL, MIN_INTERVAL, Series, _labels_cell, format_bytes,
               log_level_arg, parse_lines, rss_chart, wait_for_exec)

logger = logging.getLogger("pymemtrace.process")
_PREFIX_FOR_EVENT = PREFIX_FOR_EVENT
_Sample = Reading


class ProcessLoggingThread(SamplingThread):
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
        _check_interval(interval)
        self._log_level = _check_log_level(log_level)
        super().__init__(group=group, target=target, name=name, daemon=daemon,
                         interval=interval, pid=pid, capacity=capacity, batch=batch)
        self._path = os.fspath(path) if path is not None else None
        self._label = None if label is None else str(label)
        self._on_record = on_record
        self._file: Optional[StreamedFile] = None
        #: Records written (all events).
        self.records_written = 0

    @property
    def path(self) -> Optional[str]:
        return self._path

    @property
    def partial_path(self) -> Optional[str]:
        """While running: the temporary file that holds the records so far
        (renamed to ``path`` when the STOP record is written)."""
        return None if self._file is None else self._file.partial_path

    # -- the probe's readings become records ---------------------------------

    def _open(self) -> None:
        if self._path is not None:
            self._file = StreamedFile(self._path)

    def _start_label(self) -> Optional[str]:
        return self._label

    def _emit(self, event: str, reading: Reading, label: Optional[str]) -> None:
        self._last = reading
        to_log = logger.isEnabledFor(self._log_level)
        if not (to_log or self._file is not None or self._on_record is not None):
            self.records_written += 1
            return
        _, wall, memory, cpu = reading
        record = make_record(wall, memory, cpu, self._pid, self._create_time, label)
        if event == EVENT_STOP and self._sampler is not None:
            record["dropped"] = self.dropped
        if to_log:
            logger.log(self._log_level, "%s %s", _PREFIX_FOR_EVENT[event], json.dumps(record))
        if self._file is not None:
            self._file.write(jsonl_line(event, record))
        self.records_written += 1
        if self._on_record is not None:
            self._on_record(event, record)

    def _close_outputs(self) -> None:
        """The file gets its name, or, cut short by an error writing it, is
        removed (the path never holds a partial log)."""
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


if __name__ == "__main__":
    sys.exit(main())
