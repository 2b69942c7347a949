"""`pymemtrace native -- COMMAND` then `pymemtrace report OUTDIR`: planted
native leaks (tests/fixtures/native_prog.c) found, their freeing twins not,
through threads, fork, a kill, and a Python program."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import KIB, compile_prog, needs_tracer, site_bytes, tracer_env  # noqa: E402

from pymemtrace.analyses.native import analyse  # noqa: E402
from pymemtrace.snapshots.native import read_capture, read_outdir  # noqa: E402

pytestmark = needs_tracer


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_prog(tmp_path_factory.mktemp("native_prog"))


def native(cli, outdir, *command, options=()):
    result = cli("native", "-o", outdir, *options, "--", *command)
    assert result.returncode == 0, result.stderr
    return result


def report_json(cli, outdir):
    result = cli("report", outdir, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def only_process(data):
    assert data["schema"] == 1
    assert len(data["processes"]) == 1, data["processes"]
    return data["processes"][0]


def test_leak_found_and_its_freeing_twin_not(cli, prog, tmp_path):
    # GIVEN a program leaking 2000 blocks of 1 KiB, and its twin freeing them
    native(cli, tmp_path / "leak", prog, "leak", "2000")
    native(cli, tmp_path / "free", prog, "free", "2000")
    # WHEN both are reported
    leak = only_process(report_json(cli, tmp_path / "leak"))
    free = only_process(report_json(cli, tmp_path / "free"))
    # THEN the leak is named by its function, 2000 KiB in 2000 blocks
    assert leak["complete"] is True
    assert leak["command"] == [prog, "leak", "2000"]
    top = leak["leaked"]["sites"][0]
    assert top["frames"][0]["function"] == "leak_kib"
    assert top["frames"][0]["library"] == prog
    assert top["frames"][0]["python"] is False
    assert (top["bytes"], top["blocks"]) == (2000 * KIB, 2000)
    assert any(f["function"] == "main" for f in top["frames"])
    # AND the twin leaves nothing of its site live, though its peak saw it
    assert site_bytes(free["leaked"], "keep_kib") == 0
    assert site_bytes(free["peak"], "keep_kib") == KIB
    assert free["leaked"]["bytes"] < 64 * KIB
    assert free["allocations"] >= 2000 and free["frees"] >= 2000


def test_frame_pointer_unwinding_finds_the_leak(cli, tmp_path):
    # GIVEN the program built with frame pointers (the fast walk needs them)
    prog_fp = compile_prog(tmp_path, "-fno-omit-frame-pointer")
    native(cli, tmp_path / "leak", prog_fp, "leak", "500", options=("--unwind", "fp"))
    native(cli, tmp_path / "free", prog_fp, "free", "500", options=("--unwind", "fp"))
    leak = only_process(report_json(cli, tmp_path / "leak"))
    free = only_process(report_json(cli, tmp_path / "free"))
    top = leak["leaked"]["sites"][0]
    assert [f["function"] for f in top["frames"][:2]] == ["leak_kib", "main"]
    assert (top["bytes"], top["blocks"]) == (500 * KIB, 500)
    assert site_bytes(free["leaked"], "keep_kib") == 0


def test_svg_flame_graph_of_the_leak(cli, prog, tmp_path):
    native(cli, tmp_path / "out", prog, "leak", "200")
    svg = tmp_path / "leaks.svg"
    result = cli("report", tmp_path / "out", "--svg", svg)
    assert result.returncode == 0, result.stderr
    text = svg.read_text()
    assert text.startswith("<?xml") or text.startswith("<svg")
    assert "leak_kib" in text and "Native memory live at exit" in text
    # AND --html writes the one-file page of the same sites (its browser
    # test is in test_html_report.py)
    result = cli("report", tmp_path / "out", "--html", tmp_path / "x.html")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "x.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "leak_kib" in page


def test_json_contract_types(cli, prog, tmp_path):
    native(cli, tmp_path / "out", prog, "leak", "10")
    data = report_json(cli, tmp_path / "out")
    process = only_process(data)
    assert isinstance(process["pid"], int)
    assert all(isinstance(word, str) for word in process["command"])
    for section in (process["leaked"], process["peak"]):
        assert isinstance(section["bytes"], int) and isinstance(section["blocks"], int)
        for site in section["sites"]:
            assert isinstance(site["bytes"], int) and isinstance(site["blocks"], int)
            for frame in site["frames"]:
                assert set(frame) >= {"function", "file", "line", "library", "python"}
                assert isinstance(frame["function"], str)
                assert frame["file"] is None or isinstance(frame["file"], str)
                assert frame["line"] is None or isinstance(frame["line"], int)
                assert frame["library"] is None or isinstance(frame["library"], str)
                assert isinstance(frame["python"], bool)


def test_text_report_names_the_same_site(cli, prog, tmp_path):
    native(cli, tmp_path / "out", prog, "leak", "300")
    result = cli("report", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "leak_kib" in result.stdout
    assert "300 blocks" in result.stdout


def test_every_allocation_function_is_seen(cli, prog, tmp_path):
    # calloc, realloc, posix_memalign, aligned_alloc, memalign,
    # reallocarray, valloc, malloc leak 1 KiB each from kinds_leak; the
    # twin kinds_keep frees all it takes (mmap/munmap included); map_leak
    # keeps an anonymous 1 MiB mapping.
    native(cli, tmp_path / "out", prog, "kinds", "80")
    process = only_process(report_json(cli, tmp_path / "out"))
    assert site_bytes(process["leaked"], "kinds_leak") == 80 * KIB
    assert site_bytes(process["leaked"], "kinds_keep") == 0
    assert site_bytes(process["leaked"], "map_leak") == 1 << 20
    # Every call was seen: 80 + 10 (the malloc before a realloc) in
    # kinds_leak, 4 per round in kinds_keep (calloc, mmap, posix_memalign,
    # realloc), whose 4 frees per round (realloc, 2 free, munmap) and the
    # 10 reallocs of kinds_leak count as frees.
    assert process["allocations"] >= 80 + 10 + 4 * 80
    assert process["frees"] >= 10 + 4 * 80


def test_threads_leak_at_once(cli, prog, tmp_path):
    # GIVEN 8 threads each leaking 500 KiB while churning small blocks
    native(cli, tmp_path / "out", prog, "threads", "8", "500")
    process = only_process(report_json(cli, tmp_path / "out"))
    # THEN every byte is accounted for, in the thread's function
    assert site_bytes(process["leaked"], "thread_leak") == 8 * 500 * KIB
    blocks = sum(s["blocks"] for s in process["leaked"]["sites"]
                 if s["frames"] and s["frames"][0]["function"] == "thread_leak")
    assert blocks == 8 * 500


def test_fork_child_has_its_own_capture(cli, prog, tmp_path):
    native(cli, tmp_path / "out", prog, "fork", "700")
    processes = report_json(cli, tmp_path / "out")["processes"]
    assert len(processes) == 2
    by_pid = {p["pid"]: p for p in processes}
    child = next(p for p in processes if p["ppid"] in by_pid)
    parent = by_pid[child["ppid"]]
    # The child's leak is in the child's capture only; the parent's
    # blocks were freed.
    assert site_bytes(child["leaked"], "child_leak") == 700 * KIB
    assert site_bytes(parent["leaked"], "child_leak") == 0
    assert site_bytes(parent["leaked"], "parent_keep") == 0
    assert site_bytes(parent["peak"], "parent_keep") >= 700 * KIB
    assert child["complete"] and parent["complete"]


def test_fork_while_other_threads_allocate(cli, prog, tmp_path):
    # GIVEN 4 threads churning malloc/free while the main thread forks 8
    # children one after the other, each leaking 100 KiB
    native(cli, tmp_path / "out", prog, "forkbusy", "100")
    processes = report_json(cli, tmp_path / "out")["processes"]
    # THEN no child deadlocked (the run ended), and each has its capture
    # with its own leak only
    by_pid = {p["pid"]: p for p in processes}
    children = [p for p in processes if p["ppid"] in by_pid]
    assert len(children) == 8
    for child in children:
        assert child["complete"]
        assert site_bytes(child["leaked"], "child_leak") == 100 * KIB
        assert site_bytes(child["leaked"], "keep_kib") <= 4 * KIB
    parent = by_pid[children[0]["ppid"]]
    assert site_bytes(parent["leaked"], "child_leak") == 0


def test_killed_process_leaves_a_readable_capture(prog, tmp_path):
    # GIVEN a program that leaks 400 KiB then churns until it is killed,
    # with a snapshot at most every 20 ms
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = subprocess.Popen([prog, "spin", "400"], stdout=subprocess.PIPE,
                            env=tracer_env(outdir, interval_ms=20))
    try:
        assert proc.stdout.readline() == b"ready\n"
        # WHEN a snapshot holding the leak is on disk, SIGKILL
        deadline = time.monotonic() + 60
        while True:
            paths = list(outdir.iterdir())
            if paths:
                capture = read_capture(str(paths[0]))
                if capture.totals is not None and capture.totals.live_bytes >= 400 * KIB:
                    break
            assert time.monotonic() < deadline, "no snapshot written"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    # THEN the capture reads, marked incomplete, with the leak in it
    (report,) = analyse(read_outdir(str(outdir)))
    assert report.complete is False
    leaked = {s.frames[0].function: s.bytes for s in report.leaked.sites if s.frames}
    assert leaked.get("leak_kib") == 400 * KIB


def test_exit_through_underscore_exit_still_writes_the_exit_snapshot(cli, prog, tmp_path):
    # GIVEN programs ending through _exit (no atexit, no destructors): a C
    # one, and Python's os._exit with 10 MB still held
    native(cli, tmp_path / "c", prog, "quick", "300")
    script = tmp_path / "quick.py"
    script.write_text("import os\nbig = bytearray(10 * 1024 * 1024)\nos._exit(0)\n")
    native(cli, tmp_path / "py", sys.executable, str(script))
    # THEN each capture is complete, its leak in it
    c = only_process(report_json(cli, tmp_path / "c"))
    assert c["complete"] is True
    assert site_bytes(c["leaked"], "leak_kib") == 300 * KIB
    py = only_process(report_json(cli, tmp_path / "py"))
    assert py["complete"] is True
    assert any(s["bytes"] >= 10 * 1024 * 1024 for s in py["leaked"]["sites"])


def test_sampled_mode_estimates_the_leak(cli, prog, tmp_path):
    # 10,000 x 1 KiB sampled every 64 KiB on average: about 156 samples,
    # each standing for 64 KiB; the uniform gaps keep the error small.
    native(cli, tmp_path / "out", prog, "leak", "10000", options=("--sample-bytes", "65536"))
    process = only_process(report_json(cli, tmp_path / "out"))
    assert process["mode"] == "sampled"
    estimate = site_bytes(process["leaked"], "leak_kib")
    assert 0.8 * 10000 * KIB <= estimate <= 1.2 * 10000 * KIB


def test_count_mode_counts_only(cli, prog, tmp_path):
    native(cli, tmp_path / "out", prog, "leak", "1000", options=("--count",))
    process = only_process(report_json(cli, tmp_path / "out"))
    assert process["mode"] == "count"
    assert process["allocations"] >= 1000
    assert process["bytes_allocated"] >= 1000 * KIB
    assert process["leaked"]["sites"] == []


def test_python_program_runs_to_the_end(cli, tmp_path):
    # GIVEN a Python program with threads that holds 20 MB at its peak
    script = tmp_path / "prog.py"
    script.write_text(
        "import threading\n"
        "big = bytearray(20 * 1024 * 1024)\n"
        "def work():\n"
        "    for i in range(2000):\n"
        "        bytes(1000 + i)\n"
        "threads = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "del big\n"
        "print('the end')\n"
    )
    result = native(cli, tmp_path / "out", sys.executable, str(script))
    assert "the end" in result.stdout
    process = only_process(report_json(cli, tmp_path / "out"))
    assert process["complete"] is True
    assert process["command"][1:] == [str(script)]
    # THEN the 20 MB block is at the peak, named by CPython's functions
    big = [s for s in process["peak"]["sites"] if s["bytes"] >= 20 * 1024 * 1024]
    assert big, process["peak"]["sites"][:3]
    assert any("ByteArray" in f["function"] or "bytearray" in f["function"] for f in big[0]["frames"])


def test_exit_status_and_usage(cli, prog, tmp_path):
    result = cli("native", "-o", tmp_path / "a", "--", prog, "bogus")
    assert result.returncode == 2  # the command's own status
    result = cli("native", "-o", tmp_path / "b")
    assert result.returncode == 2 and "no command given" in result.stderr
    result = cli("native", "-o", tmp_path / "c", "--", str(tmp_path / "missing"))
    assert result.returncode == 127
    result = cli("native", "-o", tmp_path / "d", "--count", "--sample-bytes", "10", "--", prog, "leak", "1")
    assert result.returncode == 2
    # An OUTDIR already holding captures is refused (they would mix).
    result = cli("native", "-o", tmp_path / "a", "--", prog, "leak", "1")
    assert result.returncode == 1 and "already holds" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_of_a_directory_without_captures(cli, tmp_path):
    result = cli("report", tmp_path)
    assert result.returncode == 1
    assert "no native capture" in result.stderr
    assert "Traceback" not in result.stderr
