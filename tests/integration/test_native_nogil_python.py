"""`pymemtrace native -- python SCRIPT`: an allocation made while the thread
has released the GIL (a C library at work between Py_BEGIN_ALLOW_THREADS
and Py_END_ALLOW_THREADS) still ends at the Python line that called into
C: the thread's own frames are read without the GIL, for code objects the
extension has already named (docs/native.md)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import KIB, needs_tracer  # noqa: E402

pytestmark = needs_tracer

# Line numbers below are the script's own (1-based).  A code is named once
# an allocation of its thread holding the GIL saw it: bytes(4096) is one
# (larger than pymalloc's blocks, it comes from malloc).
SCRIPT = """\
import sys
import threading

from pymemtrace import cMemLeak


def leaker(kib):
    warm = bytes(4096)
    cMemLeak.leak_malloc_nogil(kib)
    return warm


def freer(kib):
    warm = bytes(4096)
    cMemLeak.no_leak_malloc_nogil(kib)
    return warm


def never_named():
    cMemLeak.leak_malloc_nogil(30)


if sys.argv[1] == "main":
    leaker(200)
    freer(300)
    never_named()
elif sys.argv[1] == "thread":
    worker = threading.Thread(target=leaker, args=(70,))
    worker.start()
    worker.join()
else:
    import gc

    running = threading.Barrier(3)

    def churn():
        warm = bytes(4096)
        running.wait()
        while warm:
            cMemLeak.no_leak_malloc_nogil(64)

    for _ in range(2):
        threading.Thread(target=churn, daemon=True).start()
    running.wait()
    for _ in range(100):
        sys._current_frames()
        gc.collect()
    print("exiting")
"""
LEAK_LINE = 9  # cMemLeak.leak_malloc_nogil(kib) in leaker()
FREE_LINE = 15  # cMemLeak.no_leak_malloc_nogil(kib) in freer()
NEVER_LINE = 20  # in never_named()
LEAKER_CALL_LINE = 24  # leaker(200)
NEVER_CALL_LINE = 26  # never_named()
CHURN_LINE = 40  # cMemLeak.no_leak_malloc_nogil(64) in churn()


def run(cli, tmp_path, mode):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    outdir = tmp_path / "out"
    result = cli("native", "-o", outdir, "--", sys.executable, str(script), mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("exiting\n" if mode == "stress" else ""), result.stdout
    report = cli("report", outdir, "--format", "json")
    assert report.returncode == 0, report.stderr
    (process,) = json.loads(report.stdout)["processes"]
    assert process["complete"]
    return str(script), process


def python_frames(site):
    return [f for f in site["frames"] if f["python"]]


def sites_through(section, script, line):
    """The sites with a Python frame at line of the script."""
    return [s for s in section["sites"]
            if any(f["python"] and f["file"] == script and f["line"] == line for f in s["frames"])]


def native_then_python(site):
    """The site's frames are native ones (the first in cMemLeak), then
    Python ones, never mixed."""
    kinds = [f["python"] for f in site["frames"]]
    assert True in kinds, site["frames"]
    first_python = kinds.index(True)
    assert first_python > 0 and all(kinds[first_python:]), site["frames"]
    assert any(f["library"] and os.path.basename(f["library"]).startswith("cMemLeak")
               for f in site["frames"][:first_python]), site["frames"][:first_python]


def test_an_allocation_without_the_gil_ends_at_the_python_line(cli, tmp_path):
    # GIVEN leaker() leaking 200 blocks of 1 KiB with the GIL released
    script, process = run(cli, tmp_path, "main")
    # THEN they are one site: the native frames, then leaker at that line,
    # then the module line that called leaker()
    (site,) = sites_through(process["leaked"], script, LEAK_LINE)
    assert (site["bytes"], site["blocks"]) == (200 * KIB, 200)
    native_then_python(site)
    py = python_frames(site)
    assert py[0] == {"function": "leaker", "file": script, "line": LEAK_LINE, "library": None, "python": True}
    assert (py[1]["function"], py[1]["file"], py[1]["line"]) == ("<module>", script, LEAKER_CALL_LINE)
    assert len(py) == 2


def test_the_freeing_twin_leaves_nothing_live(cli, tmp_path):
    # GIVEN freer() doing the same work and freeing each block
    script, process = run(cli, tmp_path, "main")
    # THEN nothing under its line is live at exit
    assert sites_through(process["leaked"], script, FREE_LINE) == []


def test_a_code_not_named_yet_keeps_its_frame_and_the_callers(cli, tmp_path):
    # GIVEN never_named(), which allocates nothing holding the GIL before it
    # leaks 30 KiB without it: its code may not be in the table
    script, process = run(cli, tmp_path, "main")
    # THEN its leak still ends at the module line that called it; its own
    # frame is either named or `<python>` (kept, so the depth is true)
    (site,) = sites_through(process["leaked"], script, NEVER_CALL_LINE)
    assert (site["bytes"], site["blocks"]) == (30 * KIB, 30)
    native_then_python(site)
    py = python_frames(site)
    assert len(py) == 2
    assert (py[0]["function"], py[0]["line"]) in {("never_named", NEVER_LINE), ("<python>", None)}
    assert (py[1]["function"], py[1]["line"]) == ("<module>", NEVER_CALL_LINE)


def test_a_second_python_thread_gets_its_python_line(cli, tmp_path):
    # GIVEN leaker() run by a threading.Thread
    script, process = run(cli, tmp_path, "thread")
    # THEN its 70 KiB end at leaker's line, followed by the thread's own
    # frames (threading's, named or not), not the main thread's
    (site,) = sites_through(process["leaked"], script, LEAK_LINE)
    assert (site["bytes"], site["blocks"]) == (70 * KIB, 70)
    native_then_python(site)
    py = python_frames(site)
    assert py[0] == {"function": "leaker", "file": script, "line": LEAK_LINE, "library": None, "python": True}
    assert len(py) >= 2
    assert not any(f["file"] == script for f in py[1:]), py


def test_daemon_threads_without_the_gil_while_the_program_exits(cli, tmp_path):
    # GIVEN two daemon threads allocating and freeing without the GIL, their
    # frames read at each allocation, while the main thread runs the gc and
    # sys._current_frames() over them, then exits with them still in C
    # (finalization frees their thread states)
    script, process = run(cli, tmp_path, "stress")
    # THEN the program ends normally (run checks the exit status and the
    # output) and the capture is complete; what the churn freed is not live
    assert sites_through(process["leaked"], script, CHURN_LINE) == []
