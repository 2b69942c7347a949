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
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from pymemtrace import process
from pymemtrace.errors import PymemtraceError, UsageError

DEFAULT_INTERVAL = 0.5
#: Least time between two live lines on the terminal, in seconds.
LIVE_PERIOD = 0.5


def _interval(text: str) -> float:
    try:
        return process._check_interval(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"interval must be a number of seconds > 0 and <= {process.MAX_INTERVAL:g}, "
            f"got {text!r}"
        ) from None


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"pid must be a positive integer, got {text!r}")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"duration must be a number of seconds > 0, got {text!r}")
    return value


def _writable(path: Optional[str], what: str) -> None:
    """Create (truncate) the file now, so a bad path fails before any work."""
    if path is None:
        return
    try:
        with open(path, "w", encoding="utf-8"):
            pass
    except OSError as exc:
        raise PymemtraceError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc


class _Watcher:
    """Collects records from the logging thread and prints live lines."""

    def __init__(self, live: bool, out) -> None:
        self.live = live
        self.out = out
        self.records: List[Dict[str, Any]] = []
        self._first_rss: Optional[int] = None
        self._last_print = 0.0
        self._lock = threading.Lock()

    def __call__(self, event: str, record: Dict[str, Any]) -> None:
        rss = record["memory_info"]["rss"]
        kept = {
            "pid": record["pid"],
            "elapsed_time": record["elapsed_time"],
            "memory_info": {"rss": rss},
            "event": event,
        }
        if "label" in record:
            kept["label"] = record["label"]
        if "dropped" in record:
            kept["dropped"] = record["dropped"]
        with self._lock:
            self.records.append(kept)
            if self._first_rss is None:
                self._first_rss = rss
            if not self.live:
                return
            now = time.monotonic()
            if event == process.EVENT_SAMPLE and "label" not in record \
                    and now - self._last_print < LIVE_PERIOD:
                return
            self._last_print = now
            t = record["elapsed_time"] - self.records[0]["elapsed_time"]
            delta = rss - self._first_rss
            tag = {"START": "start", "STOP": "stop"}.get(event, "")
            label = f"  [{record['label']}]" if "label" in record else ""
            print(
                f"{t:9.2f} s  RSS {process.format_bytes(rss):>10}  "
                f"{process.format_bytes(delta, signed=True):>11}  {tag}{label}".rstrip(),
                file=self.out,
                flush=True,
            )


def _summary_lines(records: List[Dict[str, Any]]) -> str:
    summaries = process.summarise(records)
    lines = [process.format_summary(summaries)]
    for s in summaries.values():
        lines.append(
            f"pid {s.pid}: RSS {process.format_bytes(s.first_rss)} -> "
            f"{process.format_bytes(s.last_rss)}, "
            f"growth {process.format_bytes(s.growth, signed=True)} in {s.duration:.2f} s "
            f"({process.format_bytes(s.rate, signed=True)}/s), "
            f"peak {process.format_bytes(s.max_rss)}"
        )
    return "\n".join(lines)


class Command:
    help = "log the RSS of a command or a process over time, or summarise such a log"
    example = (
        "pymemtrace process -i 0.1 -o run.jsonl --svg run.svg -- python examples/leaky_service.py\n"
        "  pymemtrace process --pid 1234 --duration 60\n"
        "  pymemtrace process --summary run.jsonl plots/"
    )

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        def one_line_error(message: str) -> None:
            print(f"pymemtrace process: error: {message}", file=sys.stderr)
            sys.exit(2)

        parser.error = one_line_error  # type: ignore[method-assign]
        parser.usage = (
            "pymemtrace process [-i S] [-o LOG] [--svg SVG] [-q] -- <command> [<arg>...]\n"
            "       pymemtrace process [-i S] [-o LOG] [--svg SVG] [-q] --pid PID [--duration S]\n"
            "       pymemtrace process --summary LOG [OUTDIR]"
        )
        parser.add_argument("-i", "--interval", type=_interval, default=DEFAULT_INTERVAL,
                            metavar="S", help="seconds between samples (default %(default)s)")
        parser.add_argument("-o", "--output", metavar="LOG",
                            help="write every record to this JSON Lines file (flushed per record)")
        parser.add_argument("--svg", metavar="SVG", help="write an SVG chart of RSS over time")
        parser.add_argument("-p", "--pid", type=_pid, help="watch this running process")
        parser.add_argument("--duration", type=_duration, metavar="S",
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
        _writable(args.output, "log")
        _writable(args.svg, "chart")
        if args.log_level is not None:
            import logging

            logging.basicConfig(level=args.log_level, format=process.LOG_FORMAT)
        watcher = _Watcher(live=not args.quiet and sys.stdout.isatty(), out=sys.stdout)
        if command:
            status = self._run_command(command, args, watcher)
        else:
            status = self._watch_pid(args, watcher)
        self._report(args, watcher)
        return status

    def _thread(self, pid: int, args, watcher) -> process.ProcessLoggingThread:
        return process.ProcessLoggingThread(
            interval=args.interval, pid=pid, path=args.output, on_record=watcher,
            **({} if args.log_level is None else {"log_level": args.log_level}),
        )

    def _run_command(self, command: List[str], args, watcher: _Watcher) -> int:
        try:
            child = subprocess.Popen(command)
        except OSError as exc:
            raise PymemtraceError(f"cannot run {command[0]}: {exc.strerror or exc}") from exc
        thread = None
        try:
            try:
                # The first sample is of the command, not of the exec under way.
                process.wait_for_exec(child.pid)
                thread = self._thread(child.pid, args, watcher)
                thread.start()
            except ProcessLookupError:
                thread = None  # it ended before the first sample
            interrupts = 0
            while True:
                try:
                    returncode = child.wait()
                    break
                except KeyboardInterrupt:
                    # The terminal sent SIGINT to the child too: wait for it
                    # to end; insist on the second and third ^C.
                    interrupts += 1
                    if interrupts == 2:
                        child.terminate()
                    elif interrupts >= 3:
                        child.kill()
        finally:
            if thread is not None:
                thread.join()
            if child.poll() is None:
                child.kill()
                child.wait()
        if thread is None:
            print(f"pymemtrace process: warning: {command[0]} ended before it could be "
                  "sampled", file=sys.stderr)
        elif not any(r["event"] == process.EVENT_SAMPLE for r in watcher.records):
            print(f"pymemtrace process: warning: {command[0]} ended before the first "
                  f"sample ({args.interval:g} s): only its start and end were recorded; "
                  "try a shorter --interval", file=sys.stderr)
        return 128 + -returncode if returncode < 0 else returncode

    def _watch_pid(self, args, watcher: _Watcher) -> int:
        try:
            thread = self._thread(args.pid, args, watcher)
            thread.start()
        except ProcessLookupError as exc:
            raise PymemtraceError(str(exc)) from exc
        except PermissionError as exc:
            raise PymemtraceError(str(exc)) from exc
        deadline = None if args.duration is None else time.monotonic() + args.duration
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
            thread.join()
        return 0

    def _report(self, args, watcher: _Watcher) -> None:
        if not watcher.records:
            return
        print(_summary_lines(watcher.records), flush=True)
        if args.output:
            print(f"log: {args.output}")
        if args.svg:
            pid = watcher.records[0]["pid"]
            text = process.rss_chart(watcher.records, title=f"RSS of pid {pid}")
            try:
                with open(args.svg, "w", encoding="utf-8") as stream:
                    stream.write(text)
            except OSError as exc:
                raise PymemtraceError(
                    f"cannot write chart {args.svg}: {exc.strerror or exc}"
                ) from None
            print(f"chart: {args.svg}")

