"""Analysis of Profile/Trace logs: what memory stayed, where it grew, and when.

Attribution (see docs/report.md).  A ``NEXT:`` record is written at the
first event where memory had moved by at least the trigger since the
previous written record; the memory appeared in the code that ran between
the event just before it (the ``PREV:`` record, or the previous written
record when that was the event just before) and the ``NEXT:`` event.

* ``RETURN``/``EXCEPT``/``C_RETURN``/``C_EXCEPT``: that code ended with
  this event, so the growth is charged to the ``NEXT:`` record's function
  and line (the function returning, its callees included).
* ``LINE``, ``CALL``, ``C_CALL``: these events announce code that is
  about to run; when the event before was a ``LINE`` or ``CALL`` the code
  that ran is the one it announced, so the growth is charged to that
  earlier record's location.  Otherwise (no earlier event recorded, or it
  was a return) it is charged to the ``NEXT:`` record, and marked
  ``approximate``.

Retained memory and churn (LIFO matching).  The dRSS of the ``NEXT:``
records, in order, are rises and falls.  Each rise is pushed on a stack
with the site it is charged to; a fall cancels the most recent rises
first (it pops them, the last one maybe in part).  What a fall cancels is
*churn* of the site of that rise (memory given back later); a fall larger
than the whole stack releases memory held before the log started
(``released``, charged to nobody).  The ``LAST:`` record's dRSS (memory
read at exit, less than a trigger away from the last written record) is a
final rise or fall charged to the ``LAST:`` record's location.  What is
left on the stack at the end, summed per site, is *retained*: memory still
held at the end of the log.  In a complete log,
``first + sum(retained) - released == last``.

:func:`analyse_file` reads a log in one streaming pass in bounded memory
(per-site totals, the stack of unmatched rises stored compactly, a
decimated timeline, the top growth events); :func:`analyse` analyses a
:class:`ProfileLog` already in memory and keeps every growth event.
"""
from __future__ import annotations

import heapq
import itertools
import os
from array import array
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

from pymemtrace.snapshots.profile_log import ProfileLog, Record, RecordTuple, iter_records, open_log

OPENING = ("LINE", "CALL", "C_CALL")
OPENED_BY = ("LINE", "CALL")

# Timeline points kept exactly; longer logs are decimated (min and max of
# each slice) to between TIMELINE_POINTS and 2 * TIMELINE_POINTS points.
TIMELINE_POINTS = 2048
# MSG: records and comments kept by analyse_file (the rest are counted).
MAX_KEPT_MESSAGES = 10_000
# Growth events kept by analyse_file when no `top` is given.
DEFAULT_TOP = 10

# Indexes into a RecordTuple.
_TAG, _EVENT, _CLOCK, _WHAT, _FILE, _LINE, _FUNCTION, _MEM, _DMEM, _THREAD = 0, 1, 3, 4, 5, 6, 7, 8, 9, 10


@dataclass(frozen=True)
class Growth:
    """One NEXT: record, with the location charged for it."""

    record: Record
    before: Optional[Record]  # the event just before, when recorded
    charged: Record  # record whose file/line/function is charged
    approximate: bool

    @property
    def d_rss(self) -> int:
        return self.record.d_rss


@dataclass
class SiteTotal:
    file: str
    line: Optional[int]  # None when totalled per function
    function: str
    growth: int = 0  # sum of positive dRSS charged here
    shrink: int = 0  # sum of negative dRSS charged here
    jumps: int = 0  # NEXT records with positive dRSS charged here

    @property
    def location(self) -> str:
        if self.line is None:
            return f"{self.file}:{self.function}"
        return f"{self.file}:{self.line}:{self.function}"


@dataclass(frozen=True)
class SiteBytes:
    """Bytes charged to one line: retained at the end, or churned."""

    file: str
    line: Optional[int]
    function: str
    bytes: int

    @property
    def location(self) -> str:
        if self.line is None:
            return f"{self.file}:{self.function}"
        return f"{self.file}:{self.line}:{self.function}"


