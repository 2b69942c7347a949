"""ReferenceTracing of whichever pymemtrace this interpreter imports, on the
shared workloads: run it with our environment and with one where the PyPI
release (the seed system) is installed, and compare the ratios.

    .venv/3.13.0/bin/python benchmarks/reftrace_side_by_side.py
    /path/to/seed-venv/bin/python benchmarks/reftrace_side_by_side.py

It does not import benchmarks.harness's discovery (the seed has no
_native module); it uses the same alternating-median method.
"""
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root, for benchmarks.workloads

from benchmarks.workloads import WORKLOADS  # noqa: E402
from pymemtrace import cPyMemTrace  # noqa: E402

try:
    import pymemtrace._native  # noqa: F401

    OURS, NO_GC = True, -1  # as the seed: -1 means no collection
except ImportError:
    OURS, NO_GC = False, -1  # the seed: -1 means no collection


def timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main(rounds=7):
    folder = tempfile.mkdtemp(prefix="pmt_side_")
    path = os.path.join(folder, "rt.log")
    label = "pymemtrace (this tree)" if OURS else "pymemtrace (PyPI seed)"
    print(f"# {label}, CPython {sys.version.split()[0]}, {rounds} rounds, median ratios")
    print("| setting | workload | bare s | tooled s | ratio | log MB |")
    print("|---|---|---|---|---|---|")
    for setting, kwargs in (("default", {}), ("include_builtins=True", {"include_builtins": True})):
        for name, run in WORKLOADS.items():
            def tooled(run=run, kwargs=kwargs):
                with cPyMemTrace.ReferenceTracing(filepath=path, gc_collect_on_exit=NO_GC, **kwargs):
                    run(1)

            run(1)
            tooled()
            bare, tool = [], []
            for i in range(rounds):
                def bare_run(run=run):
                    run(1)

                order = (tooled, bare_run) if i % 2 else (bare_run, tooled)
                for func in order:
                    (tool if func is tooled else bare).append(timed(func))
            size = os.path.getsize(path) / 1e6
            b, t = statistics.median(bare), statistics.median(tool)
            print(f"| {setting} | {name} | {b:.4f} | {t:.4f} | {t / b:.2f} | {size:.1f} |", flush=True)
    os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
