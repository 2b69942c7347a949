"""What piles up: live objects counted and sized by type.

``census()`` counts every live object by type, including the ones the gc
does not track (str, int, bytes, float, tuples of atoms) that tracked
objects refer to, each sized as ``sys.getsizeof`` sizes it; the walking is
in C (``_c/objects.c``).  ``growth()`` prints, like objgraph's
``show_growth``, the types whose count passed their previous peak since the
last call, and returns them.  Neither counts its own bookkeeping: the
peaks, and every census and growth list handed out that is still alive, are left
out of later censuses (with all that exists only because of them).

docs/objects.md has an example.
"""

from __future__ import annotations

import sys
import weakref

from pymemtrace import _native
from pymemtrace.analyses.objects import Growth, Peaks, diff
from pymemtrace.reporters.objects_text import growth_lines
from pymemtrace.snapshots.objects import ObjectCensus, TypeCount

__all__ = ["census", "growth", "reset_growth", "diff", "ObjectCensus", "TypeCount", "Growth"]


class _Bookkeeping:
    """Everything of ours that lives between calls: one root for the census to leave out."""

    __slots__ = ("peaks", "results")

    def __init__(self) -> None:
        self.peaks = Peaks()
        # what census() and growth() handed out, while the caller keeps it
        self.results = weakref.WeakValueDictionary()  # id -> result


_OWN = _Bookkeeping()


def census() -> ObjectCensus:
    """Count and size the live objects by type.

    Every object the gc tracks, and every object it does not track that one
    of those refers to, counted once.  Objects that only C code refers to
    are not reached.  The census and the ones before it that are still
    alive are left out of it.
    """
    rows, memory = _native._census((_OWN, *_OWN.results.values()))
    result = ObjectCensus.from_rows(rows, memory)
    del rows
    _OWN.results[id(result)] = result
    return result


def growth(limit: int | None = 10, file=None) -> list:
    """Print and return the types that grew since the last call, with their peaks.

    A type grew when there are more of it than ever before at a call of
    ``growth()`` (its peak); the line shows its count now and how far it
    passed the peak, as objgraph's ``show_growth`` does, plus the bytes
    that came with it.  The first call reports every type.  ``limit`` is
    the most lines (None: all); ``file`` defaults to ``sys.stdout``.
    Returns the :class:`~pymemtrace.analyses.objects.Growth` rows printed.
    """
    # census() first: a bound method _OWN.peaks.update taken before it
    # would be one more reference to the peaks, and they would no longer
    # exist only because of _OWN.
    now = census()
    rows = _OWN.peaks.update(now, limit)
    del now
    _OWN.results[id(rows)] = rows
    out = sys.stdout if file is None else file
    for line in growth_lines(rows):
        print(line, file=out)
    return rows


def reset_growth() -> None:
    """Forget the peaks: the next ``growth()`` reports every type again."""
    _OWN.peaks = Peaks()
