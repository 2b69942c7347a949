"""The C allocation tracker (alloc_hooks.c, alloc_api.c) through pymemtrace.allocations and _native."""

import asyncio
import gc
import sys
import threading
import tracemalloc

import pytest

from pymemtrace import _native, allocations

KIB = 1024
N_BLOCKS = 10_000
BLOCK = sys.getsizeof(bytes(KIB))  # what PyObject_Malloc is asked for


@pytest.fixture(autouse=True)
def _stopped():
    yield
    allocations.stop()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def keep_blocks(n=N_BLOCKS):
    return [bytes(KIB) for _ in range(n)]  # THE_LINE


def _line_of(func, marker):
    import inspect

    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, text in enumerate(lines) if marker in text)


KEEP_LINE = _line_of(keep_blocks, "THE_LINE")


def bytes_at(sites, line, file=__file__):
    return sum(s.bytes for s in sites if s.file == file and s.line == line)


def test_exact_mode_reports_the_line_within_5_percent():
    # GIVEN the tracker in exact mode
    allocations.start(mode="exact", depth=16)
    # WHEN one line keeps 10,000 bytes objects of 1 KiB alive
    kept = keep_blocks()
    snap = allocations.snapshot()
    # THEN that line holds 10,000 blocks of that size, within 5%
    expected = N_BLOCKS * BLOCK
    got = bytes_at(snap.group_by("line"), KEEP_LINE)
    assert abs(got - expected) <= 0.05 * expected, (got, expected)
    assert snap.top(1)[0].line == KEEP_LINE
    del kept


def test_sampled_mode_reports_the_line_within_20_percent():
    # GIVEN the tracker sampling one block per 32 KiB on average (about
    # 330 samples for 10 MB: the error is about 2%)
    allocations.start(mode="sampled", sample_bytes=32 * KIB, seed=12345)
    # WHEN one line keeps 10 MB alive
    kept = keep_blocks()
    snap = allocations.snapshot()
    # THEN the estimate for that line is within 20%
    expected = N_BLOCKS * BLOCK
    got = bytes_at(snap.group_by("line"), KEEP_LINE)
    assert abs(got - expected) <= 0.20 * expected, (got, expected)
    assert snap.stats["traces"] < N_BLOCKS / 10  # it did sample
    del kept


def _sampled_estimate(seed, interval=512 * KIB):
    allocations.start(mode="sampled", sample_bytes=interval, seed=seed)
    kept = keep_blocks()
    snap = allocations.snapshot()
    allocations.stop()
    del kept
    return bytes_at(snap.group_by("line"), KEEP_LINE)


def test_sampled_mode_at_the_default_interval_is_unbiased_and_tight():
    # GIVEN the default interval (512 KiB: about 20 samples for 10 MB)
    expected = N_BLOCKS * BLOCK
    # WHEN 30 runs with different seeds estimate the line
    errors = [(_sampled_estimate(seed) - expected) / expected for seed in range(1, 31)]
    # THEN the estimates average to the truth and spread far less than
    # Poisson sampling's 23% (the gaps are uniform in [I/2, 3I/2])
    mean = sum(errors) / len(errors)
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert abs(mean) < 0.06, errors
    assert rms < 0.15, errors


def test_sampled_mode_records_big_blocks_exactly():
    # GIVEN the sampled tracker at 64 KiB
    allocations.start(mode="sampled", sample_bytes=64 * KIB, seed=3)
    # WHEN 50 blocks of 40 KiB (over half the interval) are kept, and a
    # twin line keeps 50 blocks of 1 KiB
    big = [bytearray(40 * KIB) for _ in range(50)]  # BIG_LINE
    small = keep_blocks(50)
    snap = allocations.snapshot()
    # THEN every big block is there, at its true size; the small ones are
    # sampled (at most a few, each standing for 64 KiB)
    lines = {s.line: s for s in snap.group_by("line") if s.file == __file__}
    big_site = lines[_line_of(test_sampled_mode_records_big_blocks_exactly, "BIG_LINE")]
    assert big_site.blocks == 50
    assert 50 * 40 * KIB <= big_site.bytes < 50 * 41 * KIB
    small_site = lines.get(KEEP_LINE)
    assert small_site is None or small_site.bytes % (64 * KIB) == 0
    del big, small


