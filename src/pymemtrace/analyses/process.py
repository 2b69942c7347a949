"""RSS over a process's records: running statistics and a bounded series.

Everything here takes records one at a time and keeps a fixed amount of
memory, however long the run: :class:`ProcessSummary` keeps counts and
extremes (no list of samples), :class:`Series` keeps at most
``max_points`` points for a chart, merging neighbours so that the
smallest and the largest value of every stretch survive (the chart's
minimum, maximum and peak time are exact), and labels are kept up to
:data:`MAX_LABELS` (all are counted).  So ``pymemtrace process`` is flat
in memory over a day at its fastest interval.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pymemtrace.snapshots.process_log import (
    EVENT_SAMPLE,
    KEY_ELAPSED_TIME,
    KEY_LABEL,
    KEY_MEMORY_INFO,
    KEY_PROCESS_ID,
)

Point = Tuple[float, float]

#: Labels kept per process (more are counted, not kept).
MAX_LABELS = 1000
#: Points kept per process for its chart.
MAX_POINTS = 4096


@dataclasses.dataclass
class ProcessSummary:
    """RSS over one process's records, as running statistics."""

    pid: int
    samples: int
    first_rss: int
    last_rss: int
    min_rss: int
    max_rss: int
    t_first: float
    t_last: float
    labels: List[Tuple[float, str]]
    dropped: int = 0
    #: Time of the first record holding ``max_rss``.
    t_peak: float = 0.0
    #: Every label seen (``labels`` keeps the first MAX_LABELS).
    label_count: int = 0

    @classmethod
    def first(cls, pid: int, t: float, rss: int) -> "ProcessSummary":
        return cls(pid, 0, rss, rss, rss, rss, t, t, [], t_peak=t)

    def add(self, t: float, rss: int, label: Optional[str] = None, dropped: int = 0) -> None:
        self.samples += 1
        self.last_rss = rss
        if rss < self.min_rss:
            self.min_rss = rss
        if rss > self.max_rss:
            self.max_rss = rss
            self.t_peak = t
        self.t_last = t
        if label is not None:
            self.label_count += 1
            if len(self.labels) < MAX_LABELS:
                self.labels.append((t, label))
        self.dropped += dropped

    @property
    def growth(self) -> int:
        return self.last_rss - self.first_rss

    @property
    def duration(self) -> float:
        return self.t_last - self.t_first

    @property
    def rate(self) -> float:
        """Growth in bytes per second (0 when the log covers no time)."""
        return self.growth / self.duration if self.duration > 0 else 0.0


def _fields(record: Dict[str, Any]):
    label = record.get(KEY_LABEL)
    dropped = record.get("dropped")
    return (record[KEY_PROCESS_ID], float(record[KEY_ELAPSED_TIME]),
            record[KEY_MEMORY_INFO]["rss"], None if label is None else str(label),
            dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0)


def summarise(records: Iterable[Dict[str, Any]]) -> Dict[int, ProcessSummary]:
    """One :class:`ProcessSummary` per pid, in order of first appearance."""
    out: Dict[int, ProcessSummary] = {}
    for record in records:
        pid, t, rss, label, dropped = _fields(record)
        s = out.get(pid)
        if s is None:
            s = out[pid] = ProcessSummary.first(pid, t, rss)
        s.add(t, rss, label, dropped)
    return out


