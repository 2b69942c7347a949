"""`pymemtrace report` of a 200 MB log in bounded memory (issue 9, point 4),
under ``make test-asan`` too.

Each kind of input is written once per module, by a child without ASan
(a 200 MB Profile log; a ReferenceTracing log and an allocation snapshot
of 30 MB, to keep the ASan runs of the fault suite short: the same bound
applies to them), then reported in a child process that measures its own
memory:

- under ASan (``make test-asan``: PYTHONMALLOC=malloc, libasan preloaded),
  the peak RSS measures ASan (its quarantine keeps freed blocks, shadow
  memory), so the child samples the bytes live in ASan's allocator
  (``__sanitizer_get_current_allocated_bytes``: every Python allocation,
  redzones and quarantine left out) from a thread while the report runs.
  A sampled peak can miss a spike shorter than a sampling period; it
  cannot miss a file held in memory while it is read and analysed;
- otherwise, the peak RSS of the child (``VmHWM``, exact).

The bound: the report's peak exceeds that of a tiny input of the same
kind by less than half the file.  A reader that kept the file (its
text, or its lines or records in a list) holds more than the file's size.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest

from synthetic_logs import LINES, SNAP_FILE, write_reftrace_log, write_snapshot
from synthetic_profile_log import write_log as write_profile_log

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM in /proc")

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

# argv: RESULT REPORT-ARGS...  Runs the CLI's main in this process and
# writes {"status", "peak"} to RESULT: under ASan the highest live bytes
# sampled (minus those live before the report), else VmHWM in bytes.
MEASURED_REPORT = """\
import ctypes, json, sys, threading

result, argv = sys.argv[1], sys.argv[2:]
try:
    live = ctypes.CDLL(None).__sanitizer_get_current_allocated_bytes
except AttributeError:
    live = None
from pymemtrace.cli import main

if live is not None:
    live.restype, live.argtypes = ctypes.c_size_t, []
    done = threading.Event()
    start = peak = live()

    def sample():
        global peak
        while not done.wait(0.001):
            peak = max(peak, live())

    sampler = threading.Thread(target=sample)
    sampler.start()
status = main(argv)
if live is not None:
    done.set()
    sampler.join()
    peak = max(peak, live()) - start
else:
    with open("/proc/self/status") as stream:
        peak = next(int(l.split()[1]) * 1024 for l in stream if l.startswith("VmHWM:"))
with open(result, "w") as stream:
    json.dump({"status": status, "peak": peak}, stream)
"""


def measured_report(path, out, *options):
    """The peak (bytes) of `pymemtrace report PATH OPTIONS`, stdout to out."""
    result = str(out) + ".peak.json"
    with open(out, "w") as stdout:
        run = subprocess.run([sys.executable, "-c", MEASURED_REPORT, result, "report", str(path), *options],
                             stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=1200)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    with open(result, encoding="utf-8") as stream:
        doc = json.load(stream)
    assert doc["status"] == 0, run.stderr
    return doc["peak"]


# ------------------------------------------------------- what a report finds


def check_profile(out, expected):
    with open(out, encoding="utf-8") as stream:
        doc = json.load(stream)
    assert doc["records"] == expected["records"] and doc["complete"]
    assert (doc["first"], doc["last"], doc["peak"]) == (expected["first"], expected["last"], expected["peak"])
    assert {(e["file"], e["line"], e["function"]): e["bytes"] for e in doc["retained"]} == expected["retained"]
    assert {(e["file"], e["line"], e["function"]): e["bytes"] for e in doc["churn"]} == expected["churn"]
    assert doc["released"] == 0
    assert len(doc["timeline"]) <= 2 * 2048 + 2


def check_reftrace(out, expected):
    with open(out, encoding="utf-8") as stream:
        doc = json.load(stream)
    assert (doc["new"], doc["del"], doc["complete"]) == (expected["new"], expected["del"], True)
    grown = {t["type"]: t["live"] for t in doc["growing_types"]}
    assert grown == {"app.Leak": expected["leaked"]}
    top = doc["survivor_sites"][0]
    assert (top["type"], top["line"], top["alive"]) == ("app.Leak", 30, expected["leaked"])


def check_snapshot_text(out, expected):
    from pymemtrace.reporters._units import format_bytes

    with open(out, encoding="utf-8") as stream:
        text = stream.read()
    assert f"live at the snapshot: {format_bytes(expected['bytes'])} in {LINES} site(s)" in text
    line, nbytes = max(expected["by_line"].items(), key=lambda kv: (kv[1], -kv[0]))
    assert f"{format_bytes(nbytes):>10}" in text and f"{SNAP_FILE}:{line} (handle)" in text


def check_snapshot_json(out, expected):
    with open(out, encoding="utf-8") as stream:
        doc = json.load(stream)
    assert doc["schema"] == 1 and doc["bytes"] == expected["bytes"]
    assert len(doc["sites"]) == expected["sites"] and doc["peak_sites"] == []
    assert sum(s["bytes"] for s in doc["sites"]) == expected["bytes"]


# kind: (writer, size in bytes, report options, check)
KINDS = {
    "profile": (write_profile_log, 200_000_000, ["--format", "json"], check_profile),
    "reftrace": (write_reftrace_log, 30_000_000, ["--format", "json"], check_reftrace),
    "snapshot-json": (write_snapshot, 30_000_000, ["--format", "json"], check_snapshot_json),
    "snapshot-text": (write_snapshot, 30_000_000, [], check_snapshot_text),
}
TINY = 10_000


TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# argv: MODULE FUNCTION PATH SIZE RESULT: the writer's answer pickled to RESULT.
WRITE = """\
import pickle, sys

sys.path.insert(0, sys.argv[1])
module, function, path, size, result = sys.argv[2:]
expected = getattr(__import__(module), function)(path, int(size))
with open(result, "wb") as stream:
    pickle.dump(expected, stream)
"""


def write_input(write, path, size):
    """write(path, size) in a child without ASan: the writers are test
    scaffolding, and under ASan they take five times as long."""
    env = dict(os.environ)
    if "libasan" in env.get("LD_PRELOAD", ""):
        del env["LD_PRELOAD"]
    env.pop("PYTHONMALLOC", None)
    result = str(path) + ".expected"
    subprocess.run([sys.executable, "-c", WRITE, TESTS, write.__module__, write.__name__, str(path),
                    str(size), result], check=True, env=env, timeout=600)
    with open(result, "rb") as stream:
        return pickle.load(stream)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """{writer: {size: (path, expected)}}, each written once for the module."""
    made = {}

    def get(write, size):
        key = (write.__name__, size)
        if key not in made:
            path = tmp_path_factory.mktemp("report_faults") / f"{write.__name__}_{size}.in"
            made[key] = (path, write_input(write, path, size))
        return made[key]

    yield get
    for path, _ in made.values():
        path.unlink()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_long_input_is_reported_right_in_bounded_memory(inputs, tmp_path, kind):
    # GIVEN a long input of that kind (200 MB for a Profile log), and the
    # peak of the same report on a tiny input of that kind
    write, size, options, check = KINDS[kind]
    path, expected = inputs(write, size)
    assert expected["size"] >= size
    tiny, _ = inputs(write, TINY)
    baseline = measured_report(tiny, tmp_path / "tiny.out", *options)
    # WHEN it is reported
    peak = measured_report(path, tmp_path / "long.out", *options)
    # THEN the report is right, and the peak is above the tiny one's by
    # less than half the input
    check(tmp_path / "long.out", expected)
    assert peak - baseline < expected["size"] // 2, (peak, baseline)
