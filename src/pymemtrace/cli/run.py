"""`pymemtrace run`: run a Python script under a probe and report.

    pymemtrace run --allocations [--sample-bytes N] [--depth D] [-o OUT.json]
                   [--collapsed OUT.txt] [--pprof OUT.pb.gz] [--flamegraph OUT.svg]
                   [--html OUT.html] (script.py | -m module) [args...]

The script runs as ``python script.py`` would run it: as ``__main__``, with
``sys.argv`` set and its directory first on ``sys.path``.  Its exceptions
print as its own traceback and exit 1; ``SystemExit`` keeps its code.  The
report (memory live at exit and at the peak, by site) goes to stdout, the
JSON document to ``-o``; ``--html`` writes one self-contained HTML page
(zoomable flame graphs and a sortable table, works offline).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from pymemtrace import _output, _runner
from pymemtrace._argtypes import number
from pymemtrace.errors import UsageError

USAGE = (
    "pymemtrace run --allocations [--sample-bytes <n>] [--depth <d>] [-o <out.json>]\n"
    "                      [--collapsed <out.txt>] [--pprof <out.pb.gz>]\n"
    "                      [--flamegraph <out.svg>] [--html <out.html>] [--top <n>]\n"
    "                      (<script.py> | -m <module>) [<args>...]"
)


#: Largest --sample-bytes: 1 TiB between samples.
MAX_SAMPLE_BYTES = 2**40


def _size(text: str) -> int:
    """A byte count, with an optional K/M/G suffix (512K, 4MiB)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = (
        text.strip().lower().rstrip("ib").rstrip("b")
        if text.strip().lower()[-1:] in "bi"
        else text.strip().lower()
    )
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        number = float(t) * mult
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or not 1 <= number <= MAX_SAMPLE_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be a size between 1 and {MAX_SAMPLE_BYTES} bytes (1T), not {text!r}"
        )
    return int(number)


class Command:
    help = (
        "run a Python script under the allocation tracker and report where memory stays"
    )
    example = "pymemtrace run --allocations -o allocs.json my_script.py --its-arg"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = USAGE
        parser.add_argument(
            "--allocations",
            action="store_true",
            help="track Python allocations by site (the default and only probe for now)",
        )
        parser.add_argument(
            "--sample-bytes",
            type=_size,
            metavar="N",
            help="sampled mode: one sample per N bytes on average (e.g. 512K); "
            "default: exact mode, every block",
        )
        parser.add_argument(
            "--depth",
            type=number(1, 256, integer=True),
            default=16,
            metavar="D",
            help="frames kept per stack (default 16)",
        )
        parser.add_argument(
            "--seed",
            type=number(0, 2**64 - 1, integer=True),
            default=0,
            metavar="N",
            help="fix the sampling sequence (reproducible sampled runs)",
        )
        parser.add_argument(
            "-o", "--output", metavar="OUT.json", help="write the JSON report here"
        )
        parser.add_argument(
            "--collapsed",
            metavar="OUT.txt",
            help="write collapsed stacks of memory live at exit (flame graphs)",
        )
        parser.add_argument(
            "--pprof",
            metavar="OUT.pb.gz",
            help="write a gzip pprof profile of memory live at exit",
        )
        parser.add_argument(
            "--flamegraph",
            metavar="OUT.svg",
            help="draw a flame graph (SVG) of memory live at exit",
        )
        parser.add_argument(
            "--html",
            metavar="OUT.html",
            help="write one self-contained HTML report (flame graphs, sortable table)",
        )
        parser.add_argument(
            "--top",
            type=number(1, 10**6, integer=True),
            default=10,
            metavar="N",
            help="sites shown in the text report (default 10)",
        )
        parser.add_argument(
            "--group-by",
            choices=("line", "function", "file", "stack"),
            default="line",
            help="grouping of the text report",
        )
        parser.add_argument(
            "-m",
            dest="module",
            metavar="MODULE",
            help="run a library module as a script, like python -m",
        )
        parser.add_argument(
            "target", nargs=argparse.REMAINDER, help="the script and its arguments"
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.module is None and not args.target:
            raise UsageError(
                "no script given (usage: pymemtrace run --allocations script.py)"
            )
        if args.module is None and args.target[0] == "--":
            args.target = args.target[1:]
            if not args.target:
                raise UsageError("no script given")
        paths = _output_paths(args)
        for path in paths.values():
            _output.check_writable(path)  # a bad path fails before the script runs
        if args.module is not None:
            target = _runner.module_target(args.module, args.target)
        else:
            target = _runner.script_target(args.target[0], args.target[1:])
        from pymemtrace.allocations import RunProbe

        probe = RunProbe(
            mode="sampled" if args.sample_bytes else "exact",
            depth=args.depth,
            sample_bytes=args.sample_bytes or 512 * 1024,
            seed=args.seed,
        )

        def report(snap) -> None:
            _write_outputs(snap, paths)
            _print_report(
                snap.to_text(top=args.top, key=args.group_by, live_title="live at exit")
            )

        # Memory allocated in this folder's frames is the command's own.
        status, snap = _runner.run(
            target, probe, runner_files=(os.path.dirname(os.path.abspath(__file__)),),
            on_os_exit=report,
        )
        if snap is None:
            # A process forked by the script: its parent writes the outputs.
            return status
        report(snap)
        return status


def _print_report(text: str) -> None:
    """Print to stdout, even when the script closed sys.stdout."""
    out = sys.stdout
    if out is None or getattr(out, "closed", False):
        try:
            with open(1, "w", closefd=False, encoding="utf-8", errors="replace") as fd1:
                fd1.write(text)
        except OSError:
            pass
        return
    out.flush()
    out.write(text)
    out.flush()


def _output_paths(args) -> dict:
    """Output name -> path, for the outputs asked for."""
    asked = {
        "json": args.output,
        "collapsed": args.collapsed,
        "pprof": args.pprof,
        "flamegraph": args.flamegraph,
        "html": args.html,
    }
    return {name: path for name, path in asked.items() if path}


def _write_outputs(snap, paths: dict) -> None:
    """Each output complete under its name, or not there (see _output)."""
    renders = {
        "collapsed": snap.to_collapsed,
        "pprof": snap.to_pprof,
        "flamegraph": snap.to_flamegraph,
        "html": lambda: snap.to_html(live_label="live at exit"),
    }
    for name, path in paths.items():
        if name == "json":
            snap.save(path)  # the snapshot's own persistence
        else:
            _output.write_file(path, renders[name]())
