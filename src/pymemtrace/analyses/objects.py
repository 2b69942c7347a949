"""Growth of object censuses, in the spirit of objgraph's ``show_growth``.

:class:`Peaks` remembers, for each type, the highest count any census
passed to :meth:`Peaks.update` has shown (and the bytes at that peak).  A
type *grew* when a census shows more of it than its peak; the growth is the
count above the peak, and the peak moves up.  A type whose count falls and
comes back is therefore not reported again until it passes its old peak:
churn is not growth.  The first update reports every type (each grew from
nothing), as objgraph's first ``show_growth`` does.
"""

from __future__ import annotations

from pymemtrace.snapshots.objects import ObjectCensus


class Growth:
    """One type that grew: its count now, the growth above its old peak, and bytes."""

    __slots__ = ("name", "qualname", "count", "delta", "bytes", "bytes_delta")

    def __init__(self, name, qualname, count, delta, bytes, bytes_delta) -> None:
        self.name = name
        self.qualname = qualname
        self.count = count
        self.delta = delta
        self.bytes = bytes
        self.bytes_delta = bytes_delta

    def __repr__(self) -> str:
        return f"Growth({self.qualname!r}, count={self.count}, delta={self.delta:+d})"

    def to_dict(self) -> dict:
        return {"type": self.name, "qualname": self.qualname, "count": self.count,
                "delta": self.delta, "bytes": self.bytes,
                "bytes_delta": self.bytes_delta}


class GrowthRows(list):
    """A list of :class:`Growth` rows that can be weakly referenced (so
    ``pymemtrace.objects`` can leave the ones it handed out out of later
    censuses)."""

    __slots__ = ("__weakref__",)


class Peaks:
    """The highest count (and its bytes) seen so far of each type, by qualified name."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict = {}

    def __len__(self) -> int:
        return len(self.counts)

    def update(self, census: ObjectCensus, limit: int | None = None) -> list:
        """The types of ``census`` above their peak, most growth first; moves the peaks.

        ``limit`` keeps the first ``limit`` rows of the answer (every peak
        moves whatever the limit, as in objgraph).
        """
        grown = []
        for qualname, row in census.types.items():
            old = self.counts.get(qualname)
            old_count, old_bytes = old if old is not None else (0, 0)
            if row.count > old_count:
                grown.append(Growth(row.name, qualname, row.count, row.count - old_count,
                                    row.bytes, row.bytes - old_bytes))
                self.counts[qualname] = (row.count, row.bytes)
        grown.sort(key=lambda g: (-g.delta, g.qualname))
        return GrowthRows(grown if limit is None else grown[:limit])


def diff(before: ObjectCensus, after: ObjectCensus) -> list:
    """Every type whose count changed between two censuses, as :class:`Growth`
    rows (``delta`` may be negative), largest change first."""
    rows = []
    for qualname in set(before.types) | set(after.types):
        b = before.types.get(qualname)
        a = after.types.get(qualname)
        count, size = (a.count, a.bytes) if a else (0, 0)
        old_count, old_bytes = (b.count, b.bytes) if b else (0, 0)
        if count != old_count:
            name = (a or b).name
            rows.append(Growth(name, qualname, count, count - old_count,
                               size, size - old_bytes))
    rows.sort(key=lambda g: (-abs(g.delta), g.qualname))
    return rows
