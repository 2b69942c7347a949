"""Leak check of pymemtrace._native, in the style of CPython's ``-R 3:3``.

Each case is a callable that exercises one public name of ``_native``.  The
harness calls it ``INNER`` times per run, ``WARMUPS`` runs to fill caches,
then ``RUNS`` measured runs.  A run's deltas are measured with the gc
collected before and after:

* ``refs``   ``sys.gettotalrefcount()``  (debug builds of CPython only)
* ``blocks`` ``sys.getallocatedblocks()`` (Python's allocators; not
             with PYTHONMALLOC=malloc, where it is always 0)
* ``heap``   glibc ``mallinfo2()`` bytes in use (native malloc; skipped
             where it does not work, e.g. under AddressSanitizer)

A case leaks when every measured run grew on one counter (refs or blocks:
by at least one per ``CALLS_PER_UNIT`` calls; heap: by at least
``HEAP_BYTES_PER_CALL`` bytes per call).  Requiring growth in every run
ignores one-off growth such as a cache filled on a late run, as CPython's
refleak hunter does; requiring it in proportion to the calls ignores the
few blocks that settling caches add.

Adding a case is one line in ``CASES``: the key is the ``_native`` name it
covers (or ``<description>`` for a scenario that covers no single name).
Every public name on ``_native`` must have a case or a reason in ``SKIP``:
``uncovered()`` lists the ones that do not, and the tests fail on them.

Run it directly (a debug interpreter gives the refcount check)::

    python3.11d tests/leakcheck.py            # exit 1 on a leak
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib.util
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

WARMUPS = 3
RUNS = 3
INNER = 100
HEAP_BYTES_PER_CALL = 8
# refs and blocks: a leak is at least one unit per CALLS_PER_UNIT calls;
# caches that settle late move these counters by a few units per run.
CALLS_PER_UNIT = 4
NATIVE = "pymemtrace._native"


def _native():
    import pymemtrace._native as native

    return native


def _reimport():
    """Import _native afresh through importlib (a new module object and state)."""
    _native()
    saved = sys.modules.pop(NATIVE)
    try:
        spec = importlib.util.find_spec(NATIVE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.rss()
        del module
    finally:
        sys.modules[NATIVE] = saved


def _bad_call(func, *args):
    """Call func expecting an exception (the error path must not leak either)."""

    def run():
        try:
            func(*args)
        except Exception:
            pass

    return run


def _reference_tracing_round():
    """Enter and leave a ReferenceTracing (3.13+), or hit its version error."""
    import os
    import sys
    import tempfile

    if sys.version_info < (3, 13):
        _bad_call(lambda: _native().ReferenceTracing())()
        return
    fd, path = tempfile.mkstemp(suffix=".log")
    os.close(fd)
    try:
        with _native().ReferenceTracing(filepath=path, gc_collect_on_exit=-1) as tracer:
            tracer.live_object_counts()
    finally:
        os.unlink(path)


def _nested_reference_tracing_round():
    """Two nested ReferenceTracing and a ReferenceTracingSimple (3.13+)."""
    import os
    import sys
    import tempfile

    if sys.version_info < (3, 13):
        _bad_call(lambda: _native().ReferenceTracingSimple())()
        return
    n = _native()
    paths = []
    for _ in range(2):
        fd, path = tempfile.mkstemp(suffix=".log")
        os.close(fd)
        paths.append(path)
    try:
        with n.ReferenceTracing(filepath=paths[0], gc_collect_on_exit=-1):
            kept = [object()]
            with n.ReferenceTracing(filepath=paths[1], gc_collect_on_exit=-1) as inner:
                kept.clear()
                with n.ReferenceTracingSimple() as simple:
                    n._reftrace_stack()
                simple.count_new()
                inner.count_del()
    finally:
        for path in paths:
            os.unlink(path)


def _alloc_round(mode):
    """Start the tracker, allocate, snapshot, stop: the tracker's whole life."""

    def run():
        n = _native()
        n.alloc_start(mode=mode, depth=8, sample_bytes=4096.0, max_traces=0, max_stacks=0, seed=1)
        try:
            kept = [bytes(100) for _ in range(20)]
            n.alloc_is_tracking()
            n.alloc_stats()
            n.alloc_reset_peak()
            n.alloc_snapshot()
            del kept
        finally:
            n.alloc_stop()

    return run


