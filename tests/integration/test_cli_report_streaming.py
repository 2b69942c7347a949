"""`pymemtrace report` streams every kind it reads: a ReferenceTracing log
and an allocation snapshot (JSON) are reported in memory that does not grow
with the file (the Profile kind: test_cli_report_retained.py)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from synthetic_logs import LINES, SNAP_FILE, write_reftrace_log, write_snapshot

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")

# Runs a command with stdout and stderr to files and prints its exit status
# and peak RSS (a small middle process: a child's peak RSS counts the memory
# of the process it was forked from, before its exec).
PEAK_OF_CHILD = textwrap.dedent(
    """\
    import os, subprocess, sys
    with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
        proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
    """
)

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for the child's peak RSS"),
    pytest.mark.skipif(UNDER_ASAN, reason="peak RSS of an ASan process measures ASan"),
]


def peak_kib_of_report(path, out, *options):
    """(exit status, peak RSS in KiB) of `pymemtrace report PATH OPTIONS`, stdout to out."""
    command = [sys.executable, "-m", "pymemtrace", "report", str(path), *options]
    run = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, str(out), str(out) + ".err", *command],
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    status, peak = map(int, run.stdout.split())
    if status != 0:
        with open(str(out) + ".err", encoding="utf-8") as err:
            pytest.fail(err.read())
    return peak // 1024 if sys.platform == "darwin" else peak


def baseline_kib(tmp_path):
    """The peak of the same command on a tiny file."""
    return peak_kib_of_report(os.path.join(FIXTURES, "reftrace_leak.log"), tmp_path / "tiny.txt")


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


KINDS = {
    "reftrace": (write_reftrace_log, ["--format", "json"], check_reftrace),
    "snapshot-text": (write_snapshot, [], check_snapshot_text),
    "snapshot-json": (write_snapshot, ["--format", "json"], check_snapshot_json),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_report_memory_does_not_grow_with_the_file(tmp_path, kind):
    # GIVEN a 20 MB file of that kind, and the peak of a report of a tiny log
    write, options, check = KINDS[kind]
    path = tmp_path / "long.in"
    expected = write(path, 20_000_000)
    baseline = baseline_kib(tmp_path)
    # WHEN it is reported
    peak = peak_kib_of_report(path, tmp_path / "long.out", *options)
    # THEN the answer is right and the peak is near the baseline, far below
    # the size of the file
    check(tmp_path / "long.out", expected)
    assert peak - baseline < expected["size"] // 1024 // 2, (peak, baseline)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_200_mb_file_is_reported_in_under_150_mb(tmp_path, kind):
    # GIVEN a 200 MB file of that kind
    write, options, check = KINDS[kind]
    path = tmp_path / "huge.in"
    expected = write(path, 200_000_000)
    assert expected["size"] >= 200_000_000
    # WHEN it is reported  THEN the peak RSS stays under 150 MB
    peak = peak_kib_of_report(path, tmp_path / "huge.out", *options)
    assert peak * 1024 < 150_000_000, peak
    check(tmp_path / "huge.out", expected)
