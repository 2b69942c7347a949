"""pymemtrace.debug_malloc_stats: capture, parse and diff sys._debugmallocstats()."""

import os
import pathlib
import subprocess
import sys
import sysconfig
import textwrap
import tracemalloc

import pytest

from pymemtrace import debug_malloc_stats as dms
from pymemtrace.debug_malloc_stats import (
    DiffSysDebugMallocStats,
    SysDebugMallocStats,
    diff_debugmallocstats,
    get_debugmallocstats,
)

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
# (fixture, pool size, arena size) as each CPython prints them
PYMALLOC_FIXTURES = [
    ("debugmallocstats_3.9.txt", 4096, 256 * 1024),
    ("debugmallocstats_3.10.txt", 16384, 1024 * 1024),
    ("debugmallocstats_3.11.txt", 16384, 1024 * 1024),
    ("debugmallocstats_3.12.txt", 16384, 1024 * 1024),
    ("debugmallocstats_3.13.txt", 16384, 1024 * 1024),
]
# Does this interpreter run pymalloc?  From its build and environment, not
# from the report under test.
PYMALLOC_LIVE = (
    bool(sysconfig.get_config_var("WITH_PYMALLOC"))
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
    and not tracemalloc.is_tracing()
    and os.environ.get("PYTHONMALLOC", "default")
    in ("default", "debug", "pymalloc", "pymalloc_debug")
)


def fixture_text(name):
    return (FIXTURES / name).read_text()


def _drop_lines(text, predicate):
    return "\n".join(line for line in text.splitlines() if not predicate(line)) + "\n"


def _fd_count():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("name, pool_size, arena_size", PYMALLOC_FIXTURES)
def test_parse_each_cpython_format(name, pool_size, arena_size):
    # GIVEN a real report of that CPython
    # WHEN it is parsed
    stats = SysDebugMallocStats(fixture_text(name))
    # THEN the pool and arena sizes are the ones it printed
    assert stats.allocator == "pymalloc" and stats.has_pymalloc
    assert stats.pool_size == pool_size and stats.pools_blocks.pool_size == pool_size
    assert stats.arena_size == arena_size and stats.arenas.arena_size == arena_size
    assert stats.small_block_threshold == 512 and stats.size_classes == 32
    assert stats.pool_overhead == 48
    # AND the rows add up to the totals the report printed
    rows, pools = stats.malloc_stats, stats.pools_blocks
    assert len(rows) >= 30
    assert sum(r.allocated_bytes for r in rows) == pools.allocated_bytes
    assert sum(r.available_bytes for r in rows) == pools.available_bytes
    assert sum(r.quantization for r in rows) == pools.quantization
    assert sum(r.pool_header_bytes for r in rows) == pools.pool_header_bytes
    assert pools.total == stats.arenas.arenas_total
    assert (
        stats.arenas.arenas_reclaimed
        == stats.arenas.ntimes_arena_allocated - stats.arenas.narenas
    )
    # AND the free lists are there, found by name (str or bytes, as the seed)
    assert stats.type_stat("PyListObjects").bytes_each == 40
    assert stats.has_object_type(b"PyDictObjects")
    assert stats.type_stat("1-sized PyTupleObjects").bytes_each == 32
    # AND the arena map section exists from 3.10 on, the seed's "Total" trap
    if pool_size == 16384:
        assert stats.arena_map["# arena map mid nodes"] == 1
    else:
        assert stats.arena_map == {}
    assert stats.other == {}


@pytest.mark.parametrize("name, pool_size, arena_size", PYMALLOC_FIXTURES)
def test_repr_reparses_to_the_same_snapshot(name, pool_size, arena_size):
    stats = SysDebugMallocStats(fixture_text(name))
    again = SysDebugMallocStats(repr(stats))
    assert again.malloc_stats == stats.malloc_stats
    assert again.type_stats == stats.type_stats
    assert diff_debugmallocstats(stats, again) == []


def test_identical_snapshots_diff_to_nothing():
    text = fixture_text("debugmallocstats_3.11.txt")
    assert (
        diff_debugmallocstats(
            SysDebugMallocStats(text), SysDebugMallocStats(text.encode())
        )
        == []
    )


