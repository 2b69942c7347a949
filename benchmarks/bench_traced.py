"""Cost of seeing PyTraceMalloc_Track/Untrack (alloc_traced.c, core/gotpatch_linux.c).

Nothing is added to any allocation path: the costs are the GOT scan at
``alloc_start``/``alloc_stop`` and the wrapper around each Track/Untrack
call.  Run ``python -m benchmarks.bench_traced`` (after ``make build-V``):
it prints microseconds per start+stop cycle and nanoseconds per
``traced_alloc(64)`` + ``traced_free`` of the test fixture (malloc, Track,
Untrack, free: what numpy does per data buffer) with the tracker off, exact
and sampled.  Compare a build without this feature for the baseline of the
cycle (about 7 us here).  No harness TOOLS: the numbers are absolute.
"""
import os
import statistics
import sys
import time

from pymemtrace import _native

TOOLS = []


def _fixture():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from fixtures.build import build_fixture

    sys.path.insert(0, str(build_fixture("leaky_ext")))
    import leaky_ext

    return leaky_ext


def cycle_us(n=2000, rounds=5):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            _native.alloc_start(mode="exact")
            _native.alloc_stop()
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def track_ns(ext, n=100_000, rounds=5):
    alloc, free = ext.traced_alloc, ext.traced_free
    results = {"off": [], "exact": [], "sampled": []}
    for _ in range(rounds):
        for mode in results:
            if mode != "off":
                _native.alloc_start(mode=mode)
            start = time.perf_counter()
            for _ in range(n):
                free(alloc(64))
            results[mode].append((time.perf_counter() - start) / n * 1e9)
            if mode != "off":
                _native.alloc_stop()
    return {mode: statistics.median(v) for mode, v in results.items()}


def main():
    ext = _fixture()
    _native.alloc_start(mode="exact")
    slots = _native.alloc_stats()["got_slots"]
    _native.alloc_stop()
    print(f"alloc_start+alloc_stop: {cycle_us():.1f} us per cycle ({slots} GOT slots patched)")
    for mode, ns in track_ns(ext).items():
        print(f"traced_alloc(64)+traced_free, tracker {mode}: {ns:.0f} ns")


if __name__ == "__main__":
    main()