def temporary_blocks():
    tmp = [bytes(KIB) for _ in range(5_000)]  # TMP_LINE
    return len(tmp)


TMP_LINE = _line_of(temporary_blocks, "TMP_LINE")


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_freed_memory_is_at_the_peak_not_at_exit(mode):
    # GIVEN the tracker
    allocations.start(mode=mode, sample_bytes=16 * KIB, seed=7)
    # WHEN memory is allocated and freed, and other memory kept
    temporary_blocks()
    kept = keep_blocks(2_000)
    snap = allocations.snapshot()
    # THEN the freed line is absent now (up to the comprehension's cached
    # frame object on 3.9/3.10) but present at the peak
    assert bytes_at(snap.group_by("line"), TMP_LINE) < 1024
    at_peak = bytes_at(snap.group_by("line", peak=True), TMP_LINE)
    assert at_peak >= 0.6 * 5_000 * BLOCK
    assert snap.peak_bytes >= at_peak
    assert bytes_at(snap.group_by("line"), KEEP_LINE) > 0
    del kept


def test_threads_allocating_concurrently_are_all_counted():
    # GIVEN the tracker and 4 threads that each keep 1,000 blocks
    allocations.start(mode="exact")
    results = [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        results[i] = keep_blocks(1_000)
        junk = [bytearray(100) for _ in range(2_000)]  # churn, freed
        del junk

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = allocations.snapshot()
    # THEN the line holds all 4,000 blocks
    got = bytes_at(snap.group_by("line"), KEEP_LINE)
    assert abs(got - 4_000 * BLOCK) <= 0.05 * 4_000 * BLOCK
    results.clear()


def gen_blocks(n):
    for _ in range(n):
        yield bytes(KIB)  # GEN_LINE


GEN_LINE = _line_of(gen_blocks, "GEN_LINE")


def consume_generator():
    return list(gen_blocks(500))


async def coro_inner():
    await asyncio.sleep(0)
    return [bytes(KIB) for _ in range(500)]  # CORO_LINE


async def coro_outer():
    return await coro_inner()


CORO_LINE = _line_of(coro_inner, "CORO_LINE")


def _functions_of_top_site(snap, line):
    sites = [s for s in snap.sites if s.file == __file__ and s.line == line]
    assert sites, f"no site at line {line}"
    biggest = max(sites, key=lambda s: s.bytes)
    return [f.function for f in biggest.stack]


def test_stacks_go_through_generators():
    allocations.start(mode="exact", depth=16)
    kept = consume_generator()
    snap = allocations.snapshot()
    functions = _functions_of_top_site(snap, GEN_LINE)
    # the generator frame, then the frame that drives it
    assert functions[0] == "gen_blocks"
    assert "consume_generator" in functions
    del kept


def test_stacks_go_through_coroutines():
    allocations.start(mode="exact", depth=32)
    kept = asyncio.run(coro_outer())
    snap = allocations.snapshot()
    functions = _functions_of_top_site(snap, CORO_LINE)
    assert "coro_inner" in functions[:2]
    assert "coro_outer" in functions
    del kept


def _helper_keeps(n):
    return keep_blocks(n)


def _two_callers(n):
    # The same frames at the same addresses below a caller that differs
    # only by the line it calls from: the stacks must still be told apart.
    first = _helper_keeps(n)  # FIRST_CALL
    second = _helper_keeps(2 * n)  # SECOND_CALL
    return first, second


FIRST_CALL = _line_of(_two_callers, "FIRST_CALL")
SECOND_CALL = _line_of(_two_callers, "SECOND_CALL")


def test_same_frames_called_from_two_lines_are_two_stacks():
    # GIVEN the tracker in exact mode
    allocations.start(mode="exact", depth=16)
    # WHEN one helper is called from two lines of one caller, keeping
    # 300 and then 600 blocks
    kept = _two_callers(300)
    snap = allocations.snapshot()
    # THEN the allocating line has two stacks, each with its own count,
    # told apart by the caller's line
    by_caller = {}
    for site in snap.group_by("stack"):
        if site.file == __file__ and site.line == KEEP_LINE:
            callers = [f.line for f in site.stack if f.function == "_two_callers"]
            assert len(callers) == 1, site.stack
            by_caller[callers[0]] = by_caller.get(callers[0], 0) + site.blocks
    assert set(by_caller) == {FIRST_CALL, SECOND_CALL}
    assert abs(by_caller[FIRST_CALL] - 300) <= 3
    assert abs(by_caller[SECOND_CALL] - 600) <= 3
    del kept


def test_depth_limits_the_stack():
    allocations.start(mode="exact", depth=1)
    kept = keep_blocks(100)
    snap = allocations.snapshot()
    assert all(len(s.stack) <= 1 for s in snap.sites)
    del kept


def test_start_stop_100_times_releases_everything():
    # GIVEN a code object whose references the tracker takes while running
    code = keep_blocks.__code__
    gc.collect()
    before = sys.getrefcount(code)
    # WHEN the tracker starts and stops 100 times, allocating each time
    for i in range(100):
        allocations.start(mode="exact" if i % 2 else "sampled", sample_bytes=1024)
        kept = keep_blocks(20)
        assert allocations.is_tracking()
        allocations.stop()
        del kept
    # THEN nothing is left: no tracking, no references, no tables
    assert not allocations.is_tracking()
    assert sys.getrefcount(code) == before
    assert _native.alloc_stats()["stacks"] == 0
    assert _native.alloc_stats()["traces"] == 0


def test_second_start_is_refused_and_stop_is_idempotent():
    allocations.start()
    with pytest.raises(RuntimeError, match="already running"):
        allocations.start()
    allocations.stop()
    allocations.stop()
    with pytest.raises(RuntimeError, match="not running"):
        allocations.snapshot()


@pytest.mark.parametrize(
    "kwargs", [{"mode": "bogus"}, {"depth": 0}, {"depth": 10_000}, {"sample_bytes": 0}]
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        allocations.start(**kwargs)
    assert not allocations.is_tracking()


@pytest.mark.parametrize("order", ["ours_first", "tracemalloc_first"])
@pytest.mark.parametrize("stop_order", ["ours_first", "tracemalloc_first"])
def test_works_with_tracemalloc_in_any_order(order, stop_order):
    # GIVEN both tracers started, in either order
    if order == "ours_first":
        allocations.start(mode="exact")
        tracemalloc.start(5)
    else:
        tracemalloc.start(5)
        allocations.start(mode="exact")
    # WHEN memory is kept
    kept = keep_blocks(2_000)
    # THEN both see it
    snap = allocations.snapshot()
    ours = bytes_at(snap.group_by("line"), KEEP_LINE)
    assert abs(ours - 2_000 * BLOCK) <= 0.05 * 2_000 * BLOCK
    stats = tracemalloc.take_snapshot().statistics("lineno")
    theirs = sum(
        s.size
        for s in stats
        if s.traceback[0].filename == __file__ and s.traceback[0].lineno == KEEP_LINE
    )
    assert abs(theirs - 2_000 * BLOCK) <= 0.05 * 2_000 * BLOCK
    # AND stopping in either order leaves the other one working
    if stop_order == "ours_first":
        allocations.stop()
        before = tracemalloc.get_traced_memory()[0]
        more = keep_blocks(500)
        assert tracemalloc.get_traced_memory()[0] >= before + 400 * BLOCK
        tracemalloc.stop()
    else:
        tracemalloc.stop()
        more = keep_blocks(500)
        if order == "tracemalloc_first":
            # tracemalloc put back the allocators it found, removing ours:
            # the tracker says so (once) and keeps what it had
            with pytest.warns(RuntimeWarning, match="removed by another tool"):
                snap = allocations.snapshot()
            assert allocations.stats()["hooks_removed"] == 1
        else:
            snap = allocations.snapshot()
        assert bytes_at(snap.group_by("line"), KEEP_LINE) >= 2_000 * BLOCK
        allocations.stop()
    del kept, more
    # AND the tracker starts again cleanly afterwards
    allocations.start()
    again = keep_blocks(100)
    assert bytes_at(allocations.snapshot().group_by("line"), KEEP_LINE) >= 100 * BLOCK
    allocations.stop()
    del again


def _growth_of_bytes(n):
    """Live-byte growth while bytes(n) is made, net of the measuring.

    Two reads in a row measure what reading costs (the int holding the
    first value); the interpreter may allocate or free something of its
    own now and then, so callers retry.  Inline code: on 3.9/3.10 a Python
    call allocates a frame."""
    c0 = _native.alloc_live_bytes()
    d0 = _native.alloc_live_bytes()
    c = _native.alloc_live_bytes()
    obj = bytes(n)
    d = _native.alloc_live_bytes()
    return (d - c) - (d0 - c0), obj


def test_counters_see_the_exact_size_of_a_new_object():
    # GIVEN the counters on
    with allocations.counting():
        assert _native.alloc_counters()["counting"] is True
        size = sys.getsizeof(bytes(100_000))
        # WHEN a bytes object of known size is made
        growths = [_growth_of_bytes(100_000)[0] for _ in range(5)]
        # THEN the live bytes grow by exactly its size (allowing for the
        # interpreter's own occasional allocation in some attempts)
        assert size in growths, growths
        assert all(abs(g - size) < 512 for g in growths), growths
        # AND shrink by it when it goes
        shrinks = []
        for _ in range(5):
            obj = bytes(100_000)
            c0 = _native.alloc_live_bytes()
            d0 = _native.alloc_live_bytes()
            c = _native.alloc_live_bytes()
            del obj
            d = _native.alloc_live_bytes()
            shrinks.append((c - d) + (d0 - c0))
        assert size in shrinks, shrinks
    assert _native.alloc_counters()["counting"] is False


def test_counting_is_reference_counted():
    _native.alloc_counting_start()
    _native.alloc_counting_start()
    _native.alloc_counting_stop()
    assert _native.alloc_counters()["counting"] is True
    _native.alloc_counting_stop()
    assert _native.alloc_counters()["counting"] is False
    with pytest.raises(RuntimeError, match="not started"):
        _native.alloc_counting_stop()


def test_counting_and_tracker_together():
    # GIVEN counting on, then the sampled tracker started and stopped
    with allocations.counting():
        allocations.start(mode="sampled")
        kept = keep_blocks(100)
        allocations.stop()
        # THEN the counters still run and stay exact
        growths = [_growth_of_bytes(50_000)[0] for _ in range(5)]
        assert sys.getsizeof(bytes(50_000)) in growths, growths
        del kept


def test_counters_by_domain():
    with allocations.counting():
        counters = allocations.counters()
    assert set(counters) >= {
        "raw_bytes",
        "mem_bytes",
        "obj_bytes",
        "raw_blocks",
        "mem_blocks",
        "obj_blocks",
        "bytes",
        "blocks",
        "counting",
    }


def test_tracker_memory_is_reported_and_bounded_by_caps():
    # GIVEN a tracker capped at 1,000 traces
    allocations.start(mode="exact", max_traces=1_000)
    kept = keep_blocks(3_000)
    stats = allocations.stats()
    # THEN what does not fit is counted, not stored
    assert stats["traces"] <= 2_000  # per table
    assert stats["dropped_traces"] > 0
    assert allocations.tracker_memory() > 0
    del kept


def test_tracking_context_manager_takes_the_snapshot_and_stops():
    with allocations.tracking(mode="exact") as t:
        kept = keep_blocks(500)
    assert not allocations.is_tracking()
    assert bytes_at(t.snapshot.group_by("line"), KEEP_LINE) >= 500 * BLOCK
    del kept


def test_tracker_stops_when_the_block_raises():
    with pytest.raises(KeyError), allocations.tracking():
        raise KeyError("x")
    assert not allocations.is_tracking()


def test_reset_peak_restarts_from_live():
    allocations.start()
    temporary_blocks()
    allocations.reset_peak()
    snap = allocations.snapshot()
    assert bytes_at(snap.group_by("line", peak=True), TMP_LINE) == 0


def _raw_api():
    """PyMem_RawMalloc/RawFree callable without the GIL (ctypes.CDLL releases
    it around each call) and with it (ctypes.PyDLL keeps it)."""
    import ctypes

    libs = ctypes.CDLL(None), ctypes.PyDLL(None)
    for lib in libs:
        lib.PyMem_RawMalloc.restype = ctypes.c_void_p
        lib.PyMem_RawMalloc.argtypes = [ctypes.c_size_t]
        lib.PyMem_RawFree.argtypes = [ctypes.c_void_p]
    return libs


def test_raw_domain_without_the_gil():
    nogil, withgil = _raw_api()
    allocations.start(mode="exact")
    # WHEN raw blocks are allocated by a thread that released the GIL
    ptrs = [nogil.PyMem_RawMalloc(1000) for _ in range(100)]
    snap = allocations.snapshot()
    # THEN they count, on the empty stack (no Python frame can be read)
    frameless = [s for s in snap.sites if not s.stack]
    assert sum(s.bytes for s in frameless) == 100 * 1000
    assert sum(s.blocks for s in frameless) == 100
    # WHEN freed without the GIL: the change is queued, then applied
    for p in ptrs:
        nogil.PyMem_RawFree(p)
    snap = allocations.snapshot()
    assert not [s for s in snap.sites if not s.stack]
    # AND blocks allocated with the GIL keep their Python line, and leave
    # when freed without it
    ptrs = [withgil.PyMem_RawMalloc(2000) for _ in range(100)]  # RAW_LINE
    raw_line = _line_of(test_raw_domain_without_the_gil, "RAW_LINE")
    snap = allocations.snapshot()
    assert bytes_at(snap.group_by("line"), raw_line) >= 100 * 2000
    for p in ptrs:
        nogil.PyMem_RawFree(p)
    snap = allocations.snapshot()
    assert bytes_at(snap.group_by("line"), raw_line) < 100 * 2000
    assert snap.peak_bytes >= 100 * 2000


def test_no_hook_is_left_behind_after_tracemalloc_was_on_top():
    # GIVEN tracemalloc started on top of the tracker, and the tracker
    # stopped first (its hooks must stay below tracemalloc's meanwhile)
    import subprocess

    code = (
        "import sys, tracemalloc\n"
        "from pymemtrace import allocations\n"
        "from pymemtrace.debug_malloc_stats import SysDebugMallocStats\n"
        "before = SysDebugMallocStats().allocator\n"
        "allocations.start(); tracemalloc.start(); allocations.stop(); tracemalloc.stop()\n"
        "allocations.start(); allocations.stop()\n"
        "print(before, SysDebugMallocStats().allocator)\n"
    )
    # WHEN the tracker runs once more after tracemalloc has gone
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # THEN nothing of ours hides the allocator's report any more
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.split()
    assert after == before != "hooked"


@pytest.mark.parametrize(
    "option, value",
    [
        ("max_traces", -1),
        ("max_traces", -(2**63)),
        ("max_traces", 2**63),
        ("max_traces", 2**200),
        ("max_stacks", -1),
        ("seed", -1),
        ("seed", 2**64),
    ],
)
def test_native_start_refuses_counts_that_would_wrap(option, value):
    # GIVEN a negative or absurd count given to the C function itself
    # THEN ValueError names it (before, -1 wrapped round to 2**64-1), and
    # nothing was started
    with pytest.raises(ValueError, match=f"{option} must be an integer between 0 and"):
        _native.alloc_start(mode="exact", **{option: value})
    assert not _native.alloc_is_tracking()


@pytest.mark.parametrize(
    "option, value",
    [("max_traces", 0), ("max_traces", 2**63 - 1), ("max_stacks", 2**63 - 1), ("seed", 2**64 - 1)],
)
def test_native_start_takes_every_count_in_range(option, value):
    # the twin: the edges of each range start the tracker
    _native.alloc_start(mode="sampled", **{option: value})
    try:
        assert _native.alloc_is_tracking()
    finally:
        _native.alloc_stop()


def test_native_start_wants_int_counts():
    with pytest.raises(TypeError, match="max_traces must be an int, not float"):
        _native.alloc_start(max_traces=1.5)