def _alloc_traced_round():
    """A tracker round in which an extension tracks and untracks buffers with
    PyTraceMalloc_Track/Untrack (the GOT-patched path of alloc_traced.c),
    including odd addresses."""
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from fixtures.build import build_fixture

        path = str(build_fixture("leaky_ext"))
    finally:
        sys.path.pop(0)
    if path not in sys.path:
        sys.path.append(path)
    import leaky_ext

    n = _native()
    n.alloc_start(mode="exact", depth=8)
    try:
        handles = [leaky_ext.traced_alloc(4096) for _ in range(10)]
        leaky_ext.untrack(0xDEADBEE0)
        leaky_ext.track(0, 1)
        n.alloc_counters()
        n.alloc_stats()
        n.alloc_snapshot()
        for h in handles:
            leaky_ext.traced_free(h)
    finally:
        n.alloc_stop()


def _tracer_round(kind: str, **kwargs):
    """A case entering and leaving a Profile or Trace that writes to a temp file."""
    import os
    import tempfile

    def body(n):
        return [i * i for i in range(n)]

    def run():
        fd, path = tempfile.mkstemp(suffix=".log")
        os.close(fd)
        try:
            with getattr(_native(), kind)(filepath=path, **kwargs) as tracer:
                body(3)
                tracer.write_message_to_log("leak check")
                tracer.log_file_path()
                body(2)
        finally:
            os.unlink(path)

    return run


def _alloc_counting_round():
    n = _native()
    n.alloc_counting_start()
    try:
        n.alloc_live_bytes()
        n.alloc_counters()
    finally:
        n.alloc_counting_stop()


def _tracer_misuse(kind: str):
    """Calls that must raise (before enter, bad arguments): the error paths."""

    def run():
        tracer = getattr(_native(), kind)()
        for call in (lambda: tracer.write_message_to_log("x"), tracer.log_file_path,
                     lambda: getattr(_native(), kind)(d_rss_trigger="x")):
            try:
                call()
            except Exception:
                pass

    return run


def _with_tracer(func):
    """Run func while a Profile is active (functions that list or close tracers)."""
    import os
    import tempfile

    def run():
        fd, path = tempfile.mkstemp(suffix=".log")
        os.close(fd)
        tracer = _native().Profile(filepath=path)
        try:
            tracer.__enter__()
            func()
        finally:
            if _native()._active_tracers(0):
                tracer.__exit__(None, None, None)
            os.unlink(path)

    return run


def _set_rss_reads_round():
    native = _native()
    old = native._set_rss_reads("every-event")
    native._set_rss_reads(old)
    _bad_call(native._set_rss_reads, "sometimes")()
    _bad_call(native._set_rss_reads, 1)()


def _set_backend_round():
    native = _native()
    old = native._set_default_backend("legacy")
    native._set_default_backend(old)
    _bad_call(native._set_default_backend, "no such backend")()
    _bad_call(native._set_default_backend, 1)()


def _noop_hook_round():
    native = _native()
    native._set_noop_hook(0, True)
    native._set_noop_hook(0, False)
    native._set_noop_hook(1, True)
    native._set_noop_hook(1, False)


