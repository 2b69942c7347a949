"""The tracker's view of PyTraceMalloc_Track/Untrack (alloc_traced.c, core/gotpatch_linux.c).

The fixture ``leaky_ext`` mimics numpy: ``traced_alloc(n)`` mallocs n bytes
and reports them with ``PyTraceMalloc_Track(389047, ptr, n)`` through its PLT;
``traced_free`` untracks and frees.  Scenarios that need a fresh process
(the fixture imported after the tracker started, variant builds) run in a
subprocess.
"""
import ctypes
import importlib
import inspect
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from pymemtrace import allocations

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fixtures.build import build_fixture  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GOT patching is ELF only")

KIB = 1024
N_BUFFERS = 200
BUFFER = 64 * KIB
NUMPY_DOMAIN = 389047


@pytest.fixture(scope="module")
def fixture_dir():
    return str(build_fixture("leaky_ext"))


@pytest.fixture(scope="module")
def ext(fixture_dir):
    sys.path.insert(0, fixture_dir)
    try:
        yield importlib.import_module("leaky_ext")
    finally:
        sys.path.remove(fixture_dir)


@pytest.fixture(autouse=True)
def _stopped():
    yield
    allocations.stop()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def _line_of(func, marker):
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, text in enumerate(lines) if marker in text)


def keep_buffers(ext, n=N_BUFFERS):
    return [ext.traced_alloc(BUFFER) for _ in range(n)]  # TRACED_LINE


KEEP_LINE = _line_of(keep_buffers, "TRACED_LINE")


def bytes_at(sites, line, file=__file__):
    return sum(s.bytes for s in sites if s.file == file and s.line == line)


def free_all(ext, handles):
    for h in handles:
        ext.traced_free(h)


def run_python(code, *paths):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(list(paths) + [env.get("PYTHONPATH", "")])
    # timeout: a guard against a hang (a lock inherited held), not a speed bound
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_patching_is_available_and_reported():
    # GIVEN the tracker running
    allocations.start(mode="exact")
    stats = allocations.stats()
    # THEN patching is available on Linux and the interpreter's dlopen is
    # wrapped (the fixture's slots are counted once it is imported)
    assert stats["got_patching"] == 1
    assert stats["got_dlopen_slots"] >= 1
    assert stats["got_slots"] >= stats["got_dlopen_slots"]
    allocations.stop()
    # AND stop restores every slot
    assert allocations.stats()["got_slots"] == 0


def test_traced_buffers_are_reported_at_their_line_within_5_percent(ext):
    # GIVEN the tracker in exact mode
    allocations.start(mode="exact", depth=16)
    # WHEN one line keeps 200 traced buffers of 64 KiB alive (12.8 MB)
    handles = keep_buffers(ext)
    snap = allocations.snapshot()
    # THEN that line holds them, within 5%
    expected = N_BUFFERS * BUFFER
    got = bytes_at(snap.group_by("line"), KEEP_LINE)
    assert abs(got - expected) <= 0.05 * expected, (got, expected)
    assert snap.top(1)[0].line == KEEP_LINE
    # AND the traced group counts exactly them, apart from raw/mem/obj
    counters = allocations.counters()
    assert counters["traced_blocks"] == N_BUFFERS
    assert counters["traced_bytes"] == expected
    assert counters["bytes"] < expected  # not mixed into the PEP 445 domains
    free_all(ext, handles)
    assert allocations.counters()["traced_blocks"] == 0


def test_freed_traced_buffers_are_at_the_peak_not_at_exit(ext):
    # GIVEN the tracker in exact mode
    allocations.start(mode="exact")
    # WHEN the buffers are kept, then untracked and freed (the twin)
    handles = keep_buffers(ext)
    free_all(ext, handles)
    del handles
    snap = allocations.snapshot()
    # THEN they are gone from the live sites but were at the peak
    expected = N_BUFFERS * BUFFER
    assert bytes_at(snap.group_by("line"), KEEP_LINE) < 0.01 * expected
    peak = bytes_at(snap.group_by("line", peak=True), KEEP_LINE)
    assert abs(peak - expected) <= 0.05 * expected, (peak, expected)


