"""pymemtrace.process: cost of logging this process every 10 ms.

The issue's target: ``log_process(interval=0.01)`` adds at most 2% to the
wall time of the allocation-heavy workload (ratio <= 1.02).  For scale, a
seed-style thread (psutil and json in a Python thread at every sample) is
measured on the same workloads.

The workloads run at scale 20 (about 0.05-1 s each here): a sampler with
a 10 ms period must be measured over many periods, not over its start and
stop (about 0.2 ms together).
"""
import contextlib
import json
import os
import tempfile
import threading

import psutil

from benchmarks.harness import Tool
from pymemtrace import process

_TMP = tempfile.mkdtemp(prefix="pmt-bench-process-")


def _log_process():
    return process.log_process(interval=0.01)


def _log_process_to_file():
    return process.log_process(interval=0.01, path=os.path.join(_TMP, "bench.jsonl"))


@contextlib.contextmanager
def _psutil_thread(interval=0.01):
    """What the seed does: psutil + json from a Python thread per sample."""
    proc = psutil.Process()
    stop = threading.Event()
    sink = []

    def run():
        while not stop.wait(interval):
            sink.append(json.dumps({"memory_info": proc.memory_info()._asdict(),
                                    "cpu_times": proc.cpu_times()._asdict()}))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


SCALE = None  # the harness-wide rule: each bare run >= 0.1 s (10 sampling periods)

TOOLS = [
    # A/A: the same harness with a tool that does nothing shows the noise
    # of the machine; ratios of the real tools within that band are noise.
    Tool(name="nothing, interval=0.01 A/A noise check", wrap=contextlib.nullcontext,
         scale=SCALE),
    Tool(name="log_process(interval=0.01)", wrap=_log_process, target=1.02, scale=SCALE),
    Tool(name="log_process(interval=0.01, path=jsonl)", wrap=_log_process_to_file,
         scale=SCALE),
    Tool(name="psutil thread, seed-style (interval=0.01)", wrap=_psutil_thread,
         scale=SCALE),
]


def detailed_ratios(rounds=15, scale=SCALE, workloads=None):
    """Four ratios per tool and workload, from alternating runs.

    On a busy shared machine wall time moves by 10% or more between two
    identical runs (see the A/A row), so besides the median wall ratio of
    the harness this reports: the ratio of the fastest runs (noise only
    ever adds time), the CPU time of the workload's own thread
    (time.thread_time: what our threads take away from it through the GIL,
    caches and wake-ups) and the CPU time of the whole process
    (time.process_time: that plus the sampler's and the logging thread's
    own work).
    """
    import gc
    import statistics
    import time

    from benchmarks.harness import scale_for
    from benchmarks.workloads import WORKLOADS

    def one(tool, run, wrapped, scale):
        gc.collect()
        wall, main, proc = time.perf_counter(), time.thread_time(), time.process_time()
        if wrapped:
            with tool.wrap():
                run(scale)
        else:
            run(scale)
        return (time.perf_counter() - wall, time.thread_time() - main,
                time.process_time() - proc)

    rows = []
    for tool in TOOLS:
        for name, run in WORKLOADS.items():
            if workloads and name not in workloads:
                continue
            bare, tooled = [], []
            n = scale if scale is not None else scale_for(name)
            one(tool, run, False, n)
            one(tool, run, True, n)
            for i in range(rounds):
                if i % 2 == 0:
                    bare.append(one(tool, run, False, n))
                    tooled.append(one(tool, run, True, n))
                else:
                    tooled.append(one(tool, run, True, n))
                    bare.append(one(tool, run, False, n))

            def ratio(pick, k, tooled=tooled, bare=bare):
                return pick(t[k] for t in tooled) / pick(b[k] for b in bare)

            rows.append((tool.name, name, ratio(statistics.median, 0), ratio(min, 0),
                         ratio(statistics.median, 1), ratio(statistics.median, 2)))
    return rows


if __name__ == "__main__":
    import sys

    only = sys.argv[1:] or None
    print("| tool | workload | wall (median) | wall (min) | workload thread CPU | process CPU |")
    print("|---|---|---|---|---|---|")
    for tool, workload, med, low, main, proc in detailed_ratios(workloads=only):
        print(f"| {tool} | {workload} | {med:.3f} | {low:.3f} | {main:.3f} | {proc:.3f} |")