# Name on _native (or "<scenario>") -> a callable exercising it.  One line each.
def _cmemleak_round():
    """pymemtrace.cMemLeak without its leak_* functions: the buffer objects,
    the reference-count helpers and every no_leak_* twin must not leak
    (the leak_* functions leak on purpose: tests/unit/test_cmemleak.py)."""
    from pymemtrace import cMemLeak as m

    objs = [cls(size) for cls in (m.CMalloc, m.PyRawMalloc, m.PyMalloc) for size in (0, 100, 5000)]
    for obj in objs:
        obj.inc_refcnt(2)
        obj.inc_refcnt(-2)
        obj.refcnt()
        m.py_refcnt_of_object((obj.size, obj.buffer))
        m.py_refcnt_of_object(obj)
        m.py_refcnt_of_address(id(obj))
        m.py_incref(obj)
        m.py_decref(obj)
        m.no_leak_incref(obj)
    for size in (0, 100, 5000):
        m.no_leak_malloc(size)
        m.no_leak_pymem_raw(size)
        m.no_leak_pymem(size)
        m.py_bytes_of_size(size)
    m.no_leak_list()
    _bad_call(m.PyMalloc, -1)()
    _bad_call(m.no_leak_malloc, 1 << 41)()
    _bad_call(objs[0].inc_refcnt, -1000)()
    _bad_call(m.py_refcnt_of_address, 3)()


def _census_and_growth():
    """pymemtrace.objects: a census kept while the next one runs, and growth()."""
    import io

    from pymemtrace import objects

    kept = objects.census()
    objects.growth(file=io.StringIO())
    del kept


class _RefTarget:
    """What the referrer-graph cases look for (issue 10)."""


_REF_TARGET = [_RefTarget()]


def _refgraph_rounds():
    """_c/refgraph.c through pymemtrace.objects: a chain, holders, the
    objects nothing refers to, two snapshots of external references."""
    from pymemtrace import objects

    objects.find_backref_chain(_REF_TARGET[0])
    objects.holders(_REF_TARGET)
    objects.get_leaking_objects()
    objects.by_type(_RefTarget)
    first = objects.external_references()
    first.grown(objects.external_references(), calls=1)


def _refs_grown_round():
    import struct

    record = "=QQq"
    a = struct.pack(record, 16, 32, 1) + struct.pack(record, 48, 32, 5)
    b = struct.pack(record, 16, 32, 2) + struct.pack(record, 48, 32, 5)
    _native()._refs_grown((a, b))


CASES: Dict[str, Callable[[], object]] = {
    "rss": lambda: _native().rss(),
    "_native_live_bytes": lambda: _native()._native_live_bytes(),
    "rss_peak": lambda: _native().rss_peak(),
    "page_size": lambda: _native().page_size(),
    "_rss_slow": lambda: _native()._rss_slow(),
    "_release_free_memory": lambda: _native()._release_free_memory(),
    "<rss with a bad argument>": _bad_call(lambda: _native().rss(1)),
    "<import through importlib>": _reimport,
    "ReferenceTracing": _reference_tracing_round,
    "ReferenceTracingSimple": _nested_reference_tracing_round,
    "_reftrace_stack": lambda: _native()._reftrace_stack(),
    "process_sample": lambda: _native().process_sample(),
    "alloc_start": _alloc_round("exact"),
    "<alloc sampled round>": _alloc_round("sampled"),
    "<alloc round with PyTraceMalloc_Track>": _alloc_traced_round,
    "alloc_counting_start": _alloc_counting_round,
    "alloc_set_stack_base": lambda: (_native().alloc_set_stack_base(True), _native().alloc_set_stack_base(False)),
    "Sampler": lambda: (lambda s: (s.__enter__(), s.__exit__(None, None, None), s.drain()))(
        _native().Sampler(0.001, capacity=16)
    ),
    "_reftrace_slot": lambda: getattr(_native(), "_reftrace_slot", lambda: None)(),  # 3.13+
    "Profile": _tracer_round("Profile"),
    "<Profile every event>": _tracer_round("Profile", d_rss_trigger=0),
    "<Profile with a message>": _tracer_round("Profile", message="leak check"),
    "<Profile misuse>": _tracer_misuse("Profile"),
    "Trace": _tracer_round("Trace"),
    "<Trace every event>": _tracer_round("Trace", d_rss_trigger=0),
    "<Trace misuse>": _tracer_misuse("Trace"),
    "_active_tracers": _with_tracer(lambda: (_native()._active_tracers(0), _native()._active_tracers(1))),
    "<_active_tracers with a bad kind>": _bad_call(lambda: _native()._active_tracers(7)),
    "_close_all_tracers": _with_tracer(lambda: _native()._close_all_tracers()),
    "_noop": lambda: _native()._noop(1, 2, 3),
    "_poller_rss": lambda: _native()._poller_rss(),
    "_set_default_backend": _set_backend_round,
    "_set_rss_reads": _set_rss_reads_round,
    "_set_noop_hook": _noop_hook_round,
    "<cMemLeak without its leaks>": _cmemleak_round,
    "_census": lambda: _native()._census(()),
    "<_census with a bad argument>": _bad_call(lambda: _native()._census([])),
    "<census and growth>": _census_and_growth,
    "_backref_paths": lambda: _native()._backref_paths(
        (_REF_TARGET[0],), [sys.modules[__name__]], [], (), (), -1, True),
    "<_backref_paths from the C roots>": lambda: _native()._backref_paths(
        (_REF_TARGET[0],), [], [], (), (), -1, True),
    "<_backref_paths with bad arguments>": _bad_call(lambda: _native()._backref_paths(
        [], [], [], (), (), -1, True)),
    "_leaking_objects": lambda: _native()._leaking_objects((), ()),
    "_external_refs": lambda: _native()._external_refs((), ()),
    "_refs_grown": _refs_grown_round,
    "<_refs_grown with a bad snapshot>": _bad_call(lambda: _native()._refs_grown((b"x", b""))),
    "_objects_at": lambda: _native()._objects_at((id(_REF_TARGET[0]),), (), ()),
    "_referrers": lambda: _native()._referrers((_REF_TARGET[0],), (), ()),
    "_by_type": lambda: _native()._by_type("_RefTarget", (), ()),
    "_frame_locals": lambda: _native()._frame_locals(sys._getframe()),
    "_is_immortal": lambda: _native()._is_immortal(None),
    "<objects: who keeps it>": _refgraph_rounds,
    "_shrinkwatch_acquire": lambda: (lambda n: (n._shrinkwatch_acquire(), n._shrinkwatch_generation(), n._shrinkwatch_stats(), n._shrinkwatch_release()))(_native()),
}

