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


SCALE = 20

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


def cpu_ratios(rounds=9, scale=SCALE):
    """CPU time of the whole process (all threads, time.process_time) with
    the tool over without it: steadier than wall time on a busy machine,
    and it counts the sampler's and the logging thread's own work."""
    import gc
    import statistics
    import time

    from benchmarks.workloads import WORKLOADS

    rows = []
    for tool in TOOLS:
        for name, run in WORKLOADS.items():
            bare, tooled = [], []

            def one(wrapped):
                gc.collect()
                start = time.process_time()
                if wrapped:
                    with tool.wrap():
                        run(scale)
                else:
                    run(scale)
                return time.process_time() - start

            one(False)
            one(True)
            for i in range(rounds):
                pair = (one(False), one(True)) if i % 2 == 0 else tuple(reversed((one(True), one(False))))
                bare.append(pair[0])
                tooled.append(pair[1])
            rows.append((tool.name, name, statistics.median(bare), statistics.median(tooled)))
    return rows


if __name__ == "__main__":
    print("| tool | workload | bare CPU s | tooled CPU s | CPU ratio |")
    print("|---|---|---|---|---|")
    for tool, workload, bare, tooled in cpu_ratios():
        print(f"| {tool} | {workload} | {bare:.4f} | {tooled:.4f} | {tooled / bare:.3f} |")
