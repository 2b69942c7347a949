"""`pymemtrace objects TARGET`: what each call of a function leaves behind
(types per call, who holds them, reference-count leaks, buffers no object
owns), and optionally the gc experiment.

TARGET is ``package.module:callable`` or ``path/to/file.py:callable``,
called with no arguments (``_runner.callable_target``).  ``--format json``
prints the contract of :mod:`pymemtrace.snapshots.object_growth`.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from pymemtrace._argtypes import number
from pymemtrace.errors import PymemtraceError

EXAMPLE = """\
  pymemtrace objects app/cache.py:handle_request --iterations 50
  pymemtrace objects mypkg.parser:parse_one --format json --gc-experiment"""


class Command:
    help = "call a function repeatedly and report the objects each call leaves behind, and who holds them"
    example = EXAMPLE.strip()

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.description = textwrap.fill(
            "Call TARGET (package.module:callable or path/to/file.py:callable, with no "
            "arguments) WARMUP times, then ITERATIONS times, and report what stays per "
            "call: the types whose live count grows, the referrer chains that hold their "
            "new instances, reference counts that grow (extra INCREFs in C code), and "
            "memory no object owns.")
        parser.add_argument("target", metavar="TARGET",
                            help="package.module:callable or path/to/file.py:callable")
        parser.add_argument("-n", "--iterations", type=number(2, 10**7, integer=True),
                            default=20, metavar="N", help="calls measured (default 20)")
        parser.add_argument("--warmup", type=number(0, 10**7, integer=True), default=3,
                            metavar="W", help="calls before measuring (default 3)")
        parser.add_argument("--format", choices=("text", "json"), default="text",
                            help="text (default) or json (schema 1)")
        parser.add_argument("--gc-experiment", action="store_true",
                            help="also run the calls with the gc enabled, disabled and "
                                 "collecting after every call, and say whether growth is "
                                 "retained or cyclic garbage collected late")
        parser.add_argument("--top", type=number(1, 10**6, integer=True), default=10,
                            metavar="N", help="types shown in the text report (default 10)")

    def run(self, args: argparse.Namespace) -> int:
        from pymemtrace import _runner, objects
        from pymemtrace.reporters.object_growth_text import report_lines

        func, spec = _runner.callable_target(args.target)
        try:
            report = objects.call_growth(func, iterations=args.iterations, warmup=args.warmup)
            if args.gc_experiment:
                report.gc = objects.gc_experiment(func, iterations=args.iterations,
                                                  warmup=args.warmup)
        except (KeyboardInterrupt, PymemtraceError):
            raise
        except Exception as exc:  # the target's own failure, in one line
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PymemtraceError(f"{spec} raised {detail}") from None
        report.target = spec
        if args.format == "json":
            text = json.dumps(report.to_dict(), indent=2) + "\n"
        else:
            text = "\n".join(report_lines(report, top=args.top)) + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
