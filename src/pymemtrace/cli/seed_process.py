"""``python -m pymemtrace.process``: the seed's command line of
:mod:`pymemtrace.process`.

``LOG [OUTDIR]`` summarises a log (a logging output file or a JSON Lines
file) per process, and with OUTDIR writes gnuplot ``.dat``/``.plt`` files
and a self-contained SVG chart per pid
(:func:`pymemtrace.process.summarise_log`, also ``pymemtrace process
--summary``).  Without LOG, the seed's
demonstration: log a process (``-p``, default this one) every ``-i``
seconds at level ``-l`` until it ends or ^C.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from typing import Optional, Sequence

from pymemtrace import _output
from pymemtrace._argtypes import MAX_PID, number
from pymemtrace.errors import PymemtraceError
from pymemtrace.probes.process import MAX_INTERVAL, check_log_level

#: Shortest interval of the command lines, in seconds.
MIN_INTERVAL = 0.001

#: Format of the log lines when ``-l`` turns logging on (the seed's).
LOG_FORMAT = "%(asctime)s - %(filename)s#%(lineno)d - %(process)5d - " \
    "(%(threadName)-10s) - %(levelname)-8s - %(message)s"


def log_level_arg(text: str) -> int:
    """argparse type of the seed's ``-l``/``--log_level``: a number (20) or
    a name (INFO, info)."""
    try:
        return check_log_level(int(text) if text.strip().lstrip("-").isdigit() else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"log level must be a number (10, 20, ...) or a name (DEBUG, INFO, ...), "
            f"got {text!r}"
        ) from None


def _watch(pid: int, interval: float, log_level: int) -> int:
    """The seed's demonstration: log a process (-1: this one) until it ends
    or ^C."""
    # The API's thread (pymemtrace.process imports this module).
    from pymemtrace.process import ProcessLoggingThread

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
    from pymemtrace.process import summarise_log

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
