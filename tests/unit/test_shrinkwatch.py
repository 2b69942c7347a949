"""The shrink watch (core/shrinkwatch_linux.c, core/gotpatch_linux.c) through
the private hooks _native._shrinkwatch_acquire/release/generation/stats.

While acquired, the GOT slots through which loaded objects call free, realloc,
munmap, madvise, mremap, mmap, brk, sbrk and malloc_trim point at wrappers that
bump a generation when the call may have lowered RSS.  The fixture
``leaky_ext.shrink(kind, n, arg)`` makes one such call (or a twin that gives
nothing back) through its PLT with the GIL released.  Scenarios that need a
fresh process (a pinned malloc threshold, an import after acquire, brk/sbrk,
fork) run in a subprocess.
"""
import ctypes
import errno
import importlib
import mmap
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import pymemtrace._native as native
from pymemtrace import allocations

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fixtures.build import build_fixture  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GOT patching is ELF only")

MIB = 1 << 20
# Above glibc's largest dynamic mmap threshold (32 MiB): always an mmapped
# chunk, whatever earlier frees did to the threshold.
BIG = 40 * MIB
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


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


@pytest.fixture
def watch():
    rc = native._shrinkwatch_acquire()
    try:
        if rc == errno.ENOSYS:
            pytest.skip("GOT patching not supported here")
        assert rc == 0, os.strerror(rc)
        yield
    finally:
        native._shrinkwatch_release()
    assert native._shrinkwatch_stats()["users"] == 0


@pytest.fixture(autouse=True)
def _stopped():
    yield
    allocations.stop()


def generation():
    return native._shrinkwatch_generation()


def calls(kind):
    return native._shrinkwatch_stats()["calls"][kind]


