"""`pymemtrace report` ranks what stayed: a leaker before a churner, on a
real Profile log.  (Long logs in bounded memory: tests/faults/test_report_faults.py.)"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

# Under make test-asan freed blocks wait in ASan's quarantine (RSS does not
# fall where the program frees) and the interpreter's memory is ASan's.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

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
