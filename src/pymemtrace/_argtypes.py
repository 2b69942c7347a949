"""Range-checked numbers for argparse, and one-line argparse errors.

Every numeric option of every ``pymemtrace`` subcommand parses through
:func:`number`; out of range, inf, nan and garbage all end as one line::

    pymemtrace tree: error: --interval must be a number between 0.001 and 86400, not '1e10'
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable

#: Largest pid the kernel could hand out (pid_t).
MAX_PID = 2**31 - 1
#: Longest --duration: one year, in seconds.
MAX_DURATION = 365 * 86400


def _show(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def number(low: int | float, high: int | float, *,
           integer: bool = False) -> Callable[[str], int | float]:
    """An argparse type: an int (``integer``) or a finite float in [low, high]."""
    kind = "an integer" if integer else "a number"

    def parse(text: str) -> int | float:
        value: int | float | None
        try:
            value = int(text, 10) if integer else float(text)
        except (ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {kind} between {_show(low)} and {_show(high)}, not {text!r}"
            )
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


_ARGUMENT = re.compile(r"argument (\S+): (must be .*)", re.DOTALL)


def one_line(message: str) -> str:
    """``argument -i/--interval: must be ...`` -> ``--interval must be ...``."""
    match = _ARGUMENT.fullmatch(message)
    if match:
        message = f"{match.group(1).split('/')[-1]} {match.group(2)}"
    return " ".join(message.split())


def one_line_errors(parser: argparse.ArgumentParser, prog: str) -> None:
    """Usage errors of ``parser`` end as one line on stderr, exit status 2."""

    def error(message: str) -> None:
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]
