"""Analysis of Profile/Trace logs: where memory grew, and when.

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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pymemtrace.util.cpymemtrace_log import ProfileLog, Record

OPENING = ("LINE", "CALL", "C_CALL")
OPENED_BY = ("LINE", "CALL")


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


@dataclass
class ProfileAnalysis:
    log: ProfileLog
    growths: List[Growth] = field(default_factory=list)
    functions: List[SiteTotal] = field(default_factory=list)  # by growth, desc
    lines: List[SiteTotal] = field(default_factory=list)
    timeline: List[Tuple[int, float, int]] = field(default_factory=list)  # event, clock, mem
    first_mem: Optional[int] = None
    last_mem: Optional[int] = None
    peak_mem: Optional[int] = None
    events: int = 0
    duration: float = 0.0

    def top_growths(self, n: int) -> List[Growth]:
        positive = [g for g in self.growths if g.d_rss > 0]
        positive.sort(key=lambda g: (-g.d_rss, g.record.event))
        return positive[:n]


def analyse(log: ProfileLog) -> ProfileAnalysis:
    result = ProfileAnalysis(log=log)
    last_written: Optional[Record] = None  # last FRST/NEXT
    last_prev: Optional[Record] = None
    per_function: Dict[Tuple[str, str], SiteTotal] = {}
    per_line: Dict[Tuple[str, int, str], SiteTotal] = {}
    seen_events = set()
    for rec in log.records:
        if rec.event not in seen_events:
            seen_events.add(rec.event)
            result.timeline.append((rec.event, rec.clock, rec.rss))
        result.events = max(result.events, rec.event + 1)
        result.duration = max(result.duration, rec.clock)
        if result.first_mem is None:
            result.first_mem = rec.rss
        result.last_mem = rec.rss
        result.peak_mem = rec.rss if result.peak_mem is None else max(result.peak_mem, rec.rss)
        if rec.tag == "PREV":
            last_prev = rec
            continue
        if rec.tag == "NEXT":
            before = None
            for candidate in (last_prev, last_written):
                # The event just before, in the same thread (all_threads logs
                # number the events of every thread in one sequence).
                if (
                    candidate is not None
                    and candidate.event == rec.event - 1
                    and candidate.thread == rec.thread
                ):
                    before = candidate
                    break
            if rec.what in OPENING:
                if before is not None and before.what in OPENED_BY:
                    charged, approximate = before, False
                else:
                    charged, approximate = rec, True
            else:
                charged, approximate = rec, False
            growth = Growth(rec, before, charged, approximate)
            result.growths.append(growth)
            fkey = (charged.file, charged.function)
            lkey = (charged.file, charged.line, charged.function)
            ftotal = per_function.get(fkey)
            if ftotal is None:
                ftotal = per_function[fkey] = SiteTotal(charged.file, None, charged.function)
            ltotal = per_line.get(lkey)
            if ltotal is None:
                ltotal = per_line[lkey] = SiteTotal(charged.file, charged.line, charged.function)
            for total in (ftotal, ltotal):
                if rec.d_rss > 0:
                    total.growth += rec.d_rss
                    total.jumps += 1
                else:
                    total.shrink += rec.d_rss
        if rec.tag in ("FRST", "NEXT"):
            last_written = rec
            last_prev = None
    order = lambda t: (-t.growth, t.location)  # noqa: E731
    result.functions = sorted((t for t in per_function.values() if t.growth > 0), key=order)
    result.lines = sorted((t for t in per_line.values() if t.growth > 0), key=order)
    return result
