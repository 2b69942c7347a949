"""`pymemtrace report` ranks what stayed: a leaker before a churner, on a
real Profile log; and it reads long logs in bounded memory."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from synthetic_profile_log import write_log

# Under make test-asan freed blocks wait in ASan's quarantine (RSS does not
# fall where the program frees) and the interpreter's memory is ASan's.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")

# A churner allocates and frees 5 MB per call, a leaker keeps 100 KB per
# call.  mark() is a Python call: an event between the churner's touching
# its 5 MB and freeing them (without one, a read at every event would not
# see the 5 MB either).  No sleeps: the tracers charge each move to the
# event right after it (docs/cpymemtrace.md, "Exact, and cheap").
SCENARIO = textwrap.dedent(
    """\
    import sys

    from pymemtrace import cPyMemTrace

    kept = []
    CALLS = 30


    def mark():
        return None


    def churner():
        buf = bytearray(5_000_000)
        buf[::4096] = b"c" * len(range(0, len(buf), 4096))
        mark()
        del buf
        return 0


    def leaker():
        block = bytearray(100_000)
        block[::4096] = b"l" * len(range(0, len(block), 4096))
        kept.append(block)
        mark()
        return 0


    def main():
        for _ in range(CALLS):
            churner()
            leaker()


    with cPyMemTrace.Profile(int(sys.argv[3]), filepath=sys.argv[1], measure=sys.argv[2]):
        main()
    """
)
CALLS = 30
LEAKED = CALLS * 100_000
CHURNED = CALLS * 5_000_000


def _lines_of(function):
    """The line numbers of function's definition in SCENARIO."""
    lines = SCENARIO.splitlines()
    start = next(n for n, text in enumerate(lines, 1) if text.startswith(f"def {function}("))
    end = next(n for n, text in enumerate(lines, 1) if n > start and text.strip() == "return 0")
    return range(start, end + 1)


def _profile_and_report(cli, tmp_path, measure, trigger=0):
    script = tmp_path / "churn_and_leak.py"
    script.write_text(SCENARIO, encoding="utf-8")
    log = tmp_path / f"churn_and_leak_{measure}.log"
    # A fixed mmap threshold: the churner's 5 MB is returned to the system
    # when freed (glibc otherwise raises the threshold and keeps it).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    run = subprocess.run([sys.executable, str(script), str(log), measure, str(trigger)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    result = cli("report", log, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _bytes_of(entries, function):
    return sum(e["bytes"] for e in entries if e["function"] == function)


def test_leaker_ranks_first_in_retained_and_churner_in_churn_heap(cli, tmp_path):
    # GIVEN a script profiled with measure="heap" (exact) and d_rss_trigger=0
    doc = _profile_and_report(cli, tmp_path, "heap")
    # THEN the first line still holding memory at the end is the leaker's
    first = doc["retained"][0]
    assert first["function"] == "leaker" and first["file"].endswith("churn_and_leak.py")
    assert first["line"] in _lines_of("leaker")
    assert first["bytes"] >= 0.9 * LEAKED
    # AND the churner holds next to nothing, while its 5 MB per call are churn
    assert _bytes_of(doc["retained"], "churner") < 0.05 * LEAKED
    assert _bytes_of(doc["churn"], "churner") >= 0.9 * CHURNED
    # AND the ranking by total growth (the old first ranking) puts the churner first
    assert doc["lines"][0]["function"] == "churner"


