"""objects.census() on a heap of one million live objects, against
objgraph's ``typestats`` on the same heap, in one run (issue 10: a census
of a million objects in at most 0.5 s).

    PYTHONPATH=src python benchmarks/bench_objects.py [--objects N] [--rounds R]

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


if __name__ == "__main__":
    sys.exit(main())
