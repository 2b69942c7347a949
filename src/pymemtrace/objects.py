"""What piles up: live objects counted and sized by type.

``census()`` counts every live object by type, including the ones the gc
does not track (str, int, bytes, float, tuples of atoms) that tracked
objects refer to, each sized as ``sys.getsizeof`` sizes it; the walking is
in C (``_c/objects.c``).  ``growth()`` prints, like objgraph's
``show_growth``, the types whose count passed their previous peak since the
last call, and returns them.  Neither counts its own bookkeeping: the
peaks, and every census and growth list handed out that is still alive, are left
out of later censuses (with all that exists only because of them).

Who keeps it (``_c/refgraph.c``): ``find_backref_chain(obj)`` is the
shortest chain of references from a root (a module, else a frame's local,
else an object only C code holds) to ``obj``, in Python terms;
``holders(objs)`` groups many objects by the chain to their holding
container; ``get_leaking_objects()`` lists the objects no Python object
refers to; ``show_backrefs(obj, filename)`` draws the referrers as DOT or
SVG.  Reference leaks of C code: ``external_references()`` snapshots, for
every object, its reference count less the references of known referrers;
``refcount_leaks(func, ...)`` calls ``func`` repeatedly and reports the
objects on which that count grows steadily per call.

docs/objects.md has examples.
"""

from __future__ import annotations

import array
import gc
import os
import sys
import threading
import warnings
import weakref

from pymemtrace import _native
from pymemtrace.analyses import refchains
from pymemtrace.analyses.objects import Growth, Peaks, diff
from pymemtrace.errors import PymemtraceError
from pymemtrace.reporters.objects_text import growth_lines
from pymemtrace.snapshots.object_growth import GcExperiment, ObjectGrowthReport
from pymemtrace.snapshots.objects import (
    HELD_BY_C,
    BackrefChain,
    Holder,
    ObjectCensus,
    RefLeak,
    TypeCount,
    type_names,
)

__all__ = ["census", "growth", "reset_growth", "diff", "ObjectCensus", "TypeCount", "Growth",
           "find_backref_chain", "holders", "by_type", "get_leaking_objects", "show_backrefs",
           "external_references", "refcount_leaks", "is_immortal",
           "BackrefChain", "Holder", "ExternalRefs", "RefLeak",
           "call_growth", "gc_experiment", "ObjectGrowthReport", "GcExperiment"]


class _Bookkeeping:
    """Everything of ours that lives between calls: one root for the census to leave out."""

    __slots__ = ("peaks", "results")

    def __init__(self) -> None:
        self.peaks = Peaks()
        # what census() and growth() handed out, while the caller keeps it
        self.results = weakref.WeakValueDictionary()  # id -> result


_OWN = _Bookkeeping()


def census() -> ObjectCensus:
    """Count and size the live objects by type.

    Every object the gc tracks, and every object it does not track that one
    of those refers to, counted once.  Objects that only C code refers to
    are not reached.  The census and the ones before it that are still
    alive are left out of it.
    """
    return _census_leaving_out(())


def _census_leaving_out(extra: tuple) -> ObjectCensus:
    """census(), with the objects in ``extra`` (bookkeeping of a caller in
    this package) left out too."""
    rows, memory = _native._census((_OWN, *_OWN.results.values(), *extra))
    result = ObjectCensus.from_rows(rows, memory)
    del rows
    _OWN.results[id(result)] = result
    return result


def growth(limit: int | None = 10, file=None) -> list:
    """Print and return the types that grew since the last call, with their peaks.

    A type grew when there are more of it than ever before at a call of
    ``growth()`` (its peak); the line shows its count now and how far it
    passed the peak, as objgraph's ``show_growth`` does, plus the bytes
    that came with it.  The first call reports every type.  ``limit`` is
    the most lines (None: all); ``file`` defaults to ``sys.stdout``.
    Returns the :class:`~pymemtrace.analyses.objects.Growth` rows printed.
    """
    # census() first: a bound method _OWN.peaks.update taken before it
    # would be one more reference to the peaks, and they would no longer
    # exist only because of _OWN.
    now = census()
    rows = _OWN.peaks.update(now, limit)
    del now
    _OWN.results[id(rows)] = rows
    out = sys.stdout if file is None else file
    for line in growth_lines(rows):
        print(line, file=out)
    return rows