@pytest.mark.skipif(UNDER_ASAN, reason="RSS under ASan falls on its allocator's schedule")
@pytest.mark.parametrize("trigger", [0, -1])
def test_leaker_ranks_first_in_retained_and_churner_in_churn_rss(cli, tmp_path, trigger):
    # GIVEN the same script profiled with measure="rss", every event written
    # or the default trigger (a page)
    doc = _profile_and_report(cli, tmp_path, "rss", trigger)
    # THEN the first line still holding memory at the end is the leaker's,
    # with about what it leaked (RSS counts whole pages)
    first = doc["retained"][0]
    assert first["function"] == "leaker" and first["line"] in _lines_of("leaker"), doc["retained"]
    leaker = _bytes_of(doc["retained"], "leaker")
    assert 0.9 * LEAKED <= leaker <= 1.2 * LEAKED, doc["retained"]
    # AND the churner holds next to nothing, while its 5 MB per call are churn
    assert _bytes_of(doc["retained"], "churner") < 0.05 * LEAKED, doc["retained"]
    assert _bytes_of(doc["churn"], "churner") >= 0.9 * CHURNED, doc["churn"]


# --------------------------------------------------------------------------
# Bounded memory on long logs


# Runs a command with stdout and stderr to files and prints its exit status
# and peak RSS.  A small middle process: a child's peak RSS counts the
# memory of the process it was forked from, before its exec.
PEAK_OF_CHILD = textwrap.dedent(
    """\
    import os, subprocess, sys
    with open(sys.argv[1], "w") as out, open(sys.argv[2], "w") as err:
        proc = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    print(proc.returncode, usage.ru_maxrss)
    """
)


def _peak_kib_of_report(log, out):
    """Run `python -m pymemtrace report LOG --format json` with stdout to
    out; returns (exit status, that process's peak RSS in KiB)."""
    command = [sys.executable, "-m", "pymemtrace", "report", str(log), "--format", "json"]
    run = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, str(out), str(out) + ".err", *command],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    status, peak = map(int, run.stdout.split())
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        peak //= 1024
    return status, peak


def _check_report_of_synthetic_log(out, expected):
    with open(out, encoding="utf-8") as stream:
        doc = json.load(stream)
    assert doc["records"] == expected["records"] and doc["complete"]
    assert (doc["first"], doc["last"], doc["peak"]) == (expected["first"], expected["last"], expected["peak"])
    assert {(e["file"], e["line"], e["function"]): e["bytes"] for e in doc["retained"]} == expected["retained"]
    assert {(e["file"], e["line"], e["function"]): e["bytes"] for e in doc["churn"]} == expected["churn"]
    assert doc["released"] == 0
    assert len(doc["timeline"]) <= 2 * 2048 + 2


posix_only = pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for the child's peak RSS")


@posix_only
@pytest.mark.skipif(UNDER_ASAN, reason="peak RSS of an ASan process measures ASan")
def test_report_memory_does_not_grow_with_the_log(tmp_path):
    # GIVEN a 20 MB Profile log, and the peak of the same command on a tiny log
    log = tmp_path / "long.log"
    expected = write_log(log, 20_000_000)
    status, baseline = _peak_kib_of_report(os.path.join(FIXTURES, "profile_growth.log"), tmp_path / "tiny.json")
    assert status == 0
    # WHEN it is reported
    status, peak = _peak_kib_of_report(log, tmp_path / "long.json")
    # THEN the answer is right and the peak is near the interpreter's
    # baseline, far below the size of the log
    assert status == 0, (tmp_path / "long.json.err").read_text()
    _check_report_of_synthetic_log(tmp_path / "long.json", expected)
    assert peak - baseline < expected["size"] // 1024 // 2, (peak, baseline)


@posix_only
@pytest.mark.slow
def test_a_200_mb_log_is_summarised_in_under_150_mb(tmp_path):
    # GIVEN a 200 MB Profile log (about 1.8 million records)
    log = tmp_path / "huge.log"
    expected = write_log(log, 200_000_000)
    assert expected["size"] >= 200_000_000
    # WHEN it is reported
    status, peak = _peak_kib_of_report(log, tmp_path / "huge.json")
    # THEN the peak RSS of the report stays under 150 MB
    assert status == 0, (tmp_path / "huge.json.err").read_text()
    assert peak * 1024 < 150_000_000, peak
    _check_report_of_synthetic_log(tmp_path / "huge.json", expected)
