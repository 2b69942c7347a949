"""Quiet locations switched off (sys.monitoring backend, CPython 3.12+).

With a trigger > 0, a Profile/Trace of the main thread returns
sys.monitoring.DISABLE where memory has not moved, so a location that stays
quiet stops calling the tracer; the RSS poller thread restarts every
location (sys.monitoring.restart_events, through a pending call) when RSS
moves by the trigger.  GIVEN/WHEN/THEN; waits for the poller are bounded
loops, never timing assertions.
"""
import mmap
import sys
import time

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring needs CPython 3.12+")

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
    old = _native._set_default_backend("monitoring")
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
    # AND the nested tracer saw the call and return of quiet_function and
    # call_in_a_loop at least once (entering restarted the locations the
    # outer one had switched off; events are numbered from 0)
    inner = parse(inner_path)
    assert inner.tagged("LAST:")[0].event >= 3, inner.records


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


def test_a_tracer_in_another_thread_switches_nothing_off(tmp_path):
    # GIVEN a Profile entered in a thread that is not the main thread
    # (pending calls, which restart events, run on the main thread only)
    import threading

    path = tmp_path / "t.log"

    def worker():
        with cPyMemTrace.Profile(filepath=str(path)):
            for _ in range(CALLS):
                quiet_function(-1, [])

    # WHEN it traces CALLS calls of a quiet function
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    # THEN it saw every call and return
    assert parse(path).tagged("LAST:")[0].event == 2 * CALLS - 1  # numbered from 0