# Cases whose caches take longer to settle: name -> warm-up runs.
WARMUPS_FOR: Dict[str, int] = {"<import through importlib>": 10}

# Cases too slow for INNER calls per run (a census walks the whole heap):
# name -> calls per run.  A leak is still one unit per CALLS_PER_UNIT calls.
INNER_FOR: Dict[str, int] = {"_census": 12, "<census and growth>": 12,
                              "_backref_paths": 12, "<_backref_paths from the C roots>": 12,
                              "_leaking_objects": 12, "_external_refs": 12, "_objects_at": 12,
                              "_referrers": 12, "_by_type": 12, "<objects: who keeps it>": 6}

# Names that cannot be exercised in a loop, with the reason.  One line each.
SKIP: Dict[str, str] = {
    "alloc_stop": "covered by alloc_start",
    "alloc_is_tracking": "covered by alloc_start",
    "alloc_snapshot": "covered by alloc_start",
    "alloc_stats": "covered by alloc_start",
    "alloc_reset_peak": "covered by alloc_start",
    "alloc_counting_stop": "covered by alloc_counting_start",
    "alloc_counters": "covered by alloc_counting_start",
    "alloc_live_bytes": "covered by alloc_counting_start",
    "_shrinkwatch_release": "covered by _shrinkwatch_acquire",
    "_shrinkwatch_generation": "covered by _shrinkwatch_acquire",
    "_shrinkwatch_stats": "covered by _shrinkwatch_acquire",
}


def public_names(module=None) -> List[str]:
    """The names of _native that need a case: everything but dunders."""
    module = module or _native()
    return sorted(name for name in vars(module) if not (name.startswith("__") and name.endswith("__")))


def uncovered(module=None) -> List[str]:
    return [name for name in public_names(module) if name not in CASES and name not in SKIP]


# ------------------------------------------------------------------ counters


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                     "fsmblks", "uordblks", "fordblks", "keepcost")
    ]