def run_python(code, *paths, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(list(paths) + [full_env.get("PYTHONPATH", "")])
    # timeout: a guard against a hang (a lock inherited held), not a speed bound
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_acquire_installs_and_release_undoes():
    # GIVEN nobody using the watch
    assert native._shrinkwatch_stats()["users"] == 0
    # WHEN acquired twice and released once
    first, second = native._shrinkwatch_acquire(), native._shrinkwatch_acquire()
    try:
        if first == errno.ENOSYS:
            pytest.skip("GOT patching not supported here")
        stats = native._shrinkwatch_stats()
        # THEN it is installed (libpython's free and munmap slots at least)
        assert (first, second) == (0, 0)
        assert stats["installed"] == 1 and stats["users"] == 2
        assert stats["slots"] >= 2
        native._shrinkwatch_release()
        assert native._shrinkwatch_stats()["installed"] == 1
    finally:
        native._shrinkwatch_release()
    # AND the last release removes every slot
    stats = native._shrinkwatch_stats()
    assert stats["installed"] == 0 and stats["slots"] == 0 and stats["users"] == 0
    # AND a release too many raises instead of taking someone else's
    with pytest.raises(RuntimeError, match="without _shrinkwatch_acquire"):
        native._shrinkwatch_release()


def test_the_chunk_header_test_is_used_only_with_glibc_malloc(watch):
    # GIVEN the watch installed  THEN chunk headers are read with glibc's
    # malloc, never under ASan (its allocator, and its redzones) nor under
    # `pymemtrace native` (its malloc is the preload's, in front of glibc's)
    preloaded = "libpymemtrace_preload" in os.environ.get("LD_PRELOAD", "")
    assert native._shrinkwatch_stats()["header_test"] == (0 if UNDER_ASAN or preloaded else 1)


def test_freeing_a_1mib_bytes_object_bumps_and_a_small_one_does_not():
    # GIVEN a fresh interpreter whose malloc puts 1 MiB blocks in their own
    # mapping (the threshold pinned at glibc's default: a free of a large
    # mmapped block would otherwise raise it)
    out = run_python(
        """
        import pymemtrace._native as n
        assert n._shrinkwatch_acquire() == 0
        calls = lambda: n._shrinkwatch_stats()["calls"]["free"]
        b = bytes(1 << 20)
        c0, g0 = calls(), n._shrinkwatch_generation()
        del b  # libpython's PyMem_RawFree -> free -> munmap
        big, big_calls = n._shrinkwatch_generation() - g0, calls() - c0
        s = bytes(100)
        g0 = n._shrinkwatch_generation()
        del s  # the twin: pymalloc (or a small free)
        small = n._shrinkwatch_generation() - g0
        print(big, big_calls, small)
        """,
        env={"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},
    )
    big, big_calls, small = (int(x) for x in out.split())
    # WHEN the 1 MiB object is freed  THEN its free was seen and bumped
    assert big_calls >= 1
    assert big >= 1
    # AND the 100-byte twin bumped nothing
    assert small == 0


def test_closing_a_1mib_mmap_bumps_and_madvise_bumps_only_for_dropping_advice(watch):
    # GIVEN a 1 MiB anonymous mmap.mmap with its pages touched
    m = mmap.mmap(-1, MIB)
    m.write(b"x" * MIB)
    # WHEN pages are advised WILLNEED (the twin), then DONTNEED
    g0 = generation()
    m.madvise(mmap.MADV_WILLNEED)
    assert generation() == g0
    m.madvise(mmap.MADV_DONTNEED)
    # THEN only DONTNEED bumped (the mmap module calls madvise through its PLT)
    g1 = generation()
    assert g1 > g0
    # AND closing it (munmap) bumps
    before = calls("munmap")
    m.close()
    assert calls("munmap") == before + 1
    assert generation() > g1


KIND_CASES = [
    # (kind, n, arg, bumps) -- planted cases and their twins
    ("free", BIG, 0, True),
    ("free_small", 1, 0, False),
    ("realloc", BIG, 0, True),
    ("reallocarray", BIG, 0, True),
    ("munmap", MIB, 0, True),
    ("madvise", MIB, mmap.MADV_DONTNEED, True),
    ("madvise", MIB, getattr(mmap, "MADV_FREE", 8), True),
    ("madvise", MIB, mmap.MADV_WILLNEED, False),
    ("madvise", MIB, 20, False),  # MADV_COLD: deactivates, drops nothing
    ("madvise", MIB, getattr(mmap, "MADV_DONTFORK", 10), False),
    ("mremap_shrink", MIB, 0, True),
    ("mremap_grow", MIB, 0, False),
    ("mmap_fixed", MIB, 0, True),
    ("mmap", MIB, 0, False),
]


@pytest.mark.parametrize(
    "kind, n, arg, bumps", KIND_CASES, ids=[f"{k}-{a}" if a else k for k, _, a, _ in KIND_CASES]
)
def test_each_wrapped_call_bumps_when_it_gives_memory_back(watch, ext, kind, n, arg, bumps):
    # GIVEN the watch installed (the fixture was imported before: patched at
    # acquire)
    counted = {"free_small": "free", "mremap_shrink": "mremap", "mremap_grow": "mremap",
               "mmap_fixed": "mmap"}.get(kind, kind)
    c0, g0 = calls(counted), generation()
    # WHEN the fixture makes the call
    rc = ext.shrink(kind, n, arg)
    # THEN it went through the wrapper, and bumped exactly when it gives
    # memory back (a failed call bumps nothing)
    assert calls(counted) > c0
    if rc != 0:
        assert generation() == g0, rc
        pytest.skip(f"{kind}({arg}) failed here (kernel too old?)")
    assert (generation() > g0) == bumps


def test_malloc_trim_bumps_when_it_released_memory(watch, ext):
    # GIVEN 1 MiB of free chunks in the middle of the heap
    # WHEN malloc_trim releases their pages (it returns 1)
    g0, c0 = generation(), calls("malloc_trim")
    rc = ext.shrink("malloc_trim", 1)
    # THEN it was seen and bumped
    assert calls("malloc_trim") == c0 + 1
    if rc == 1:
        assert generation() > g0
    else:
        assert UNDER_ASAN  # glibc's heap is ASan's no more


def test_break_lowered_by_brk_or_sbrk_bumps(fixture_dir):
    # GIVEN a fresh single-threaded interpreter (moving the break is only
    # safe where no other thread mallocs meanwhile)
    out = run_python(
        """
        import leaky_ext
        import pymemtrace._native as n
        assert n._shrinkwatch_acquire() == 0
        for kind in ("sbrk", "sbrk_zero", "brk"):
            g0 = n._shrinkwatch_generation()
            rc = leaky_ext.shrink(kind, 65536)
            print(kind, rc, n._shrinkwatch_generation() - g0)
        print("calls", n._shrinkwatch_stats()["calls"]["sbrk"], n._shrinkwatch_stats()["calls"]["brk"])
        """,
        fixture_dir,
    )
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    # WHEN the break goes up and back down  THEN that bumps; sbrk(0) does not
    assert rows["sbrk"] == ["0", "1"]
    assert rows["sbrk_zero"] == ["0", "0"]
    assert rows["brk"] == ["0", "1"]
    assert int(rows["calls"][0]) >= 3 and int(rows["calls"][1]) >= 2


def _mapped_file_of(address):
    """The file mapped at address in this process (/proc/self/maps)."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else ""
    return ""


def test_calls_through_ctypes_are_not_seen(watch):
    # GIVEN libc's free reached through ctypes (a dlsym pointer, no GOT slot)
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    free_at = ctypes.cast(libc.free, ctypes.c_void_p).value
    if os.path.realpath(_mapped_file_of(free_at)) == os.path.realpath(sys.executable):
        pytest.skip("this python (built without -fPIE) exports a canonical PLT entry for free: "
                    "ctypes' free goes through its patched GOT slot and is seen")
    block = libc.malloc(BIG)
    assert block
    g0 = generation()
    # WHEN a big (mmapped) block is freed that way
    libc.free(block)
    # THEN the watch does not see it (a documented limit): no bump, where
    # the same free through a GOT slot bumps (the "free" case above).
    # (The call counter may move: ctypes frees small buffers of its own.)
    assert generation() == g0


def test_extension_loaded_after_acquire_is_patched(fixture_dir):
    # GIVEN the watch acquired before the extension is imported (the
    # interpreter's dlopen is wrapped)
    out = run_python(
        f"""
        import pymemtrace._native as n
        assert n._shrinkwatch_acquire() == 0
        before = n._shrinkwatch_stats()["slots"]
        import leaky_ext
        after = n._shrinkwatch_stats()["slots"]
        g0 = n._shrinkwatch_generation()
        leaky_ext.shrink("free", {BIG})
        print(after - before, n._shrinkwatch_generation() - g0, n._shrinkwatch_stats()["calls"]["free"] > 0)
        """,
        fixture_dir,
    )
    new_slots, bumps, seen = out.split()
    # THEN its slots were patched at import, and its free bumps
    assert int(new_slots) >= 5  # free, realloc, munmap, madvise, mremap, mmap64, ...
    assert int(bumps) >= 1
    assert seen == "True"


def _got_slot(ext, name):
    """Address of the fixture's GOT slot for name (glibc: a dlopen handle is its link_map)."""
    out = subprocess.run(["readelf", "-rW", ext.__file__], capture_output=True, text=True).stdout
    offset = next(
        int(line.split()[0], 16)
        for line in out.splitlines()
        if len(line.split()) >= 5 and line.split()[-3].split("@")[0] == name
    )
    handle = ctypes.CDLL(ext.__file__)._handle
    base = ctypes.c_void_p.from_address(handle).value or 0  # link_map.l_addr
    return base + offset


@pytest.mark.skipif(subprocess.run(["which", "readelf"], capture_output=True).returncode != 0, reason="no readelf")
def test_release_puts_back_every_slot_exactly(ext):
    # GIVEN the fixture's free and munmap slots as they are
    slots = {name: ctypes.c_void_p.from_address(_got_slot(ext, name)) for name in ("free", "munmap")}
    original = {name: slot.value for name, slot in slots.items()}
    # WHEN the watch is acquired, then released
    rc = native._shrinkwatch_acquire()
    try:
        if rc == errno.ENOSYS:
            pytest.skip("GOT patching not supported here")
        during = {name: slot.value for name, slot in slots.items()}
    finally:
        native._shrinkwatch_release()
    # THEN the slots were ours meanwhile, and hold their old values again
    for name in slots:
        assert during[name] != original[name], name
        assert slots[name].value == original[name], name
    stats = native._shrinkwatch_stats()
    assert stats["slots"] == 0 and stats["got_slots_total"] == 0
    # AND free still works, unseen
    c0, g0 = calls("free"), generation()
    assert ext.shrink("free", BIG) == 0
    assert (calls("free"), generation()) == (c0, g0)


@pytest.mark.parametrize("first_removed", ["shrinkwatch", "tracker"])
def test_alloc_tracker_and_shrinkwatch_installed_together(ext, first_removed):
    # GIVEN the allocation tracker (PyTraceMalloc_Track patching) and the
    # watch installed at once
    allocations.start(mode="exact")
    rc = native._shrinkwatch_acquire()
    held = True
    try:
        if rc == errno.ENOSYS:
            pytest.skip("GOT patching not supported here")
        handles = [ext.traced_alloc(64 * 1024) for _ in range(5)]
        # THEN both see their calls
        assert allocations.counters()["traced_blocks"] == 5
        g0 = generation()
        ext.shrink("free", BIG)
        assert generation() > g0
        # WHEN one is removed first
        if first_removed == "shrinkwatch":
            native._shrinkwatch_release()
            held = False
            assert native._shrinkwatch_stats()["slots"] == 0
            # THEN the tracker keeps tracking
            handles += [ext.traced_alloc(64 * 1024) for _ in range(5)]
            assert allocations.counters()["traced_blocks"] == 10
            assert allocations.stats()["got_slots"] >= 3
            g0 = generation()
            ext.shrink("free", BIG)
            assert generation() == g0
        else:
            for h in handles:
                ext.traced_free(h)
            handles = []
            allocations.stop()
            assert allocations.stats()["got_slots"] == 0
            # THEN the watch keeps watching
            assert native._shrinkwatch_stats()["slots"] >= 5
            g0 = generation()
            ext.shrink("free", BIG)
            assert generation() > g0
        for h in handles:
            ext.traced_free(h)
    finally:
        if held:
            native._shrinkwatch_release()
        allocations.stop()
    # AND with both removed no slot is left
    assert native._shrinkwatch_stats()["got_slots_total"] == 0
    assert native._shrinkwatch_stats()["got_names"] == 0


def test_threads_freeing_at_once_lose_no_call(watch, ext):
    # GIVEN 4 threads freeing big and small blocks with the GIL released
    rounds, nthreads = 50, 4
    c0, g0 = calls("free"), generation()

    def churn():
        for _ in range(rounds):
            ext.shrink("free", BIG)
            ext.shrink("free_small", 1)

    threads = [threading.Thread(target=churn) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN every call was counted and every big free bumped
    assert calls("free") - c0 >= 2 * rounds * nthreads
    assert generation() - g0 >= rounds * nthreads


def test_fork_child_keeps_the_watch(fixture_dir):
    # GIVEN the watch installed in a parent that forks
    out = run_python(
        f"""
        import os, leaky_ext
        import pymemtrace._native as n
        assert n._shrinkwatch_acquire() == 0
        leaky_ext.shrink("free", {BIG})
        parent = n._shrinkwatch_stats()
        pid = os.fork()
        if pid == 0:
            child = n._shrinkwatch_stats()
            g0 = n._shrinkwatch_generation()
            leaky_ext.shrink("free", {BIG})
            bumped = n._shrinkwatch_generation() > g0
            n._shrinkwatch_release()
            ok = (child["generation"] > parent["generation"] and child["users"] == 1
                  and child["installed"] == 1 and child["calls"]["free"] < parent["calls"]["free"]
                  and bumped and n._shrinkwatch_stats()["slots"] == 0)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print(status, n._shrinkwatch_stats()["users"], n._shrinkwatch_stats()["slots"] == parent["slots"])
        """,
        fixture_dir,
    )
    status, users, same_slots = out.split()
    # THEN the child sees its own calls, with its own counters and a newer
    # generation, and its release leaves the parent's installation alone
    assert status == "0"
    assert users == "1" and same_slots == "True"