def test_new_size_class_in_second_snapshot_is_diffed_not_a_crash():
    # GIVEN a first snapshot without size class 20 (336 bytes) and a second with it
    full = fixture_text("debugmallocstats_3.12.txt")
    row = next(line for line in full.splitlines() if line.split()[:2] == ["20", "336"])
    before = SysDebugMallocStats(_drop_lines(full, lambda line: line == row))
    after = SysDebugMallocStats(full)
    assert before.size_class(20) is None and after.size_class(20) is not None
    # WHEN they are diffed (the seed raised "Malloc stats length mismatch")
    lines = diff_debugmallocstats(before, after)
    # THEN the new class shows as growing from nothing, and nothing else changed
    pools, used, avail = (int(v) for v in row.split()[2:])
    assert lines == [
        dms._TABLE_HEADER,
        dms._TABLE_RULE,
        f"   20    336 {pools:+11d} {used:+15d} {avail:+13d}   (new size class: no pool before)",
    ]
    # AND the other way round it shows as emptied
    reverse = diff_debugmallocstats(after, before)
    assert reverse[2].startswith(f"   20    336 {-pools:+11d} {-used:+15d}")
    assert reverse[2].endswith("(size class emptied: no pool after)")


def test_type_in_one_snapshot_only_is_diffed_not_a_crash():
    # GIVEN 3.13 prints PyDictKeysObjects; a first snapshot without it
    full = fixture_text("debugmallocstats_3.13.txt")
    before = SysDebugMallocStats(
        _drop_lines(full, lambda line: "PyDictKeysObjects" in line)
    )
    after = SysDebugMallocStats(full)
    # WHEN diffed both ways (the seed raised KeyError for a new type)
    added = diff_debugmallocstats(before, after)
    removed = diff_debugmallocstats(after, before)
    # THEN each gives the one line, marked
    stat = after.type_stat("PyDictKeysObjects")
    assert added == [
        f"{f'+{stat.free_count} free PyDictKeysObjects * 32 bytes each':>48s} = "
        f"{stat.bytes_total:>+20,d}   (only in the second snapshot)"
    ]
    assert removed[0].endswith("(only in the first snapshot)")
    assert f"-{stat.free_count} free PyDictKeysObjects" in removed[0]


def test_changed_values_are_signed_differences():
    before_text = fixture_text("debugmallocstats_3.11.txt")
    after_text = before_text.replace(
        "# arenas allocated total           =                    4",
        "# arenas allocated total           =                    7",
    ).replace("4 arenas * 1048576", "4 arenas * 1048576")
    lines = diff_debugmallocstats(
        SysDebugMallocStats(before_text), SysDebugMallocStats(after_text)
    )
    assert lines == ["# arenas allocated total           =                   +3"]


def test_mimalloc_report_says_so_plainly():
    # GIVEN a 3.13 report under PYTHONMALLOC=mimalloc: no pools, no classes
    text = fixture_text("debugmallocstats_3.13_mimalloc.txt")
    before = SysDebugMallocStats(text)
    after = SysDebugMallocStats(
        text.replace("Allocated Blocks: 15851", "Allocated Blocks: 15951")
    )
    assert before.allocator == "mimalloc" and not before.has_pymalloc
    assert before.pools_blocks is None and before.malloc_stats == []
    assert before.mimalloc_stats["Bytes Reserved"] == 4342456
    # WHEN diffed
    lines = diff_debugmallocstats(before, after)
    # THEN the first line says why there are no size classes, then the change
    assert lines[0].startswith(
        "no pymalloc report: this interpreter allocates with mimalloc"
    )
    assert lines[-1] == "Allocated Blocks                   =                 +100"


def test_malloc_report_says_so_plainly():
    text = fixture_text("debugmallocstats_3.13_malloc.txt")
    stats = SysDebugMallocStats(text)
    assert stats.allocator == "malloc" and stats.small_block_threshold is None
    assert stats.type_stat("PyFloatObjects").bytes_each == 24
    assert diff_debugmallocstats(stats, stats) == [dms._no_pymalloc_message(stats)]


def test_text_that_is_not_a_report_is_rejected():
    with pytest.raises(ValueError, match="no sys._debugmallocstats"):
        SysDebugMallocStats("hello\nworld\n")


