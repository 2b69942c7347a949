"""Read and analyse ReferenceTracing logs (docs/reference_tracing.md).

``analyse_file(path)`` streams the log once and returns a
:class:`RefTraceAnalysis`: per type, objects created, destroyed and still
live at the end; per creation site (file, line, function, type), the
objects that survived; a timeline of live objects; messages and warnings.
Survival is decided by address: a ``NEW:`` opens an object, the next
``DEL:`` at that address closes it (a second ``NEW:`` at an open address
closes the first, as the writer does).  Truncated logs are read up to the
last whole record and flagged.

Run ``python -m pymemtrace.util.ref_trace_analyse LOG [--format text|json]
[--top N]`` to print the analysis.
"""
from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from pymemtrace.util.logtext import LogFormatError, unescape

__all__ = ["LogFormatError", "RefTraceAnalysis", "TypeStats", "Site", "analyse_file", "analyse_lines", "main"]

HDR_FIELDS = ["Event", "Clock", "Address", "Type", "Live", "File", "#line", "Function"]
INFERRED_FILE = "<inferred>"


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


def analyse_lines(lines: Iterable[str], path: str = "<lines>") -> RefTraceAnalysis:
    result = RefTraceAnalysis(path=path)
    open_objects: Dict[str, Tuple[Site, str]] = {}
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
                    open_objects[address] = (site, tname)
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
                    else:
                        # A DEL: for an object we never saw created: the
                        # writer only logs these for its own NEW: records,
                        # so the log was cut at the top; count it anyway.
                        stats.destroyed += 1
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
                result.notes.append(
                    Note(tag[:-1], int(fields[0]), float(fields[1]), unescape("\t".join(fields[2:])))
                )
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
    return result


def _close(result: RefTraceAnalysis, opened: Tuple[Site, str]) -> None:
    site, tname = opened
    result.types[tname].destroyed += 1
    key = (site, tname)
    result.survivors[key] -= 1


def _thin(points: List[Tuple[int, float, int]], most: int) -> List[Tuple[int, float, int]]:
    if len(points) <= most:
        return points
    step = len(points) / most
    return [points[int(i * step)] for i in range(most - 1)] + [points[-1]]


def analyse_file(path: Union[str, os.PathLike]) -> RefTraceAnalysis:
    path = os.fspath(path)
    with io.open(path, "r", encoding="utf-8", errors="replace", newline="\n") as stream:
        return analyse_lines(stream, path)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    from pymemtrace.reporters import log_report

    parser = argparse.ArgumentParser(
        prog="python -m pymemtrace.util.ref_trace_analyse",
        description="Types whose objects outlived a ReferenceTracing block, and where they were created.",
        epilog="example:\n  python -m pymemtrace.util.ref_trace_analyse 20261125_101500_0_4242_O_0_PY3.13.0.log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("log", help="a ReferenceTracing log file")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--top", type=int, default=20, help="rows per table (default 20)")
    args = parser.parse_args(argv)
    try:
        analysis = analyse_file(args.log)
    except (OSError, LogFormatError) as exc:
        print(f"ref_trace_analyse: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(log_report.ref_trace_json(analysis, top=args.top))
    else:
        print(log_report.ref_trace_text(analysis, top=args.top))
    return 0


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        return f"cannot read {name}: {exc.strerror.lower()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
