"""Analysis of ReferenceTracing logs (docs/reference_tracing.md).

``analyse_file(path)`` streams the log once (through
:mod:`pymemtrace.snapshots.reftrace_log`) and returns a
:class:`RefTraceAnalysis`: per type, objects created, destroyed and still
live at the end; per creation site (file, line, function, type), the
objects that survived; a timeline of live objects; messages and warnings.
Survival is decided by address: a ``NEW:`` opens an object, the next
``DEL:`` at that address closes it (a second ``NEW:`` at an open address
closes the first, as the writer does).  Memory grows with the objects open
at once and the distinct sites, not with the log.

The command ``pymemtrace_ref_trace_analyse`` is
:func:`pymemtrace.util.ref_trace_analyse.main`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from pymemtrace.snapshots.logtext import LogFormatError
from pymemtrace.snapshots.reftrace_log import INFERRED_FILE, Note, RefTraceLog, Site, iter_records, open_log

__all__ = ["LogFormatError", "RefTraceAnalysis", "TypeStats", "Site", "Note", "analyse_file", "analyse_lines"]

logger = logging.getLogger("pymemtrace.util.ref_trace_analyse")


@dataclass
class TypeStats:
    name: str
    created: int = 0
    destroyed: int = 0
    inferred: int = 0  # DEL: records written without a DESTROY event

    @property
    def live(self) -> int:
        return self.created - self.destroyed


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
    log = RefTraceLog(path=path)
    open_objects: Dict[str, Tuple[Site, str, float]] = {}
    history = result.historical if include_historical else None
    live = 0
    stride = 1
    n_points = 0
    last_point: Optional[Tuple[int, float, int]] = None
    raw_timeline: List[Tuple[int, float, int]] = []
    types = result.types
    for tag, event, clock, address, tname, site in iter_records(lines, log):
        stats = types.get(tname)
        if stats is None:
            stats = types[tname] = TypeStats(tname)
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
                # A DEL: for an object we never saw created: the writer
                # only logs these for its own NEW: records, so the log was
                # cut at the top; count it anyway.
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
    result.message, result.meta = log.message, log.meta
    result.complete, result.truncated_line = log.complete, log.truncated_line
    result.notes, result.trailer, result.nested_files = log.notes, log.trailer, log.nested_files
    if log.end is not None:
        result.last_event, result.last_clock = log.end
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
    with open_log(path) as stream:
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
            with open_log(found) as stream:
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
