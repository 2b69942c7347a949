"""The leak hunt: does this code leak, how often, how badly, where and what?

``pymemtrace.hunt(func, *args, iterations=1000, warmup=20, **kwargs)`` calls
``func(*args, **kwargs)`` ``warmup`` times, then ``iterations`` times
measuring after each call (and a collection of the young gc generations):
the live bytes and blocks in Python's allocators (the always-on counters),
malloc's heap (glibc) and the RSS.  It takes a census of the live objects
by type at three checkpoints (before the measured calls, half-way, at the
end), and, unless the verdict is no-leak, runs some more calls under the
exact allocation tracker to name the sites that kept memory.  The analysis (:func:`pymemtrace.analyses.hunt.analyse`)
turns that into a :class:`Hunt`: verdict, confidence, frequency, severity,
types, sites.  docs/hunt.md has an example.

The measuring loop allocates nothing that lives across calls: its per-call
figures go into arrays made before the first call, and the checkpoints'
own memory (the censuses it keeps) is taken out of the figures.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from array import array

from pymemtrace.probes.allocator import FOREIGN_ALLOCATORS, foreign_allocator  # noqa: F401
from pymemtrace.analyses.hunt import analyse
from pymemtrace.snapshots.hunt import HuntResult, Measurements

__all__ = ["hunt", "Hunt", "load", "holders_of", "refcount_anomalies"]

_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")
_HERE = os.path.abspath(__file__)

#: Calls run under the allocation tracker to name the sites (at most).
SITE_CALLS = 200

#: Frames kept of an allocation's stack when naming the sites.
SITE_DEPTH = 16


class Hunt(HuntResult):
    """:class:`pymemtrace.snapshots.hunt.HuntResult` with its renderings."""

    def to_text(self, top: int = 5) -> str:
        from pymemtrace.reporters import hunt_text

        return hunt_text.render(self, top=top)

    def to_json(self, indent=None) -> str:
        from pymemtrace.reporters import hunt_json

        return hunt_json.render(self, indent=indent)

    def to_html(self, title=None) -> str:
        """One self-contained HTML page (works offline): the summary, a
        chart of the growth call by call, the types, sites, holders and
        reference-count leaks."""
        from pymemtrace.reporters import hunt_html

        return hunt_html.render(self, title=title)

    def save_html(self, path, title=None) -> None:
        """Write :meth:`to_html`: complete under ``path``, or not there
        (PymemtraceError ``cannot write PATH: reason`` when it cannot be)."""
        from pymemtrace import _output

        _output.write_file(os.fspath(path), self.to_html(title=title))

    def __str__(self) -> str:
        return self.to_text()


def load(path) -> Hunt:
    """Read a hunt saved with :meth:`Hunt.save` (``--json FILE``)."""
    return Hunt.load(path)


# -- holders and reference-count leaks (pymemtrace.objects) ---------------


def holders_of(objs, limit: int = 5) -> list:
    """Who holds the new objects of the growing types: referrer chains from
    a root, grouped, as ``[{"type", "chain", "text", "count"}]``
    (:func:`pymemtrace.objects.holders`)."""
    from pymemtrace import objects

    return [holder.to_dict() for holder in objects.holders(objs, limit=limit)]


#: Calls whose new objects of the growing types are handed to holders_of().
HOLDER_CALLS = 20


def _find_holders(call, types) -> list:
    """The holders of objects of the growing ``types`` (the top three) that
    HOLDER_CALLS more calls made and kept; none of the hunt's own."""
    from pymemtrace import objects

    wanted = {t.qualname: t.type for t in types[:3]}
    ids = set()
    for qualname in wanted:
        ids.update(map(id, objects._instances(wanted[qualname], qualname)))
    for _ in range(HOLDER_CALLS):
        call()
        _collect()
    gc.collect()
    kept = objects._new_instances((wanted, ids), ())
    new = []
    for objs in kept.values():
        new.extend(objs)
    del kept, ids
    try:
        return holders_of(new, limit=5) if new else []
    finally:
        del new


