"""Quiet tracers: events where memory did not move are not looked at.

With a trigger > 0, a Profile/Trace of the main thread stops listening
where memory has not moved, and the RSS poller thread makes it listen again
(through a pending call) when RSS moves by the trigger:
- sys.monitoring backend (CPython 3.12+): the callback returns
  sys.monitoring.DISABLE for that location; sys.monitoring.restart_events()
  turns every location back on;
- legacy backend (3.9-3.11): the hook takes itself off the thread
  (PyEval_SetProfile/SetTrace(NULL)); the pending call puts it back.
The same tests run on both.  GIVEN/WHEN/THEN; waits for the poller are
bounded loops, never timing assertions.
"""
import mmap
import os
import sys
import time

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

# The quiet backend of this interpreter: on 3.12+ the legacy hooks are
# built on sys.monitoring and are never quiet (docs/cpymemtrace.md).
QUIET_BACKEND = "monitoring" if sys.version_info >= (3, 12) else "legacy"
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
    old = _native._set_default_backend(QUIET_BACKEND)
    yield
    _native._set_default_backend(old)


def quiet_function(i, keep):
    """The same locations on every call; grows RSS by 10 MB on call GROW_AT
    (an anonymous mmap written through, so the pages are resident), then
    waits inside this frame until the poller has seen it."""
    if i == GROW_AT:
        target = cPyMemTrace.rss() + 9 * MB
        data = mmap.mmap(-1, 10 * MB)
        data.write(ZEROS)
        keep.append(data)
        # Inline (a Python call would be the first event after the jump).
        for _ in range(5000):
            if _native._poller_rss()[0] >= target:
                break
            time.sleep(0.001)
        # A few more polls: the poller's pending call (which makes the
        # tracer listen again) runs between bytecodes of this frame.
        for _ in range(3):
            time.sleep(0.001)
    return i


def call_in_a_loop(keep, n=CALLS):
    for i in range(n):
        quiet_function(i, keep)


def grown_records(log, function="quiet_function"):
    return [r for r in log.tagged("NEXT:") if r.function.endswith(function) and r.d_mem >= 9 * MB]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_switched_off_location_still_gives_next_when_memory_grows(cls, tmp_path):
    # GIVEN a tracer with the default trigger around a loop that calls the
    # same function CALLS times
    path = tmp_path / "q.log"
    keep = []
    # WHEN the function allocates 10 MB on its 5th call
    with cls(filepath=str(path)):
        call_in_a_loop(keep)
    log = parse(path)
    # THEN the tracer saw fewer events than the calls made: the quiet
    # locations were switched off (a call alone is two events)
    assert log.tagged("LAST:")[0].event < CALLS, [(r.tag, r.event, r.function) for r in log.records]
    # AND the growth is still a NEXT record naming the function
    assert grown_records(log), [(r.tag, r.function, r.d_mem) for r in log.records]


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
    # GIVEN an outer tracer whose quiet locations were switched off
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
    # AND the nested tracer saw events: on sys.monitoring the call and
    # return of quiet_function and call_in_a_loop at least once (entering
    # restarted the locations the outer one had switched off; events are
    # numbered from 0); the legacy hook, which is quiet as a whole, its
    # first event and the one that made it take its hook off
    inner = parse(inner_path)
    assert inner.tagged("FRST:"), inner.records
    assert inner.tagged("LAST:")[0].event >= (3 if QUIET_BACKEND == "monitoring" else 1), inner.records


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_the_backend_under_test_is_the_quiet_one(cls, tmp_path):
    # GIVEN the default backend of this interpreter's quiet tracers
    # WHEN a tracer is entered
    with cls(filepath=str(tmp_path / "b.log")) as tracer:
        pass
    # THEN it uses it (the tests of this file test that backend)
    assert tracer.backend == QUIET_BACKEND


def test_trace_sees_line_events_of_the_running_frame_after_listening_again(tmp_path):
    # GIVEN a quiet Trace
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
def test_a_quiet_tracer_writes_a_second_growth_too(cls, tmp_path):
    # GIVEN a quiet tracer that already wrote one growth
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