def reset_growth() -> None:
    """Forget the peaks: the next ``growth()`` reports every type again."""
    _OWN.peaks = Peaks()


# -- who keeps it (issue 10, points 2 and 3) ------------------------------


class _Results(list):
    """A list handed out that later walks leave out (weakly referenced
    from the bookkeeping)."""

    __slots__ = ("__weakref__",)


def _ignore(*extra) -> tuple:
    """The roots of the tool's bookkeeping, for the C walks to leave out."""
    return (_OWN, *_OWN.results.values(), *extra)


def _is_tool_frame(frame) -> bool:
    """A frame of pymemtrace itself (its arguments are not roots)."""
    name = frame.f_globals.get("__name__")
    return isinstance(name, str) and name.startswith("pymemtrace.")


def _module_roots() -> list:
    """The modules of sys.modules, ``__main__`` and pymemtrace's last: at
    equal length the first one seeded wins."""
    middle, last = [], []
    for name, module in list(sys.modules.items()):
        if module is None:
            continue
        if name == "__main__":
            # a script's or a session's scratch variables: at equal length
            # the chain through the module that keeps the object is the
            # more telling one
            last.insert(0, module)
        elif name == "pymemtrace" or name.startswith("pymemtrace."):
            last.append(module)
        else:
            middle.append(module)
    return middle + last


def _frame_roots() -> tuple:
    """``(values, where, tool)``: the locals of every thread's frames (this
    thread's first, innermost first), ``(frame, name)`` of each, and the
    tool's own frames (left out).

    This function's own frame is in none of them: a list of frames held
    by a frame that is in it would be a cycle, keeping everything alive
    until the gc runs.  The callers clear ``tool`` for the same reason.
    """
    values, where, tool = [], [], []
    me = sys._getframe()
    current = threading.get_ident()
    frames = sys._current_frames()
    tops = [frames.pop(current)] if current in frames else []
    tops += list(frames.values())
    del frames
    for frame in tops:
        while frame is not None:
            if frame is me:
                pass
            elif _is_tool_frame(frame):
                tool.append(frame)
            else:
                for name, value in _native._frame_locals(frame):
                    values.append(value)
                    where.append((frame, name))
            frame = frame.f_back
    del tops, me
    return values, where, tool
def _tool_frames() -> tuple:
    frame = sys._getframe(1)
    found = []
    while frame is not None:
        if _is_tool_frame(frame):
            found.append(frame)
        frame = frame.f_back
    return tuple(found)


def _paths(targets: tuple, max_depth, *extra_ignore) -> tuple:
    """``(found, where)``: per target None or ``(root step, path)``."""
    modules = _module_roots()
    values, where, tool = _frame_roots()
    ignore = _ignore(targets, modules, values, where, *extra_ignore)
    raw = _native._backref_paths(targets, modules, values, ignore, tuple(tool),
                                 -1 if max_depth is None else int(max_depth), True)
    tool.clear()
    del ignore, values, modules
    found = []
    for item in raw:
        if item is None:
            found.append(None)
            continue
        phase, index, path = item
        if phase == 1:
            root = refchains.describe(path[0])
        elif phase == 2:
            frame, name = where[index]
            root = refchains.describe_frame(frame, name)
        elif len(path) == 1:
            root = f"{refchains.type_name(path[0])} {HELD_BY_C}"
        else:
            root = refchains.held_by_c_root(path[0])
        found.append((root, path))
    return found, where