#: Most calls measured for reference-count leaks (each third of them must
#: show the growth: a leak on 1 call in 10 shows 5 times in each).
REFCOUNT_CALLS = 150


def refcount_anomalies(call, calls: int) -> list:
    """Objects whose references grew with ``calls`` more calls and that no
    referrer accounts for: reference leaks of C code, on singletons too
    (``[{"type", "repr", "refs_per_call"}]``, from
    :func:`pymemtrace.objects.refcount_leaks`)."""
    from pymemtrace import objects

    return [leak.to_dict() for leak in objects.refcount_leaks(call, iterations=calls, warmup=0)]


# -- measuring -------------------------------------------------------------


def _malloc_reader():
    """A function returning the bytes glibc's malloc has handed out and not
    got back (``mallinfo2()``: ``uordblks + hblkhd``), or None where there
    is no ``mallinfo2`` (musl, macOS, glibc < 2.33).

    Through ctypes for now: a C primitive beside ``_native.rss()`` would
    spare the ctypes call (``mallinfo2`` itself walks malloc's free lists,
    so its cost grows with a fragmented heap; the hunt measures it and
    reads it less often when it is slow).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        func = libc.mallinfo2
    except (ImportError, OSError, AttributeError):
        return None

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost")]

    func.restype = _MallInfo2
    func.argtypes = []

    def read() -> int:
        info = func()
        return info.uordblks + info.hblkhd

    return read


class _Progress:
    """One updating line on stderr when it is a terminal; silent otherwise."""

    __slots__ = ("enabled", "last", "stream")

    def __init__(self, enabled) -> None:
        stream = sys.stderr
        if enabled is None:
            try:
                enabled = stream is not None and stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = bool(enabled)
        self.stream = stream
        self.last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        self.last = now
        try:
            self.stream.write(f"\rpymemtrace hunt: {text}\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def done(self) -> None:
        if self.enabled:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10**9:
        raise ValueError(f"{name} must be an integer between {low} and {10**9}, not {value!r}")
    return value


def _target_name(func) -> str:
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return f"{module}:{name}" if module else str(name)


def hunt(func, *args, iterations: int = 1000, warmup: int = 20,
         progress=None, sites: bool = True, target: str | None = None, **kwargs) -> Hunt:
    """Call ``func(*args, **kwargs)`` repeatedly and say whether it leaks.

    ``warmup`` calls first (caches fill, imports happen), then
    ``iterations`` measured calls (at least 8).  ``progress``: None shows a
    line on stderr when it is a terminal; True/False force it.  ``sites``:
    name the allocation sites when memory grew (more calls, under the
    tracker).  ``target``: the name shown for ``func`` in reports.  An
    exception raised by ``func`` propagates.  Returns a :class:`Hunt`.
    """
    from pymemtrace import _native

    if not callable(func):
        raise TypeError(f"hunt() needs a callable, not {type(func).__name__}")
    iterations = _check_count("iterations", iterations, 8)
    warmup = _check_count("warmup", warmup, 0)
    name = target or _target_name(func)
    show = _Progress(progress)
    if _native.alloc_is_tracking():
        raise RuntimeError("the allocation tracker is running already: a hunt needs it")

    def call():
        return func(*args, **kwargs)

    _native.alloc_counting_start()
    try:
        for i in range(warmup):
            call()
            show.show(f"warm-up {i + 1}/{warmup}")
        measured = _measure(call, iterations, name, warmup, show)
        show.show("reference counts")
        measured.refcount = refcount_anomalies(call, min(iterations, REFCOUNT_CALLS))
        result = analyse(measured)
        if sites and result.verdict != "no-leak":
            _name_sites(call, measured, show, name, result.types)
            if result.types:
                measured.holders = _find_holders(call, result.types)
            result = analyse(measured)
    finally:
        _native.alloc_counting_stop()
        show.done()
    foreign = foreign_allocator()
    if foreign is not None:
        result.notes.append(f"{foreign} is the process's allocator: the RSS and malloc's heap "
                            "were not judged (its own bookkeeping and quarantine move them), "
                            "only Python's allocators and the objects")
    return Hunt(**{f: getattr(result, f) for f in result.__dataclass_fields__})


def _no_reading() -> int:
    return 0


def _measure(call, n: int, name: str, warmup: int, show) -> Measurements:
    """The measured calls: counters and RSS after each, censuses at checkpoints."""
    from pymemtrace import _native, objects

    live = array("q", bytes(8 * n))
    blocks = array("q", bytes(8 * n))
    rss = array("q", bytes(8 * n))
    spent = array("d", bytes(8 * n))
    counters = _native.alloc_counters
    foreign = foreign_allocator()
    # Another allocator's RSS and heap say nothing of the program's memory
    # (ASan keeps freed blocks in quarantine): only Python's counters judge.
    read_rss = _native.rss if foreign is None else _no_reading
    read_malloc = _malloc_reader() if foreign is None else None
    malloc = array("q", bytes(8 * n)) if read_malloc else None
    stride = _malloc_stride(read_malloc, call, n)
    # Under `pymemtrace native`: the bytes its table holds live (exact).
    read_traced = _native._native_live_bytes if _native._native_live_bytes() is not None else None
    traced = array("q", bytes(8 * n)) if read_traced else None
    collect = _collect
    clock = time.perf_counter
    checkpoints = {0, n // 2, n}
    censuses = []
    release_free = _native._release_free_memory
    # What the checkpoints themselves leave alive is taken out of the figures.
    off_bytes = off_blocks = off_rss = off_malloc = off_traced = 0
    collect()
    for i in range(n + 1):
        if i in checkpoints:
            c = counters()
            b0, k0, r0 = c["bytes"], c["blocks"], read_rss()
            m0 = read_malloc() if read_malloc else 0
            n0 = read_traced() if read_traced else 0
            del c
            gc.collect()
            censuses.append((i, objects.census()))
            # Pages malloc holds free would be lent to a leak without the
            # RSS moving: handed back, a leak's pages show.
            release_free()
            collect()
            c = counters()
            off_bytes += c["bytes"] - b0
            off_blocks += c["blocks"] - k0
            off_rss += read_rss() - r0
            if read_malloc:
                off_malloc += read_malloc() - m0
            if read_traced:
                off_traced += read_traced() - n0
            del c
        if i == n:
            break
        t0 = clock()
        call()
        spent[i] = clock() - t0
        collect()
        c = counters()
        live[i] = c["bytes"] - off_bytes
        blocks[i] = c["blocks"] - off_blocks
        del c
        rss[i] = read_rss() - off_rss
        if malloc is not None and (i % stride == 0 or i == n - 1):
            malloc[i] = read_malloc() - off_malloc
        if traced is not None:
            traced[i] = read_traced() - off_traced
        show.show(f"call {i + 1}/{n}")
    return Measurements(
        target=name, warmup=warmup, bytes=list(live), blocks=list(blocks), rss=list(rss),
        seconds=sum(spent), censuses=censuses,
        malloc=None if malloc is None else [
            malloc[i] for i in range(n) if i % stride == 0 or i == n - 1],
        malloc_stride=stride,
        native_bytes=None if traced is None else list(traced),
    )


def _collect() -> None:
    """After each call: the garbage cycles it left (generations 0 and 1:
    what a call makes is young).  A full collection would cost time in
    proportion to the whole heap at every call; the checkpoints make one."""
    gc.collect(1)


def _malloc_stride(read_malloc, call, n: int) -> int:
    """Read malloc's figures after every call, or, when that costs more than
    a tenth of a call (a fragmented heap), after every k-th call."""
    if read_malloc is None:
        return 1
    clock = time.perf_counter
    t0 = clock()
    for _ in range(5):
        read_malloc()
    cost = (clock() - t0) / 5
    t0 = clock()
    call()
    per_call = clock() - t0
    if cost <= 0.1 * per_call or cost * n < 0.2:
        return 1
    return max(1, min(n // 32, int(cost / max(per_call, 1e-9) / 0.1) + 1))


def _name_sites(call, measured: Measurements, show, name: str, types=()) -> None:
    """Allocation sites of the memory kept by SITE_CALLS calls run under
    the exact tracker (the diff of two snapshots: blocks allocated between
    them and still live at the end)."""
    from pymemtrace import _native, allocations

    m = min(SITE_CALLS, measured.iterations)
    retag, why_not = retag_revived_possible()
    _native.alloc_start(mode="exact", depth=SITE_DEPTH, retag_revived=retag)
    try:
        # A few calls first: what the tracker's start disturbs settles.
        before = _tracked_calls(call, 2, show, m)
        after = _tracked_calls(call, m, show, m, before)
        if retag and not _native.alloc_stats()["retag_revived"]:
            retag, why_not = False, ("another tool took the reference tracer while the sites "
                                     "were named")
    finally:
        allocations.stop()
    measured.site_diffs = _site_growth(after, before, name)
    measured.site_calls = m
    if retag:
        return
    revived = sum(t.per_call for t in types if t.qualname in FREE_LIST_TYPES)
    if revived <= 0:
        return  # no object of a type with a free list was kept
    kept = None
    if sys.version_info < (3, 13):
        # tracemalloc.start() would take the reference tracer on 3.13.
        show.show("checking the sites")
        kept = _tracemalloc_kept(call, min(m, CHECK_CALLS),
                                 [t for t in types if t.qualname in FREE_LIST_TYPES])
    if kept is None:
        measured.site_notes.append(
            f"objects revived from a free list were not followed ({why_not}): "
            "such an object may be charged to the line that first allocated its block")
        return
    lines, objects = kept
    checked = min(m, CHECK_CALLS)
    objects = _with_stacks(call, objects, measured.site_diffs, name)
    measured.site_diffs, dropped = confirm_sites(measured.site_diffs, lines, m, checked)
    measured.site_diffs, moved = revived_sites(measured.site_diffs, lines, objects, m, checked,
                                               name)
    if dropped - moved > max(64, dropped // 10):
        measured.site_notes.append(
            f"{(dropped - moved) / m:,.0f} B per call that the tracker charged to lines "
            "where tracemalloc saw no such blocks kept were left out of the sites: objects "
            "revived from a free list, whose site is unknown (" + why_not + ")")


#: Types whose dead objects CPython 3.9-3.13 keep for reuse (free lists;
#: their subclasses do not use them), by census qualname.
FREE_LIST_TYPES = frozenset({
    "builtins.tuple", "builtins.list", "builtins.dict", "builtins.float", "builtins.frame",
    "builtins.slice", "builtins.async_generator_asend",
    "builtins.async_generator_wrapped_value", "_contextvars.Context",
})

#: A line keeps its tracker sites whole when tracemalloc saw at least this
#: share of their kept blocks there.
CONFIRM_SHARE = 0.75


#: Calls run under tracemalloc to check the tracker's lines (at most): it
#: costs several times a call that allocates much.
CHECK_CALLS = 100


def _tracemalloc_kept(call, n: int, types: list):
    """What ``n`` calls kept under tracemalloc: ``({(file, line): blocks},
    [((file, line), bytes)])``, the second for each object of the free-list
    ``types`` they kept (where tracemalloc followed its block to, and the
    block's size), or None when tracemalloc cannot run.  Before 3.13 the tracker has no hook for objects revived
    from a free list, but tracemalloc has (``_Py_NewReference`` moves a
    traced block to the current traceback), so its lines are right where
    the tracker's may not be."""
    import tracemalloc

    from pymemtrace import objects

    own = not tracemalloc.is_tracing()
    if own:
        try:
            # One frame: tracemalloc computes the line of every frame it
            # keeps at every allocation (16 frames cost 5 times 1 on 3.11).
            tracemalloc.start(1)
        except (RuntimeError, MemoryError):
            return None
    try:
        # A full collection empties the free lists (3.9-3.12): every block
        # they hold from now on was allocated under tracemalloc, which can
        # follow it when it is revived.
        gc.collect()
        call()
        _collect()
        wanted = {t.qualname: t.type for t in types}
        ids = set()
        for qualname in wanted:
            ids.update(map(id, objects._instances(wanted[qualname], qualname)))
        before = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        for _ in range(n):
            call()
            _collect()
        # (the target may have stopped tracemalloc)
        after = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
        gc.collect()
        kept = objects._new_instances((wanted, ids), ())
        revived = []
        for objs in kept.values():
            for obj in objs:
                trace = tracemalloc.get_object_traceback(obj)
                if trace is not None:
                    revived.append(((trace[-1].filename, trace[-1].lineno), _block_size(obj)))
        del kept, ids
    finally:
        if own:
            tracemalloc.stop()
    if before is None or after is None:
        return None
    # A snapshot's own objects, made while tracing, are not the target's.
    own_blocks = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(own_blocks), after.filter_traces(own_blocks)
    lines = {}
    for stat in after.compare_to(before, "lineno"):
        key = (stat.traceback[0].filename, stat.traceback[0].lineno)
        lines[key] = lines.get(key, 0) + stat.count_diff
    return lines, revived


#: Calls run under tracemalloc at the tracker's depth when a revived
#: object's line is on none of the tracker's stacks.
STACK_CALLS = 3


def _with_stacks(call, revived: list, diffs, name: str) -> list:
    """``revived`` (``((file, line), bytes)``) with the stack of each
    object: the rest of a tracker's stack that passes through its line,
    else the stack most blocks kept on that line had under tracemalloc at
    the tracker's depth (STACK_CALLS more calls), else the line alone."""
    known = {}
    for d in diffs:
        frames = [(f[0], f[1]) for f in d.stack]
        for j, frame in enumerate(frames):
            if frame not in known or j < known[frame][0]:
                known[frame] = (j, frames[j:])
    stacks = {frame: rest for frame, (_, rest) in known.items()}
    keys = []
    for frame, _ in revived:
        cut = _cut_at_package([frame], name)
        keys.append(cut[0] if cut else None)
    missing = {key for key in keys if key is not None and key not in stacks}
    if missing:
        stacks.update(_tracemalloc_stacks(call, STACK_CALLS, missing, name))
    return [(stacks.get(key, [key]), size) for key, (_, size) in zip(keys, revived)
            if key is not None]


def _tracemalloc_stacks(call, n: int, wanted: set, name: str) -> dict:
    """``{(file, line): stack}`` for the ``wanted`` lines: the stack (of
    the tracker's depth, cut at pymemtrace's frames) on which tracemalloc
    saw the most blocks kept there over ``n`` calls."""
    import tracemalloc

    if tracemalloc.is_tracing():
        return {}
    try:
        tracemalloc.start(SITE_DEPTH)
    except (RuntimeError, MemoryError):
        return {}
    try:
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(n):
            call()
            _collect()
        after = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    finally:
        tracemalloc.stop()
    if after is None:
        return {}
    best = {}
    for stat in after.compare_to(before, "traceback"):
        stack = _cut_at_package([(f.filename, f.lineno) for f in reversed(stat.traceback)], name)
        if stack and stack[0] in wanted and stat.count_diff > best.get(stack[0], (0, None))[0]:
            best[stack[0]] = (stat.count_diff, stack)
    return {key: stack for key, (_, stack) in best.items()}


def _block_size(obj) -> int:
    """The size of the block that holds an object's head (with the gc's
    header): the block a free list keeps."""
    tp = type(obj)
    size = tp.__basicsize__ + (tp.__itemsize__ * len(obj) if tp.__itemsize__ else 0)
    if tp.__flags__ & _TPFLAGS_HAVE_GC:
        size += _GC_HEADER
    return size


_TPFLAGS_HAVE_GC = 1 << 14
_GC_HEADER = sys.getsizeof(()) - tuple.__basicsize__


def confirm_sites(diffs, lines: dict, calls: int, checked: int) -> tuple:
    """The tracker's sites (of ``calls`` calls) checked against
    tracemalloc's kept blocks per line (``lines``, of ``checked`` calls): the sites of a line where
    tracemalloc saw fewer kept blocks than the tracker are scaled down to
    them (the tracker charged revived blocks to the line that first
    allocated them), and those with none are dropped: never a wrong line.
    Sites that kept no blocks (a reallocation grew) and a C function's own
    site are kept as they are.  Returns (the sites, the bytes left out)."""
    from pymemtrace.analyses.allocations import SiteDiff

    tracked = {}
    for d in diffs:
        if d.stack and d.stack[0][1] > 0:
            key = (d.stack[0][0], d.stack[0][1])
            tracked[key] = tracked.get(key, 0) + max(d.blocks_diff, 0)
    out = []
    dropped = 0
    for d in diffs:
        key = (d.stack[0][0], d.stack[0][1]) if d.stack else None
        blocks = tracked.get(key, 0)
        if blocks <= max(1, calls // 100):
            out.append(d)
            continue
        share = max(lines.get(key, 0), 0) * calls / checked / blocks
        if share >= CONFIRM_SHARE:
            out.append(d)
            continue
        kept = int(d.bytes_diff * share)
        dropped += d.bytes_diff - kept
        if kept > 0:
            out.append(SiteDiff(d.stack, d.bytes, d.blocks, kept, int(d.blocks_diff * share)))
    return out, dropped


def revived_sites(diffs, lines: dict, revived: list, calls: int, checked: int,
                  name: str) -> tuple:
    """The tracker's sites (of ``calls`` calls) with the revived blocks it
    did not see kept added.  On a line where tracemalloc (over ``checked``
    calls) saw more blocks kept than the tracker charged to it, as many as
    the difference are added, taken from ``revived`` (the objects of
    free-list types kept, as ``(stack, bytes)``, their stacks where
    tracemalloc followed their blocks), at their sizes and stacks.  Stacks
    are cut where pymemtrace's frames begin, as the tracker's are.  Returns
    (the sites, the bytes added)."""
    from pymemtrace.analyses.allocations import SiteDiff
    from pymemtrace.snapshots.allocations import Frame

    tracked = {}
    for d in diffs:
        if d.stack:
            key = (d.stack[0][0], d.stack[0][1])
            tracked[key] = tracked.get(key, 0) + max(d.blocks_diff, 0)
    scale = calls / checked
    by_line = {}
    for stack, size in revived:
        cut = tuple(_cut_at_package(stack, name))
        if cut:
            rows = by_line.setdefault(cut[0], {})
            count, nbytes = rows.get(cut, (0, 0))
            rows[cut] = (count + 1, nbytes + size)
    names = {tuple((f[0], f[1]) for f in d.stack): tuple(f[2] for f in d.stack)
             for d in diffs}
    by_stack = {tuple(d.stack): i for i, d in enumerate(diffs)}
    out = list(diffs)
    added = 0
    for key, rows in by_line.items():
        objects = sum(count for count, _ in rows.values())
        missing = min(lines.get(key, 0) * scale - tracked.get(key, 0), objects * scale)
        if missing <= max(1, calls // 100):
            continue
        share = missing / (objects * scale)
        for cut, (count, nbytes) in rows.items():
            stack = tuple(Frame(file, line, function) for (file, line), function
                          in zip(cut, names.get(cut) or _functions_of(cut)))
            more_bytes = int(nbytes * scale * share)
            more_blocks = int(count * scale * share + 0.5)
            added += more_bytes
            i = by_stack.get(stack)
            if i is not None:
                old = out[i]
                out[i] = SiteDiff(stack, old.bytes, old.blocks, old.bytes_diff + more_bytes,
                                  old.blocks_diff + more_blocks)
            else:
                by_stack[stack] = len(out)
                out.append(SiteDiff(stack, 0, 0, more_bytes, more_blocks))
    return out, added


def _cut_at_package(stack: list, name: str) -> list:
    """A stack (innermost first) up to pymemtrace's first frame; what a C
    function called directly by the hunt allocated is charged to the
    target's own frame (``(name, 0)``), as :func:`_site_growth` does."""
    cut = []
    for file, line in stack:
        if os.path.abspath(file).startswith(_PACKAGE_DIR):
            if not cut and os.path.abspath(file) == _HERE and \
                    [c.co_name for c in _codes_at(file, line)[:1]] == ["call"]:
                cut.append((name, 0))
            break
        cut.append((file, line))
    return cut


def _functions_of(stack: tuple) -> list:
    """The function of each frame of a stack the tracker did not see: the
    innermost function of the loaded code whose lines hold it, or, when the
    frame it called is on the same line (a comprehension before 3.12), the
    one around that ("?" if none)."""
    names = []
    depth = 0
    for i, (file, line) in enumerate(stack):
        if line == 0:
            names.append("(called directly)")
            continue
        depth = depth + 1 if i and stack[i - 1] == (file, line) else 0
        codes = _codes_at(file, line)
        names.append(codes[depth].co_name if depth < len(codes) else "?")
    return names


def _codes_at(file: str, line: int) -> list:
    """The loaded code objects of ``file`` with ``line`` among their lines,
    innermost first (found from the modules' functions and classes)."""
    import dis
    import types as pytypes

    path = os.path.abspath(file)
    todo = [v for m in list(sys.modules.values())
            if isinstance(getattr(m, "__file__", None), str)
            and os.path.abspath(m.__file__) == path
            for v in vars(m).values()]
    found, done = [], set()
    while todo:
        value = todo.pop()
        if id(value) in done:
            continue
        done.add(id(value))
        if isinstance(value, type):
            todo.extend(vars(value).values())
            continue
        for attr in ("__func__", "fget", "fset", "fdel", "__wrapped__"):
            inner = getattr(value, attr, None)
            if inner is not None:
                todo.append(inner)
        code = value if isinstance(value, pytypes.CodeType) else getattr(value, "__code__", None)
        if not isinstance(code, pytypes.CodeType) or code.co_filename != file:
            continue
        todo.extend(c for c in code.co_consts if isinstance(c, pytypes.CodeType))
        if any(n == line for _, n in dis.findlinestarts(code)):
            found.append(code)
    found.sort(key=lambda code: code.co_firstlineno, reverse=True)
    return found


def retag_revived_possible():
    """(True, None) when the tracker can move a block revived from a free
    list to the line that revived it (CPython 3.13+, a reference tracer);
    else (False, the reason)."""
    from pymemtrace import _native

    if sys.version_info < (3, 13):
        return False, "CPython before 3.13 has no hook for it"
    if _native._reftrace_stack():
        # Chained, both would see every event, but ReferenceTracing would
        # find the slot taken at its check points and warn.
        return False, "ReferenceTracing holds the reference tracer"
    return True, None


def _tracked_calls(call, n: int, show, total: int, before=None):
    """``n`` calls under the tracker, stacks cut at this frame; a snapshot after."""
    from pymemtrace import _native
    from pymemtrace.allocations import snapshot

    collect = _collect
    # Stacks stop at this frame; the snapshot is taken inside, so that its
    # own memory is charged to this frame (left out) and not to our caller.
    _native.alloc_set_stack_base(True)
    try:
        for i in range(n):
            call()
            collect()
            if before is not None:
                show.show(f"naming sites {i + 1}/{total}")
        return snapshot()
    finally:
        _native.alloc_set_stack_base(False)


def _site_growth(after, before, name: str) -> list:
    """Sites (by stack, pymemtrace's frames left out) whose memory grew."""
    from pymemtrace.analyses.allocations import diff
    from pymemtrace.snapshots.allocations import Frame

    own = Frame(name, 0, "(called directly)")

    def strip(snap):
        sites = []
        for site in snap.sites:
            stack = tuple(f for f in site.stack
                          if not os.path.abspath(f.file).startswith(_PACKAGE_DIR))
            if not stack:
                # Only our frames: memory the target (a C function called
                # directly) allocated from our calling line, or our own.
                if site.stack and os.path.abspath(site.stack[0].file) == _HERE and \
                        site.stack[0].function == "call":
                    stack = (own,)
                else:
                    continue
            sites.append(type(site)(stack, site.bytes, site.blocks))
        return snap._replace(sites=sites)

    return [d for d in diff(strip(after), strip(before), key="stack") if d.bytes_diff > 0]
