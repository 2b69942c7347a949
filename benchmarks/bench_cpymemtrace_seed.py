"""Run the workloads under the PyPI pymemtrace (the seed system).

Not a harness module (no TOOLS): it runs inside the seed's own virtual
environment, build/seedenv, where ``pymemtrace`` is the PyPI release, and
prints a table of ratios like the harness does (median of alternating
bare/tooled rounds).  Invoked by ``python -m benchmarks.bench_cpymemtrace``.

    build/seedenv/bin/python benchmarks/bench_cpymemtrace_seed.py [--rounds N]

Making build/seedenv: ``pip install pymemtrace`` (0.6.3, an sdist) fails
to compile with GCC 12+: its setup.py adds -Werror and <datetime.h> leaves
an unused static variable.  Appending -Wno-error through a compiler wrapper
makes it build:

    python -m venv build/seedenv
    printf '#!/bin/sh\nexec gcc "$@" -Wno-error\n' > build/gccwrap
    chmod +x build/gccwrap
    CC=$PWD/build/gccwrap LDSHARED="$PWD/build/gccwrap -shared" \
        build/seedenv/bin/pip install --no-cache-dir pymemtrace==0.6.3
"""
import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.harness import scale_for  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402

from pymemtrace import cPyMemTrace  # noqa: E402  (the seed's, in its venv)

CONFIGS = [
    ("seed Profile()", cPyMemTrace.Profile, {}),
    ("seed Trace()", cPyMemTrace.Trace, {}),
    ("seed Profile(d_rss_trigger=0)", cPyMemTrace.Profile, {"d_rss_trigger": 0}),
    ("seed Trace(d_rss_trigger=0)", cPyMemTrace.Trace, {"d_rss_trigger": 0}),
]


def timed(func):
    gc.collect()
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    log_dir = tempfile.mkdtemp(prefix="pmt_seed_bench_")
    counter = [0]
    rows = [("tool", "workload", "bare s", "tooled s", "ratio")]
    try:
        for label, cls, kwargs in CONFIGS:
            for name, run_scaled in WORKLOADS.items():
                # The harness-wide rule: the bare run takes >= 0.1 s.
                scale = scale_for(name)

                def run(_unused, run_scaled=run_scaled, scale=scale):
                    return run_scaled(scale)

                def tooled(cls=cls, kwargs=kwargs):
                    counter[0] += 1
                    path = os.path.join(log_dir, f"{counter[0]}.log")
                    with cls(filepath=path, **kwargs):
                        run(1)

                def delete_logs():
                    # Outside the timing: a log of every event is ~1 GB.
                    for entry in os.listdir(log_dir):
                        os.unlink(os.path.join(log_dir, entry))

                run(1)
                tooled()
                delete_logs()
                bare, tool = [], []
                for i in range(args.rounds):
                    if i % 2:
                        tool.append(timed(tooled))
                        delete_logs()
                        bare.append(timed(lambda: run(1)))
                    else:
                        bare.append(timed(lambda: run(1)))
                        tool.append(timed(tooled))
                        delete_logs()
                b, t = statistics.median(bare), statistics.median(tool)
                rows.append((label, f"{name} x{scale}", f"{b:.4f}", f"{t:.4f}", f"{t / b:.3f}"))
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
