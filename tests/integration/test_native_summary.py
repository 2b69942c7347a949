"""The DTrace-toolkit equivalents of `pymemtrace report OUTDIR`: allocations
and frees by function (`--functions`, JSON "functions") and the histogram of
allocation sizes (`--sizes`, JSON "sizes"), on planted allocations of
tests/fixtures/native_prog.c whose counts and sizes are known."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import KIB, compile_prog, needs_tracer  # noqa: E402

pytestmark = needs_tracer

SIZE = 3000  # sized_alloc's blocks: bucket [2048, 4095]


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    return compile_prog(tmp_path_factory.mktemp("native_summary"))


def traced(cli, outdir, *command, options=()):
    result = cli("native", "-o", outdir, *options, "--", *command)
    assert result.returncode == 0, result.stderr
    result = cli("report", outdir, "--format", "json")
    assert result.returncode == 0, result.stderr
    (process,) = json.loads(result.stdout)["processes"]
    return process


def function_row(process, name):
    rows = [row for row in process["functions"] if row["function"] == name]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def bucket_of(process, size):
    (bucket,) = [b for b in process["sizes"] if b["bucket_low"] <= size <= b["bucket_high"]]
    return bucket


def test_function_summary_counts_mallocs_frees_and_bytes(cli, prog, tmp_path):
    # GIVEN sized_alloc taking 1000 blocks of 3000 bytes, release() freeing
    # the first 500 of them
    process = traced(cli, tmp_path / "out", prog, "sized", "1000")
    # THEN sized_alloc made 1000 mallocs of 3000 bytes, 500 of them freed
    row = function_row(process, "sized_alloc")
    assert row == {"function": "sized_alloc", "library": prog, "mallocs": 1000, "frees": 500,
                   "bytes_allocated": 1000 * SIZE, "bytes_freed": 500 * SIZE}
    # AND release(), which only frees, allocated nothing: no row of its own
    assert function_row(process, "release") is None
    # AND the 500 blocks left are the leak of the same function
    (site,) = [s for s in process["leaked"]["sites"] if s["frames"][0]["function"] == "sized_alloc"]
    assert (site["bytes"], site["blocks"]) == (500 * SIZE, 500)


def test_function_summary_of_a_twin_that_frees_everything(cli, prog, tmp_path):
    # GIVEN leak_kib (1 KiB, never freed) and its twin keep_kib (freed)
    leak = traced(cli, tmp_path / "leak", prog, "leak", "700")
    free = traced(cli, tmp_path / "free", prog, "free", "700")
    # THEN the leak shows no frees, the twin one per malloc
    assert function_row(leak, "leak_kib") == {"function": "leak_kib", "library": prog, "mallocs": 700,
                                              "frees": 0, "bytes_allocated": 700 * KIB, "bytes_freed": 0}
    assert function_row(free, "keep_kib") == {"function": "keep_kib", "library": prog, "mallocs": 700,
                                              "frees": 700, "bytes_allocated": 700 * KIB,
                                              "bytes_freed": 700 * KIB}
    # AND the functions are ordered by bytes allocated
    allocated = [row["bytes_allocated"] for row in leak["functions"]]
    assert allocated == sorted(allocated, reverse=True)


def test_realloc_and_mmap_count_in_the_summary(cli, prog, tmp_path):
    # kinds_keep, per round: calloc 1 KiB then realloc to 2 KiB (a free of
    # the first, a malloc of the second), posix_memalign 1 KiB, mmap 64 KiB;
    # every block freed (free, free, munmap).
    process = traced(cli, tmp_path / "out", prog, "kinds", "40")
    row = function_row(process, "kinds_keep")
    assert (row["mallocs"], row["frees"]) == (4 * 40, 4 * 40)
    assert row["bytes_allocated"] == row["bytes_freed"] == 40 * (KIB + 2 * KIB + KIB + 65536)
    # kinds_leak: 40 blocks of 1 KiB kept, one in 8 (5) made by a realloc
    # of a malloc(16) of the same function, which counts as freed
    row = function_row(process, "kinds_leak")
    assert (row["mallocs"], row["frees"]) == (40 + 5, 5)
    assert (row["bytes_allocated"], row["bytes_freed"]) == (40 * KIB + 5 * 16, 5 * 16)


def test_size_histogram_holds_each_allocation_in_its_power_of_two_bucket(cli, prog, tmp_path):
    process = traced(cli, tmp_path / "out", prog, "sized", "1000")
    # THEN the bucket of 3000 holds the 1000 blocks, exactly
    bucket = bucket_of(process, SIZE)
    assert (bucket["bucket_low"], bucket["bucket_high"], bucket["count"]) == (2048, 4095, 1000)
    # AND the buckets are contiguous powers of two, as quantize() prints them
    sizes = process["sizes"]
    for a, b in zip(sizes, sizes[1:]):
        assert b["bucket_low"] == a["bucket_high"] + 1 == 2 * a["bucket_low"]
    assert sizes[0]["count"] > 0 and sizes[-1]["count"] > 0
    assert sum(b["count"] for b in sizes) == process["allocations"]


def test_size_histogram_is_exact_in_every_mode(cli, prog, tmp_path):
    # Sizes are counted per call, not per sample: the same 1000 in sampled
    # and in counting mode (where there is no per-function summary).
    sampled = traced(cli, tmp_path / "s", prog, "sized", "1000", options=("--sample-bytes", "1000000"))
    count = traced(cli, tmp_path / "c", prog, "sized", "1000", options=("--count",))
    assert bucket_of(sampled, SIZE)["count"] == 1000
    assert bucket_of(count, SIZE)["count"] == 1000
    assert count["functions"] == []


def test_sampled_summary_estimates_the_calls(cli, prog, tmp_path):
    # 10,000 mallocs of 1 KiB sampled every 64 KiB: each sample stands for
    # 64 blocks, so the estimate is near 10,000 mallocs and 10 MiB.
    process = traced(cli, tmp_path / "out", prog, "leak", "10000", options=("--sample-bytes", "65536"))
    row = function_row(process, "leak_kib")
    assert 0.8 * 10000 <= row["mallocs"] <= 1.2 * 10000
    assert 0.8 * 10000 * KIB <= row["bytes_allocated"] <= 1.2 * 10000 * KIB
    assert row["frees"] == 0


def test_text_report_functions_and_sizes(cli, prog, tmp_path):
    traced(cli, tmp_path / "out", prog, "sized", "1000")
    result = cli("report", tmp_path / "out", "--functions", "--sizes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (row,) = [line for line in lines if "sized_alloc (" in line and "MiB" in line]
    assert row.split()[:2] == ["1,000", "500"]
    (bar,) = [line for line in lines if line.strip().startswith("2,048 |")]
    assert bar.rstrip().endswith(" 1,000") and "@" in bar
    # Without the options, neither table
    plain = cli("report", tmp_path / "out").stdout
    assert "allocations by function" not in plain and "Distribution" not in plain


def test_functions_option_refused_for_a_log(cli, tmp_path):
    log = tmp_path / "x.log"
    log.write_text("HDR:\tEvent\tdEvent\n")
    result = cli("report", log, "--functions")
    assert result.returncode == 2
    assert "native captures" in result.stderr and "Traceback" not in result.stderr


def test_forked_child_counts_its_own_calls(cli, prog, tmp_path):
    # GIVEN a child leaking 300 KiB from child_leak, its parent taking and
    # freeing 300 KiB in parent_keep
    result = cli("native", "-o", tmp_path / "out", "--", prog, "fork", "300")
    assert result.returncode == 0, result.stderr
    processes = json.loads(cli("report", tmp_path / "out", "--format", "json").stdout)["processes"]
    (parent,) = [p for p in processes if p["command"][1:] == ["fork", "300"] and function_row(p, "parent_keep")]
    (child,) = [p for p in processes if p is not parent]
    # THEN each process has only its own calls
    assert (function_row(child, "child_leak")["mallocs"], function_row(child, "child_leak")["frees"]) == (300, 0)
    assert function_row(child, "parent_keep") is None
    row = function_row(parent, "parent_keep")
    assert (row["mallocs"], row["frees"], row["bytes_allocated"]) == (301, 301, 300 * KIB + 300 * 8)
    assert function_row(parent, "child_leak") is None


def test_threads_that_end_leave_every_count(cli, prog, tmp_path):
    # GIVEN 8 threads, each 500 mallocs of 1 KiB kept and 500 of 64 bytes
    # freed, all ended before the process exits (their last counts reach
    # the shared ones when they end, not at the next 256th call)
    process = traced(cli, tmp_path / "out", prog, "threads", "8", "500")
    # THEN the histogram holds every call of every thread
    assert bucket_of(process, 1024)["count"] == 8 * 500
    assert bucket_of(process, 64)["count"] == 8 * 500
    assert sum(b["count"] for b in process["sizes"]) == process["allocations"]
    # AND the function summary too
    row = function_row(process, "thread_leak")
    assert (row["mallocs"], row["frees"]) == (2 * 8 * 500, 8 * 500)
    assert (row["bytes_allocated"], row["bytes_freed"]) == (8 * 500 * (KIB + 64), 8 * 500 * 64)