@dataclass
class ProfileAnalysis:
    log: ProfileLog  # analyse_file: header, messages and flags only (no records)
    growths: List[Growth] = field(default_factory=list)  # analyse_file: the top ones only
    functions: List[SiteTotal] = field(default_factory=list)  # by growth, desc
    lines: List[SiteTotal] = field(default_factory=list)
    timeline: List[Tuple[int, float, int]] = field(default_factory=list)  # event, clock, mem
    first_mem: Optional[int] = None
    last_mem: Optional[int] = None
    peak_mem: Optional[int] = None
    events: int = 0
    duration: float = 0.0
    n_records: int = 0  # FRST/NEXT/PREV/LAST records read
    retained: List[SiteBytes] = field(default_factory=list)  # still held at the end, desc
    churn: List[SiteBytes] = field(default_factory=list)  # risen, then given back, desc
    released: int = 0  # falls beyond every earlier rise: memory held before the log

    def top_growths(self, n: int) -> List[Growth]:
        positive = [g for g in self.growths if g.d_rss > 0]
        positive.sort(key=lambda g: (-g.d_rss, g.record.event))
        return positive[:n]


class RetainedStack:
    """LIFO matching of rises and falls, per site id (small ints).

    The stack holds the rises not yet given back: parallel arrays of bytes
    and site ids, adjacent rises of one site merged into one entry.
    """

    def __init__(self) -> None:
        self.amounts = array("q")
        self.sites = array("i")
        self.churn: List[int] = []  # per site id
        self.released = 0

    def move(self, site: int, delta: int) -> None:
        """A rise (delta > 0) or fall (delta < 0) charged to site."""
        if delta > 0:
            sites = self.sites
            if sites and sites[-1] == site:
                self.amounts[-1] += delta
            else:
                if site >= len(self.churn):
                    self.churn.extend([0] * (site + 1 - len(self.churn)))
                sites.append(site)
                self.amounts.append(delta)
            return
        fall = -delta
        amounts, sites, churn = self.amounts, self.sites, self.churn
        while fall and amounts:
            top = amounts[-1]
            if top <= fall:
                churn[sites.pop()] += top
                amounts.pop()
                fall -= top
            else:
                amounts[-1] = top - fall
                churn[sites[-1]] += fall
                fall = 0
        self.released += fall

    def retained(self) -> Dict[int, int]:
        """Bytes still on the stack, per site id."""
        held: Dict[int, int] = {}
        for site, amount in zip(self.sites, self.amounts):
            held[site] = held.get(site, 0) + amount
        return held


class _Timeline:
    """(event, clock, mem) points in bounded memory: exact up to
    2 * TIMELINE_POINTS points, then the lowest and highest point of each
    slice of events; the first and last points are always kept."""

    def __init__(self, limit: Optional[int] = None) -> None:
        self.limit = TIMELINE_POINTS if limit is None else limit
        self.points: List[Tuple[int, float, int]] = []
        self.stride = 1
        self.count = 0  # points in the current slice
        self.low: Optional[Tuple[int, float, int]] = None
        self.high: Optional[Tuple[int, float, int]] = None
        self.first: Optional[Tuple[int, float, int]] = None
        self.last: Optional[Tuple[int, float, int]] = None

    def add(self, point: Tuple[int, float, int]) -> None:
        if self.first is None:
            self.first = point
        self.last = point
        if self.stride == 1:
            self.points.append(point)
            if len(self.points) >= 2 * self.limit:
                self._halve()
            return
        if self.count == 0:
            self.low = self.high = point
        elif point[2] < self.low[2]:
            self.low = point
        elif point[2] > self.high[2]:
            self.high = point
        self.count += 1
        if self.count == self.stride:
            self._flush()

    def _flush(self) -> None:
        if self.count:
            low, high = self.low, self.high
            if low is high:
                self.points.append(low)
            else:
                self.points.extend(sorted((low, high)))
            self.count = 0
            if len(self.points) >= 2 * self.limit:
                self._halve()

    def _halve(self) -> None:
        points = self.points
        kept: List[Tuple[int, float, int]] = []
        for i in range(0, len(points), 4):
            group = points[i: i + 4]
            low = min(group, key=lambda p: p[2])
            high = max(group, key=lambda p: p[2])
            kept.extend([low] if low is high else sorted((low, high)))
        self.points = kept
        self.stride *= 2

    def result(self) -> List[Tuple[int, float, int]]:
        self._flush()
        points = list(self.points)
        if self.first is not None and (not points or points[0] != self.first):
            points.insert(0, self.first)
        if self.last is not None and points[-1] != self.last:
            points.append(self.last)
        return points


