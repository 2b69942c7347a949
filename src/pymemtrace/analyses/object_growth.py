"""Steady growth per call, from measurements taken at the start, the
middle and the end of a run of calls.

A quantity *grew steadily* when it rose in both halves of the run: a cache
that fills and stops (``functools.lru_cache(maxsize=...)``, ``re``'s
cache), an arena pymalloc keeps, a free list that fills once, all rise in
the first half at most.  Its growth per call is then the rise over the
whole run divided by the calls; otherwise it is 0.

The gc experiment's verdict (:func:`classify_gc`) compares the growth that
stays with ``gc.collect()`` after every call (retained: the gc cannot free
it) with what a collection takes back after a run with the gc disabled
(cyclic garbage: the gc frees it, late).
"""

from __future__ import annotations

from typing import Sequence

from pymemtrace.snapshots.object_growth import (
    CYCLIC,
    NO_GROWTH,
    RETAINED,
    MemoryGrowth,
    ModeGrowth,
    TypeGrowth,
)
from pymemtrace.snapshots.objects import ObjectCensus

#: Below this many bytes per call, growth in the allocators that no object
#: explains is measurement noise (interned names, a key table resized).
UNOWNED_FLOOR = 64
#: The part of the heap growth that may go unexplained before it is called
#: unowned: object sizes follow sys.getsizeof, which leaves out memory an
#: object owns beside itself (3.11 allocates an instance's attribute values
#: apart: about 100 bytes a small object), so only a buffer larger than
#: the objects that came with it is called one.
UNOWNED_SHARE = 0.5
#: What a measurement itself leaves in the allocators (a few hundred bytes
#: on 3.9: the numbers it keeps, a weak reference to the census); a half
#: of the run whose heap rose less is no growth (the types still show a
#: small leak: they count objects).
HEAP_JITTER = 512
#: RSS moves by pages; one page either way is noise.
RSS_JITTER = 4096
#: Below this many bytes per call, growth in a gc mode is no growth.
GC_BYTES_FLOOR = 16
#: Below this many objects per call, likewise.
GC_OBJECTS_FLOOR = 0.5


def steady_per_call(values: Sequence[float], calls: Sequence[int], jitter: float = 0) -> float:
    """Growth per call of a quantity measured before a run and after each
    of its two halves (``values`` = start, middle, end; ``calls`` = the
    calls in each half); 0.0 unless it rose by more than ``jitter`` in both
    halves."""
    start, middle, end = values
    first, second = calls
    if middle - start > jitter and end - middle > jitter and first + second > 0:
        return (end - start) / (first + second)
    return 0.0


def steady_types(censuses: Sequence[ObjectCensus], calls: Sequence[int]) -> list:
    """The types whose count grew in both halves, as :class:`TypeGrowth`
    rows, most objects per call first."""
    c0, c1, c2 = censuses
    rows = []
    for qualname, row in c2.types.items():
        counts = [c.types[qualname].count if qualname in c.types else 0 for c in (c0, c1)]
        per_call = steady_per_call([*counts, row.count], calls)
        if per_call <= 0:
            continue
        sizes = [c.types[qualname].bytes if qualname in c.types else 0 for c in (c0, c1)]
        bytes_per_call = (row.bytes - sizes[0]) / (calls[0] + calls[1])
        rows.append(TypeGrowth(row.name, qualname, per_call, bytes_per_call))
    rows.sort(key=lambda t: (-t.per_call, -t.bytes_per_call, t.qualname))
    return rows


def memory_growth(heap: Sequence[float], rss: Sequence[float], calls: Sequence[int],
                  object_bytes: Sequence[float]) -> MemoryGrowth:
    """Bytes per call that stayed in the allocators and in RSS, and the
    part of the allocators' growth that the live objects' growth (their
    sizes, all types: a list that only grows its slots counts) does not
    explain."""
    heap_per_call = steady_per_call(heap, calls, HEAP_JITTER)
    rss_per_call = steady_per_call(rss, calls, RSS_JITTER)
    objects_per_call = max(object_bytes[2] - object_bytes[0], 0.0) / (calls[0] + calls[1])
    unowned = heap_per_call - objects_per_call
    if unowned < max(UNOWNED_FLOOR, UNOWNED_SHARE * heap_per_call):
        unowned = 0.0
    return MemoryGrowth(heap_per_call, rss_per_call, unowned)


def outside_allocators(memory: MemoryGrowth) -> float:
    """Bytes per call RSS grew beyond Python's allocators (memory C code
    took from malloc or mmap), 0.0 when RSS does not say more than the heap."""
    beyond = memory.rss_bytes_per_call - max(memory.heap_bytes_per_call, 0.0)
    # RSS moves by pages; less than a page a call is not worth a sentence.
    return beyond if beyond >= 4096 else 0.0


def mode_growth(mode: str, heap: Sequence[float], objects: Sequence[float],
                calls: Sequence[int], collected_heap: float,
                collected_objects: float) -> ModeGrowth:
    """One gc mode's steady growth per call, and what the collection at its
    end took back per call (``collected_*``: the values after it)."""
    total = calls[0] + calls[1]
    return ModeGrowth(
        mode,
        steady_per_call(heap, calls),
        steady_per_call(objects, calls),
        max(heap[2] - collected_heap, 0.0) / total if total else 0.0,
        max(objects[2] - collected_objects, 0.0) / total if total else 0.0,
    )


def _grows(bytes_per_call: float, objects_per_call: float) -> bool:
    return bytes_per_call >= GC_BYTES_FLOOR or objects_per_call >= GC_OBJECTS_FLOOR


def classify_gc(modes: Sequence[ModeGrowth]) -> str:
    """The verdict (RETAINED, CYCLIC or NO_GROWTH) from the modes
    "disabled" and "collect" (gc.collect() after every call)."""
    by_name = {m.mode: m for m in modes}
    collect = by_name["collect"]
    disabled = by_name["disabled"]
    if _grows(collect.bytes_per_call, collect.objects_per_call):
        return RETAINED
    if _grows(disabled.collected_bytes_per_call, disabled.collected_objects_per_call):
        return CYCLIC
    return NO_GROWTH


def also_cyclic(modes: Sequence[ModeGrowth]) -> bool:
    """Whether the collection after the run with the gc disabled took back
    growth (cyclic garbage), whatever else stayed."""
    disabled = {m.mode: m for m in modes}["disabled"]
    return _grows(disabled.collected_bytes_per_call, disabled.collected_objects_per_call)