class Series:
    """At most ``max_points`` points of a series, its extremes kept exactly.

    Points arrive in time order.  They fill buckets of ``width`` points;
    a bucket keeps only its lowest and its highest point (the first one
    on ties).  When ``max_points // 2`` buckets are full, neighbours are
    merged in pairs and ``width`` doubles.  The first and the last point
    are kept too.  So the series shown has the exact minimum and maximum
    (and the time of the first maximum) of everything added.
    """

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        if max_points < 4:
            raise ValueError(f"max_points must be at least 4, got {max_points}")
        self.max_points = max_points
        self._max_buckets = (max_points - 2) // 2
        self._width = 1
        # [count, low point, high point] per bucket
        self._buckets: List[list] = []
        self.count = 0
        self.first: Optional[Point] = None
        self.last: Optional[Point] = None

    def __len__(self) -> int:
        """Points held (bounded by max_points)."""
        return len(self.points())

    @property
    def width(self) -> int:
        """Points added per bucket."""
        return self._width

    def _merge(self) -> None:
        merged = []
        buckets = self._buckets
        for i in range(0, len(buckets), 2):
            a = buckets[i]
            if i + 1 == len(buckets):
                merged.append(a)
                continue
            b = buckets[i + 1]
            low = b[1] if b[1][1] < a[1][1] else a[1]
            high = b[2] if b[2][1] > a[2][1] else a[2]
            merged.append([a[0] + b[0], low, high])
        self._buckets = merged
        self._width *= 2

    def _bucket_with_room(self) -> Optional[list]:
        if self._buckets and self._buckets[-1][0] < self._width:
            return self._buckets[-1]
        if len(self._buckets) >= self._max_buckets:
            self._merge()
            if self._buckets[-1][0] < self._width:
                return self._buckets[-1]
        return None

    def add(self, x: float, y: float) -> None:
        point = (x, y)
        if self.first is None:
            self.first = point
        self.last = point
        self.count += 1
        bucket = self._bucket_with_room()
        if bucket is None:
            self._buckets.append([1, point, point])
            return
        bucket[0] += 1
        if y < bucket[1][1]:
            bucket[1] = point
        if y > bucket[2][1]:
            bucket[2] = point

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Add many points at once (the same result as :meth:`add` for each)."""
        n = len(ys)
        if len(xs) != n:
            raise ValueError("xs and ys differ in length")
        i = 0
        while i < n:
            bucket = self._bucket_with_room()
            room = self._width - (bucket[0] if bucket is not None else 0)
            chunk = ys[i:i + room]
            lo = min(chunk)
            hi = max(chunk)
            low = (xs[i + chunk.index(lo)], lo)
            high = (xs[i + chunk.index(hi)], hi)
            if self.first is None:
                self.first = (xs[i], ys[i])
            if bucket is None:
                self._buckets.append([len(chunk), low, high])
            else:
                bucket[0] += len(chunk)
                if lo < bucket[1][1]:
                    bucket[1] = low
                if hi > bucket[2][1]:
                    bucket[2] = high
            i += len(chunk)
            self.count += len(chunk)
        if n:
            self.last = (xs[n - 1], ys[n - 1])

    def points(self) -> List[Point]:
        """The points to draw, in time order."""
        out: List[Point] = []
        for _, low, high in self._buckets:
            out.extend(sorted({low, high}))
        if self.first is not None and (not out or out[0] != self.first):
            out.insert(0, self.first)
        if self.last is not None and out[-1] != self.last:
            out.append(self.last)
        return out

    def minimum(self) -> Optional[Point]:
        return min((b[1] for b in self._buckets), key=lambda p: p[1], default=None)

    def maximum(self) -> Optional[Point]:
        """The highest point (the first of equals)."""
        best = None
        for b in self._buckets:
            if best is None or b[2][1] > best[1]:
                best = b[2]
        return best


class ProcessRun:
    """What ``pymemtrace process`` keeps of a run: per pid, a summary, a
    bounded RSS series (MiB against elapsed time) and its labels."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.summaries: Dict[int, ProcessSummary] = {}
        self.series: Dict[int, Series] = {}
        self.records = 0
        self.samples = 0  # SAMPLE records (not START/STOP)

    def add(self, event: str, record: Dict[str, Any]) -> None:
        pid, t, rss, label, dropped = _fields(record)
        s = self.summaries.get(pid)
        if s is None:
            s = self.summaries[pid] = ProcessSummary.first(pid, t, rss)
            self.series[pid] = Series(self.max_points)
        s.add(t, rss, label, dropped)
        self.series[pid].add(t, rss)
        self.records += 1
        if event == EVENT_SAMPLE:
            self.samples += 1

    @property
    def first_pid(self) -> Optional[int]:
        return next(iter(self.summaries), None)