class ProfileAccumulator:
    """Feeds on records (RecordTuple) in log order; ``finish()`` gives the
    :class:`ProfileAnalysis`.  ``top`` is None to keep every growth event,
    else the number of largest ones kept."""

    def __init__(self, log: ProfileLog, top: Optional[int] = None) -> None:
        self.result = ProfileAnalysis(log=log)
        self.top = top
        self.heap: List[Tuple[int, int, int, Growth]] = []  # (d_rss, -event, seq, growth)
        self.seq = itertools.count()
        self.timeline = _Timeline()
        self.last_event: Optional[int] = None
        self.last_written: Optional[RecordTuple] = None  # last FRST/NEXT
        self.last_prev: Optional[RecordTuple] = None
        self.per_function: Dict[Tuple[str, str], SiteTotal] = {}
        self.per_line: Dict[Tuple[str, int, str], SiteTotal] = {}
        self.site_ids: Dict[Tuple[str, int, str], int] = {}
        self.site_keys: List[Tuple[str, int, str]] = []
        self.stack = RetainedStack()

    def site_id(self, key: Tuple[str, int, str]) -> int:
        site = self.site_ids.get(key)
        if site is None:
            site = self.site_ids[key] = len(self.site_keys)
            self.site_keys.append(key)
        return site

    def feed_all(self, records: Iterable[RecordTuple]) -> None:
        for rec in records:
            self.feed(rec)

    def feed(self, rec: RecordTuple) -> None:
        result = self.result
        result.n_records += 1
        event = rec[_EVENT]
        mem = rec[_MEM]
        if event != self.last_event:
            self.last_event = event
            self.timeline.add((event, rec[_CLOCK], mem))
        if event >= result.events:
            result.events = event + 1
        if rec[_CLOCK] > result.duration:
            result.duration = rec[_CLOCK]
        if result.first_mem is None:
            result.first_mem = result.peak_mem = mem
        elif mem > result.peak_mem:
            result.peak_mem = mem
        result.last_mem = mem
        tag = rec[_TAG]
        if tag == "PREV":
            self.last_prev = rec
            return
        if tag == "NEXT":
            self._next(rec)
        elif tag == "LAST":
            key = (rec[_FILE], rec[_LINE], rec[_FUNCTION])
            self.stack.move(self.site_id(key), rec[_DMEM])
        if tag in ("FRST", "NEXT"):
            self.last_written = rec
            self.last_prev = None

    def _next(self, rec: RecordTuple) -> None:
        event = rec[_EVENT]
        before = None
        for candidate in (self.last_prev, self.last_written):
            # The event just before, in the same thread (all_threads logs
            # number the events of every thread in one sequence).
            if candidate is not None and candidate[_EVENT] == event - 1 and candidate[_THREAD] == rec[_THREAD]:
                before = candidate
                break
        if rec[_WHAT] in OPENING:
            if before is not None and before[_WHAT] in OPENED_BY:
                charged, approximate = before, False
            else:
                charged, approximate = rec, True
        else:
            charged, approximate = rec, False
        d_mem = rec[_DMEM]
        if self.top is None:
            self.result.growths.append(_growth(rec, before, charged, approximate))
        elif d_mem > 0 and self.top > 0:
            rank = (d_mem, -event)
            heap = self.heap
            if len(heap) < self.top:
                heapq.heappush(heap, (d_mem, -event, next(self.seq), _growth(rec, before, charged, approximate)))
            elif rank > heap[0][:2]:
                heapq.heapreplace(heap, (d_mem, -event, next(self.seq), _growth(rec, before, charged, approximate)))
        file, line, function = charged[_FILE], charged[_LINE], charged[_FUNCTION]
        fkey = (file, function)
        lkey = (file, line, function)
        ftotal = self.per_function.get(fkey)
        if ftotal is None:
            ftotal = self.per_function[fkey] = SiteTotal(file, None, function)
        ltotal = self.per_line.get(lkey)
        if ltotal is None:
            ltotal = self.per_line[lkey] = SiteTotal(file, line, function)
        if d_mem > 0:
            ftotal.growth += d_mem
            ftotal.jumps += 1
            ltotal.growth += d_mem
            ltotal.jumps += 1
        else:
            ftotal.shrink += d_mem
            ltotal.shrink += d_mem
        self.stack.move(self.site_id(lkey), d_mem)

    def finish(self) -> ProfileAnalysis:
        result = self.result
        if self.top is not None:
            result.growths = [g for *_, g in sorted(self.heap, key=lambda h: (-h[0], -h[1]))]
        result.timeline = self.timeline.result()
        order = lambda t: (-t.growth, t.location)  # noqa: E731
        result.functions = sorted((t for t in self.per_function.values() if t.growth > 0), key=order)
        result.lines = sorted((t for t in self.per_line.values() if t.growth > 0), key=order)
        keys = self.site_keys
        by_size = lambda s: (-s.bytes, s.location)  # noqa: E731
        result.retained = sorted(
            (SiteBytes(*keys[site], amount) for site, amount in self.stack.retained().items() if amount > 0),
            key=by_size,
        )
        result.churn = sorted(
            (SiteBytes(*keys[site], amount) for site, amount in enumerate(self.stack.churn) if amount > 0),
            key=by_size,
        )
        result.released = self.stack.released
        return result


