"""Every event is seen: a tracer never stops listening where memory did
not move (the quiet tracers of the first wave did, and charged a jump to
whatever event came after the poller noticed it).  A growth at a location
seen many times before is written at the next event, with no wait for the
poller; hooks of other tools are restored; threads do not pile up.
GIVEN/WHEN/THEN on both backends where both exist.
"""
import mmap
import os
import sys
import time

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

# The default backend of this interpreter.
DEFAULT_BACKEND = "monitoring" if sys.version_info >= (3, 12) else "legacy"
needs_monitoring = pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring needs CPython 3.12+")

MB = 1 << 20
# Copied into the mmaps (no temporary 10 MB buffer freed beside the growth:
# see test_profile.py).
ZEROS = bytes(10 * MB)
CALLS = 40
GROW_AT = 5
TRACERS = [cPyMemTrace.Profile, cPyMemTrace.Trace]
IDS = ["Profile", "Trace"]


@pytest.fixture(autouse=True)
def monitoring_backend():
    old = _native._set_default_backend(DEFAULT_BACKEND)
    yield
    _native._set_default_backend(old)


def quiet_function(i, keep):
    """The same locations on every call; grows RSS by 10 MB on call GROW_AT
    (an anonymous mmap written through, so the pages are resident)."""
    if i == GROW_AT:
        data = mmap.mmap(-1, 10 * MB)
        data.write(ZEROS)
        keep.append(data)
    return i


def call_in_a_loop(keep, n=CALLS):
    for i in range(n):
        quiet_function(i, keep)


def grown_records(log, function="quiet_function"):
    return [r for r in log.tagged("NEXT:") if r.function.endswith(function) and r.d_mem >= 9 * MB]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_growth_at_a_location_seen_many_times_is_written_in_that_function(cls, tmp_path):
    # GIVEN a tracer with the default trigger around a loop that calls the
    # same function CALLS times
    path = tmp_path / "q.log"
    keep = []
    # WHEN the function allocates 10 MB on its 5th call
    with cls(filepath=str(path)):
        call_in_a_loop(keep)
    log = parse(path)
    # THEN the tracer saw every event (a call alone is two)
    assert log.tagged("LAST:")[0].event >= 2 * CALLS, [(r.tag, r.event, r.function) for r in log.records]
    # AND the growth is one NEXT record in the function, at the call that
    # grew, with no wait for the poller
    grown = grown_records(log)
    assert len(grown) == 1, [(r.tag, r.function, r.d_mem) for r in log.records]
    assert grown[0].line > quiet_function.__code__.co_firstlineno


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_every_event_trigger_switches_nothing_off(cls, tmp_path):
    # GIVEN d_rss_trigger=0 (every event written)
    path = tmp_path / "all.log"
    # WHEN the same quiet function is called CALLS times
    with cls(0, filepath=str(path)):
        for _ in range(CALLS):
            quiet_function(-1, [])
    log = parse(path)
    # THEN every call and return is in the log
    starts = [r for r in log.records if r.what == "CALL" and r.function.endswith("quiet_function")]
    assert len(starts) == CALLS


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_outer_tracer_listens_again_after_a_nested_one_exits(cls, tmp_path):
    # GIVEN an outer tracer
    outer_path, inner_path = tmp_path / "outer.log", tmp_path / "inner.log"
    keep = []
    with cls(filepath=str(outer_path)):
        call_in_a_loop(keep, n=GROW_AT)
        # AND a nested tracer entered and left over the same locations
        with cls(filepath=str(inner_path)):
            call_in_a_loop(keep, n=GROW_AT)
        # WHEN the function grows memory after the nested tracer exited
        call_in_a_loop(keep, n=GROW_AT + 1)
    # THEN the outer log has the growth, naming the function
    outer = parse(outer_path)
    assert grown_records(outer), [(r.tag, r.function, r.d_mem) for r in outer.records]
    # AND the nested tracer saw every event of its block: at least the call
    # and return of quiet_function and call_in_a_loop (numbered from 0)
    inner = parse(inner_path)
    assert inner.tagged("FRST:"), inner.records
    assert inner.tagged("LAST:")[0].event >= 3, inner.records


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_the_backend_under_test_is_the_default_one(cls, tmp_path):
    # GIVEN the default backend of this interpreter
    # WHEN a tracer is entered
    with cls(filepath=str(tmp_path / "b.log")) as tracer:
        pass
    # THEN it uses it (the tests of this file test that backend)
    assert tracer.backend == DEFAULT_BACKEND