def test_sampled_mode_scales_traced_buffers():
    # GIVEN the sampled tracker (one sample per 256 KiB on average, fixed
    # seed); about 50 of the 200 buffers of 64 KiB are sampled, each
    # standing for 256 KiB (a subprocess: the sampler's countdown is per
    # thread and process)
    out = run_python(
        f"""
        import leaky_ext
        from pymemtrace import allocations
        allocations.start(mode="sampled", sample_bytes=256 * 1024, seed=7)
        handles = [leaky_ext.traced_alloc({BUFFER}) for _ in range({N_BUFFERS})]  # LINE
        snap = allocations.snapshot()
        print(sum(s.bytes for s in snap.group_by("line") if s.line == 5 and s.file == "<string>"))
        print(allocations.counters()["traced_blocks"])
        """,
        str(build_fixture("leaky_ext")),
    )
    got, blocks = (int(x) for x in out.split())
    expected = N_BUFFERS * BUFFER
    # THEN the estimate is within 20% and only the samples are kept
    assert abs(got - expected) <= 0.20 * expected, (got, expected)
    assert 0 < blocks < N_BUFFERS


def test_extension_imported_after_start_is_patched(fixture_dir):
    # GIVEN the tracker started before the extension is imported (the
    # interpreter's dlopen is wrapped; the new object is patched after it)
    out = run_python(
        f"""
        from pymemtrace import allocations
        allocations.start(mode="exact")
        before = allocations.stats()
        import leaky_ext
        after = allocations.stats()
        handles = [leaky_ext.traced_alloc({BUFFER}) for _ in range(10)]  # LINE 7
        snap = allocations.snapshot()
        print(after["got_slots"] - before["got_slots"], after["got_rescans"])
        print(sum(s.bytes for s in snap.group_by("line") if s.line == 7 and s.file == "<string>"))
        allocations.stop()
        print(allocations.stats()["got_slots"])
        """,
        fixture_dir,
    )
    new_slots, rescans, got, left = (int(x) for x in out.split())
    # THEN its two slots (Track, Untrack) were patched by a rescan
    assert new_slots == 2 and rescans >= 1
    # AND its buffers are attributed to their line
    assert got >= 10 * BUFFER
    assert left == 0


def test_stop_restores_the_calls_to_tracemalloc(ext):
    # GIVEN tracemalloc running
    tracemalloc.start(1)
    base = tracemalloc.get_traced_memory()[0]
    # WHEN the tracker runs, traced buffers still reach tracemalloc
    allocations.start(mode="exact")
    handles = keep_buffers(ext, 50)
    during = tracemalloc.get_traced_memory()[0] - base
    assert during >= 50 * BUFFER
    assert allocations.counters()["traced_blocks"] == 50
    allocations.stop()
    # AND after it stops, they still do (the original slots are back)
    more = keep_buffers(ext, 50)
    after = tracemalloc.get_traced_memory()[0] - base
    assert after >= 100 * BUFFER
    assert allocations.stats()["got_slots"] == 0
    free_all(ext, handles + more)
    assert tracemalloc.get_traced_memory()[0] - base < 10 * BUFFER


def test_tracker_and_tracemalloc_both_see_the_buffers(ext):
    # GIVEN both tracers running, tracemalloc first
    tracemalloc.start(1)
    allocations.start(mode="exact")
    # WHEN buffers are kept from one line
    handles = keep_buffers(ext, 100)
    # THEN both attribute them to it
    ours = bytes_at(allocations.snapshot().group_by("line"), KEEP_LINE)
    traced = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
    theirs = sum(s.size for s in traced.statistics("lineno") if s.traceback[0].lineno == KEEP_LINE)
    assert abs(ours - 100 * BUFFER) <= 0.05 * 100 * BUFFER
    assert theirs == 100 * BUFFER
    free_all(ext, handles)


def test_repeated_start_stop_cycles(ext):
    for _ in range(20):
        # GIVEN a fresh tracker each time
        allocations.start(mode="exact")
        assert allocations.stats()["got_slots"] >= 3
        handles = keep_buffers(ext, 5)
        # THEN each cycle sees its own buffers only
        assert allocations.counters()["traced_blocks"] == 5
        assert bytes_at(allocations.snapshot().group_by("line"), KEEP_LINE) >= 5 * BUFFER
        allocations.stop()
        assert allocations.stats()["got_slots"] == 0
        free_all(ext, handles)
    # AND buffers untracked while the tracker is off are no bother later
    allocations.start(mode="exact")
    assert allocations.counters()["traced_blocks"] == 0


