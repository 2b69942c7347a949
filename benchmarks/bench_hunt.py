"""A hunt of a 1 ms callable with the default settings (issue 11: at most
10 s, culprit naming included), for a leaking callable (sites are named)
and its non-leaking twin, on a small heap and with a heap of 200 000 live
objects (the censuses and gc collections scale with the heap).

    PYTHONPATH=src python benchmarks/bench_hunt.py [--rounds R] [--ms M]

Prints the wall time of each hunt (median of R rounds) and its verdict.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import pymemtrace  # noqa: E402

#: discovered by benchmarks.harness; this benchmark runs on its own
TOOLS: list = []

_KEPT: list = []


def busy(seconds: float):
    """A callable that computes for about ``seconds`` (no sleeping: a
    sleeping callable would leave the hunt's own work unmeasured)."""
    n = 1000
    while True:
        t0 = time.perf_counter()
        sum(i * i for i in range(n))
        if time.perf_counter() - t0 >= seconds:
            break
        n *= 2
    n = int(n * seconds / (time.perf_counter() - t0))

    def work():
        return sum(i * i for i in range(n))

    return work


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ms", type=float, default=1.0, help="duration of one call")
    args = parser.parse_args(argv)
    work = busy(args.ms / 1000)

    def leaky():
        work()
        _KEPT.append([0] * 8)

    def twin():
        work()
        [0] * 8  # noqa: B018 - made and dropped

    print(f"# CPython {sys.version.split()[0]}, a {args.ms:g} ms callable, "
          f"default settings, median of {args.rounds} rounds")
    big = []
    for heap in ("small heap", "200k objects"):
        if heap == "200k objects":
            big = [[i] for i in range(100_000)]
        for name, func in (("leak", leaky), ("no leak", twin)):
            times, verdicts = [], set()
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                result = pymemtrace.hunt(func, progress=False)
                times.append(time.perf_counter() - t0)
                verdicts.add(result.verdict)
            print(f"{heap:>13} {name:8} {statistics.median(times):6.2f} s  "
                  f"(max {max(times):.2f})  verdicts: {', '.join(sorted(verdicts))}")
    del big
    return 0


if __name__ == "__main__":
    sys.exit(main())
