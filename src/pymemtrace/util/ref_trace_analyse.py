"""The command ``pymemtrace_ref_trace_analyse LOG`` (the seed project's
script), and the names this module had before issue 9: the reader is now
:mod:`pymemtrace.snapshots.reftrace_log`, the analysis
:mod:`pymemtrace.analyses.reftrace`.

Run ``pymemtrace_ref_trace_analyse LOG`` (or ``python -m
pymemtrace.util.ref_trace_analyse LOG``) to print the analysis; options:
``--format text|json``, ``--top N``, and those of the seed project's
script: ``--full-path`` (file names in full, not their last part),
``--include-untracked`` (DEL: records of objects the log never saw
created, by type), ``--include-historical`` (every object created and
destroyed, by clock), ``--recurse-files`` (follow the logs of nested
tracers: ``MSG: # Detaching ... New file: <path>``) and ``-l LEVEL``.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import List, Optional

from pymemtrace.analyses.reftrace import RefTraceAnalysis, TypeStats, analyse_file, analyse_lines
from pymemtrace.snapshots.logtext import LogFormatError
from pymemtrace.snapshots.reftrace_log import HDR_FIELDS, INFERRED_FILE, NESTED_FILE, Note, Site

__all__ = [
    "HDR_FIELDS", "INFERRED_FILE", "NESTED_FILE", "LogFormatError", "Note", "RefTraceAnalysis",
    "Site", "TypeStats", "analyse_file", "analyse_lines", "main",
]


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    from pymemtrace.reporters import log_report

    parser = argparse.ArgumentParser(
        prog="pymemtrace_ref_trace_analyse",
        description="Types whose objects outlived a ReferenceTracing block, and where they were created.",
        epilog="example:\n  pymemtrace_ref_trace_analyse 20261125_101500_0_4242_O_0_PY3.13.0.log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", help="a ReferenceTracing log file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--top", type=int, default=20, help="rows per table (default 20)")
    parser.add_argument("--full-path", action="store_true", help="show file names in full (default: their last part)")
    parser.add_argument(
        "--include-untracked",
        action="store_true",
        help="list, by type, DEL: records of objects the log never saw created",
    )
    parser.add_argument(
        "--include-historical",
        action="store_true",
        help="list every object created and destroyed while tracing, by clock",
    )
    parser.add_argument(
        "--recurse-files",
        action="store_true",
        help="add the logs of nested tracers (MSG: # Detaching ... New file: <path>)",
    )
    parser.add_argument(
        "-l", "--log_level", type=int, default=logging.WARNING,
        help="level of this script's own messages (debug=10, info=20, warning=30; default 30)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        analysis = analyse_file(
            args.log, include_historical=args.include_historical, recurse_files=args.recurse_files
        )
    except (OSError, LogFormatError) as exc:
        print(f"ref_trace_analyse: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(log_report.ref_trace_json(analysis, top=args.top))
        return 0
    print(log_report.ref_trace_text(analysis, top=args.top, full_path=args.full_path))
    print("\n".join(_seed_sections(analysis, args)))
    return 0


def _seed_sections(analysis: RefTraceAnalysis, args) -> List[str]:
    """The listings of the seed project's script that the report lacks."""

    def where(site: Site) -> str:
        name = site.file if args.full_path or site.file.startswith("<") else os.path.basename(site.file)
        return f"{name}#{site.line}"

    out = []
    if len(analysis.files) > 1:
        out += ["", f"Logs read [{len(analysis.files)}]:"] + [f"  {f}" for f in analysis.files]
    if args.include_untracked:
        out += ["", f"Untracked objects (DEL: without NEW:) [{sum(analysis.untracked.values())}]:"]
        out += [f"  {count:8d} {name}" for name, count in sorted(analysis.untracked.items())]
    live = sorted(analysis.live_objects, key=lambda o: o[3])
    out += ["", f"Live objects [{len(live)}], top {args.top} by clock:"]
    for address, site, tname, clock in live[: args.top]:
        out.append(f"  {address} {clock:.6f} {tname} {site.function} {where(site)}")
    if args.include_historical:
        out += ["", f"Previous objects, sorted by clock [{len(analysis.historical)}]:"]
        for address, tname, new_site, new_clock, del_site, del_clock in analysis.historical:
            out.append(
                f"  {address} {tname} NEW: t: {new_clock:.6f} {where(new_site)}"
                f" DEL: dt: {del_clock - new_clock:.6f} {where(del_site)}"
            )
    return out


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        return f"cannot read {name}: {exc.strerror.lower()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