def find_backref_chain(obj, max_depth=None):
    """The shortest chain of references from a root to ``obj``, or None.

    Roots, in this order of preference (a chain from an earlier kind wins
    over a shorter one from a later kind): the modules of ``sys.modules``
    (and through them classes and their attributes), the local variables
    of the frames of every thread (pymemtrace's own frames left out), the
    objects that only C code refers to.  The chain never passes through
    pymemtrace's own frames or bookkeeping.  ``max_depth`` bounds its
    number of references.  Returns a
    :class:`~pymemtrace.snapshots.objects.BackrefChain`.
    """
    found, where = _paths((obj,), max_depth)
    del where
    if found[0] is None:
        return None
    root, path = found[0]
    chain = refchains.chain_of(path, root, _native._frame_locals)
    result = BackrefChain(refchains.type_name(obj), chain, list(path))
    _OWN.results[id(result)] = result
    return result


_OTHER = refchains.OTHER
_MISSING = object()


def holders(objs, limit: int | None = 5) -> list:
    """Who holds many objects (e.g. the new instances of a growing type).

    One search from the roots finds each object's chain (as
    :func:`find_backref_chain` does); the objects are grouped by the chain
    to their holding container (indices and keys on the way generalised),
    biggest group first, at most ``limit`` groups (None: all).  Objects no
    root reaches, and objects only C code holds, make one group whose text
    says so.  Returns :class:`~pymemtrace.snapshots.objects.Holder` rows.
    """
    seen = {}
    for obj in objs:
        seen.setdefault(id(obj), obj)
    targets = tuple(seen.values())
    del seen
    found, where = _paths(targets, None, objs)
    rows = []
    # chains of objects with the same path to their container are the same
    # but for the last step: described once
    prefixes = {}
    for target, item in zip(targets, found):
        tp = refchains.type_name(target)
        if item is None:
            rows.append((tp, None))
            continue
        root, path = item
        key = (root, tuple(map(id, path[:-1])))
        chain = prefixes.get(key)
        if chain is None:
            chain = refchains.chain_of(path, root, _native._frame_locals)
            prefixes[key] = chain
        elif len(chain) > 1:
            chain = chain[:-1] + [_OTHER]
        rows.append((tp, chain))
    del found, where, targets, prefixes
    return refchains.group_holders(rows, limit)


def by_type(type_or_name) -> list:
    """Every live object of a type (a type, or its bare name such as
    ``"tuple"`` or ``"Handler"``), including the ones the gc does not
    track (a tuple of atoms, str, int): objgraph's ``by_type`` sees only
    tracked ones.  Reached as ``census()`` reaches objects."""
    result = _Results(_native._by_type(type_or_name, _ignore(), _tool_frames()))
    _OWN.results[id(result)] = result
    return result


def get_leaking_objects() -> list:
    """The objects the gc tracks that no Python object refers to (no
    object, tracked or reached, and no frame), though something holds
    them: C code (objgraph's name and meaning; pymemtrace's own
    bookkeeping is left out, and so are the lists this function returned
    before).  Among them are the interpreter's own (``sys.__dict__``, the
    builtins' dict ...); compare two calls to see new ones.
    """
    result = _Results(_native._leaking_objects(_ignore(), _tool_frames()))
    _OWN.results[id(result)] = result
    return result


def is_immortal(obj) -> bool:
    """Whether ``obj`` is immortal (CPython 3.12+: ``None``, small ints,
    interned strings on 3.12 ...): its reference count never changes, so
    a reference leak on it can be neither seen nor harmful."""
    return _native._is_immortal(obj)


_RECORD = 3  # native 64-bit integers per object: address, type, external


class ExternalRefs:
    """For every object the walk reaches: its reference count less the
    references of known referrers (objects, frames): what C code holds.

    Kept compact (three native integers per object in one ``bytes``), and
    freed with the snapshot.  Compare two with :meth:`grown`.
    """

    __slots__ = ("data", "__weakref__")

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data) // (8 * _RECORD)

    def __repr__(self) -> str:
        return f"<ExternalRefs of {len(self)} objects>"

    @property
    def immortal(self) -> int:
        """How many of the objects are immortal (their counts say nothing)."""
        values = array.array("q")
        values.frombytes(self.data)
        return values[2::_RECORD].count(-(2**63))

    def grown(self, later: ExternalRefs, calls: int, min_per_call: float = 0.5) -> list:
        """The objects (same address and type in both) whose external
        references grew by at least ``min_per_call`` per call over
        ``calls`` calls, as :class:`RefLeak` rows, most per call first.
        Two snapshots cannot tell steady growth from noise:
        :func:`refcount_leaks` measures at several points."""
        if calls <= 0:
            raise ValueError("calls must be > 0")
        rows = _native._refs_grown((self.data, later.data))
        kept = [(addr, tp, exts, (exts[-1] - exts[0]) / calls) for addr, tp, exts in rows]
        return _ref_leaks([row for row in kept if row[3] >= min_per_call])