def test_truncated_pymalloc_report_is_rejected_clearly():
    text = fixture_text("debugmallocstats_3.10.txt")
    with pytest.raises(ValueError, match="incomplete pymalloc report: no pool size"):
        SysDebugMallocStats(_drop_lines(text, lambda line: "unused pools" in line))


def test_allocators_cannot_be_mixed():
    pymalloc = SysDebugMallocStats(fixture_text("debugmallocstats_3.13.txt"))
    malloc = SysDebugMallocStats(fixture_text("debugmallocstats_3.13_malloc.txt"))
    mimalloc = SysDebugMallocStats(fixture_text("debugmallocstats_3.13_mimalloc.txt"))
    # pymalloc hidden in one report (a hook came or went): explained, no crash
    (line,) = diff_debugmallocstats(malloc, pymalloc)
    assert line.startswith("cannot compare: the first snapshot has no pymalloc section")
    # two different allocators, or interpreters: not a diff at all
    with pytest.raises(ValueError, match="different allocators"):
        diff_debugmallocstats(pymalloc, mimalloc)
    with pytest.raises(ValueError, match="different interpreters"):
        diff_debugmallocstats(
            pymalloc, SysDebugMallocStats(fixture_text("debugmallocstats_3.9.txt"))
        )


# -- live reports --------------------------------------------------------


def test_capture_works_under_pytest_capture_and_restores_fd2(capfd):
    # GIVEN pytest captures descriptor 2 (capfd)
    # WHEN the report is captured
    report = get_debugmallocstats()
    # THEN the report came back to us, not to pytest's capture
    assert b"free PyListObjects" in report
    os.write(2, b"after capture\n")
    captured = capfd.readouterr()
    assert "free PyListObjects" not in captured.err
    # AND descriptor 2 points where it pointed before
    assert captured.err == "after capture\n"


def test_live_report_of_this_interpreter():
    stats = SysDebugMallocStats()
    if not PYMALLOC_LIVE:
        pytest.skip("this interpreter does not run pymalloc")
    assert stats.allocator == "pymalloc"
    assert stats.pool_size == (16384 if sys.version_info >= (3, 10) else 4096)
    assert dms.POOL_SIZE == stats.pool_size
    assert dms.interpreter_allocator() == "pymalloc"


def test_no_fd_leak_and_fd2_restored_on_error(monkeypatch):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    before_fds = _fd_count()
    before_fd2 = os.fstat(2)
    for _ in range(5):
        get_debugmallocstats()
    assert _fd_count() == before_fds

    # GIVEN sys._debugmallocstats fails while descriptor 2 is redirected
    def broken():
        raise OSError("simulated failure")

    monkeypatch.setattr(sys, "_debugmallocstats", broken)
    with pytest.raises(OSError, match="simulated failure"):
        get_debugmallocstats()
    # THEN descriptor 2 is back and nothing leaked
    after_fd2 = os.fstat(2)
    assert (after_fd2.st_dev, after_fd2.st_ino) == (
        before_fd2.st_dev,
        before_fd2.st_ino,
    )
    assert _fd_count() == before_fds


def test_missing_debugmallocstats_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(sys, "_debugmallocstats")
    with pytest.raises(RuntimeError, match="not available"):
        get_debugmallocstats()


def _growth(diff):
    """Blocks in use gained per size class from diff.before to diff.after."""
    before = {r.block_class: r.blocks_in_use for r in diff.before.malloc_stats}
    after = {r.block_class: r.blocks_in_use for r in diff.after.malloc_stats}
    return {c: after.get(c, 0) - before.get(c, 0) for c in set(before) | set(after)}


def test_diff_shows_planted_blocks_and_not_freed_twin():
    if not PYMALLOC_LIVE:
        pytest.skip("this interpreter does not run pymalloc")
    # GIVEN a block that keeps 1000 strings of 149 bytes (one size class;
    # which one depends on the debug hooks' padding)
    kept = []
    with DiffSysDebugMallocStats() as planted:
        kept.extend("%0100d" % i for i in range(1000))
    # AND a twin that makes and frees them
    with DiffSysDebugMallocStats() as twin:
        for i in range(1000):
            "%0100d" % i
    # THEN one size class has the kept strings in use after the block
    growth = _growth(planted)
    block_class = max(growth, key=growth.get)
    assert 1000 <= growth[block_class] <= 1100
    assert planted.after.size_class(block_class).size >= sys.getsizeof("x" * 100)
    # AND no class holds the twin's strings
    assert max(_growth(twin).values(), default=0) < 50
    # AND the text diff has the row of that class
    rows = [r.split() for r in planted.diff().splitlines()]
    row = next(r for r in rows if r[:1] == [str(block_class)])
    assert int(row[3]) == growth[block_class]


