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
import signal

from pymemtrace import _output
from pymemtrace._argtypes import number
from pymemtrace.errors import PymemtraceError, UsageError
from pymemtrace.snapshots.logtext import LogFormatError

PROFILE = "profile"
REFTRACE = "reference_tracing"
_SCAN_LINES = 200


class Interrupted(PymemtraceError):
    """SIGINT or SIGTERM during the report: one line, status 128 + signal."""

    def __init__(self, signum: int) -> None:
        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        super().__init__(f"interrupted by {name}: no report")
        self.exit_code = 128 + signum


class _Terminated(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated


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
        parser.add_argument("log", help="a log written by cPyMemTrace.Profile, Trace or ReferenceTracing, "
                            "an allocation snapshot, or a directory of native captures (pymemtrace native -o)")
        parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
        parser.add_argument("--top", type=number(1, 10**6, integer=True), default=10, metavar="N", help="rows per ranking (default 10)")
        parser.add_argument("--svg", metavar="OUT", help="also write the timeline (a snapshot: its flame graph) as an SVG chart to OUT")
        parser.add_argument("--functions", action="store_true",
                            help="native captures only: also allocations and frees by allocating function")
        parser.add_argument("--sizes", action="store_true",
                            help="native captures only: also a histogram of allocation sizes")
        parser.add_argument("--html", metavar="OUT.html", help="an allocation snapshot or native captures: also write the one-file HTML report to OUT.html")

    def run(self, args) -> int:
        # SIGTERM ends the report as ^C does: one line, no output file (an
        # output is written under a temporary name and renamed when complete).
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (tests calling main())
            previous = None
        try:
            return self._report(args)
        except _Terminated:
            raise Interrupted(signal.SIGTERM) from None
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _report(self, args) -> int:
        from pymemtrace.reporters import log_report

        if args.top < 1:
            raise UsageError("--top must be at least 1")
        path = os.fspath(args.log)
        for out in (args.svg, args.html):
            if out:
                _output.check_writable(out)  # a bad path fails before any work
        if os.path.isdir(path) or path.endswith(".pmtn"):
            return _report_native(path, args)
        if getattr(args, "functions", False) or getattr(args, "sizes", False):
            raise UsageError("--functions and --sizes need native captures (pymemtrace native -o OUTDIR)")
        if _is_json(path):
            return _report_snapshot(path, args)
        if args.html:
            raise UsageError("--html needs an allocation snapshot (the JSON of pymemtrace run --allocations -o) or native captures (pymemtrace native -o OUTDIR), not a log")
        kind = detect_kind(path)
        try:
            # One streaming pass: memory does not grow with the log.
            if kind == PROFILE:
                from pymemtrace.analyses.profile import analyse_file as analyse_profile

                analysis = analyse_profile(path, top=args.top)
                render = log_report.profile_json if args.format == "json" else log_report.profile_text
                svg = log_report.profile_svg
            else:
                from pymemtrace.analyses.reftrace import analyse_file

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


def _is_json(path: str) -> bool:
    """True when path holds a JSON object (an allocation snapshot)."""
    try:
        with io.open(path, "r", encoding="utf-8", errors="replace") as stream:
            head = stream.read(4096).lstrip()
    except OSError:
        return False  # detect_kind says why
    return head.startswith("{")


class _Header:
    """A snapshot's scalar fields as attributes (what the text report shows)."""

    def __init__(self, fields: dict) -> None:
        self.__dict__.update(fields)


def _snapshot_errors(path: str, work):
    """work(), its errors as one line about the snapshot at path."""
    try:
        return work()
    except RecursionError:
        raise PymemtraceError(f"{path} is not an allocation snapshot: nested too deeply") from None
    except MemoryError:
        raise PymemtraceError(f"{path} is not an allocation snapshot: too large to read") from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PymemtraceError(f"{path} is not an allocation snapshot: {reason[:200]}") from None
    except OSError as exc:
        raise PymemtraceError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None


def _scan_snapshot(path: str, top_key: str = "line"):
    """One streaming pass: (header, live groups, peak groups), sites totalled
    by line as they are read, so memory grows with the lines, not the file."""
    from pymemtrace.analyses.allocations import GroupedTotals
    from pymemtrace.snapshots.allocations import iter_file

    live, peak = GroupedTotals(top_key), GroupedTotals(top_key)
    header = None
    for tag, item in iter_file(path):
        if tag == "site":
            live.add(item)
        elif tag == "peak_site":
            peak.add(item)
        else:
            header = item
    return _Header(header), live, peak


def _report_snapshot(path: str, args) -> int:
    from pymemtrace.reporters import allocations_json, allocations_text

    label = "live at the snapshot"
    header, live, peak = _snapshot_errors(path, lambda: _scan_snapshot(path))
    if args.html:
        # The page embeds the heaviest stacks of each line: it reads the
        # whole snapshot (the one output that does).
        from pymemtrace.allocations import AllocationSnapshot

        snapshot = _snapshot_errors(path, lambda: AllocationSnapshot.load(path))
        _output.write_file(args.html, snapshot.to_html(title=f"pymemtrace: {os.path.basename(args.log)}", live_label=label))
    if args.svg:
        from pymemtrace.reporters import flamegraph_svg
        from pymemtrace.snapshots.allocations import iter_file

        sites = (site for tag, site in iter_file(path) if tag == "site")
        _output.write_file(args.svg, _snapshot_errors(path, lambda: flamegraph_svg.render(sites, title="Memory live")))
    if args.format == "json":
        from pymemtrace.snapshots.allocations import iter_file

        # Streamed: the file was checked whole by the pass above.
        allocations_json.write_stream(header.__dict__, iter_file(path), _stdout_writer())
        return 0
    text = allocations_text.render_groups(
        header, live.sites(), peak.sites(), top=args.top, key="line", live_title=label
    )
    print(text.rstrip("\n"), flush=True)
    return 0


def _report_native(path: str, args) -> int:
    """A directory of native captures (pymemtrace native -o OUTDIR), or one."""
    from pymemtrace.analyses.native import analyse
    from pymemtrace.reporters import native_html, native_json, native_svg, native_text
    from pymemtrace.snapshots.native import NativeFormatError, read_capture, read_outdir

    try:
        captures = read_outdir(path) if os.path.isdir(path) else [read_capture(path)]
    except NativeFormatError as exc:
        raise PymemtraceError(str(exc)) from None
    reports = analyse(captures)
    if args.svg:
        _output.write_file(args.svg, native_svg.render(reports))
    if args.html:
        title = f"pymemtrace: native memory of {os.path.basename(os.path.normpath(path))}"
        _output.write_file(args.html, native_html.render(reports, title))
    if args.format == "json":
        print(native_json.render(reports), flush=True)
    else:
        print(native_text.render(reports, top=args.top, functions=getattr(args, "functions", False),
                                 sizes=getattr(args, "sizes", False)), flush=True)
    return 0


def _stdout_writer():
    import sys

    return sys.stdout.write
