"""The ``pymemtrace`` command: one module per subcommand.

Each subcommand module defines a ``Command`` class with a ``help`` line, an
``example``, ``prepare_parser(parser)`` and ``run(args) -> int``.  User
errors raise :class:`pymemtrace.errors.UserError` and end as one line on
stderr (git's style: ``pymemtrace: error: <what>``), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pymemtrace import _output
from pymemtrace._argtypes import one_line_errors
from pymemtrace.errors import PymemtraceError

# Subcommand name -> module.  Order is the order of `pymemtrace --help`.
SUBCOMMANDS = {
    "process": "pymemtrace.cli.process",
    "tree": "pymemtrace.cli.tree",
    "report": "pymemtrace.cli.report",
    "run": "pymemtrace.cli.run",
    "hunt": "pymemtrace.cli.hunt",
    "native": "pymemtrace.cli.native",
    "objects": "pymemtrace.cli.objects",
}

EPILOG = """\
examples:
  pymemtrace process --interval 0.5 -- python my_service.py
  pymemtrace tree --pid 1234 --interval 2
  pymemtrace run --allocations -o sites.json my_script.py
  pymemtrace objects app/cache.py:handle_request --iterations 50
  pymemtrace report 20261125_101500_1_4242_P_0_PY3.11.7.log
  pymemtrace hunt myapp.handlers:handle_one
  pymemtrace native -o native_out -- ./my_program && pymemtrace report native_out
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, without its ``import shutil`` (with bz2, lzma,
    fnmatch: about 2 ms of `pymemtrace run`'s start-up, docs/benchmarks.md):
    argparse builds one for every argument it adds, to check metavars."""

    def __init__(self, prog, *args, width=None, **kwargs):
        if width is None:
            width = _columns() - 2
        super().__init__(prog, *args, width=width, **kwargs)


def _columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, the terminal, or 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if any (its first word)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
        if word in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the other subcommands get a bare entry and
    their modules are not imported (start-up time: ``process`` pulls psutil)."""
    parser = argparse.ArgumentParser(
        prog="pymemtrace",
        description="Find memory leaks in Python programs and their C extensions.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    from pymemtrace import __version__

    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, module_name in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, formatter_class=_Formatter)
            continue
        command = importlib.import_module(module_name).Command()
        child = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog="example:\n  " + command.example,
            formatter_class=_Formatter,
        )
        one_line_errors(child, f"pymemtrace {name}")
        command.prepare_parser(child)
        child.set_defaults(_command=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(only=_chosen(argv))
    args = parser.parse_args(argv)
    command = getattr(args, "_command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return 2
    # Outputs belong to this process: a forked child never writes them.
    _output.claim()
    try:
        status = command.run(args)
        sys.stdout.flush()
        return status
    except PymemtraceError as exc:
        _error(args.command, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `pymemtrace report LOG | head -1`: the reader left.  One line
        # and exit 1, as for a full disk; fd 1 goes to /dev/null so the
        # interpreter's flush at exit does not complain.
        _output.silence_stdout()
        _error(args.command, _output.READER_GONE)
        return 1
    except OSError as exc:
        if exc.errno not in _output.WRITE_ERRNOS:
            raise
        # A full disk (or /dev/full) behind stdout.
        _output.silence_stdout()
        where = exc.filename or "stdout"
        _error(args.command, f"cannot write {where}: {_output.reason(exc)}")
        return 1


def _error(command: str, message: str) -> None:
    try:
        print(f"pymemtrace {command}: error: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass
