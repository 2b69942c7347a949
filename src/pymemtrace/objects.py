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
from pymemtrace.snapshots.object_growth import GcExperiment, ObjectGrowthReport
from pymemtrace.snapshots.objects import ObjectCensus, TypeCount

__all__ = ["census", "growth", "reset_growth", "diff", "call_growth", "gc_experiment",
           "ObjectCensus", "TypeCount", "Growth", "ObjectGrowthReport", "GcExperiment"]


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
    return _census_leaving_out(())


def _census_leaving_out(extra: tuple) -> ObjectCensus:
    """census(), with the objects in ``extra`` (bookkeeping of a caller in
    this package) left out too."""
    rows, memory = _native._census((_OWN, *_OWN.results.values(), *extra))
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


# -- what calling a function leaves behind ---------------------------------

#: Growing types whose holders call_growth() looks for.
HOLDER_TYPES = 3


def _call(func, args, kwargs, n: int, after=None) -> None:
    for _ in range(n):
        func(*args, **kwargs)
        if after is not None:
            after()


def _halves(iterations: int) -> tuple:
    if iterations < 2:
        raise ValueError(f"iterations must be at least 2, not {iterations!r}")
    first = iterations // 2
    return first, iterations - first


def _heap_bytes() -> int:
    from pymemtrace import allocations

    return allocations.counters()["bytes"]


def call_growth(func, *args, iterations: int = 20, warmup: int = 3, **kwargs) -> ObjectGrowthReport:
    """Call ``func(*args, **kwargs)`` ``warmup`` times, then ``iterations``
    times, and report what each call leaves behind.

    Live objects are counted (:func:`census`) before the calls, after half
    of them and at the end, each time after ``gc.collect()``; a type, the
    bytes in Python's allocators or RSS grew only if they rose in both
    halves (a cache that fills and stops is not growth).  The report has the
    growing types per call, the holders of their new instances (the
    referrer chains), the reference-count leaks, and the bytes no object
    owns.  ``ObjectGrowthReport.to_dict()`` is ``pymemtrace objects
    --format json``.
    """
    from pymemtrace import allocations
    from pymemtrace.analyses.object_growth import memory_growth, steady_types

    calls = _halves(iterations)
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, not {warmup!r}")
    target = getattr(func, "__qualname__", None) or repr(func)
    with allocations.counting():
        _call(func, args, kwargs, warmup)
        meter = _Meter()
        meter.measure()
        _call(func, args, kwargs, calls[0])
        meter.measure()
        # Which instances of the types that grew in the first half exist
        # now: the new ones at the end are what the second half kept.
        before = meter.own(_instances_of_growing, meter.censuses[0], meter.censuses[1])
        refs_before = meter.own(_external_references)
        _call(func, args, kwargs, calls[1])
        meter.measure(before, refs_before)
        refs_after = _external_references()
    censuses, heap, rss = meter.censuses, meter.heap, meter.rss
    types = steady_types(censuses, calls)
    memory = memory_growth(heap, rss, calls, types)
    holders = _holders_of_new(types, before)
    refcount = _refcount_growth(refs_before, refs_after, calls[1])
    return ObjectGrowthReport(target, iterations, warmup, types, memory, holders, refcount)


class _Meter:
    """Censuses, heap bytes and RSS at the points of a run of calls, each
    less what the measuring itself keeps (the censuses taken so far, their
    lists, the instance ids): a census is measured before it is taken."""

    def __init__(self) -> None:
        self.censuses: list = []
        self.heap: list = []
        self.rss: list = []
        self.own_heap = 0
        self.own_rss = 0

    def own(self, func, *args):
        """func(*args), its memory counted as ours (after a collection:
        the cyclic garbage it leaves is not)."""
        import gc

        heap, rss = _heap_bytes(), _native.rss()
        try:
            return func(*args)
        finally:
            gc.collect()
            _native._release_free_memory()
            self.own_heap += _heap_bytes() - heap
            self.own_rss += _native.rss() - rss

    def measure(self, *extra) -> None:
        import gc

        gc.collect()
        # Pages the C allocator holds free would make RSS lag the heap.
        _native._release_free_memory()
        self.heap.append(_heap_bytes() - self.own_heap)
        self.rss.append(_native.rss() - self.own_rss)
        self.censuses.append(self.own(
            _census_leaving_out, (self, self.censuses, self.heap, self.rss, *extra)))


def _instances_of_growing(first: ObjectCensus, second: ObjectCensus) -> tuple:
    """(qualnames of the types whose count rose from first to second, the
    ids of their instances the gc lists now)."""
    import gc

    from pymemtrace.snapshots.objects import type_names

    grew = frozenset(q for q, row in second.types.items()
                     if row.count > (first.types[q].count if q in first.types else 0))
    ids = set()
    names: dict = {}
    for op in gc.get_objects():
        tp = type(op)
        qualname = names.get(tp)
        if qualname is None:
            qualname = names[tp] = type_names(tp)[1]
        if qualname in grew:
            ids.add(id(op))
    return grew, ids


def _holders_of_new(types: list, before: tuple) -> list:
    """The holders of the instances of the top growing types that did not
    exist at the middle of the run (types the gc tracks: the instances are
    found in its list)."""
    import gc

    from pymemtrace.snapshots.objects import type_names

    grew, ids = before
    found = []
    for row in [t for t in types if t.qualname in grew][:HOLDER_TYPES]:
        new = [op for op in gc.get_objects()
               if type_names(type(op))[1] == row.qualname and id(op) not in ids]
        if new:
            found.extend(holders(new, limit=2))
        del new
    return found


def _external_references():
    return external_references()


def _refcount_growth(before, after, calls: int) -> list:
    return before.grown(after, calls)


def gc_experiment(func, *args, iterations: int = 20, warmup: int = 3, **kwargs) -> GcExperiment:
    """Run ``func(*args, **kwargs)`` ``iterations`` times in each of three
    modes (the gc enabled, disabled, and ``gc.collect()`` after every call)
    and say whether what piles up is retained (it stays even when the gc
    collects after every call) or cyclic garbage collected late (the gc
    frees it).  Bytes are those in Python's allocators; objects are the
    ones the gc tracks.  The gc's state is restored afterwards.
    """
    import gc

    from pymemtrace import allocations
    from pymemtrace.analyses.object_growth import classify_gc, mode_growth
    from pymemtrace.reporters.object_growth_text import gc_sentence

    calls = _halves(iterations)
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, not {warmup!r}")
    was_enabled = gc.isenabled()
    modes = []
    with allocations.counting():
        _call(func, args, kwargs, warmup)
        try:
            for mode in ("enabled", "disabled", "collect"):
                gc.collect()
                if mode == "disabled":
                    gc.disable()
                else:
                    gc.enable()
                after = gc.collect if mode == "collect" else None
                heap, count = [_heap_bytes()], [len(gc.get_objects())]
                for n in calls:
                    _call(func, args, kwargs, n, after)
                    heap.append(_heap_bytes())
                    count.append(len(gc.get_objects()))
                gc.collect()
                modes.append(mode_growth(mode, heap, count, calls, _heap_bytes(),
                                         len(gc.get_objects())))
        finally:
            if was_enabled:
                gc.enable()
            else:
                gc.disable()
    verdict = classify_gc(modes)
    return GcExperiment(iterations, modes, verdict, gc_sentence(verdict, modes))
