"""The refcount/heap leak harness (tests/leakcheck.py) and its fixture.

The harness must catch each leak planted in tests/fixtures/leaky_ext.c and
pass its non-leaking twin; then it is trusted on ``_native``.  Refcount
checks need a debug build of CPython (``make test-dbg``); the block and
heap checks run everywhere.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import leakcheck  # noqa: E402
from fixtures.build import build_fixture  # noqa: E402

needs_debug_build = pytest.mark.skipif(
    not leakcheck.HAS_REFS, reason="refcount totals need a debug build of CPython (make test-dbg)"
)
needs_blocks = pytest.mark.skipif(
    not leakcheck.HAS_BLOCKS, reason="sys.getallocatedblocks() is 0: Python's allocators are bypassed (PYTHONMALLOC=malloc)"
)
needs_heap = pytest.mark.skipif(
    not leakcheck.heap_check_available(),
    reason="mallinfo2() does not report this process's malloc (not glibc, or ASan replaced malloc)",
)


@pytest.fixture(scope="module")
def leaky():
    path = str(build_fixture("leaky_ext"))
    sys.path.insert(0, path)
    try:
        yield importlib.import_module("leaky_ext")
    finally:
        sys.path.remove(path)


def test_every_public_name_of_native_has_a_leak_case():
    # GIVEN the names on _native  WHEN compared with the registry  THEN none
    # is missing: a new function or type must come with its leak case
    missing = leakcheck.uncovered()
    assert not missing, "add " + ", ".join(missing) + " to CASES (or SKIP, with a reason) in tests/leakcheck.py"


def test_a_new_name_on_native_is_reported_as_uncovered():
    # GIVEN a module that grew a name nobody registered
    fake = type(sys)("fake")
    fake.rss = fake.new_probe = None
    # WHEN the registry is checked  THEN the new name is reported
    assert leakcheck.uncovered(fake) == ["new_probe"]


@pytest.mark.needs_debug_build
@needs_debug_build
@pytest.mark.parametrize("name", sorted(leakcheck.CASES))
def test_native_does_not_leak_references(name):
    # GIVEN a debug build  WHEN a case runs  THEN no counter grows per call
    verdict = leakcheck.check(name, leakcheck.CASES[name])
    assert not verdict.leaked, str(verdict)


@pytest.mark.parametrize("name", sorted(leakcheck.CASES))
def test_native_does_not_leak_blocks_or_heap(name):
    # Runs on release builds too (blocks and heap only).
    if leakcheck.HAS_REFS:
        pytest.skip("debug build: test_native_does_not_leak_references checks every counter")
    if not leakcheck.any_counter_available():
        pytest.skip("no leak counter works in this process (ASan build: see make test-dbg)")
    verdict = leakcheck.check(name, leakcheck.CASES[name])
    if not verdict.deltas:
        pytest.skip("no leak counter works in this process (ASan build: see make test-dbg)")
    assert not verdict.leaked, str(verdict)


@pytest.mark.leaks
@pytest.mark.parametrize("name", sorted(leakcheck.CASES))
def test_each_case_runs(name):
    # One call of each case; with --leak-loops N it is repeated under
    # tracemalloc (the Python-level view of the same question).
    leakcheck.CASES[name]()


# (function, counter that must catch it, requirement)
PLANTED = [
    ("leak_new_ref", "refs", needs_debug_build),
    ("leak_new_ref", "blocks", needs_blocks),
    ("leak_none_ref", "refs", needs_debug_build),
    ("leak_pymem", "blocks", needs_blocks),
    ("leak_malloc", "heap", needs_heap),
]


# Not marked 'leaks': these leak on purpose (--leak-loops would flag them).
@pytest.mark.parametrize(
    "func, counter",
    [pytest.param(f, c, marks=[m] if m else []) for f, c, m in PLANTED],
    ids=[f"{f}-{c}" for f, c, _ in PLANTED],
)
def test_harness_catches_each_planted_leak(leaky, func, counter):
    if func == "leak_none_ref" and sys.version_info >= (3, 12):
        pytest.skip("None is immortal on 3.12+: an extra reference neither counts nor leaks")
    # GIVEN a function that leaks on every call  WHEN checked
    verdict = leakcheck.check(func, getattr(leaky, func))
    # THEN the harness flags it on the counter that sees that kind of leak
    assert counter in verdict.leaked, str(verdict)


@pytest.mark.parametrize("func", ["new_ref_ok", "none_ref_ok", "malloc_ok", "pymem_ok"])
def test_harness_passes_the_non_leaking_twins(leaky, func):
    if not leakcheck.any_counter_available():
        pytest.skip("no leak counter works in this process (ASan build: see make test-dbg)")
    # GIVEN the twin doing the same work without the leak  WHEN checked
    verdict = leakcheck.check(func, getattr(leaky, func))
    # THEN nothing is flagged, on any counter available here
    assert verdict.leaked == [], str(verdict)


def test_leaky_fixture_leaks_what_it_says(leaky):
    # The fixture itself: each leaking function keeps what it allocated.
    if leakcheck.HAS_REFS:
        before = sys.gettotalrefcount()
        for _ in range(1000):
            leaky.leak_none_ref()
        assert sys.gettotalrefcount() - before >= 1000 or sys.version_info >= (3, 12)
    if not leakcheck.HAS_BLOCKS:
        return
    before = sys.getallocatedblocks()
    for _ in range(1000):
        leaky.leak_pymem(32)
    assert sys.getallocatedblocks() - before >= 900


under_asan = pytest.mark.skipif(
    "libasan" not in os.environ.get("LD_PRELOAD", ""),
    reason="needs the ASan runtime preloaded (make test-asan)",
)


LSAN_SUPP = Path(__file__).resolve().parents[1] / "lsan.supp"


def _interpreter_suppressions(tmp_path):
    """tests/lsan.supp without the entry that hides leaky_ext's planted leaks:
    what remains is for the interpreter's own leaks (3.12+ interned strings)."""
    kept = [line for line in LSAN_SUPP.read_text().splitlines() if "leaky_ext" not in line]
    path = tmp_path / "interpreter.supp"
    path.write_text("\n".join(kept) + "\n")
    return path


