"""`pymemtrace tree` (and ``python -m pymemtrace.process_tree``): watch
the memory of a process and of every process it starts.

The front end of the tree tools: options, the sampling loop, signals and
outputs.  The layers it wires: the probe :mod:`pymemtrace.probes.process_tree`
(metrics), the analysis :mod:`pymemtrace.analyses.process_tree` (states and
changes), the snapshots :mod:`pymemtrace.snapshots.process_tree` (rows and
their JSON Lines) and the reporter :mod:`pymemtrace.reporters.process_tree_text`
(the table).  A command runs through :mod:`pymemtrace._child`.

Outputs: ``-o PATH`` and ``--json PATH`` are written under a temporary
name in the same directory and renamed when monitoring ends (root
exited, --count, --duration, Ctrl-C, SIGTERM); an error ends with neither
file (the temporary files are removed); ``kill -9`` leaves the temporary
files, every line whole.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import IO, List, Optional, Sequence

from pymemtrace import _output
from pymemtrace._argtypes import MAX_DURATION, MAX_PID, number, one_line_errors
from pymemtrace._child import Child
from pymemtrace.analyses.process_tree import TreeMonitor
from pymemtrace.errors import PymemtraceError, UsageError
from pymemtrace.probes import process_tree as probe
from pymemtrace.probes.process_tree import METRICS, Metric
from pymemtrace.reporters.process_tree_text import TableWriter
from pymemtrace.snapshots.process_log import StreamedFile
from pymemtrace.snapshots.process_tree import JsonLinesWriter, Sample

class ProcessTreeMonitor(TreeMonitor):
    """The tree monitor reading processes with psutil (the analysis is
    handed its probe: it imports none)."""

    def __init__(self, pid: int, metrics: Sequence[Metric]) -> None:
        super().__init__(pid, metrics, probe)


PROG = "python -m pymemtrace.process_tree"

EXAMPLE = """\
  pymemtrace tree -p 1234 -i 2 --json tree.jsonl
  pymemtrace tree -i 0.5 --count 20 -- python -m my_service --workers 4"""

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


#: Range of --interval, in seconds.
MIN_INTERVAL, MAX_INTERVAL = 0.001, 86400.0
#: Most samples --count asks for.
MAX_COUNT = 10**9


def _log_level(text: str) -> int:
    from pymemtrace import process  # the seed's -l parser, a front end too

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


#: Seconds the command is given to exit before it is killed.
STOP_GRACE = 5.0
#: Seconds the command gets to end on a ^C before SIGINT is passed on to it.
FORWARD_GRACE = 1.0


def _reason(exc: BaseException) -> str:
    return _output.reason(exc)


def _open_table(path: Optional[str]) -> Optional[StreamedFile]:
    if not path:
        return None
    try:
        return StreamedFile(path)
    except OSError as exc:
        raise PymemtraceError(f"cannot write {path}: {_reason(exc)}") from None


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
    json_out: Optional[JsonLinesWriter] = None
    table_file: Optional[StreamedFile] = None
    child: Optional[Child] = None
    waiter: Optional[_Waiter] = None
    old_term = None
    complete = False
    try:
        if cfg.json_path:
            json_out = JsonLinesWriter(cfg.json_path)
        table_file = _open_table(cfg.output)
        out: IO[str] = table_file if table_file is not None else sys.stdout  # type: ignore[assignment]
        table = TableWriter(out, cfg.metrics, cfg.sep)

        if cfg.command:
            child = Child.start(cfg.command)
            pid = child.pid
            if _in_main_thread():
                # SIGTERM to the monitor goes on to the command; monitoring
                # continues until the command exits.
                old_term = signal.signal(signal.SIGTERM,
                                         lambda signum, frame: child.forward(signum))
        else:
            pid = cfg.pid
            if _in_main_thread():
                # SIGTERM ends the watch as Ctrl-C does: the JSON Lines
                # get their "end" record; exit status 143.
                old_term = signal.signal(signal.SIGTERM, _terminated)
        monitor = ProcessTreeMonitor(pid, cfg.metrics)
        waiter = _Waiter(pid)
        if json_out is not None:
            json_out.start(pid, cfg.interval, cfg.metrics, cfg.command)
        status, reason, samples_written, t0 = _loop(cfg, monitor, waiter, table, json_out)

        returncode = None
        if child is not None:
            if reason == "root exited":
                status = child.wait()
            elif reason == "interrupted":
                # A terminal's Ctrl-C reached the command too (same process
                # group); a SIGINT sent to us alone is passed on after a moment.
                try:
                    child.wait(FORWARD_GRACE)
                except subprocess.TimeoutExpired:
                    child.stop(signal.SIGINT, STOP_GRACE)
            else:
                # We stop for --count/--duration (or our output closed):
                # ask the command and its descendants to stop.
                probe.terminate(monitor.descendants())
                child.stop(signal.SIGTERM, STOP_GRACE)
            returncode = child.poll()
        if json_out is not None:
            json_out.end(pid, time.monotonic() - t0, samples_written, reason, returncode)
        complete = True
        if table_file is not None:
            _commit(table_file)
        if json_out is not None:
            json_out.close()
        if reason == "output closed":
            raise PymemtraceError(_output.READER_GONE)
        return status
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if child is not None and child.poll() is None:
            child.stop(signal.SIGTERM, STOP_GRACE)
        if waiter is not None:
            waiter.close()
        if not complete:
            # Cut short by an error: no partial file at either path.
            if table_file is not None:
                table_file.discard()
            if json_out is not None:
                json_out.discard()


def _commit(table_file: StreamedFile) -> None:
    try:
        table_file.commit()
    except OSError as exc:
        raise PymemtraceError(f"cannot write {table_file.path}: {_reason(exc)}") from None


def _loop(cfg: Config, monitor: ProcessTreeMonitor, waiter: "_Waiter", table: TableWriter,
          json_out: Optional[JsonLinesWriter]):
    """Sample until the root exits, --count, --duration, ^C or SIGTERM.

    Returns (status, reason, samples written, t0)."""
    t0 = time.monotonic()
    tick = 0
    samples_written = 0
    try:
        while True:
            sample = monitor.sample()
            if not (cfg.omit_first and sample.index == 0):
                _write_table(table, sample, cfg.output)
                if json_out is not None:
                    json_out.write(sample)
                samples_written += 1
            if monitor.root_exited:
                return 0, "root exited", samples_written, t0
            if cfg.count is not None and samples_written >= cfg.count:
                return 0, "count reached", samples_written, t0
            elapsed = time.monotonic() - t0
            if cfg.duration is not None and elapsed >= cfg.duration:
                return 0, "duration reached", samples_written, t0
            # Next tick on the fixed grid t0 + k * interval (skip ticks
            # missed because sampling was slow).
            tick = max(tick + 1, int(elapsed / cfg.interval) + 1)
            deadline = t0 + tick * cfg.interval
            if cfg.duration is not None:
                deadline = min(deadline, t0 + cfg.duration)
            waiter.wait(deadline - time.monotonic())
    except _Terminated:
        return 128 + signal.SIGTERM, "terminated", samples_written, t0
    except KeyboardInterrupt:
        return 130, "interrupted", samples_written, t0
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): the caller
        # ends the JSON Lines, then says so in one line (exit 1).
        _output.silence_stdout()
        return 1, "output closed", samples_written, t0


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


class _Terminated(KeyboardInterrupt):
    """SIGTERM while watching a pid."""


def _terminated(signum, frame) -> None:
    raise _Terminated


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


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
    except BrokenPipeError:
        _output.silence_stdout()
        print(f"{PROG}: error: {_output.READER_GONE}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in _output.WRITE_ERRNOS:
            raise
        _output.silence_stdout()
        print(f"{PROG}: error: cannot write stdout: {_reason(exc)}", file=sys.stderr)
        return 1


class Command:
    help = "watch the memory of a process and of every process it starts"
    example = EXAMPLE.strip()

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        return run(args)