def test_results_are_passed_through_and_odd_calls_do_not_crash(ext):
    # GIVEN what the real functions answer without tracemalloc (-2: not
    # tracing) and the tracker running
    real_track = ext.track(0x1000, 10)
    real_untrack = ext.untrack(0x1000)
    allocations.start(mode="exact")
    # WHEN odd addresses are tracked and untracked
    results = [
        ext.untrack(0xDEADBEE0),  # never tracked
        ext.track(0, 100),  # NULL
        ext.untrack(0),
        ext.track(0x1234567, 8),  # not 16-byte aligned: not storable
        ext.untrack(0x1234567),
    ]
    # THEN the wrappers return what the real functions return
    assert results == [real_untrack, real_track, real_untrack, real_track, real_untrack]
    # AND nothing is left counted
    assert allocations.counters()["traced_blocks"] == 0
    assert allocations.stats()["dropped_traced"] >= 1
    # AND the same with tracemalloc tracing (0: done)
    tracemalloc.start()
    assert ext.track(0x1000, 10) == 0
    assert ext.untrack(0x1000) == 0
    assert allocations.counters()["traced_blocks"] == 0


def test_buffers_traced_without_the_gil_go_to_the_empty_stack(ext):
    # GIVEN the tracker running
    allocations.start(mode="exact")
    # WHEN the extension tracks buffers with the GIL released
    handles = [ext.traced_alloc_nogil(BUFFER) for _ in range(20)]
    snap = allocations.snapshot()
    # THEN they count, on the empty stack ("no Python frame")
    frameless = sum(s.bytes for s in snap.sites if not s.stack)
    assert frameless >= 20 * BUFFER
    assert allocations.counters()["traced_blocks"] == 20
    # AND freeing them (with the GIL) takes them off
    free_all(ext, handles)
    snap = allocations.snapshot()
    assert sum(s.bytes for s in snap.sites if not s.stack) < 20 * BUFFER


def _got_slot(ext, name):
    """Address of the fixture's GOT slot for name (glibc: a dlopen handle is its link_map)."""
    out = subprocess.run(["readelf", "-rW", ext.__file__], capture_output=True, text=True).stdout
    offset = next(int(line.split()[0], 16) for line in out.splitlines() if line.split()[-3:-2] == [name])
    handle = ctypes.CDLL(ext.__file__)._handle
    base = ctypes.c_void_p.from_address(handle).value or 0  # link_map.l_addr
    return base + offset


@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf")
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="reads glibc's link_map")
def test_stop_puts_back_exactly_what_the_slot_held(ext):
    # GIVEN the fixture's Track slot holding a value of another tool's
    # (here the address of PyTraceMalloc_Untrack: a value we must not call
    # nor lose; nothing calls Track meanwhile)
    slot = ctypes.c_void_p.from_address(_got_slot(ext, "PyTraceMalloc_Track"))
    real = slot.value
    assert real == ctypes.cast(ctypes.pythonapi.PyTraceMalloc_Track, ctypes.c_void_p).value
    foreign = ctypes.cast(ctypes.pythonapi.PyTraceMalloc_Untrack, ctypes.c_void_p).value
    slot.value = foreign
    try:
        # WHEN the tracker starts and stops
        allocations.start(mode="exact")
        during = slot.value
        allocations.stop()
        after = slot.value
    finally:
        slot.value = real
    # THEN the slot was ours meanwhile, and holds the other value again
    assert during not in (real, foreign)
    assert after == foreign


def _variant(flags, suffix):
    compile_args = ["-std=gnu11", "-O0", "-g", "-Wno-unused-parameter"] + flags[0]
    return str(build_fixture("leaky_ext", compile_args, flags[1], variant=suffix))


@pytest.mark.parametrize(
    "flags, suffix",
    [
        (([], ["-Wl,-z,now", "-Wl,-z,relro"]), "znow"),  # the GOT is read-only (RELRO)
        ((["-fno-plt"], ["-Wl,-z,now", "-Wl,-z,relro"]), "noplt"),  # GLOB_DAT, no PLT
    ],
)
def test_read_only_and_no_plt_builds_are_patched(flags, suffix):
    # GIVEN the fixture built with full RELRO (and without a PLT)
    path = _variant(flags, suffix)
    # WHEN it is imported before and used under the tracker
    out = run_python(
        f"""
        import leaky_ext, tracemalloc
        from pymemtrace import allocations
        def maps():
            with open("/proc/self/maps") as f:
                return [line for line in f if "leaky_ext" in line]
        before = maps()
        tracemalloc.start()
        allocations.start(mode="exact")
        handles = [leaky_ext.traced_alloc({BUFFER}) for _ in range(10)]
        print(allocations.counters()["traced_blocks"], allocations.stats()["got_failures"])
        allocations.stop()
        assert maps() == before, (before, maps())  # read-only again
        more = [leaky_ext.traced_alloc({BUFFER}) for _ in range(10)]
        print(tracemalloc.get_traced_memory()[0] >= 20 * {BUFFER})
        for h in handles + more:
            leaky_ext.traced_free(h)
        """,
        path,
    )
    first, second = out.splitlines()
    # THEN its calls were seen, and reach tracemalloc again after stop
    assert first == "10 0"
    assert second == "True"