def test_trace_writes_a_growth_at_a_line_of_the_frame_that_grew(tmp_path):
    # GIVEN a Trace
    path = tmp_path / "lines.log"
    keep = []
    # WHEN memory grows inside quiet_function, which then keeps running
    # lines (the wait loop) in the same frame
    with cPyMemTrace.Trace(filepath=str(path)):
        call_in_a_loop(keep)
    # THEN the growth is written at a LINE event of that frame
    log = parse(path)
    lines = [r for r in grown_records(log) if r.what == "LINE"]
    assert lines, [(r.tag, r.what, r.function, r.d_mem) for r in log.records]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_tracer_writes_a_second_growth_too(cls, tmp_path):
    # GIVEN a tracer that already wrote one growth
    path = tmp_path / "twice.log"
    keep = []
    with cls(filepath=str(path)):
        call_in_a_loop(keep)
        # WHEN memory grows again later
        call_in_a_loop(keep)
    # THEN both growths are NEXT records naming the function
    log = parse(path)
    assert len(grown_records(log)) == 2, [(r.tag, r.what, r.function, r.d_mem) for r in log.records]


def _python_profiler(frame, event, arg):
    pass


@pytest.fixture
def restore_profile():
    old = sys.getprofile()
    yield
    sys.setprofile(old)


def test_a_sys_setprofile_function_is_restored_after_a_profile(tmp_path, restore_profile):
    # GIVEN a sys.setprofile function
    sys.setprofile(_python_profiler)
    # WHEN a Profile saw a growth and exited
    keep = []
    path = tmp_path / "p.log"
    with cPyMemTrace.Profile(filepath=str(path)):
        call_in_a_loop(keep)
    restored = sys.getprofile()
    sys.setprofile(None)
    # THEN the function is the profiler again
    assert restored is _python_profiler
    assert grown_records(parse(path))


def test_cprofile_is_restored_after_a_profile(tmp_path, restore_profile):
    import cProfile
    import pstats

    # GIVEN cProfile running
    prof = cProfile.Profile()
    prof.enable()
    try:
        # WHEN a Profile saw a growth and exited
        with cPyMemTrace.Profile(filepath=str(tmp_path / "c.log")):
            call_in_a_loop([])
        # AND a function is called after it
        quiet_function(-2, [])
    finally:
        prof.disable()
    # THEN cProfile recorded that call (it was profiling again)
    stats = pstats.Stats(prof).stats
    assert any(name == "quiet_function" for (_, _, name) in stats), sorted(stats)


OTHER_TOOL = 1  # sys.monitoring.COVERAGE_ID: a coverage tool beside us


@pytest.fixture
def other_tool():
    """Another sys.monitoring tool counting PY_START of quiet_function."""
    mon = sys.monitoring
    starts = []

    def on_start(code, offset):
        if code is quiet_function.__code__:
            starts.append(offset)

    mon.use_tool_id(OTHER_TOOL, "test-other-tool")
    mon.register_callback(OTHER_TOOL, mon.events.PY_START, on_start)
    mon.set_events(OTHER_TOOL, mon.events.PY_START)
    try:
        yield starts
    finally:
        mon.set_events(OTHER_TOOL, 0)
        mon.register_callback(OTHER_TOOL, mon.events.PY_START, None)
        mon.free_tool_id(OTHER_TOOL)


@needs_monitoring
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_another_monitoring_tool_keeps_every_event(cls, tmp_path, other_tool):
    # GIVEN another sys.monitoring tool listening to PY_START
    path = tmp_path / "q.log"
    keep = []
    # WHEN a tracer runs beside it and memory grows
    with cls(filepath=str(path)):
        call_in_a_loop(keep)
    # THEN the other tool saw every call (DISABLE is per tool)
    assert len(other_tool) == CALLS
    # AND the tracer still logged the growth
    log = parse(path)
    assert grown_records(log), [(r.tag, r.function, r.d_mem) for r in log.records]
    # AND after exit the other tool still gets events
    other_tool.clear()
    quiet_function(-1, keep)
    assert len(other_tool) == 1


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_tracer_in_another_thread_switches_nothing_off(cls, tmp_path):
    # GIVEN a tracer entered in a thread that is not the main thread
    # (pending calls, which make it listen again, run on the main thread
    # only)
    import threading

    path = tmp_path / "t.log"

    def worker():
        with cls(filepath=str(path)):
            for _ in range(CALLS):
                quiet_function(-1, [])

    # WHEN it traces CALLS calls of a quiet function
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    # THEN it saw every call and return of it
    log = parse(path)
    calls = [r for r in log.records if r.what == "CALL" and r.function.endswith("quiet_function")]
    assert log.tagged("LAST:")[0].event >= 2 * CALLS - 1  # numbered from 0
    # AND (trigger 0 aside) it is the same tracer as on the main thread;
    # not under make test-asan, where ASan's quarantine moves RSS at
    # events of its own choosing, so another record may come first
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        assert not calls or calls[0].tag == "FRST:"


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_all_threads_tracers_see_every_event(cls, tmp_path):
    # GIVEN an all_threads tracer
    path = tmp_path / "nq.log"
    with cls(filepath=str(path), all_threads=True) as tracer:
        # WHEN a quiet function is called CALLS times
        for _ in range(CALLS):
            quiet_function(-1, [])
    # THEN every call and return was seen
    assert tracer.events >= 2 * CALLS


# ---- measure="heap": the poller watches the heap counter -------------------

# Steps smaller than the trigger (the page size): the twin's heap moves by
# less than the trigger at every instant; the grower's by 2 MB in all.
STEP = 1024
STEPS = 2048


