"""`pymemtrace report LOG`: what a cPyMemTrace log says.

Profile/Trace logs (read in one streaming pass): the lines still holding
memory at the end, the lines whose memory was given back later (churn),
the largest growth events, functions and lines ranked by memory growth and
a timeline.  ReferenceTracing logs: the types
with net live growth and where their surviving objects were created.
The kind of log is read from its HDR: line.  A saved allocation snapshot
(the JSON of ``pymemtrace run --allocations -o``, ``AllocationSnapshot.save``)
is reported too: its top sites, ``--svg`` its flame graph, ``--html`` the
one-file HTML report.
"""
from __future__ import annotations

import io
import os

from pymemtrace import _output
from pymemtrace._argtypes import number
from pymemtrace.errors import PymemtraceError, UsageError
from pymemtrace.util.logtext import LogFormatError

PROFILE = "profile"
REFTRACE = "reference_tracing"
_SCAN_LINES = 200


def detect_kind(path: str) -> str:
    """PROFILE or REFTRACE from the HDR: line near the top of the file."""
    try:
        with io.open(path, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
            for number, line in enumerate(stream):
                if number >= _SCAN_LINES:
                    break
                if line.startswith("HDR:\t"):
                    columns = line.rstrip("\r\n").split("\t")[1:]
                    if columns[:2] == ["Event", "dEvent"]:
                        return PROFILE
                    if columns[:3] == ["Event", "Clock", "Address"]:
                        return REFTRACE
                    break
    except IsADirectoryError:
        raise PymemtraceError(f"{path} is a directory, not a log") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise PymemtraceError(f"cannot read {path}: {reason}") from None
    raise PymemtraceError(f"{path} is not a pymemtrace log (no Profile/Trace or ReferenceTracing HDR: line)")


class Command:
    help = "summarise a Profile, Trace or ReferenceTracing log"
    example = "pymemtrace report 20261125_101500_0_4242_P_0_PY3.13.0.log --top 5 --svg memory.svg"

    def prepare_parser(self, parser):
        parser.add_argument("log", help="a log written by cPyMemTrace.Profile, Trace or ReferenceTracing")
        parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
        parser.add_argument("--top", type=number(1, 10**6, integer=True), default=10, metavar="N", help="rows per ranking (default 10)")
        parser.add_argument("--svg", metavar="OUT", help="also write the timeline (a snapshot: its flame graph) as an SVG chart to OUT")
        parser.add_argument("--html", metavar="OUT.html", help="an allocation snapshot only: also write its one-file HTML report to OUT.html")

    def run(self, args) -> int:
        from pymemtrace.reporters import log_report

        if args.top < 1:
            raise UsageError("--top must be at least 1")
        path = os.fspath(args.log)
        snapshot = _allocation_snapshot(path)
        if snapshot is not None:
            return _report_snapshot(snapshot, args)
        if args.html:
            raise UsageError("--html needs an allocation snapshot (the JSON of pymemtrace run --allocations -o), not a log")
        kind = detect_kind(path)
        try:
            if kind == PROFILE:
                from pymemtrace.util.profile_analyse import analyse_file as analyse_profile

                # One streaming pass: memory does not grow with the log.
                analysis = analyse_profile(path, top=args.top)
                render = log_report.profile_json if args.format == "json" else log_report.profile_text
                svg = log_report.profile_svg
            else:
                from pymemtrace.util.ref_trace_analyse import analyse_file

                analysis = analyse_file(path)
                render = log_report.ref_trace_json if args.format == "json" else log_report.ref_trace_text
                svg = log_report.ref_trace_svg
        except LogFormatError as exc:
            raise PymemtraceError(str(exc).splitlines()[0]) from None
        except OSError as exc:
            raise PymemtraceError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
        # The file first: an unwritable path fails before anything is printed.
        if args.svg:
            _output.write_file(args.svg, svg(analysis))
        # A reader that leaves (`| head -1`) or a full disk ends in cli.main.
        print(render(analysis, top=args.top), flush=True)
        return 0


def _allocation_snapshot(path: str):
    """The AllocationSnapshot saved in path, or None when path is not JSON."""
    try:
        with io.open(path, "r", encoding="utf-8", errors="replace") as stream:
            head = stream.read(4096).lstrip()
    except OSError:
        return None  # detect_kind says why
    if not head.startswith("{"):
        return None
    from pymemtrace.allocations import AllocationSnapshot

    try:
        return AllocationSnapshot.load(path)
    except RecursionError:
        raise PymemtraceError(f"{path} is not an allocation snapshot: nested too deeply") from None
    except MemoryError:
        raise PymemtraceError(f"{path} is not an allocation snapshot: too large to read") from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PymemtraceError(f"{path} is not an allocation snapshot: {reason}") from None
    except OSError as exc:
        raise PymemtraceError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None


def _report_snapshot(snapshot, args) -> int:
    from pymemtrace.reporters import allocations_json

    label = "live at the snapshot"
    if args.format == "json":
        text = allocations_json.render(snapshot, indent=1)
    else:
        text = snapshot.to_text(top=args.top, live_title=label).rstrip("\n")
    # The files first: an unwritable path fails before anything is printed.
    if args.svg:
        _output.write_file(args.svg, snapshot.to_flamegraph())
    if args.html:
        _output.write_file(args.html, snapshot.to_html(title=f"pymemtrace: {os.path.basename(args.log)}", live_label=label))
    print(text, flush=True)
    return 0
