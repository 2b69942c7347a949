"""``pymemtrace hunt TARGET``: does a function leak, how often, how badly, where?

TARGET is ``package.module:callable`` or ``path/to/file.py:callable``,
called with no arguments (see :func:`pymemtrace.hunting.hunt`).  The text
summary goes to stdout (or the JSON document with ``--format json``);
``--json FILE`` writes the JSON document to a file as well, ``--html FILE``
a self-contained HTML page (summary, a chart of the growth per call,
types, sites, holders).  Exit status:
0 when the hunt ran (whatever the verdict), 1 when the target raised or an
output cannot be written, 2 for a bad command line or TARGET.
"""

from __future__ import annotations

import argparse
import sys

from pymemtrace import _output, _runner
from pymemtrace._argtypes import number
from pymemtrace.errors import PymemtraceError

USAGE = ("pymemtrace hunt [--iterations <n>] [--warmup <w>] [--json <file>] "
         "[--html <file>] [--format (text|json)] [--top <n>] "
         "<module:callable | file.py:callable>")


class Command:
    help = "call a function over and over and say whether it leaks, how often, how badly, where"
    example = "pymemtrace hunt --iterations 2000 --json hunt.json myapp.handlers:handle_one"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = USAGE
        parser.add_argument("target", metavar="TARGET",
                            help="module:callable or file.py:callable, called with no arguments")
        parser.add_argument("-n", "--iterations", type=number(8, 10**9, integer=True),
                            default=1000, metavar="N",
                            help="measured calls (default 1000; the last half is judged)")
        parser.add_argument("-w", "--warmup", type=number(0, 10**9, integer=True),
                            default=20, metavar="W", help="calls before measuring (default 20)")
        parser.add_argument("--json", metavar="FILE", help="write the JSON document here")
        parser.add_argument("--html", metavar="FILE",
                            help="write a self-contained HTML page here (works offline)")
        parser.add_argument("--format", choices=("text", "json"), default="text",
                            help="what goes to stdout (default text)")
        parser.add_argument("--top", type=number(1, 10**6, integer=True), default=5,
                            metavar="N", help="types and sites shown in the text (default 5)")

    def run(self, args: argparse.Namespace) -> int:
        if args.json:
            _output.check_writable(args.json)
        if args.html:
            _output.check_writable(args.html)
        func, spec = _runner.callable_target(args.target)
        from pymemtrace import hunting

        try:
            result = hunting.hunt(func, iterations=args.iterations, warmup=args.warmup,
                                  target=spec)
        except KeyboardInterrupt:
            raise
        except PymemtraceError:
            raise
        except Exception as exc:  # the target's own failure: one line
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PymemtraceError(f"TARGET {spec!r} raised {detail}") from None
        if args.json:
            result.save(args.json)
        if args.html:
            result.save_html(args.html)
        if args.format == "json":
            sys.stdout.write(result.to_json() + "\n")
        else:
            sys.stdout.write(result.to_text(top=args.top))
        return 0