def _growth(rec: RecordTuple, before: Optional[RecordTuple], charged: RecordTuple, approximate: bool) -> Growth:
    record = Record(*rec)
    before_record = None if before is None else Record(*before)
    if charged is rec:
        charged_record = record
    elif charged is before:
        charged_record = before_record
    else:  # pragma: no cover - charged is always rec or before
        charged_record = Record(*charged)
    return Growth(record, before_record, charged_record, approximate)


def _as_tuple(rec: Record) -> RecordTuple:
    return (rec.tag, rec.event, rec.d_event, rec.clock, rec.what, rec.file, rec.line, rec.function,
            rec.rss, rec.d_rss, rec.thread)


def analyse(log: ProfileLog) -> ProfileAnalysis:
    """Analyse a log read into memory (``read_log``); keeps every growth event."""
    accumulator = ProfileAccumulator(log)
    accumulator.feed_all(_as_tuple(rec) for rec in log.records)
    return accumulator.finish()


def analyse_lines(lines, path: str = "<lines>", top: Optional[int] = DEFAULT_TOP) -> ProfileAnalysis:
    """Analyse log lines in one streaming pass: bounded memory, whatever
    the length.  ``top`` growth events are kept (None: all of them)."""
    log = ProfileLog(path=path)
    accumulator = ProfileAccumulator(log, top=top)
    accumulator.feed_all(iter_records(lines, log, max_kept=MAX_KEPT_MESSAGES))
    return accumulator.finish()


def analyse_file(path: Union[str, os.PathLike], top: Optional[int] = DEFAULT_TOP) -> ProfileAnalysis:
    """Analyse a Profile/Trace log file in one streaming pass (see
    :func:`analyse_lines`).  Raises LogFormatError or OSError."""
    path = os.fspath(path)
    with open_log(path) as stream:
        return analyse_lines(stream, path, top=top)