def test_diff_before_exit_is_an_error():
    diff = DiffSysDebugMallocStats()
    with pytest.raises(RuntimeError, match="not entered"):
        diff.diff()
    with diff:
        with pytest.raises(RuntimeError, match="has not exited"):
            diff.diff()
    assert isinstance(diff.diff(), str)


def test_pythonmalloc_malloc_subprocess_gives_the_clear_message():
    # GIVEN an interpreter without pymalloc
    code = textwrap.dedent(
        """
        from pymemtrace.debug_malloc_stats import DiffSysDebugMallocStats, SysDebugMallocStats
        kept = []
        with DiffSysDebugMallocStats() as d:
            kept.extend([] for _ in range(100))
        print(SysDebugMallocStats().allocator)
        print(d.diff())
        """
    )
    env = dict(os.environ, PYTHONMALLOC="malloc")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # THEN no crash and the diff opens with the plain explanation
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "malloc"
    assert lines[1].startswith(
        "no pymalloc report: this interpreter does not use pymalloc"
    )


@pytest.fixture
def pymalloc_untraced():
    if not PYMALLOC_LIVE:
        pytest.skip("this interpreter does not run pymalloc, or tracemalloc is on")
    yield
    assert not tracemalloc.is_tracing()


def test_tracemalloc_hides_pymalloc_and_the_diff_says_so(pymalloc_untraced):
    # GIVEN tracemalloc is tracing (CPython then prints no pymalloc section)
    tracemalloc.start()
    try:
        stats = SysDebugMallocStats()
        with DiffSysDebugMallocStats() as malloc_diff:
            kept = [{} for _ in range(100)]
    finally:
        tracemalloc.stop()
    # THEN the snapshot knows pymalloc is there but hidden, and why
    assert stats.allocator == "hooked" and not stats.has_pymalloc
    assert stats.hook_reason == "tracemalloc is tracing"
    assert stats.type_stats  # the free lists are still printed
    # AND the diff says so on its first line instead of pretending "malloc"
    first = malloc_diff.diff().splitlines()[0]
    assert first.startswith("no pymalloc report: tracemalloc is tracing")
    assert "outside TraceMalloc/tracemalloc" in first
    # AND without tracemalloc the same interpreter reports pymalloc again
    assert SysDebugMallocStats().allocator == "pymalloc"
    assert dms.interpreter_allocator() == "pymalloc"
    del kept


def test_tracing_started_inside_the_block_cannot_be_compared(pymalloc_untraced):
    # GIVEN a diff whose block starts tracemalloc (second report hooked)
    try:
        with DiffSysDebugMallocStats() as malloc_diff:
            tracemalloc.start()
    finally:
        tracemalloc.stop()
    # THEN diff() explains instead of raising or diffing nonsense
    (line,) = malloc_diff.diff().splitlines()
    assert line.startswith(
        "cannot compare: the second snapshot has no pymalloc section"
    )
    assert "tracemalloc is tracing" in line


def test_diff_inside_trace_malloc_says_so(pymalloc_untraced):
    from pymemtrace.trace_malloc import TraceMalloc

    with TraceMalloc(), DiffSysDebugMallocStats() as malloc_diff:
        pass
    assert malloc_diff.before.allocator == "hooked"
    assert malloc_diff.diff().startswith("no pymalloc report: tracemalloc is tracing")


def test_saved_malloc_report_can_be_marked_hooked():
    text = fixture_text("debugmallocstats_3.13_malloc.txt")
    stats = SysDebugMallocStats(text, hook_reason="tracemalloc is tracing")
    assert stats.allocator == "hooked"
    assert SysDebugMallocStats(text).allocator == "malloc"
