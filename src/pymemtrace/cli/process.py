"""`pymemtrace process`: RSS of a command or a process over time.

Three forms::

    pymemtrace process [-i S] [-o LOG.jsonl] [--svg OUT.svg] [-q] -- COMMAND [ARG...]
    pymemtrace process [-i S] [-o LOG.jsonl] [--svg OUT.svg] [-q] --pid PID [--duration S]
    pymemtrace process --summary LOG [OUTDIR]

The first two print RSS over time while stdout is a terminal (only the
final summary otherwise); the last summarises a log written by
``pymemtrace.process`` (logging output or JSON Lines).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from pymemtrace import _output, process
from pymemtrace._argtypes import MAX_DURATION, MAX_PID, number
from pymemtrace._child import Child
from pymemtrace.analyses.process import ProcessRun
from pymemtrace.errors import PymemtraceError, UsageError
from pymemtrace.reporters import process_chart, process_text

DEFAULT_INTERVAL = 0.5
#: Least time between two live lines on the terminal, in seconds.
LIVE_PERIOD = 0.5


#: Seconds the command gets to end on a ^C before SIGINT is passed on to it.
FORWARD_GRACE = 1.0
#: Shortest --interval of the command line, in seconds.
MIN_INTERVAL = process.MIN_INTERVAL


class _Watcher:
    """Keeps what the report needs of each record, in bounded memory
    (running statistics and a bounded series: :class:`ProcessRun`), and
    prints live lines."""

    def __init__(self, live: bool, out, max_points: int = 4096) -> None:
        self.live = live
        self.out = out
        self.run = ProcessRun(max_points)
        self._first: Optional[tuple] = None  # (elapsed, rss) of the first record
        self._last_print = 0.0
        self._lock = threading.Lock()

    def __call__(self, event: str, record: Dict[str, Any]) -> None:
        with self._lock:
            self.run.add(event, record)
            rss = record["memory_info"]["rss"]
            if self._first is None:
                self._first = (record["elapsed_time"], rss)
            if not self.live:
                return
            now = time.monotonic()
            if event == process.EVENT_SAMPLE and "label" not in record \
                    and now - self._last_print < LIVE_PERIOD:
                return
            self._last_print = now
            t0, rss0 = self._first
            print(process_text.live_line(record["elapsed_time"] - t0, rss, rss - rss0, event,
                                         record.get("label")),
                  file=self.out, flush=True)


class Command:
    help = "log the RSS of a command or a process over time, or summarise such a log"
    example = (
        "pymemtrace process -i 0.1 -o run.jsonl --svg run.svg -- python examples/leaky_service.py\n"
        "  pymemtrace process --pid 1234 --duration 60\n"
        "  pymemtrace process --summary run.jsonl plots/"
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = (
            "pymemtrace process [-i S] [-o LOG] [--svg SVG] [-q] -- <command> [<arg>...]\n"
            "       pymemtrace process [-i S] [-o LOG] [--svg SVG] [-q] --pid PID [--duration S]\n"
            "       pymemtrace process --summary LOG [OUTDIR]"
        )
        parser.add_argument("-i", "--interval", type=number(MIN_INTERVAL, process.MAX_INTERVAL),
                            default=DEFAULT_INTERVAL,
                            metavar="S", help="seconds between samples (default %(default)s)")
        parser.add_argument("-o", "--output", metavar="LOG",
                            help="write every record to this JSON Lines file (written per record "
                                 "to .LOG.XXXXXXXX.tmp beside it, renamed to LOG at the end)")
        parser.add_argument("--svg", metavar="SVG", help="write an SVG chart of RSS over time")
        parser.add_argument("-p", "--pid", type=number(1, MAX_PID, integer=True), help="watch this running process")
        parser.add_argument("--duration", type=number(MIN_INTERVAL, MAX_DURATION), metavar="S",
                            help="with --pid: stop after S seconds (default: until it exits)")
        parser.add_argument("-l", "--log-level", "--log_level", dest="log_level",
                            type=process.log_level_arg, metavar="LEVEL",
                            help="also log every record on stderr at this level "
                                 "(20 or INFO ...), as python -m pymemtrace.process does")
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="no live lines, only the final summary")
        parser.add_argument("--summary", nargs="+", metavar="LOG",
                            help="--summary LOG [OUTDIR]: summarise an existing log; with "
                                 "OUTDIR also write gnuplot .dat/.plt files and an SVG "
                                 "chart per pid")
        parser.add_argument("cmd", metavar="command", nargs=argparse.REMAINDER,
                            help="the command to run and watch (after --)")

    def run(self, args: argparse.Namespace) -> int:
        command = list(args.cmd)
        if command and command[0] == "--":
            command = command[1:]
        modes = sum((bool(command), args.pid is not None, args.summary is not None))
        if modes != 1:
            raise UsageError("give exactly one of: a command (after --), --pid PID, --summary LOG")
        if args.summary is not None:
            if len(args.summary) > 2:
                raise UsageError("--summary takes LOG and at most one OUTDIR")
            outdir = args.summary[1] if len(args.summary) == 2 else None
            return process.summarise_log(args.summary[0], outdir)
        if args.duration is not None and args.pid is None:
            raise UsageError("--duration goes with --pid")
        # Bad paths fail before any work; nothing is created yet.
        for path in (args.output, args.svg):
            if path is not None:
                _output.check_writable(path)
        if args.log_level is not None:
            logging.basicConfig(level=args.log_level, format=process.LOG_FORMAT)
        else:
            # The logging thread's errors are ours to report, in one line.
            logging.getLogger("pymemtrace.process").addHandler(logging.NullHandler())
            logging.getLogger("pymemtrace.process").propagate = False
        watcher = _Watcher(live=not args.quiet and sys.stdout.isatty(), out=sys.stdout)
        if command:
            status, thread = self._run_command(command, args, watcher)
        else:
            status, thread = self._watch_pid(args, watcher)
        self._report(args, watcher)
        error = None if thread is None else thread.error
        if error is not None:
            if args.output and getattr(error, "errno", None) in _output.WRITE_ERRNOS:
                # The log is written as it goes: a full disk ends it early.
                raise PymemtraceError(f"cannot write {args.output}: {_output.reason(error)}")
            print(f"pymemtrace process: sampling stopped early: {_output.reason(error)}",
                  file=sys.stderr)
        return status

    def _thread(self, pid: int, args, watcher) -> process.ProcessLoggingThread:
        """The started logging thread (its START record is written)."""
        thread = process.ProcessLoggingThread(
            interval=args.interval, pid=pid, path=args.output, on_record=watcher,
            **({} if args.log_level is None else {"log_level": args.log_level}),
        )
        try:
            thread.start()
        except OSError as exc:
            if not args.output or (exc.errno not in _output.WRITE_ERRNOS
                                   and exc.filename != args.output):
                raise
            raise PymemtraceError(f"cannot write {args.output}: {_output.reason(exc)}") from None
        return thread

    def _run_command(self, command: List[str], args, watcher: _Watcher):
        thread = None
        with Child.start(command) as child:
            # SIGTERM to us goes on to the command; we wait for it to end and
            # write the outputs (exit status 128 + 15 when it dies of it).
            with child.forwarding((signal.SIGTERM,)):
                try:
                    try:
                        # The first sample is of the command, not of the exec under way.
                        process.wait_for_exec(child.pid)
                        thread = self._thread(child.pid, args, watcher)
                    except ProcessLookupError:
                        thread = None  # it ended before the first sample
                    status = child.wait_through_interrupts(FORWARD_GRACE)
                finally:
                    if thread is not None:
                        thread.join()
        if thread is None:
            print(f"pymemtrace process: warning: {command[0]} ended before it could be "
                  "sampled", file=sys.stderr)
        elif watcher.run.samples == 0:
            print(f"pymemtrace process: warning: {command[0]} ended before the first "
                  f"sample ({args.interval:g} s): only its start and end were recorded; "
                  "try a shorter --interval", file=sys.stderr)
        return status, thread

    def _watch_pid(self, args, watcher: _Watcher):
        try:
            thread = self._thread(args.pid, args, watcher)
        except ProcessLookupError as exc:
            raise PymemtraceError(str(exc)) from exc
        except PermissionError as exc:
            raise PymemtraceError(str(exc)) from exc
        deadline = None if args.duration is None else time.monotonic() + args.duration
        old_term = None
        if threading.current_thread() is threading.main_thread():
            # SIGTERM stops the watch as ^C does: the outputs are written.
            old_term = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while thread.is_alive() and not thread.process_exited:
                wait = min(args.interval, 0.25)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                time.sleep(wait)
        except KeyboardInterrupt:
            pass
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            thread.join()
        return 0, thread

    def _report(self, args, watcher: _Watcher) -> None:
        run = watcher.run
        if not run.records:
            return
        print(process_text.summary_lines(run.summaries), flush=True)
        if args.output:
            print(f"log: {args.output}")
        if args.svg:
            pid = run.first_pid
            text = process_chart.series_chart(run.series[pid], run.summaries[pid].labels,
                                              title=f"RSS of pid {pid}")
            _output.write_file(args.svg, text)
            print(f"chart: {args.svg}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
