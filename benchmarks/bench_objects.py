"""objects.census() on a heap of one million live objects, against
objgraph's ``typestats`` on the same heap, in one run (issue 10: a census
of a million objects in at most 0.5 s); then one referrer chain in that
heap (objects.find_backref_chain against objgraph's find_backref_chain;
target 1 s), the holders of a thousand objects, and the tool's memory
after repeated calls.

    PYTHONPATH=src python benchmarks/bench_objects.py [--objects N] [--rounds R]
    PYTHONPATH=src python benchmarks/bench_objects.py chains [--objects N] [--rounds R]

objgraph is optional: without it the comparison is skipped with a message.
Note what each counts: typestats counts the objects the gc tracks; the
census counts those and the untracked ones they reach (the str, int,
bytes and float below), and sizes them all.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from pymemtrace import objects  # noqa: E402

#: discovered by benchmarks.harness; this benchmark runs on its own
TOOLS: list = []


class Record:
    __slots__ = ("name", "value", "tags")

    def __init__(self, name, value, tags):
        self.name = name
        self.value = value
        self.tags = tags


def build_heap(total: int) -> list:
    """About ``total`` live objects: per record, one Record, one str, one
    int, one float, one tuple (untracked once collected) and one list."""
    heap = []
    for i in range(total // 6):
        heap.append(Record(f"record-{i}", 10**6 + i, [float(i), (i, "x")]))
    return heap


def timed(func, rounds: int) -> tuple:
    times = []
    result = None
    for _ in range(rounds):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    heap = build_heap(args.objects)
    gc.collect()
    seconds, census = timed(objects.census, args.rounds)
    print(f"Python {sys.version.split()[0]}: {census.total_count:,} live objects "
          f"({len(heap):,} records built), {census.total_bytes / 2**20:.1f} MiB by sys.getsizeof")
    print(f"objects.census()      {seconds * 1000:8.1f} ms  (target 500 ms); "
          f"its own memory {census.memory / 2**20:.1f} MiB, freed on return")
    try:
        import objgraph
    except ImportError:
        print("objgraph.typestats()  skipped: objgraph is not installed (pip install objgraph)")
        return 0
    seconds_og, stats = timed(objgraph.typestats, args.rounds)
    print(f"objgraph.typestats()  {seconds_og * 1000:8.1f} ms  "
          f"({sum(stats.values()):,} gc-tracked objects, no sizes)")
    print(f"ratio census / typestats: {seconds / seconds_og:.2f}")
    del heap
    return 0


HEAP: list = []


class Orphan:
    """The object only C code holds."""


def bench_chains(rounds: int, objgraph) -> None:
    """Chains in the heap of HEAP (a module global, so the chain starts
    at this module): the last record's tuple (the search reaches it
    last), an object only C code holds (the whole walk: search, count of
    referrers, search again), holders of a thousand records."""
    target = HEAP[-1].tags[1]
    seconds, chain = timed(lambda: objects.find_backref_chain(target), rounds)
    print(f"objects.find_backref_chain  {seconds * 1000:8.1f} ms  (target 1000 ms): {chain}")
    # an object with one reference that only "C code" holds (taken with
    # ctypes, never given back): no module or frame reaches it
    import ctypes
    import weakref

    orphan = Orphan()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(orphan))
    orphan = weakref.ref(orphan)
    seconds_c, chain = timed(lambda: objects.find_backref_chain(orphan()), rounds)
    print(f"objects.find_backref_chain  {seconds_c * 1000:8.1f} ms  for an object no module "
          f"reaches (the whole walk): {chain}")
    some = HEAP[-1000:]
    seconds_h, rows = timed(lambda: objects.holders(some), rounds)
    print(f"objects.holders(1000)       {seconds_h * 1000:8.1f} ms: {rows[0]}")
    try:
        import resource
    except ImportError:
        resource = None
    import tracemalloc

    tracemalloc.start()
    objects.find_backref_chain(target)
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(rounds):
        objects.find_backref_chain(target)
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # tracemalloc sees the node array (PyMem_Raw*); the address maps come
    # from malloc (core/ptrmap.c), which it does not see
    print(f"tool memory: node array {peak / 2**20:.1f} MiB at the peak (traced), "
          f"{(now - start) / 1024:+.1f} KiB kept after {rounds} more walks"
          + (f"; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
             if resource else ""))
    if objgraph is None:
        print("objgraph.find_backref_chain skipped: objgraph is not installed")
        return
    import inspect

    # objgraph walks gc.get_referrers, one scan of the gc list per object
    # it expands: few rounds
    og_rounds = max(1, min(rounds, 3))
    seconds_og, og_chain = timed(
        lambda: objgraph.find_backref_chain(target, inspect.ismodule), og_rounds)
    print(f"objgraph.find_backref_chain {seconds_og * 1000:8.1f} ms  (median of {og_rounds}; "
          f"a chain of {len(og_chain)} objects, from {og_chain[0]!r:.60})")
    print(f"ratio objgraph / pymemtrace: {seconds_og / seconds:.1f}")


def main_chains(argv=None) -> int:
    parser = argparse.ArgumentParser(description="referrer chains in a heap of N objects")
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    HEAP.extend(build_heap(args.objects))
    gc.collect()
    print(f"Python {sys.version.split()[0]}: {objects.census().total_count:,} live objects")
    try:
        import objgraph
    except ImportError:
        objgraph = None
    bench_chains(args.rounds, objgraph)
    HEAP.clear()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["chains"]:
        sys.exit(main_chains(sys.argv[2:]))
    sys.exit(main())
