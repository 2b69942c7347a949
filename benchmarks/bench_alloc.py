"""The allocation tracker (exact, sampled), the counting hook and tracemalloc.

Targets (issue 4): exact mode with depth-16 stacks at most 2x, sampled mode
at most 1.1x, on every workload.  tracemalloc rows are for comparison.
Run ``python -m benchmarks.bench_alloc`` for the memory comparison
(tracker memory against tracemalloc.get_tracemalloc_memory()).
"""

from __future__ import annotations

import contextlib
import sys
import tracemalloc

from benchmarks.harness import Tool
from benchmarks.workloads import WORKLOADS
from pymemtrace import _native


@contextlib.contextmanager
def tracker(mode, depth=16, sample_bytes=512 * 1024):
    _native.alloc_start(mode=mode, depth=depth, sample_bytes=sample_bytes)
    try:
        yield
    finally:
        _native.alloc_stop()


@contextlib.contextmanager
def counting():
    _native.alloc_counting_start()
    try:
        yield
    finally:
        _native.alloc_counting_stop()


@contextlib.contextmanager
def with_tracemalloc(frames):
    tracemalloc.start(frames)
    try:
        yield
    finally:
        tracemalloc.stop()


TOOLS = [
    Tool("alloc exact depth 16", lambda: tracker("exact", 16), target=2.0),
    Tool("alloc exact depth 1", lambda: tracker("exact", 1)),
    Tool("alloc sampled 512KiB", lambda: tracker("sampled"), target=1.1),
    Tool("alloc counting only", counting),
    Tool("tracemalloc 1 frame", lambda: with_tracemalloc(1)),
    Tool("tracemalloc 16 frames", lambda: with_tracemalloc(16)),
]


def memory_comparison(depth=16):
    """Tracker memory vs tracemalloc's, same workload kept alive."""
    rows = []
    for name, run in WORKLOADS.items():

        def keep(run=run):
            # Keep what the workload allocates alive until measured: run it
            # and hold a sizeable live set too.
            kept = [{"i": i, "s": str(i)} for i in range(50_000)]
            run(1)
            return kept

        _native.alloc_start(mode="exact", depth=depth)
        kept = keep()
        ours = _native.alloc_stats()["memory"]
        _native.alloc_stop()
        del kept
        _native.alloc_start(mode="sampled", depth=depth)
        kept = keep()
        sampled = _native.alloc_stats()["memory"]
        _native.alloc_stop()
        del kept
        tracemalloc.start(depth)
        kept = keep()
        theirs = tracemalloc.get_tracemalloc_memory()
        tracemalloc.stop()
        del kept
        rows.append((name, ours, sampled, theirs))
    print(
        f"| workload | exact KiB | sampled KiB | tracemalloc({depth}) KiB | exact/tracemalloc |"
    )
    print("|---|---|---|---|---|")
    for name, ours, sampled, theirs in rows:
        print(
            f"| {name} | {ours // 1024} | {sampled // 1024} | {theirs // 1024} | {ours / theirs:.2f} |"
        )


if __name__ == "__main__":
    memory_comparison(int(sys.argv[1]) if len(sys.argv) > 1 else 16)