def test_a_sys_setprofile_function_is_restored_after_a_quiet_profile(tmp_path, restore_profile):
    # GIVEN a sys.setprofile function
    sys.setprofile(_python_profiler)
    # WHEN a quiet Profile went quiet, saw a growth and exited
    keep = []
    path = tmp_path / "p.log"
    with cPyMemTrace.Profile(filepath=str(path)):
        call_in_a_loop(keep)
    restored = sys.getprofile()
    sys.setprofile(None)
    # THEN the function is the profiler again
    assert restored is _python_profiler
    assert grown_records(parse(path))


def test_cprofile_is_restored_after_a_quiet_profile(tmp_path, restore_profile):
    import cProfile
    import pstats

    # GIVEN cProfile running
    prof = cProfile.Profile()
    prof.enable()
    try:
        # WHEN a quiet Profile went quiet, saw a growth and exited
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
    # WHEN a tracer switches its quiet locations off and memory grows
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
    # AND (trigger 0 aside) it is the same tracer as on the main thread
    assert not calls or calls[0].tag == "FRST:"


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_all_threads_tracers_are_not_quiet(cls, tmp_path):
    # GIVEN a tracer that is not quiet: all_threads
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
    """2 MB of Python objects kept, allocated in STEPS steps in this frame,
    then a wait in this frame (inline: a Python call would be the first
    event after the jump) until the tracer saw an event (a Trace sees new
    lines of this frame) or a band fired, and a few polls for the band's
    pending call to run between bytecodes of the frame."""
    seen = _native._poller_rss()[2]
    for _ in range(STEPS):
        keep.append(bytearray(STEP))
    events = tracer.events
    for _ in range(5000):
        if _native._poller_rss()[2] != seen or tracer.events != events:
            break
        time.sleep(0.001)
    for _ in range(3):
        time.sleep(0.001)


def heap_twin():
    """The same allocations, each freed at once: the heap does not grow."""
    for _ in range(STEPS):
        block = bytearray(STEP)
        del block
    for _ in range(3):
        time.sleep(0.001)


def enter_heap(cls, path):
    tracer = cls(filepath=str(path), measure="heap")
    try:
        tracer.__enter__()
    except NotImplementedError:
        pytest.skip("no allocation counters in this build")
    return tracer


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_a_quiet_heap_tracer_records_a_planted_growth_and_not_its_twin(cls, tmp_path):
    # GIVEN a measure="heap" tracer that went quiet over CALLS quiet calls
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
    # THEN the tracer was quiet: it saw fewer events than the calls made
    # before the growth
    assert seen < CALLS, records
    # AND the growth is in NEXT records naming the grower
    grown = sum(r.d_mem for r in log.tagged("NEXT:") if r.function.endswith("heap_grower"))
    assert grown >= STEPS * STEP * 3 // 4, records
    # AND the twin has no growth
    assert not [r for r in log.tagged("NEXT:") if r.function.endswith("heap_twin") and abs(r.d_mem) >= STEPS * STEP // 2], records


needs_legacy = pytest.mark.skipif(QUIET_BACKEND != "legacy", reason="the legacy backend is quiet on CPython 3.9-3.11 only")
GETTERS = [sys.getprofile, sys.gettrace]


@needs_legacy
@pytest.mark.parametrize("cls,get_hook", list(zip(TRACERS, GETTERS)), ids=IDS)
def test_legacy_hook_comes_off_when_quiet_and_back_after_a_nested_exit(cls, get_hook, tmp_path):
    # GIVEN a quiet legacy tracer after quiet calls
    with cls(filepath=str(tmp_path / "outer.log")) as outer:
        call_in_a_loop([], n=GROW_AT)
        # THEN its hook is off the thread (looking at it is an event, which
        # puts nothing back: no memory moved)
        off = get_hook()
        seen_before = outer.events
        # WHEN a nested tracer is entered and exits
        with cls(filepath=str(tmp_path / "inner.log")) as inner:
            during = get_hook()
        quiet_function(-1, [])
        # THEN the outer hook was put back: it sees events again (and
        # takes itself off at the first one where memory did not move)
        seen_after = outer.events
    assert off is None
    assert during is inner
    assert seen_after > seen_before


@pytest.mark.parametrize("measure", ["rss", "heap"])
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_growth_in_a_loop_that_never_releases_the_gil_is_seen(cls, measure, tmp_path):
    # GIVEN a quiet tracer that stopped listening
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
def test_a_loop_of_short_quiet_tracers_does_not_pile_up_threads(tmp_path):
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