def heap_grower(keep, tracer):
    """2 MB of Python objects kept, allocated in STEPS steps in this frame."""
    for _ in range(STEPS):
        keep.append(bytearray(STEP))


def heap_twin():
    """The same allocations, each freed at once: the heap does not grow."""
    for _ in range(STEPS):
        block = bytearray(STEP)
        del block


def enter_heap(cls, path):
    tracer = cls(filepath=str(path), measure="heap")
    try:
        tracer.__enter__()
    except NotImplementedError:
        pytest.skip("no allocation counters in this build")
    return tracer


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_heap_tracer_records_a_planted_growth_and_not_its_twin(cls, tmp_path):
    # GIVEN a measure="heap" tracer over CALLS calls that allocate nothing
    path = tmp_path / "heap.log"
    keep = []
    tracer = enter_heap(cls, path)
    try:
        for _ in range(CALLS):
            quiet_function(-1, keep)
        # WHEN a function allocates and frees 2 MB in steps (the twin)
        heap_twin()
        seen = tracer.events
        # AND another keeps 2 MB allocated in steps, inside one frame
        heap_grower(keep, tracer)
    finally:
        tracer.__exit__(None, None, None)
    log = parse(path)
    records = [(r.tag, r.what, r.function, r.d_mem) for r in log.records]
    # THEN the tracer saw every event of those calls
    assert seen >= 2 * CALLS, records
    # AND the growth is in NEXT records naming the grower
    grown = sum(r.d_mem for r in log.tagged("NEXT:") if r.function.endswith("heap_grower"))
    assert grown >= STEPS * STEP * 3 // 4, records
    # AND the twin has no growth
    assert not [r for r in log.tagged("NEXT:") if r.function.endswith("heap_twin") and abs(r.d_mem) >= STEPS * STEP // 2], records


needs_legacy = pytest.mark.skipif(DEFAULT_BACKEND != "legacy", reason="the legacy backend is the default on CPython 3.9-3.11 only")
GETTERS = [sys.getprofile, sys.gettrace]


@needs_legacy
@pytest.mark.parametrize("cls,get_hook", list(zip(TRACERS, GETTERS)), ids=IDS)
def test_legacy_hook_stays_on_while_memory_does_not_move_and_after_a_nested_exit(cls, get_hook, tmp_path):
    # GIVEN a legacy tracer after calls that allocate nothing
    with cls(filepath=str(tmp_path / "outer.log")) as outer:
        call_in_a_loop([], n=GROW_AT)
        # THEN its hook is still on the thread
        on = get_hook()
        seen_before = outer.events
        # WHEN a nested tracer is entered and exits
        with cls(filepath=str(tmp_path / "inner.log")) as inner:
            during = get_hook()
        quiet_function(-1, [])
        # THEN the outer hook is back and sees the events after
        seen_after = outer.events
    assert on is outer
    assert during is inner
    assert seen_after >= seen_before + 2


@pytest.mark.parametrize("measure", ["rss", "heap"])
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_growth_in_a_loop_that_never_releases_the_gil_is_seen(cls, measure, tmp_path):
    # GIVEN a tracer that stopped listening
    path = tmp_path / "cpu.log"
    keep = []
    tracer = enter_heap(cls, path) if measure == "heap" else cls(filepath=str(path)).__enter__()
    try:
        call_in_a_loop(keep, n=GROW_AT)
        # WHEN memory grows by 10 MB and the code then spins without ever
        # releasing the GIL (on 3.9-3.12 the pending call needs the waker
        # thread to be run there); the deadline only bounds a failure
        seen = tracer.events
        if measure == "rss":
            data = mmap.mmap(-1, 10 * MB)
            data.write(ZEROS)
        else:
            data = bytes(10 * MB)
        keep.append(data)
        # (the growth may be written at once, at keep.append)
        deadline = time.monotonic() + 30
        while tracer.events == seen and time.monotonic() < deadline:
            quiet_function(-1, keep)  # a Python call: an event on 3.12+ too
    finally:
        tracer.__exit__(None, None, None)
    # THEN the tracer listened again and wrote the growth
    log = parse(path)
    assert [r for r in log.tagged("NEXT:") if r.d_mem >= 9 * MB], [(r.tag, r.what, r.function, r.d_mem) for r in log.records]


def _threads_of_this_process():
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc (Linux)")
def test_a_loop_of_short_tracers_does_not_pile_up_threads(tmp_path):
    # GIVEN the threads of this process with one quiet tracer active (the
    # poller and, on 3.9-3.12, the waker thread)
    with cPyMemTrace.Profile(filepath=os.devnull):
        quiet_function(-1, [])
        with_one = _threads_of_this_process()
    # WHEN many short quiet tracers are entered and exit in a row
    for _ in range(100):
        with cPyMemTrace.Profile(filepath=os.devnull):
            quiet_function(-1, [])
    # THEN no more threads are alive than with one (the waker is reused,
    # not started again for each tracer; a thread per tracer outlives it
    # until it gets the GIL)
    assert _threads_of_this_process() <= with_one
