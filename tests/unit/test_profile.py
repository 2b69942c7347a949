"""cPyMemTrace.Profile (and the behaviour Profile and Trace share).

GIVEN/WHEN/THEN.  RSS comes from a poller thread refreshed every
millisecond; the tests that need a memory jump seen at a given event wait
(boundedly, no timing assertions) until the poller has published it.
"""
import cProfile
import mmap
import os
import re
import sys
import threading
import time
import warnings

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

MB = 1 << 20

# Both hook backends where both exist: sys.monitoring (3.12+, the default
# there) and the legacy PyEval_SetProfile/SetTrace hooks.
BACKENDS = ["legacy"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    old = _native._set_default_backend(request.param)
    yield request.param
    _native._set_default_backend(old)

TRACERS = [cPyMemTrace.Profile, cPyMemTrace.Trace]
IDS = ["Profile", "Trace"]


def _hook_of(cls):
    return sys.getprofile() if cls is cPyMemTrace.Profile else sys.gettrace()


# The allocations below are anonymous mmaps written through: malloc may
# hand back pages that are already resident (after an earlier big free),
# and then RSS does not grow at all, which would make the tests depend on
# their order.  (measure="heap" is what sees every Python allocation.)
# They copy from ZEROS, made once here: a temporary bytes(10 MB) freed in
# the same line can make the allocator hand memory back to the kernel at
# that moment (ASan's quarantine does), so RSS would grow by less.
ZEROS = bytes(16 * MB)


def allocate_10mb_in_f():
    """Allocates and touches 10 MB, then waits, inside this frame only,
    until the poller has seen the growth; returns the buffer."""
    target = cPyMemTrace.rss() + 9 * MB
    data = mmap.mmap(-1, 10 * MB)
    data.write(memoryview(ZEROS)[:10 * MB])
    for _ in range(5000):
        if _native._poller_rss()[0] >= target:
            break
        time.sleep(0.001)
    # Quiet legacy tracers (3.9-3.11) take their hook off; the poller's
    # pending call puts it back when this thread next takes the GIL: a few
    # sleeps, inline, so the growth is seen in this frame.
    for _ in range(3):
        time.sleep(0.001)
    return data


def _tick():
    """A Python call: CALL and RETURN events with either backend (the
    sys.monitoring one reports no C calls)."""
    return 1


def allocate_10mb_python(tracer):
    """10 MB through Python's allocator, then one more event in this frame
    (a C call for Profile, a line for Trace): the event that sees it."""
    _tick()  # FRST
    data = b"x" * (10 * MB)
    len(data)
    return data


def grow_and_wait(keep, n_mb):
    target = cPyMemTrace.rss() + (n_mb - 1) * MB
    data = mmap.mmap(-1, n_mb * MB)
    data.write(memoryview(ZEROS)[:n_mb * MB])
    keep.append(data)
    for _ in range(5000):
        if _native._poller_rss()[0] >= target:
            break
        time.sleep(0.001)
    # Quiet legacy tracers (3.9-3.11) take their hook off; the poller's
    # pending call puts it back when this thread next takes the GIL: a few
    # sleeps, inline, so the growth is seen in this frame.
    for _ in range(3):
        time.sleep(0.001)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_10mb_allocation_is_a_next_record_naming_f(cls, tmp_path):
    # GIVEN a tracer with the default trigger (one page)
    path = tmp_path / "t.log"
    # WHEN f allocates 10 MB inside it
    with cls(filepath=str(path)):
        allocate_10mb_in_f()
    # THEN a NEXT record names f with dRSS of at least 9 MB
    log = parse(path)
    hits = [r for r in log.tagged("NEXT:") if r.function.endswith("allocate_10mb_in_f")
            and r.d_mem >= 9 * MB]
    assert hits, [(r.tag, r.function, r.d_mem) for r in log.records]
    assert hits[0].file == __file__


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_no_growth_writes_no_big_next(cls, tmp_path):
    # GIVEN the twin of the test above that allocates nothing lasting
    path = tmp_path / "t.log"
    with cls(filepath=str(path)):
        sum(range(1000))
    # THEN no record shows a jump of megabytes
    log = parse(path)
    assert all(abs(r.d_mem) < 9 * MB for r in log.records)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_log_structure(cls, tmp_path):
    # GIVEN a tracer with a message
    path = tmp_path / "t.log"
    with cls(0, message="run\tone\nline", filepath=str(path)) as tracer:
        sum(range(10))
        assert tracer.log_file_path() == str(path)
    log = parse(path)
    # THEN the message stays on one line, and the records are complete
    assert log.message == "run\tone\nline"
    assert log.complete
    assert log.header[:9] == ["Event", "dEvent", "Clock", "What", "File", "#line",
                              "Function", "RSS", "dRSS"]
    assert log.records[0].tag == "FRST:" and log.records[0].d_mem == 0
    assert log.records[-1].tag == "LAST:"
    assert "# measure: rss" in log.comments
    assert "# d_rss_trigger: 0" in log.comments
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    assert first == "run\\tone\\nline\n"


@pytest.mark.parametrize("cls,letter", [(cPyMemTrace.Profile, "P"), (cPyMemTrace.Trace, "T")],
                         ids=IDS)
def test_default_file_name(cls, letter, tmp_path, monkeypatch):
    # GIVEN no filepath and the current directory a temporary one
    monkeypatch.chdir(tmp_path)
    with cls() as tracer:
        name = tracer.log_file_path()
    # THEN YYYYMMDD_HHMMSS_<n>_<pid>_<P|T>_<depth>_PY<version>.log in the cwd
    version = sys.version.split()[0]
    pattern = r"\d{8}_\d{6}_\d+_%d_%s_0_PY%s\.log" % (os.getpid(), letter, re.escape(version))
    assert re.fullmatch(pattern, name), name
    assert (tmp_path / name).exists()


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_d_rss_trigger_0_writes_every_event(cls, tmp_path):
    path = tmp_path / "t.log"
    with cls(d_rss_trigger=0, filepath=str(path)) as tracer:
        for _ in range(200):
            _tick()
        events = tracer.events
    rss_now = cPyMemTrace.rss()
    log = parse(path)
    written = [r for r in log.records if r.tag in ("FRST:", "NEXT:")]
    # THEN every event is a record, numbered without gaps, and no PREV
    assert [r.event for r in written] == list(range(len(written)))
    assert len(written) >= events - 1  # the last may be the exit call
    assert not log.tagged("PREV:")
    assert all(r.d_event == 1 for r in written[1:])
    # AND the hand-formatted numbers read back right (1 to 3+ digits)
    assert len(written) > 200
    clocks = [r.clock for r in written]
    assert clocks == sorted(clocks) and 0 <= clocks[0] < 60
    assert all(abs(r.mem - rss_now) < (1 << 30) for r in written)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_clock_agrees_with_time_monotonic_past_calibration(cls, tmp_path):
    # GIVEN a tracer writing every event for longer than the 20 ms the
    # records' clock takes to calibrate its TSC scale (core/clocks.h)
    path = tmp_path / "t.log"
    marks = []
    before_enter = time.monotonic()
    with cls(d_rss_trigger=0, filepath=str(path)) as tracer:
        after_enter = time.monotonic()
        for _ in range(3):
            # (a record after the sleep takes an anchor; the next ones,
            # the message included, are extrapolated from it)
            time.sleep(0.03)
            for _ in range(20):
                _tick()
            # WHEN a message is written between two reads of time.monotonic
            low = time.monotonic()
            tracer.write_message_to_log("mark")
            high = time.monotonic()
            marks.append((low, high))
    log = parse(path)
    # THEN each MSG's Clock lies between them (give or take 100 us: the
    # column shows 1 us, and a preempted anchor read pairs the clocks a few
    # us apart on a busy machine; a wrong scale errs by milliseconds)
    clocks = [clock for _, clock, text in log.messages if text == "mark"]
    assert len(clocks) == 3
    for clock, (low, high) in zip(clocks, marks):
        assert low - after_enter - 1e-4 <= clock <= high - before_enter + 1e-4
    # AND the Clock column never goes backwards
    written = [r.clock for r in log.records]
    assert written == sorted(written)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_prev_is_the_event_just_before_the_jump(cls, tmp_path):
    # GIVEN growth after many events that were not written
    path = tmp_path / "t.log"
    keep = []
    with cls(filepath=str(path)):
        for _ in range(50):
            _tick()
        grow_and_wait(keep, 8)
    recs = parse(path).records
    # THEN the record before the big NEXT is the event just before it:
    # a PREV (not written otherwise) or, if it was written, that record
    big = [i for i, r in enumerate(recs) if r.tag == "NEXT:" and r.d_mem >= 7 * MB]
    assert big
    before = recs[big[0] - 1]
    assert before.event == recs[big[0]].event - 1
    # AND every PREV is the event right before its NEXT, was not itself
    # written, and moved less than the trigger (one page)
    written = {r.event for r in recs if r.tag in ("FRST:", "NEXT:")}
    prevs = [i for i, r in enumerate(recs) if r.tag == "PREV:"]
    assert prevs
    for i in prevs:
        assert recs[i + 1].tag == "NEXT:"
        assert recs[i].event == recs[i + 1].event - 1
        assert recs[i].event not in written
        assert abs(recs[i].d_mem) < os.sysconf("SC_PAGE_SIZE")
        assert (recs[i].line, recs[i].what) != (recs[i + 1].line, recs[i + 1].what) or \
            recs[i].function != recs[i + 1].function or recs[i].event != recs[i + 1].event


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_nested_each_write_own_file_and_inner_restores_outer(cls, tmp_path):
    outer_path, inner_path = tmp_path / "outer.log", tmp_path / "inner.log"
    depth = (cPyMemTrace.profile_wrapper_depth if cls is cPyMemTrace.Profile
             else cPyMemTrace.trace_wrapper_depth)
    assert depth() == 0
    with cls(0, filepath=str(outer_path)) as outer:
        assert depth() == 1
        with cls(0, filepath=str(inner_path)) as inner:
            assert depth() == 2
            assert inner.depth == 1
            if inner.backend == "legacy":
                assert _hook_of(cls) is inner
        # THEN the outer one is back in place and still logging
        if outer.backend == "legacy":
            assert _hook_of(cls) is outer
        before = outer.events
        _tick()
        assert outer.events > before
    assert depth() == 0
    assert _hook_of(cls) is None
    if sys.version_info >= (3, 12):  # the tool id is given back at the end
        assert all(sys.monitoring.get_tool(i) != "pymemtrace" for i in range(6))
    outer_log, inner_log = parse(outer_path), parse(inner_path)
    assert outer_log.complete and inner_log.complete
    texts = [m[2] for m in outer_log.messages]
    assert any("Detaching" in t and str(inner_path) in t for t in texts)
    assert any("Re-attaching" in t for t in texts)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_raising_body_closes_log_and_restores(cls, tmp_path):
    path = tmp_path / "t.log"
    with pytest.raises(ZeroDivisionError):
        with cls(filepath=str(path)):
            raise ZeroDivisionError("planted")
    assert _hook_of(cls) is None
    assert parse(path).complete


def _python_hook(frame, event, arg):
    return _python_hook


@pytest.mark.parametrize("all_threads", [False, True], ids=["this_thread", "all_threads"])
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_previous_python_hook_restored(cls, all_threads, tmp_path):
    setter = sys.setprofile if cls is cPyMemTrace.Profile else sys.settrace
    setter(_python_hook)
    try:
        with cls(filepath=str(tmp_path / "t.log"), all_threads=all_threads):
            pass
        assert _hook_of(cls) is _python_hook
    finally:
        setter(None)


def _work_for_cprofile():
    return sum(range(10))


def test_cprofile_keeps_working(tmp_path):
    # GIVEN cProfile running
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        with cPyMemTrace.Profile(filepath=str(tmp_path / "t.log")):
            pass
        # WHEN code runs after our Profile exits
        _work_for_cprofile()
    finally:
        profiler.disable()
    # THEN cProfile saw it: its hook was restored (or, on 3.12+, never
    # displaced since cProfile uses sys.monitoring there)
    names = {e.code.co_name for e in profiler.getstats() if hasattr(e.code, "co_name")}
    assert "_work_for_cprofile" in names


def função_ñ_测试():
    return [0] * 10


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_non_ascii_names_written_as_utf8(cls, tmp_path):
    path = tmp_path / "t.log"
    with cls(0, filepath=str(path)):
        função_ñ_测试()
    raw = path.read_bytes()
    assert "função_ñ_测试".encode("utf-8") in raw
    assert any(r.function.endswith("função_ñ_测试") for r in parse(path).records)


# File and Function of records are the names' UTF-8 with lone surrogates
# as "backslashreplace" gives them, cut at PMT_LOG_MAX_FIELD (4096) bytes,
# then escaped (docs/log_format.md).  The writer encodes them itself,
# without making an object: these are the cases where that could differ.
AWKWARD_NAMES = [
    "tab\there.py", "nl\nx\\y\rz.py", "héllo_wörld€😀.py", "sur\udc80ro\ud800g.py",
    "é" * 3000 + ".py", "a" * 5000 + ".py", "\\" * 3000, "x" * 4095 + "é" + "y",
    "x" * 4094 + "😀" + "y", "x" * 4090 + "\udc80" + "y", "\t\udc80\\é",
]


def _log_field(name):
    raw = name.encode("utf-8", "backslashreplace")[:4096]
    for char, escaped in ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r")):
        raw = raw.replace(char, escaped)
    return raw


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_awkward_names_are_cut_and_escaped_as_documented(cls, tmp_path):
    path = tmp_path / "t.log"
    funcs = []
    for name in AWKWARD_NAMES:
        namespace = {}
        exec(compile("def f():\n    return [0] * 10\n", name, "exec"), namespace)
        code = namespace["f"].__code__
        function = name[::-1]
        if sys.version_info >= (3, 11):
            code = code.replace(co_name=function, co_qualname=function)
        else:
            code = code.replace(co_name=function)
        namespace["f"].__code__ = code
        funcs.append(namespace["f"])
    with cls(0, filepath=str(path)):
        for func in funcs:
            func()
    raw = path.read_bytes()
    for name in AWKWARD_NAMES:
        assert b"\t" + _log_field(name) + b"\t1\t" + _log_field(name[::-1]) + b"\t" in raw, name[:20]


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_unwritable_path_raises_oserror_naming_it(cls, tmp_path):
    bad = str(tmp_path / "no" / "such" / "dir" / "t.log")
    before = _open_fds()
    with pytest.raises(OSError) as info:
        with cls(filepath=bad):
            pass
    assert bad in str(info.value)
    assert info.value.filename == bad
    assert _open_fds() == before
    assert _hook_of(cls) is None
    if sys.version_info >= (3, 12):  # and no sys.monitoring tool id kept
        assert all(sys.monitoring.get_tool(i) != "pymemtrace" for i in range(6))


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_methods_before_enter_and_after_exit_raise(cls, tmp_path):
    tracer = cls(filepath=str(tmp_path / "t.log"))
    with pytest.raises(RuntimeError, match="not entered"):
        tracer.log_file_path()
    with pytest.raises(RuntimeError, match="not entered"):
        tracer.write_message_to_log("x")
    with tracer:
        tracer.write_message_to_log("inside")
    # the path stays known after exit (the seed's API); writing does not
    assert tracer.log_file_path() == str(tmp_path / "t.log")
    with pytest.raises(RuntimeError, match="exited"):
        tracer.write_message_to_log("x")
    with pytest.raises(RuntimeError):
        tracer.__enter__()
    assert [m[2] for m in parse(tmp_path / "t.log").messages] == ["inside"]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_methods_act_on_their_own_object(cls, tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    with cls(filepath=str(a)) as outer:
        with cls(filepath=str(b)) as inner:
            outer.write_message_to_log("to outer")
            inner.write_message_to_log("to inner")
            assert outer.log_file_path() == str(a)
            assert inner.log_file_path() == str(b)
    assert "to outer" in [m[2] for m in parse(a).messages]
    assert [m[2] for m in parse(b).messages] == ["to inner"]


def _spin(stop, started):
    started.set()
    while not stop.is_set():
        sum(range(50))
        time.sleep(0.001)


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_all_threads_traces_existing_and_new_threads(cls, tmp_path):
    path = tmp_path / "t.log"
    stop = threading.Event()
    s1, s2 = threading.Event(), threading.Event()
    existing = threading.Thread(target=_spin, args=(stop, s1))
    existing.start()
    s1.wait()
    try:
        with cls(0, filepath=str(path), all_threads=True):
            new = threading.Thread(target=_spin, args=(stop, s2))
            new.start()
            s2.wait()
            time.sleep(0.05)
            stop.set()
            new.join()
    finally:
        stop.set()
        existing.join()
    log = parse(path)
    assert log.header[-1] == "Thread"
    threads = {r.thread for r in log.records}
    assert threading.get_ident() in threads
    assert existing.ident in threads
    assert new.ident in threads
    assert _hook_of(cls) is None


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_two_threads_enter_at_once(cls, tmp_path):
    errors = []
    barrier = threading.Barrier(2)

    def run(i):
        try:
            barrier.wait()
            with cls(0, filepath=str(tmp_path / f"{i}.log")) as tracer:
                for _ in range(200):
                    _tick()
                assert tracer.log_file_path().endswith(f"{i}.log")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(2):
        log = parse(tmp_path / f"{i}.log")
        assert log.complete and len(log.records) > 100


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_max_log_bytes_caps_the_file(cls, tmp_path):
    path = tmp_path / "t.log"
    with cls(0, filepath=str(path), max_log_bytes=20_000):
        for _ in range(5000):
            _tick()
    size = path.stat().st_size
    log = parse(path)
    assert log.complete
    assert any("max_log_bytes reached" in c for c in log.comments)
    assert size < 20_000 + 2_000


@pytest.mark.parametrize("kwargs,exc", [
    ({"d_rss_trigger": -2}, ValueError),
    ({"measure": "vms"}, ValueError),
    ({"max_log_bytes": 0}, ValueError),
    ({"message": 3}, TypeError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        cPyMemTrace.Profile(**kwargs)


def _heap_counters_missing():
    try:
        with cPyMemTrace.Profile(measure="heap", filepath=os.devnull):
            pass
    except NotImplementedError:
        return True
    return False


@pytest.mark.skipif(_heap_counters_missing(),
                    reason="allocation counters (alloc.c) are still stubs raising NotImplementedError")
@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_measure_heap_sees_python_allocation_exactly(cls, tmp_path):
    path = tmp_path / "t.log"
    with cls(filepath=str(path), measure="heap") as tracer:
        assert tracer.measure == "heap"
        allocate_10mb_python(tracer)
    log = parse(path)
    assert log.header[7] == "HEAP"
    # (dRSS is measured from the last written record: the heap may have
    # moved by up to a trigger, one page, between it and the allocation)
    assert any(r.function.endswith("allocate_10mb_python") and r.d_mem >= 10 * MB - cPyMemTrace.page_size()
               for r in log.tagged("NEXT:")), [(r.tag, r.what, r.function, r.d_mem) for r in log.records]


@pytest.mark.parametrize("cls", TRACERS, ids=IDS)
def test_writing_a_non_ascii_name_allocates_nothing(cls, tmp_path):
    # GIVEN a function whose non-ASCII name nobody asked the UTF-8 of yet
    # (PyUnicode_AsUTF8 would keep that in the str, a heap block)
    name = "fünç_%d_" % id(tmp_path) + "y" * 200
    namespace = {}
    exec(compile("def f():\n    return None\n", "fïlé.py", "exec"), namespace)
    replace = {"co_name": name, "co_qualname": name} if sys.version_info >= (3, 11) else {"co_name": name}
    namespace["f"].__code__ = namespace["f"].__code__.replace(**replace)
    path = tmp_path / "t.log"
    # WHEN every event is written, the heap measured at each
    with cls(0, filepath=str(path), measure="heap"):
        for _ in range(3):
            namespace["f"]()
    # THEN writing the name did not move the heap the calls see
    calls = [r.mem for r in parse(path).records if r.what == "CALL" and r.function == name]
    assert len(calls) == 3 and len(set(calls)) == 1, calls


def test_measure_heap_error_leaves_nothing_behind(tmp_path):
    # While the counters are stubs, entering raises their error cleanly.
    if not _heap_counters_missing():
        pytest.skip("allocation counters are built: covered by the test above")
    path = tmp_path / "t.log"
    with pytest.raises(NotImplementedError):
        with cPyMemTrace.Profile(filepath=str(path), measure="heap"):
            pass
    assert not path.exists()
    assert sys.getprofile() is None
    assert cPyMemTrace.profile_wrapper_depth() == 0


# ---- nothing lost: interpreter exit and fatal signals ----------------------

_CHILD = r"""
import os, signal, sys
from pymemtrace import cPyMemTrace
def tick():
    return 1
tracer = cPyMemTrace.Profile(0, filepath=sys.argv[1])
tracer.__enter__()
for i in range(2000):
    tick()
tracer.write_message_to_log("before the end")
if sys.argv[2] == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
elif sys.argv[2] == "abort":
    os.abort()
# "exit": leave without __exit__
"""


def _run_child(tmp_path, how):
    import subprocess

    path = tmp_path / "child.log"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), how],
                          capture_output=True, text=True, timeout=60)
    return proc, path


def test_log_completed_at_interpreter_exit(tmp_path):
    # GIVEN a tracer never exited  WHEN the interpreter exits
    proc, path = _run_child(tmp_path, "exit")
    assert proc.returncode == 0, proc.stderr
    # THEN its log is complete: LAST and EOF were written at exit
    log = parse(path)
    assert log.complete
    assert log.records[-1].tag == "LAST:"
    assert [m[2] for m in log.messages] == ["before the end"]


@pytest.mark.parametrize("how,sig", [("sigterm", 15), ("abort", 6)])
def test_buffer_flushed_on_fatal_signal(tmp_path, how, sig):
    # GIVEN records still in the buffer  WHEN the process dies of a signal
    proc, path = _run_child(tmp_path, how)
    # THEN it still dies of that signal, and what was buffered is in the file
    assert proc.returncode == -sig
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert "EOF" not in lines
    assert any(line.startswith("MSG:\t") and line.endswith("before the end") for line in lines)
    assert sum(line.startswith("NEXT:") for line in lines) > 1000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_does_not_write_into_the_parents_log(tmp_path):
    # GIVEN a tracer whose buffer has filled at least once (writer thread on)
    path = tmp_path / "t.log"
    with cPyMemTrace.Profile(0, filepath=str(path)) as tracer:
        for _ in range(3000):
            _tick()
        with warnings.catch_warnings():
            # 3.12+ warns about fork() with threads running (ours are pure
            # C and the child does not use them).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: plenty of events, then leave at once
            for _ in range(3000):
                _tick()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        parent_events = tracer.events
    # THEN the child ended normally (no deadlock) and the log is the
    # parent's alone: contiguous event numbers, one EOF
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    log = parse(path)
    written = [r.event for r in log.records if r.tag in ("FRST:", "NEXT:")]
    assert written == list(range(len(written)))
    assert len(written) >= parent_events - 1


def test_monitoring_backend_leaves_other_hooks_running(tmp_path, backend):
    # GIVEN a Python profile function, and Profile on sys.monitoring (3.12+)
    if backend != "monitoring":
        pytest.skip("the legacy hooks replace the thread's hook while active")
    seen = []

    def other(frame, event, arg):
        seen.append((frame.f_code.co_name, event))

    sys.setprofile(other)
    try:
        with cPyMemTrace.Profile(0, filepath=str(tmp_path / "t.log")):
            _tick()
    finally:
        sys.setprofile(None)
    # THEN both saw the call: the other tool was never switched off
    assert ("_tick", "call") in seen
    assert any(r.function.endswith("_tick") for r in parse(tmp_path / "t.log").records)