def test_numpy_data_buffers_are_attributed_to_their_line():
    # Optional: numpy is not a dependency; run when it is installed.
    np = pytest.importorskip("numpy")
    # GIVEN the tracker running
    allocations.start(mode="exact")
    # WHEN numpy allocates a 16 MB data buffer (its own malloc, reported
    # with PyTraceMalloc_Track)
    kept = np.ones(2_000_000)  # NUMPY_LINE
    line = _line_of(test_numpy_data_buffers_are_attributed_to_their_line, "NUMPY_LINE")
    snap = allocations.snapshot()
    # THEN the buffer is on a stack through that line (np.ones is Python)
    through = sum(s.bytes for s in snap.sites if any(f.file == __file__ and f.line == line for f in s.stack))
    assert abs(through - kept.nbytes) <= 0.05 * kept.nbytes, (through, kept.nbytes)
    assert allocations.counters()["traced_bytes"] >= kept.nbytes
    # AND it leaves when the array goes
    del kept
    assert allocations.counters()["traced_bytes"] < 2_000_000


def test_hooks_removed_by_another_tool_are_reported_once():
    # GIVEN tracemalloc started before the tracker (so its stop puts back
    # the allocators it found, removing ours), and the twin order
    tracemalloc.start()
    allocations.start(mode="exact")
    allocations.snapshot()
    assert allocations.stats()["hooks_removed"] == 0
    # WHEN tracemalloc stops
    tracemalloc.stop()
    # THEN the next snapshot warns, once, and stats record it
    with pytest.warns(RuntimeWarning, match="allocation hooks were removed by another tool"):
        allocations.snapshot()
    allocations.snapshot()  # no second warning (warnings are errors here)
    assert allocations.stats()["hooks_removed"] == 1
    allocations.stop()
    # AND the twin: tracemalloc started after us and stopped first puts our
    # hooks back on top: nothing to report, at snapshot or at stop
    allocations.start(mode="exact")
    tracemalloc.start()
    tracemalloc.stop()
    allocations.snapshot()
    assert allocations.stats()["hooks_removed"] == 0
    allocations.stop()


def test_hooks_removed_is_reported_at_stop():
    tracemalloc.start()
    allocations.start(mode="exact")
    tracemalloc.stop()
    with pytest.warns(RuntimeWarning, match="removed by another tool"):
        allocations.stop()
    assert not allocations.is_tracking()


# GCC 12's libasan takes no lock of its own allocator around fork(): a
# child forked while another thread is inside ASan's malloc waits forever
# on that allocator's size-class mutex (gdb: SizeClassAllocator64::
# GetFromAllocator in the child, no pymemtrace frame on the stack).  The
# test runs on every other build; under make test-asan it would test ASan.
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="libasan's malloc is not fork-safe with another thread allocating")
def test_fork_while_another_thread_tracks_without_the_gil(fixture_dir):
    # GIVEN a thread tracking and untracking buffers with the GIL released
    # (it holds the tracker's lock now and then) while the main thread forks
    out = run_python(
        """
        import os, threading, leaky_ext
        from pymemtrace import allocations
        allocations.start(mode="exact")
        stop = False
        def churn():
            while not stop:
                leaky_ext.traced_free(leaky_ext.traced_alloc_nogil(4096))
        t = threading.Thread(target=churn)
        t.start()
        statuses = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                # the child tracks too: a lock inherited held would hang it
                leaky_ext.traced_free(leaky_ext.traced_alloc(4096))
                allocations.snapshot()
                os._exit(0)
            statuses.append(os.waitpid(pid, 0)[1])
        stop = True
        t.join()
        allocations.stop()
        print(statuses == [0] * 20)
        """,
        fixture_dir,
    )
    # THEN every child could track and exit
    assert out.split()[-1] == "True"
