"""Read and analyse ReferenceTracing logs (docs/reference_tracing.md).

``analyse_file(path)`` streams the log once and returns a
:class:`RefTraceAnalysis`: per type, objects created, destroyed and still
live at the end; per creation site (file, line, function, type), the
objects that survived; a timeline of live objects; messages and warnings.
Survival is decided by address: a ``NEW:`` opens an object, the next
``DEL:`` at that address closes it (a second ``NEW:`` at an open address
closes the first, as the writer does).  Truncated logs are read up to the
last whole record and flagged.

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

import io
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from pymemtrace.util.logtext import LogFormatError, unescape

__all__ = ["LogFormatError", "RefTraceAnalysis", "TypeStats", "Site", "analyse_file", "analyse_lines", "main"]

HDR_FIELDS = ["Event", "Clock", "Address", "Type", "Live", "File", "#line", "Function"]
INFERRED_FILE = "<inferred>"
# The MSG: a tracer writes in its log when a nested one takes over.
NESTED_FILE = re.compile(r"^# Detaching this Reference Tracing file wrapper\. New file: (?P<path>.+)$")

logger = logging.getLogger(__name__)


@dataclass
class TypeStats:
    name: str
    created: int = 0
    destroyed: int = 0
    inferred: int = 0  # DEL: records written without a DESTROY event

    @property
    def live(self) -> int:
        return self.created - self.destroyed


@dataclass(frozen=True)
class Site:
    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.function}"


@dataclass(frozen=True)
class Note:
    """A MSG: or WARN: record."""

    tag: str
    event: int
    clock: float
    text: str


@dataclass
class RefTraceAnalysis:
    path: str = ""
    message: Optional[str] = None
    meta: Dict[str, str] = field(default_factory=dict)
    complete: bool = False  # EOF seen
    truncated_line: bool = False
    n_new: int = 0
    n_del: int = 0
    n_inferred: int = 0
    last_event: int = 0
    last_clock: float = 0.0
    types: Dict[str, TypeStats] = field(default_factory=dict)
    # (site, type) -> objects created there and still open at the end
    survivors: Dict[Tuple[Site, str], int] = field(default_factory=dict)
    # (site, type) -> objects created there in all
    created_at: Dict[Tuple[Site, str], int] = field(default_factory=dict)
    timeline: List[Tuple[int, float, int]] = field(default_factory=list)  # event, clock, live
    notes: List[Note] = field(default_factory=list)
    trailer: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)  # LIVE: lines
    # type -> DEL: records of objects this log never saw created
    untracked: Dict[str, int] = field(default_factory=dict)
    # objects still open at the end: (address, NEW: site, type, clock)
    live_objects: List[Tuple[str, Site, str, float]] = field(default_factory=list)
    # with include_historical: (address, type, NEW: site, clock, DEL: site, clock)
    historical: List[Tuple[str, str, Site, float, Site, float]] = field(default_factory=list)
    nested_files: List[str] = field(default_factory=list)  # as the MSG: records name them
    files: List[str] = field(default_factory=list)  # every log read (recurse_files)

    @property
    def warnings(self) -> List[Note]:
        return [n for n in self.notes if n.tag == "WARN"]

    @property
    def messages(self) -> List[Note]:
        return [n for n in self.notes if n.tag == "MSG"]

    def growing_types(self) -> List[TypeStats]:
        """Types with more objects created than destroyed, most first."""
        grown = [t for t in self.types.values() if t.live > 0]
        grown.sort(key=lambda t: (-t.live, t.name))
        return grown

    def survivor_sites(self) -> List[Tuple[Site, str, int, int]]:
        """(site, type, surviving, created) ranked by surviving objects."""
        rows = [
            (site, tname, count, self.created_at.get((site, tname), count))
            for (site, tname), count in self.survivors.items()
            if count > 0
        ]
        rows.sort(key=lambda r: (-r[2], str(r[0]), r[1]))
        return rows


_TIMELINE_POINTS = 2000


def analyse_lines(lines: Iterable[str], path: str = "<lines>", include_historical: bool = False) -> RefTraceAnalysis:
    """Analyse the lines of one log (see the module docstring).

    include_historical: also keep every object created and destroyed
    (``RefTraceAnalysis.historical``; memory grows with the log).
    """
    result = RefTraceAnalysis(path=path, files=[path])
    open_objects: Dict[str, Tuple[Site, str, float]] = {}
    history = result.historical if include_historical else None
    seen_sof = False
    seen_hdr = False
    bad: Optional[str] = None
    live = 0
    stride = 1
    n_points = 0
    last_point: Optional[Tuple[int, float, int]] = None
    raw_timeline: List[Tuple[int, float, int]] = []
    names: Dict[str, str] = {}
    sites: Dict[Tuple[str, str, str], Site] = {}
    for number, raw in enumerate(lines, 1):
        if raw.endswith("\n"):
            line = raw[:-1].rstrip("\r")
        elif raw == "EOF":
            line = raw
        else:
            result.truncated_line = True
            break
        if not seen_sof:
            if line == "SOF":
                seen_sof = True
            elif number == 1:
                result.message = unescape(line)
            else:
                raise LogFormatError(f"{path}: not a ReferenceTracing log (no SOF line at the top)")
            continue
        if line == "EOF":
            result.complete = True
            break
        if not line:
            continue
        if line[0] == "#":
            key, sep, value = line[1:].strip().partition(":")
            if sep and " " not in key.strip():
                result.meta.setdefault(key.strip(), value.strip())
            continue
        tag, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if tag == "HDR:":
            if fields != HDR_FIELDS:
                raise LogFormatError(f"{path}: not a ReferenceTracing log (unexpected HDR: columns)")
            seen_hdr = True
            continue
        if not seen_hdr:
            raise LogFormatError(f"{path}:{number}: record before the HDR: line")
        if bad is not None:
            raise LogFormatError(bad)
        try:
            if tag == "NEW:" or tag == "DEL:":
                if len(fields) != 8:
                    raise ValueError(f"{len(fields)} fields, expected 8")
                event = int(fields[0])
                clock = float(fields[1])
                address = fields[2]
                # Big logs repeat a few types and sites millions of times:
                # build each once.
                tname = names.get(fields[3])
                if tname is None:
                    tname = names[fields[3]] = unescape(fields[3])
                site_key = (fields[5], fields[6], fields[7])
                site = sites.get(site_key)
                if site is None:
                    site = sites[site_key] = Site(unescape(fields[5]), int(fields[6]), unescape(fields[7]))
                stats = result.types.get(tname)
                if stats is None:
                    stats = result.types[tname] = TypeStats(tname)
                if tag == "NEW:":
                    previous = open_objects.get(address)
                    if previous is not None:  # closed without a DEL: record
                        _close(result, previous)
                        live -= 1
                    open_objects[address] = (site, tname, clock)
                    stats.created += 1
                    result.n_new += 1
                    key = (site, tname)
                    result.created_at[key] = result.created_at.get(key, 0) + 1
                    result.survivors[key] = result.survivors.get(key, 0) + 1
                    live += 1
                else:
                    result.n_del += 1
                    if site.file == INFERRED_FILE:
                        stats.inferred += 1
                        result.n_inferred += 1
                    opened = open_objects.pop(address, None)
                    if opened is not None:
                        _close(result, opened)
                        live -= 1
                        if history is not None:
                            history.append((address, tname, opened[0], opened[2], site, clock))
                    else:
                        # A DEL: for an object we never saw created: the
                        # writer only logs these for its own NEW: records,
                        # so the log was cut at the top; count it anyway.
                        stats.destroyed += 1
                        result.untracked[tname] = result.untracked.get(tname, 0) + 1
                result.last_event, result.last_clock = event, clock
                last_point = (event, clock, live)
                n_points += 1
                if n_points % stride == 0:
                    raw_timeline.append(last_point)
                    if len(raw_timeline) >= 2 * _TIMELINE_POINTS:
                        raw_timeline = raw_timeline[::2]
                        stride *= 2
            elif tag in ("MSG:", "WARN:"):
                if len(fields) < 3:
                    raise ValueError("needs 3 fields")
                note = Note(tag[:-1], int(fields[0]), float(fields[1]), unescape("\t".join(fields[2:])))
                result.notes.append(note)
                nested = NESTED_FILE.match(note.text) if note.tag == "MSG" else None
                if nested is not None:
                    result.nested_files.append(nested.group("path"))
            elif tag == "LIVE:":
                if len(fields) != 4:
                    raise ValueError("needs 4 fields")
                result.trailer[unescape(fields[0])] = (int(fields[1]), int(fields[2]), int(fields[3]))
            elif tag == "END:":
                result.last_event = int(fields[0])
                result.last_clock = float(fields[1])
            # Unknown tags are skipped.
        except (ValueError, IndexError) as exc:
            bad = f"{path}:{number}: bad {tag} record ({exc})"
    if bad is not None:
        if result.complete:
            raise LogFormatError(bad)
        result.truncated_line = True
    if not seen_sof:
        raise LogFormatError(f"{path}: not a ReferenceTracing log (empty, or no SOF line)")
    if not seen_hdr:
        raise LogFormatError(f"{path}: not a ReferenceTracing log (no HDR: line)")
    if last_point is not None and (not raw_timeline or raw_timeline[-1] != last_point):
        raw_timeline.append(last_point)
    result.timeline = _thin(raw_timeline, _TIMELINE_POINTS)
    result.live_objects = [(a, s, t, c) for a, (s, t, c) in open_objects.items()]
    return result


def _close(result: RefTraceAnalysis, opened: Tuple[Site, str, float]) -> None:
    site, tname, _ = opened
    result.types[tname].destroyed += 1
    key = (site, tname)
    result.survivors[key] -= 1


def _thin(points: List[Tuple[int, float, int]], most: int) -> List[Tuple[int, float, int]]:
    if len(points) <= most:
        return points
    step = len(points) / most
    return [points[int(i * step)] for i in range(most - 1)] + [points[-1]]


def analyse_file(
    path: Union[str, os.PathLike], include_historical: bool = False, recurse_files: bool = False
) -> RefTraceAnalysis:
    """Analyse one log; with recurse_files, add those of the tracers nested
    in it (named by its ``New file:`` messages, found as written or beside
    the log), and theirs.  The result then sums them all: counts, types,
    sites, live and historical objects; its timeline, messages and meta are
    the first log's; ``files`` lists the logs read.
    """
    path = os.fspath(path)
    with io.open(path, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
        result = analyse_lines(stream, path, include_historical)
    if recurse_files:
        seen = {os.path.realpath(path)}
        pending = [(path, child) for child in result.nested_files]
        while pending:
            parent, child = pending.pop(0)
            found = _nested_path(parent, child)
            if found is None:
                logger.warning("%s: nested log %s not found", parent, child)
                continue
            if os.path.realpath(found) in seen:
                continue
            seen.add(os.path.realpath(found))
            logger.info("reading nested log %s", found)
            with io.open(found, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
                nested = analyse_lines(stream, found, include_historical)
            _merge(result, nested)
            pending.extend((found, grandchild) for grandchild in nested.nested_files)
    return result


def _nested_path(parent: str, child: str) -> Optional[str]:
    """child as written (absolute, or relative to the cwd of the traced
    process, often ours too), else beside its parent log."""
    if os.path.isfile(child):
        return child
    beside = os.path.join(os.path.dirname(parent), os.path.basename(child))
    return beside if os.path.isfile(beside) else None


def _merge(into: RefTraceAnalysis, other: RefTraceAnalysis) -> None:
    into.files.extend(other.files)
    into.n_new += other.n_new
    into.n_del += other.n_del
    into.n_inferred += other.n_inferred
    into.truncated_line = into.truncated_line or other.truncated_line
    into.complete = into.complete and other.complete
    for name, stats in other.types.items():
        mine = into.types.setdefault(name, TypeStats(name))
        mine.created += stats.created
        mine.destroyed += stats.destroyed
        mine.inferred += stats.inferred
    for table in ("survivors", "created_at", "untracked"):
        mine, theirs = getattr(into, table), getattr(other, table)
        for key, count in theirs.items():
            mine[key] = mine.get(key, 0) + count
    into.live_objects.extend(other.live_objects)
    into.historical.extend(other.historical)
    into.historical.sort(key=lambda h: h[3])


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