def external_references() -> ExternalRefs:
    """Snapshot, for every object, the references no known referrer
    accounts for (see :class:`ExternalRefs`)."""
    return ExternalRefs(_native._external_refs(_ignore(), _tool_frames()))


def _ref_leaks(rows) -> list:
    """RefLeak rows from ``(address, type address, externals, per call)``."""
    if not rows:
        return []
    live = _native._objects_at(tuple(row[0] for row in rows), _ignore(rows), _tool_frames())
    leaks = []
    for addr, tp_addr, exts, rate in rows:
        obj = live.get(addr, _MISSING)
        if obj is not _MISSING and id(type(obj)) == tp_addr:
            leaks.append(RefLeak(refchains.type_name(obj), refchains.short_repr(obj, 60),
                                 round(rate, 2), addr, tuple(exts)))
        else:
            leaks.append(RefLeak("?", f"<object at {addr:#x}>", round(rate, 2), addr, tuple(exts)))
        obj = None
    del live
    leaks.sort(key=lambda leak: (-leak.refs_per_call, leak.type, leak.repr))
    return leaks


#: measurements taken by refcount_leaks (so three intervals of calls)
MEASUREMENTS = 4


def refcount_leaks(func, *args, iterations: int = 20, warmup: int = 3,
                   min_per_call: float = 0.5, **kwargs) -> list:
    """Call ``func(*args, **kwargs)`` repeatedly and report the objects on
    which references pile up that no Python object or frame accounts for:
    reference leaks of C code, found on release builds (no
    ``sys.gettotalrefcount``).

    ``warmup`` calls fill caches first; then the external references of
    every object are measured (after a ``gc.collect()``) before the calls
    and after each third of ``iterations``.  An object is reported when they grew in every third,
    about steadily (each third's rate within a factor of two of the
    whole), by at least ``min_per_call`` per call.  Immortal objects
    (3.12+) cannot be measured: a warning says so when an argument is one.
    Returns :class:`RefLeak` rows, most references per call first.
    """
    if iterations < MEASUREMENTS - 1:
        raise ValueError(f"iterations must be at least {MEASUREMENTS - 1}")
    for value in (*args, *kwargs.values()):
        if _native._is_immortal(value):
            warnings.warn(f"{refchains.short_repr(value)} is immortal: a reference leak on it "
                          "is neither seen nor harmful", stacklevel=2)
    for _ in range(warmup):
        func(*args, **kwargs)
    bounds = [iterations * i // (MEASUREMENTS - 1) for i in range(MEASUREMENTS)]
    # cyclic garbage waiting for the gc (classes made per call, say) holds
    # references that no traverse reports (a class's name): collected
    # before each measurement, it is not taken for C code's
    gc.collect()
    snapshots = [external_references()]
    done = 0
    for bound in bounds[1:]:
        while done < bound:
            func(*args, **kwargs)
            done += 1
        gc.collect()
        snapshots.append(external_references())
    rows = _native._refs_grown(tuple(snap.data for snap in snapshots))
    del snapshots
    steady = []
    for addr, tp, exts in rows:
        rate = refchains.steady_rate(exts, bounds, min_per_call)
        if rate is not None:
            steady.append((addr, tp, exts, rate))
    return _ref_leaks(steady)


# -- show_backrefs ----------------------------------------------------------

def _node_label(obj) -> str:
    text = refchains.describe(obj)
    if text == refchains.type_name(obj):
        text = f"{text}\n{refchains.short_repr(obj, 30)}"
    return text


def show_backrefs(obj, filename, max_depth: int = 3, max_referrers: int = 10) -> None:
    """Draw what refers to ``obj``, ``max_depth`` references back (at most
    ``max_referrers`` per object), stopping at modules and frames.

    ``filename`` ending in ``.dot`` (or ``.gv``) gets the graphviz DOT
    text; any other extension (``.svg``, ``.png``, ``.pdf``) is rendered by
    graphviz's ``dot`` program, and raises
    :class:`~pymemtrace.errors.PymemtraceError` with a one-line message
    when it is not installed.  The file is complete or absent.
    """
    import shutil
    import subprocess

    from pymemtrace import _output
    from pymemtrace.reporters.objects_dot import dot_lines

    path = os.fspath(filename)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    dot = None
    if ext not in ("dot", "gv"):
        dot = shutil.which("dot")
        if dot is None:
            raise PymemtraceError(f"cannot write {path}: graphviz's dot is not installed "
                                  "(install graphviz, or write a .dot file)")
    nodes = {id(obj): _node_label(obj)}
    keep = [obj]  # the drawn objects, alive until the end
    # a module's __dict__ is drawn as the module (one node, not two)
    module_dicts = {}
    for module in _module_roots():
        try:
            module_dicts[id(vars(module))] = module
        except TypeError:
            continue
    edges = []
    roots = []
    level = [obj]
    for _ in range(max_depth):
        values, where, tool = _frame_roots()
        referrers = _native._referrers(tuple(level),
                                       _ignore(keep, level, values, where, nodes, module_dicts),
                                       tuple(tool))
        tool.clear()
        following = []
        for target, refs in zip(level, referrers):
            drawn = 0
            for frame, name, value in ((f, n, v) for v, (f, n) in zip(values, where)):
                if value is target and drawn < max_referrers:
                    key = ("frame", id(frame), name)
                    nodes[key] = refchains.describe_frame(frame, name)
                    roots.append(key)
                    edges.append((key, id(target), ""))
                    drawn += 1
            for ref in refs:
                if drawn >= max_referrers:
                    break
                if type(ref) is type(sys._getframe()):
                    continue
                label = refchains._item_label(ref, target) or \
                    refchains._attribute_of(ref, target) or ""
                module = module_dicts.get(id(ref))
                if module is not None and vars(module) is ref:
                    ref = module
                    name = refchains._key_of(vars(module), target)
                    label = name if isinstance(name, str) else label
                edges.append((id(ref), id(target), label))
                drawn += 1
                if id(ref) in nodes:
                    continue
                nodes[id(ref)] = _node_label(ref)
                keep.append(ref)
                if isinstance(ref, type(sys)):
                    roots.append(id(ref))
                else:
                    following.append(ref)
        del values, where, tool, referrers
        level = following
        if not level:
            break
    del level
    text = "\n".join(dot_lines(nodes, edges, id(obj), roots)) + "\n"
    del keep, module_dicts
    if dot is None:
        _output.write_file(path, text)
        return
    try:
        done = subprocess.run([dot, f"-T{ext}"], input=text.encode(), capture_output=True,
                              check=False)
    except OSError as exc:
        raise PymemtraceError(f"cannot run {dot}: {_output.reason(exc)}") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise PymemtraceError(f"cannot write {path}: dot failed: {lines[0]}")
    _output.write_file(path, done.stdout)


# -- what calling a function leaves behind ---------------------------------

#: Growing types whose holders call_growth() looks for.
HOLDER_TYPES = 3


def _call(func, args, kwargs, n: int, after=None) -> None:
    for _ in range(n):
        func(*args, **kwargs)
        if after is not None:
            after()


def _halves(iterations: int) -> tuple:
    if iterations < 2:
        raise ValueError(f"iterations must be at least 2, not {iterations!r}")
    first = iterations // 2
    return first, iterations - first


def _heap_bytes() -> int:
    from pymemtrace import allocations

    return allocations.counters()["bytes"]


def call_growth(func, *args, iterations: int = 20, warmup: int = 3, **kwargs) -> ObjectGrowthReport:
    """Call ``func(*args, **kwargs)`` ``warmup`` times, then ``iterations``
    times, and report what each call leaves behind.

    Live objects are counted (:func:`census`) before the calls, after half
    of them and at the end, each time after ``gc.collect()``; a type, the
    bytes in Python's allocators or RSS grew only if they rose in both
    halves (a cache that fills and stops is not growth).  The report has the
    growing types per call, the holders of their new instances (the
    referrer chains), the reference-count leaks (from ``iterations`` more
    calls, measured by :func:`refcount_leaks` with no census in between),
    and the bytes no object owns.  ``ObjectGrowthReport.to_dict()`` is ``pymemtrace objects
    --format json``.
    """
    from pymemtrace import allocations
    from pymemtrace.analyses.object_growth import memory_growth, steady_types

    calls = _halves(iterations)
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, not {warmup!r}")
    target = getattr(func, "__qualname__", None) or repr(func)
    with allocations.counting():
        _call(func, args, kwargs, warmup)
        _warm_measuring()
        meter = _Meter()
        meter.measure()
        _call(func, args, kwargs, calls[0])
        meter.measure()
        # Which instances of the types that grew in the first half exist
        # now: the new ones at the end are what the second half kept.
        before = meter.own(_instances_of_growing, meter.censuses[0], meter.censuses[1])
        _call(func, args, kwargs, calls[1])
        kept = meter.new_instances(before)
        meter.measure(before, kept)
    censuses, heap, rss = meter.censuses, meter.heap, meter.rss
    types = steady_types(censuses, calls)
    memory = memory_growth(heap, rss, calls, [c.total_bytes for c in censuses])
    holders = _holders_of(types, kept)
    del kept, before, meter, censuses
    # A run of its own: the censuses above hold references (their counts,
    # their types) that no walk may count as C code's.
    refcount = refcount_leaks(func, *args, iterations=max(iterations, MEASUREMENTS - 1),
                              warmup=0, **kwargs)
    return ObjectGrowthReport(target, iterations, warmup, types, memory, holders, refcount)


def _warm_measuring() -> None:
    """One measuring cycle with no calls in it: the first census, the first
    walks and the first calls of their functions leave caches behind
    (about 1 KiB on 3.10: interned names, a method cache) that would read
    as growth of the run's first half."""
    meter = _Meter()
    meter.measure()
    meter.measure()
    before = meter.own(_instances_of_growing, meter.censuses[0], meter.censuses[1])
    kept = meter.new_instances(before)
    meter.measure(before, kept)


class _Meter:
    """Censuses, heap bytes and RSS at the points of a run of calls, each
    less what the measuring itself keeps (the censuses taken so far, their
    lists, the instance ids): a census is measured before it is taken."""

    def __init__(self) -> None:
        self.censuses: list = []
        self.heap: list = []
        self.rss: list = []
        self.own_heap = 0
        self.own_rss = 0

    def own(self, func, *args):
        """func(*args), its memory counted as ours (after a collection:
        the cyclic garbage it leaves is not)."""
        import gc

        heap, rss = _heap_bytes(), _native.rss()
        try:
            return func(*args)
        finally:
            gc.collect()
            _native._release_free_memory()
            self.own_heap += _heap_bytes() - heap
            self.own_rss += _native.rss() - rss

    def new_instances(self, before: tuple) -> dict:
        """_new_instances(before), its memory counted as ours; no tuple of
        arguments made on the way (it would be a new object of ours)."""
        import gc

        heap, rss = _heap_bytes(), _native.rss()
        try:
            # The meter's own figures and this frame's are new ints too.
            return _new_instances(before, (self.heap, self.rss, self.censuses,
                                           (heap, rss, self.own_heap, self.own_rss)))
        finally:
            gc.collect()
            _native._release_free_memory()
            self.own_heap += _heap_bytes() - heap
            self.own_rss += _native.rss() - rss

    def measure(self, *extra) -> None:
        import gc

        gc.collect()
        # Pages the C allocator holds free would make RSS lag the heap.
        _native._release_free_memory()
        self.heap.append(_heap_bytes() - self.own_heap)
        self.rss.append(_native.rss() - self.own_rss)
        self.censuses.append(self.own(
            _census_leaving_out, (self, self.censuses, self.heap, self.rss, *extra)))


def _instances(name: str, qualname: str) -> list:
    """The live objects whose type is ``qualname`` (found by its bare name).
    A plain loop: a comprehension's closure would be one more object of
    ours alive while the walk looks."""
    found = []
    for op in by_type(name):
        if type_names(type(op))[1] == qualname:
            found.append(op)
    return found


def _instances_of_growing(first: ObjectCensus, second: ObjectCensus) -> tuple:
    """({qualname: bare name} of the types whose count rose most from first
    to second (at most HOLDER_TYPES), the ids of their live instances)."""
    rises = sorted(((row.count - (first.types[q].count if q in first.types else 0), q)
                    for q, row in second.types.items()), reverse=True)
    grew = {q: second.types[q].name for rise, q in rises[:HOLDER_TYPES] if rise > 0}
    # Gone before the ids are taken: an object alive now and freed later
    # lends its address to a new one, which its id would then hide.
    del rises
    ids = set()
    for qualname in grew:
        ids.update(map(id, _instances(grew[qualname], qualname)))
    return grew, ids


def _new_instances(before: tuple, ours: tuple) -> dict:
    """qualname -> the live instances, not there at the middle of the run,
    of the types that grew in its first half; none of them ours (the
    measuring's containers ``ours`` and what they hold, ``before``, and
    what is made here: while a walk looks, they are alive)."""
    grew, ids = before
    names = list(grew)
    found = {}
    for qualname in names:
        found[qualname] = _instances(grew[qualname], qualname)
    own = {id(found), id(names), id(before), id(grew), id(ids), id(ours),
           *map(id, found.values())}
    for container in ours:
        own.add(id(container))
        own.update(map(id, container))
    # The ids are ints made after the first walk: new ints, and ours.
    own.update(map(id, ids))
    for objs in found.values():
        objs[:] = [op for op in objs if id(op) not in ids and id(op) not in own]
    return found


def _holders_of(types: list, kept: dict) -> list:
    """The holders of what the second half kept, for the steadily growing
    types among those that grew in the first half."""
    rows = []
    for row in [t for t in types if kept.get(t.qualname)][:HOLDER_TYPES]:
        rows.extend(holders(kept[row.qualname], limit=2))
    return rows


def gc_experiment(func, *args, iterations: int = 20, warmup: int = 3, **kwargs) -> GcExperiment:
    """Run ``func(*args, **kwargs)`` ``iterations`` times in each of three
    modes (the gc enabled, disabled, and ``gc.collect()`` after every call)
    and say whether what piles up is retained (it stays even when the gc
    collects after every call) or cyclic garbage collected late (the gc
    frees it).  Bytes are those in Python's allocators; objects are the
    ones the gc tracks.  The gc's state is restored afterwards.
    """
    import gc

    from pymemtrace import allocations
    from pymemtrace.analyses.object_growth import classify_gc, mode_growth
    from pymemtrace.reporters.object_growth_text import gc_sentence

    calls = _halves(iterations)
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more, not {warmup!r}")
    was_enabled = gc.isenabled()
    modes = []
    with allocations.counting():
        _call(func, args, kwargs, warmup)
        try:
            for mode in ("enabled", "disabled", "collect"):
                gc.collect()
                if mode == "disabled":
                    gc.disable()
                else:
                    gc.enable()
                after = gc.collect if mode == "collect" else None
                heap, count = [_heap_bytes()], [len(gc.get_objects())]
                for n in calls:
                    _call(func, args, kwargs, n, after)
                    heap.append(_heap_bytes())
                    count.append(len(gc.get_objects()))
                gc.collect()
                modes.append(mode_growth(mode, heap, count, calls, _heap_bytes(),
                                         len(gc.get_objects())))
        finally:
            if was_enabled:
                gc.enable()
            else:
                gc.disable()
    verdict = classify_gc(modes)
    return GcExperiment(iterations, modes, verdict, gc_sentence(verdict, modes))