def test_lsan_suppressions_name_no_code_of_ours():
    # GIVEN tests/lsan.supp  WHEN its patterns are read  THEN none can match
    # a frame of pymemtrace's own C (a suppression must not hide our leaks):
    # no name of ours, no wildcard, each CPython function anchored
    patterns = [line.split(":", 1)[1].strip() for line in LSAN_SUPP.read_text().splitlines()
                if line.startswith("leak:")]
    assert patterns
    for pattern in patterns:
        assert not any(ours in pattern for ours in ("pmt", "_native", "pymemtrace", "*")), pattern
        # a bare pattern matches as a substring of any name: the interpreter's
        # entries name one whole function each
        if pattern != "leaky_ext":
            assert pattern.startswith("^") and pattern.endswith("$"), pattern


@under_asan
@pytest.mark.parametrize(
    "func, leaks",
    [("leak_malloc", True), ("malloc_ok", False), ("leak_pymem", True), ("pymem_ok", False)],
)
def test_leak_sanitizer_catches_the_planted_malloc_leak(leaky, func, leaks, tmp_path):
    # GIVEN a child process under ASan with LeakSanitizer on, whole stacks
    # and only the interpreter's suppressions (as in make test-asan, minus
    # leaky_ext)  WHEN it calls the planted leak (or its twin) and exits
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0",
               LSAN_OPTIONS=f"suppressions={_interpreter_suppressions(tmp_path)}",
               PYTHONPATH=os.pathsep.join(sys.path))
    code = f"import leaky_ext; leaky_ext.{func}(4096)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    # THEN LeakSanitizer fails the leaking one, naming it, and passes the twin
    if leaks:
        assert done.returncode != 0 and func in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
