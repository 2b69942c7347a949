"""pymemtrace.process: cost of logging this process every 10 ms.

The issue's target: ``log_process(interval=0.01)`` adds at most 2% to the
wall time of the allocation-heavy workload (ratio <= 1.02).  For scale, a
seed-style thread (psutil and json in a Python thread at every sample) is
measured on the same workloads.

The workloads run at scale 10 (about 0.1-0.5 s each here): a sampler with
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


SCALE = 10

TOOLS = [
    Tool(name="log_process(interval=0.01)", wrap=_log_process, target=1.02, scale=SCALE),
    Tool(name="log_process(interval=0.01, path=jsonl)", wrap=_log_process_to_file,
         scale=SCALE),
    Tool(name="psutil thread, seed-style (interval=0.01)", wrap=_psutil_thread,
         scale=SCALE),
]
