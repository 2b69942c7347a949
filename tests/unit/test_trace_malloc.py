"""pymemtrace.trace_malloc: the seed-compatible wrapper over tracemalloc."""

import logging
import sys
import threading
import tracemalloc

import pytest

from pymemtrace import trace_malloc
from pymemtrace.trace_malloc import TraceMalloc, trace_malloc_log

KIB = 1024
N = 1000


@pytest.fixture
def not_tracing():
    """The test needs tracemalloc off at the start (and leaves it off)."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already tracing in this test run")
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()
        pytest.fail("the test left tracemalloc running")


def _stats_at(tm, lineno, filename=__file__):
    return [
        s
        for s in tm.statistics
        if s.traceback[0].filename == filename and s.traceback[0].lineno == lineno
    ]


def _line_of(func, marker):
    """Line number of the source line of ``func`` containing ``marker``."""
    import inspect

    lines, start = inspect.getsourcelines(func)
    for offset, text in enumerate(lines):
        if marker in text:
            return start + offset
    raise AssertionError(f"{marker!r} not in {func.__name__}")


def _plant(kept):
    kept.extend(bytes(KIB) for _ in range(N))  # PLANTED


def _twin():
    for _ in range(N):
        bytes(KIB)  # TWIN (allocated and freed)


def test_planted_allocation_reported_at_its_line_and_twin_not(not_tracing):
    # GIVEN a block that keeps 1000 objects of 1 KiB from one line and
    # allocates then frees as many from another line
    kept = []
    # WHEN it runs under TraceMalloc
    with TraceMalloc("lineno") as tm:
        _plant(kept)
        _twin()
    # THEN the keeping line holds ~1000 KiB in ~1000 blocks
    planted = _stats_at(tm, _line_of(_plant, "PLANTED"))
    assert len(planted) == 1, tm.format_statistics(None)
    assert N * KIB <= planted[0].size_diff <= N * (KIB + 64)
    assert N <= planted[0].count_diff <= N + 2
    # AND the freeing line holds nothing
    assert all(s.size_diff == 0 for s in _stats_at(tm, _line_of(_twin, "TWIN")))
    # AND the net change is the planted memory plus the list holding it
    assert N * KIB <= tm.diff <= N * (KIB + 64) + 16 * KIB
    # AND statistics come largest change first
    assert tm.net_statistics()[0] == planted[0]


def test_diff_is_net_of_tracemalloc_own_memory(not_tracing):
    # GIVEN a block that keeps 1000 small ints and a tracemalloc snapshot
    kept = []
    with TraceMalloc() as tm:
        kept.extend(i * 1_000_003 for i in range(N))
        kept.append(tracemalloc.take_snapshot())
    # THEN nothing allocated by tracemalloc's own code is counted
    assert not [
        s for s in tm.statistics if s.traceback[0].filename == tracemalloc.__file__
    ]
    assert not [
        s for s in tm.statistics if s.traceback[0].filename == trace_malloc.__file__
    ]
    # AND diff is the ints and the list only (32 B per int on 64-bit builds)
    assert N * 24 <= tm.diff <= N * 48 + 16 * KIB
    # AND tracemalloc's own tables grew (more than the ints took) and are
    # reported apart, not subtracted from diff (the seed made diff negative)
    assert tm.tracemalloc_memory_usage > 0
    assert tm.tracemalloc_memory_usage == tm.memory_finish - tm.memory_start
    assert tm.diff == sum(s.size_diff for s in tm.statistics)


def test_stops_tracemalloc_when_it_started_it(not_tracing):
    # GIVEN tracemalloc is off
    # WHEN a TraceMalloc block runs
    with TraceMalloc(nframes=3) as tm:
        # THEN it traces inside with the requested depth
        assert tracemalloc.is_tracing()
        assert tracemalloc.get_traceback_limit() == 3
    # AND stops tracing on exit
    assert tm.started_tracing
    assert not tracemalloc.is_tracing()


def test_leaves_tracemalloc_running_when_caller_started_it(not_tracing):
    # GIVEN the caller traces with 5 frames
    tracemalloc.start(5)
    try:
        # WHEN a TraceMalloc block asking for 1 frame runs
        with TraceMalloc(nframes=1) as tm:
            kept = [bytes(KIB) for _ in range(100)]
        # THEN tracing goes on with the caller's depth
        assert tracemalloc.is_tracing()
        assert tracemalloc.get_traceback_limit() == 5
        assert not tm.started_tracing
        # (blocks traced since start(5) and freed inside the block, a few
        # KiB on the debug build, come off the diff)
        assert tm.diff >= 90 * KIB
    finally:
        tracemalloc.stop()
    del kept


def test_nested_inner_does_not_stop_outer(not_tracing):
    kept = []
    # GIVEN an outer block that starts tracemalloc
    with TraceMalloc() as outer:
        kept.append(bytes(100 * KIB))
        # WHEN an inner block runs and exits
        with TraceMalloc() as inner:
            kept.append(bytes(200 * KIB))
        # THEN tracing goes on for the outer block
        assert tracemalloc.is_tracing()
        kept.append(bytes(300 * KIB))
    # AND the inner block saw its own allocation, the outer block all three
    assert 196 * KIB <= inner.diff < 210 * KIB
    assert 596 * KIB <= outer.diff < 620 * KIB
    # AND only the outer block started and stopped tracing
    assert outer.started_tracing and not inner.started_tracing
    assert not tracemalloc.is_tracing()


def test_overlapping_blocks_stop_tracing_when_the_last_exits(not_tracing):
    # GIVEN two blocks that overlap without nesting (as two threads would)
    first, second = TraceMalloc(), TraceMalloc()
    first.__enter__()
    second.__enter__()
    # WHEN the one that started tracing exits first
    first.__exit__(None, None, None)
    # THEN tracing goes on for the other one
    assert first.started_tracing
    assert tracemalloc.is_tracing()
    second.__exit__(None, None, None)
    # AND stops when the last exits
    assert not tracemalloc.is_tracing()


def test_blocks_in_threads_share_one_session(not_tracing):
    # GIVEN two threads whose TraceMalloc blocks overlap in time
    barrier = threading.Barrier(2, timeout=30)
    results, errors = {}, []

    def worker(name, size):
        try:
            kept = []
            with TraceMalloc() as tm:
                barrier.wait()  # both blocks are open here
                kept.append(bytes(size))
                barrier.wait()  # both allocated before either exits
            results[name] = tm.diff
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("a", 100 * KIB)),
        threading.Thread(target=worker, args=("b", 300 * KIB)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN neither block lost its tracing to the other
    assert not errors
    # (each block sees the other thread's allocation too: tracing is process-wide)
    assert results["a"] >= 100 * KIB and results["b"] >= 300 * KIB
    # AND tracing stopped once both exited
    assert not tracemalloc.is_tracing()


def test_exception_in_block_propagates_and_stops_tracing(not_tracing):
    kept = []
    # WHEN the block raises
    with pytest.raises(KeyError):
        with TraceMalloc() as tm:
            kept.append(bytes(50 * KIB))
            raise KeyError("boom")
    # THEN tracing stopped and the results up to the raise are there
    assert not tracemalloc.is_tracing()
    assert tm.diff >= 50 * KIB


def test_tracemalloc_stopped_inside_block_is_an_error(not_tracing):
    with pytest.raises(RuntimeError, match="stopped inside"):
        with TraceMalloc():
            tracemalloc.stop()
    # AND the next block starts a fresh session
    with TraceMalloc() as tm:
        pass
    assert tm.started_tracing and not tracemalloc.is_tracing()


@pytest.mark.parametrize("bad", ["line", "", None, "LINENO"])
def test_granularity_validated(bad):
    with pytest.raises(
        ValueError,
        match="statistics_granularity must be one of 'filename', 'lineno', 'traceback'",
    ):
        TraceMalloc(bad)
    with pytest.raises(ValueError, match="statistics_granularity"):
        trace_malloc_log(logging.INFO, statistics_granularity=bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_nframes_validated(bad):
    with pytest.raises(ValueError, match="nframes must be a positive integer"):
        TraceMalloc(nframes=bad)


def test_filename_granularity_groups_by_file(not_tracing):
    kept = []
    with TraceMalloc("filename") as tm:
        _plant(kept)
    mine = [s for s in tm.statistics if s.traceback[0].filename == __file__]
    assert len(mine) == 1
    assert mine[0].traceback[0].lineno == 0
    assert mine[0].size_diff >= N * KIB


def test_traceback_granularity_keeps_the_stack(not_tracing):
    kept = []
    with TraceMalloc("traceback") as tm:
        _plant(kept)
    planted = [s for s in tm.net_statistics() if s.size_diff >= N * KIB]
    assert len(planted) == 1
    frames = [(f.filename, f.lineno) for f in planted[0].traceback]
    # the stack goes from the planting line out to this test
    assert (__file__, _line_of(_plant, "PLANTED")) in frames
    assert any(name == __file__ and line != frames[0][1] for name, line in frames[1:])


def test_decorator_logs_net_memory(not_tracing, caplog):
    # GIVEN a decorated function that keeps memory
    kept = []

    @trace_malloc_log(logging.WARNING, top=2)
    def load(cache):
        _plant(cache)
        return len(cache)

    # WHEN it is called
    with caplog.at_level(logging.DEBUG, logger="pymemtrace.trace_malloc"):
        result = load(kept)
    # THEN it returns as before and logs one record at the level asked
    assert result == N
    records = [r for r in caplog.records if r.name == "pymemtrace.trace_malloc"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert message.startswith("TraceMalloc memory delta: +")
    assert 'for "test_decorator_logs_net_memory.<locals>.load()"' in message
    delta = int(message.split("+", 1)[1].split(" ")[0].replace(",", ""))
    assert N * KIB <= delta <= N * (KIB + 64) + 16 * KIB
    # AND the top statistic is the planting line
    assert f"{__file__}:{_line_of(_plant, 'PLANTED')}" in message.splitlines()[1]
    assert not tracemalloc.is_tracing()


def test_decorator_logs_when_function_raises(not_tracing, caplog):
    @trace_malloc_log(logging.INFO)
    def fails():
        raise ValueError("nope")

    with caplog.at_level(logging.INFO, logger="pymemtrace.trace_malloc"):
        with pytest.raises(ValueError):
            fails()
    assert (
        len([r for r in caplog.records if "TraceMalloc memory delta" in r.getMessage()])
        == 1
    )
    assert not tracemalloc.is_tracing()


def test_trace_off_makes_everything_a_no_op(not_tracing, monkeypatch, caplog):
    monkeypatch.setattr(TraceMalloc, "TRACE_ON", False)

    @trace_malloc.trace_malloc_report(logging.INFO)
    def work():
        return [bytes(KIB)]

    with caplog.at_level(logging.INFO, logger="pymemtrace.trace_malloc"):
        with TraceMalloc() as tm:
            assert not tracemalloc.is_tracing()
            work()
    assert tm.statistics == [] and tm.diff == 0
    assert not caplog.records


def test_trace_off_inside_block_still_stops_tracing(not_tracing, monkeypatch):
    with TraceMalloc() as tm:
        monkeypatch.setattr(TraceMalloc, "TRACE_ON", False)
    assert tm.started_tracing
    assert not tracemalloc.is_tracing()


def test_format_statistics(not_tracing):
    kept = []
    with TraceMalloc() as tm:
        _plant(kept)
    text = tm.format_statistics(limit=1)
    first, second = text.splitlines()[:2]
    assert first.startswith(f"TraceMalloc: {tm.diff:+,d} bytes net")
    assert f"{__file__}:{_line_of(_plant, 'PLANTED')}" in second


def test_module_keeps_seed_names():
    assert trace_malloc.trace_malloc_report is trace_malloc.trace_malloc_log
    assert TraceMalloc.ALLOWED_GRANULARITY == ("filename", "lineno", "traceback")
    assert sys.modules["pymemtrace.trace_malloc"] is trace_malloc