def _heap_reader() -> Optional[Callable[[], int]]:
    """Bytes in use in the native heap, or None where that cannot be read."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _Mallinfo2
    mallinfo2.argtypes = []

    def read() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    # Allocators that replace malloc (ASan) report zeros: check it moves.
    before = read()
    probe = ctypes.create_string_buffer(64 * 1024)
    moved = read() - before
    del probe
    return read if moved >= 32 * 1024 else None


HEAP = _heap_reader()
HAS_REFS = hasattr(sys, "gettotalrefcount")
# Zero when Python's own allocators are bypassed (PYTHONMALLOC=malloc).
HAS_BLOCKS = sys.getallocatedblocks() > 0


def heap_check_available() -> bool:
    return HEAP is not None


def any_counter_available() -> bool:
    """False under ASan on a release build: check() would run every call
    and measure nothing."""
    return HAS_REFS or HAS_BLOCKS or HEAP is not None


@dataclass
class Verdict:
    name: str
    deltas: Dict[str, List[int]] = field(default_factory=dict)
    leaked: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v}" for k, v in self.deltas.items())
        state = "LEAK in " + "/".join(self.leaked) if self.leaked else "ok"
        return f"{self.name}: {state} ({shown}; {INNER_FOR.get(self.name, INNER)} calls per run)"


def check(name: str, func: Callable[[], object], warmups: Optional[int] = None, runs: int = RUNS,
          inner: Optional[int] = None) -> Verdict:
    """Run one case and say which counters grew in every measured run."""
    if warmups is None:
        warmups = WARMUPS_FOR.get(name, WARMUPS)
    if inner is None:
        inner = INNER_FOR.get(name, INNER)
    counters = {}
    if HAS_BLOCKS:
        counters["blocks"] = sys.getallocatedblocks
    if HAS_REFS:
        counters["refs"] = sys.gettotalrefcount
    if HEAP is not None:
        counters["heap"] = HEAP
    keys = list(counters)
    readers = [counters[k] for k in keys]
    # Preallocated so that measuring allocates nothing between the readings.
    before = [0] * len(keys)
    after = [0] * len(keys)
    history = {k: [] for k in keys}
    loop = range(inner)
    for run in range(warmups + runs):
        gc.collect()
        for i, read in enumerate(readers):
            before[i] = read()
        for _ in loop:
            func()
        gc.collect()
        for i, read in enumerate(readers):
            after[i] = read()
        if run >= warmups:
            for i, key in enumerate(keys):
                history[key].append(after[i] - before[i])
    verdict = Verdict(name, history)
    for key, deltas in history.items():
        floor = inner * HEAP_BYTES_PER_CALL if key == "heap" else max(1, inner // CALLS_PER_UNIT)
        if deltas and all(d >= floor for d in deltas):
            verdict.leaked.append(key)
    return verdict


def check_all(cases: Dict[str, Callable[[], object]] = None) -> List[Verdict]:
    cases = CASES if cases is None else cases
    return [check(name, func) for name, func in cases.items()]


def main() -> int:
    missing = uncovered()
    verdicts = check_all()
    for verdict in verdicts:
        print(verdict)
    leaks = [v for v in verdicts if v.leaked]
    for name in missing:
        print(f"{name}: no leak case: add {name!r} to CASES (or SKIP, with a reason) in tests/leakcheck.py")
    checks = "refs" if HAS_REFS else "no refs (not a debug build)"
    checks += ", blocks" if HAS_BLOCKS else ", no blocks (PYTHONMALLOC=malloc)"
    checks += ", heap" if HEAP else ", no heap (mallinfo2 unavailable)"
    if not (HAS_REFS or HAS_BLOCKS or HEAP):
        checks += ": only the cases' errors are checked here (and LeakSanitizer at exit, if preloaded)"
    print(f"counters: {checks}")
    print(f"leakcheck: {len(verdicts) - len(leaks)} passed, {len(leaks) + len(missing)} failed")
    return 1 if leaks or missing else 0


if __name__ == "__main__":
    sys.exit(main())
