"""pymemtrace.objects: who keeps it (issue 10, points 2 and 3).

Planted holders and leaks, each with a non-leaking twin: a module-level
cache dict, a list in a class attribute (PyYAML 5.3's implicit-resolver
bug), lists only C code holds (cMemLeak.leak_list), an object only a
thread's local holds; extra references per call on a list, a str, an
interned str, None, a type (cMemLeak.leak_incref), and the negatives
(no_leak_incref, allocate-and-free, a saturating lru_cache).
"""

import functools
import gc
import os
import stat
import sys
import threading
import tracemalloc
import warnings
import weakref

import pytest

from pymemtrace import cMemLeak, objects
from pymemtrace.errors import PymemtraceError
from pymemtrace.snapshots.objects import HELD_BY_C

N = 50
PY312 = sys.version_info >= (3, 12)


class Handler:
    """The planted type."""

    def __init__(self, key=None):
        self.key = key


# -- a module-level cache dict that grows ------------------------------------

_CACHE = {}


def cache_leaky(serial):
    _CACHE[f"req-{serial}"] = [serial, "x", None, Handler(serial)]


def cache_twin(serial):
    entry = {f"req-{serial}": [serial, "x", None, Handler(serial)]}
    del entry


def new_handlers(before):
    return [o for o in gc.get_objects() if type(o) is Handler and id(o) not in before]


def handler_ids():
    return {id(o) for o in gc.get_objects() if type(o) is Handler}


def test_chain_names_module_dict_and_key():
    _CACHE.clear()
    for serial in range(20):
        cache_leaky(serial)
    chain = objects.find_backref_chain(_CACHE["req-17"][3])
    assert chain is not None
    assert chain.type == "Handler"
    assert chain.chain == [f"module {__name__}", "dict _CACHE", "key 'req-17'", "list", "[3]"]
    assert chain.text == " -> ".join(chain.chain)
    # objgraph's shape: the objects from the root to the object
    assert chain.objects[0] is sys.modules[__name__]
    assert chain.objects[-1] is _CACHE["req-17"][3]
    _CACHE.clear()


def test_holders_group_the_cache_and_twin_leaves_nothing():
    _CACHE.clear()
    before = handler_ids()
    for serial in range(N):
        cache_twin(serial)
    assert new_handlers(before) == []
    for serial in range(N):
        cache_leaky(serial)
    new = new_handlers(before)
    assert len(new) == N
    rows = objects.holders(new)
    del new
    assert rows[0].count == N
    assert rows[0].type == "Handler"
    assert rows[0].text == f"module {__name__} -> dict _CACHE -> key ... -> list -> [3]"
    assert len(rows) == 1
    _CACHE.clear()


def test_module_chain_wins_over_the_callers_local():
    _CACHE.clear()
    cache_leaky(1)
    mine = _CACHE["req-1"][3]  # a shorter chain from this frame's local
    chain = objects.find_backref_chain(mine)
    assert chain.chain[0] == f"module {__name__}"
    _CACHE.clear()


# -- a list in a class attribute that grows every call (PyYAML 5.3) ----------


class Resolver:
    yaml_implicit_resolvers = {}

    @classmethod
    def add_implicit_resolver(cls, tag):
        # PyYAML 5.3's bug: the class-level dict of lists is appended to on
        # every call, never copied per instance
        cls.yaml_implicit_resolvers.setdefault("x", []).append(Handler(tag))


class FixedResolver:
    def __init__(self):
        self.yaml_implicit_resolvers = {}

    def add_implicit_resolver(self, tag):
        self.yaml_implicit_resolvers.setdefault("x", []).append(Handler(tag))


def test_class_attribute_list_is_named():
    before = handler_ids()
    for tag in range(N):
        FixedResolver().add_implicit_resolver(tag)
    assert new_handlers(before) == []
    for tag in range(N):
        Resolver.add_implicit_resolver(tag)
    new = new_handlers(before)
    rows = objects.holders(new)
    del new
    assert rows[0].count == N
    assert rows[0].chain == [f"module {__name__}", "class Resolver",
                             "dict yaml_implicit_resolvers", "key 'x'", "list", "[...]"]
    chain = objects.find_backref_chain(Resolver.yaml_implicit_resolvers["x"][7])
    assert chain.text.endswith("class Resolver -> dict yaml_implicit_resolvers -> key 'x' -> list -> [7]")
    Resolver.yaml_implicit_resolvers.clear()


# -- held by C code only ---------------------------------------------------------


def new_leaking(before):
    return [o for o in objects.get_leaking_objects() if id(o) not in before]


def test_leak_list_is_held_by_c_and_twin_is_not():
    before = {id(o) for o in objects.get_leaking_objects()}
    for _ in range(10):
        cMemLeak.no_leak_list()
    assert [o for o in new_leaking(before) if type(o) is list] == []
    for _ in range(10):
        cMemLeak.leak_list()
    leaked = [o for o in new_leaking(before) if type(o) is list]
    assert len(leaked) == 10
    assert all(o == [] for o in leaked)
    rows = objects.holders(leaked)
    assert rows == [objects.Holder("list", [HELD_BY_C], HELD_BY_C, 10)]
    # (not from a local of this frame, which would be the chain)
    chain = objects.find_backref_chain(leaked.pop())
    assert chain.chain == [f"list {HELD_BY_C}"]


def test_container_held_by_c_is_the_root():
    before = {id(o) for o in objects.get_leaking_objects()}
    cMemLeak.leak_list()
    (leaked,) = [o for o in new_leaking(before) if type(o) is list]
    leaked.append(Handler("inside"))
    inside = weakref.ref(leaked[0])
    del leaked
    chain = objects.find_backref_chain(inside())
    assert chain.chain == ["list held only by C code", "[0]"]


# -- a local in another thread's frame ------------------------------------------


class Payload:
    __slots__ = ("__weakref__",)


def test_object_held_by_another_threads_local():
    ready = threading.Event()
    done = threading.Event()
    box = []

    def worker():
        payload = Payload()
        box.append(weakref.ref(payload))
        ready.set()
        done.wait(30)
        del payload

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert ready.wait(30)
        chain = objects.find_backref_chain(box[0]())
        assert chain is not None
        assert len(chain.chain) == 1
        assert chain.chain[0].startswith("frame of worker (test_objects_refs.py:")
        assert chain.chain[0].endswith(", local payload")
    finally:
        done.set()
        thread.join()


# -- the tool's own lists are no edges -----------------------------------------

_LAST = []


def test_chain_avoids_earlier_results_and_argument_lists():
    def hold():
        kept = Handler("kept")
        _LAST.append(objects.find_backref_chain(kept))
        # the earlier result, in a module list, refers to kept: a chain
        # through it would be shorter than the frame's
        return objects.find_backref_chain(kept)

    chain = hold()
    _LAST.clear()
    assert chain.chain[0].startswith("frame of hold (")
    assert "BackrefChain" not in chain.text


def test_holders_argument_list_is_not_a_holder():
    objs = [Handler("only in the argument")]
    rows = objects.holders(objs)
    assert len(rows) == 1 and rows[0].count == 1
    # reached through this frame's own list of them? no: that list is
    # the argument
    assert "local objs" not in rows[0].text


def test_max_depth_limits_the_chain():
    _CACHE.clear()
    cache_leaky(5)
    target = _CACHE["req-5"][3]
    assert objects.find_backref_chain(target, max_depth=2).chain[0].startswith("frame of ")
    assert objects.find_backref_chain(target, max_depth=4).chain[0] == f"module {__name__}"
    _CACHE.clear()


def test_no_garbage_and_memory_freed():
    _CACHE.clear()
    cache_leaky(3)
    target = _CACHE["req-3"][3]
    for _ in range(3):  # lazy caches first
        objects.find_backref_chain(target)
        objects.holders([target])
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        before_objects = len(gc.get_objects())
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(5):
            objects.find_backref_chain(target)
            objects.holders([target])
            objects.get_leaking_objects()
        now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        after_objects = len(gc.get_objects())
    finally:
        gc.enable()
    # nothing kept, no cycles left for the gc; the walks' C memory (about
    # a megabyte per walk at the peak: address maps of the whole heap) is
    # returned, up to the interpreter's free lists
    assert after_objects - before_objects < 10
    assert now - start < 100_000
    assert peak - now > 1_000_000
    _CACHE.clear()


# -- reference-count leaks (point 3) -----------------------------------------


def found_on(leaks, obj):
    return [leak for leak in leaks if leak.address == id(obj)]


def test_leak_incref_on_a_list_and_its_twin():
    x = [1, 2, 3]
    leaks = objects.refcount_leaks(cMemLeak.leak_incref, x)
    (leak,) = found_on(leaks, x)
    assert leak.type == "list"
    assert leak.refs_per_call == 1.0
    assert str(leak) == "1 extra reference per call on object [1, 2, 3] of type list"
    assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, x), x) == []


def test_leak_incref_on_a_str():
    s = "a str of our own " + str(os.getpid())
    leaks = objects.refcount_leaks(cMemLeak.leak_incref, s, iterations=12)
    (leak,) = found_on(leaks, s)
    assert leak.type == "str" and leak.refs_per_call == 1.0
    assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, s, iterations=12), s) == []


def test_leak_incref_on_an_interned_str():
    s = sys.intern("an interned str " + str(os.getpid()))
    if objects.is_immortal(s):
        # 3.12 makes interned str immortal: INCREF changes nothing, and
        # the tool says so rather than report or miss it silently
        assert sys.version_info[:2] == (3, 12)
        with pytest.warns(UserWarning, match="immortal"):
            assert objects.refcount_leaks(cMemLeak.leak_incref, s) == []
        return
    (leak,) = found_on(objects.refcount_leaks(cMemLeak.leak_incref, s), s)
    assert leak.refs_per_call == 1.0
    assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, s), s) == []


@pytest.mark.skipif(PY312, reason="None is immortal from 3.12")
def test_leak_incref_on_none():
    (leak,) = found_on(objects.refcount_leaks(cMemLeak.leak_incref, None), None)
    assert leak.type == "NoneType" and leak.repr == "None"
    assert leak.refs_per_call == 1.0
    assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, None), None) == []


@pytest.mark.skipif(not PY312, reason="immortal objects exist from 3.12")
def test_none_is_immortal_and_said_so():
    assert objects.is_immortal(None)
    with pytest.warns(UserWarning, match="immortal"):
        assert found_on(objects.refcount_leaks(cMemLeak.leak_incref, None), None) == []


def test_leak_incref_on_a_type():
    (leak,) = found_on(objects.refcount_leaks(cMemLeak.leak_incref, Handler), Handler)
    assert leak.type == "type"
    assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, Handler), Handler) == []


@pytest.mark.skipif(PY312, reason="static types are immortal from 3.12")
def test_leak_incref_on_a_static_type_and_a_tuple_of_atoms():
    pair = (1, "atom " + str(os.getpid()))
    gc.collect()  # untracks the tuple of atoms
    assert not gc.is_tracked(pair)
    for obj in (int, pair):
        (leak,) = found_on(objects.refcount_leaks(cMemLeak.leak_incref, obj, iterations=12), obj)
        assert leak.refs_per_call == 1.0
        assert found_on(objects.refcount_leaks(cMemLeak.no_leak_incref, obj, iterations=12), obj) == []


def allocate_and_free():
    data = [Handler(i) for i in range(100)]
    text = "".join(str(i) for i in range(100))
    del data, text


_counter = iter(range(10**9))


@functools.lru_cache(maxsize=4)
def cached(n):
    return [n]


def call_cached():
    cached(next(_counter))


def class_per_call():
    # a class is a cycle: garbage until the gc runs, holding its name
    class Made:
        pass

    Made()


def test_negatives_are_not_reported():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert objects.refcount_leaks(allocate_and_free) == []
        assert objects.refcount_leaks(class_per_call) == []
        assert objects.refcount_leaks(call_cached) == []
        assert objects.refcount_leaks(cMemLeak.no_leak_list) == []


def test_external_references_snapshot_and_grown():
    x = ["grown"]
    first = objects.external_references()
    assert len(first) > 1000
    assert len(first.data) == 24 * len(first)
    if PY312:
        assert first.immortal > 0
    for _ in range(5):
        cMemLeak.leak_incref(x)
    later = objects.external_references()
    (leak,) = found_on(first.grown(later, calls=5), x)
    assert leak.refs_per_call == 1.0


# -- DOT and SVG --------------------------------------------------------------


def test_show_backrefs_writes_dot(tmp_path):
    _CACHE.clear()
    cache_leaky(9)
    path = tmp_path / "refs.dot"
    objects.show_backrefs(_CACHE["req-9"][3], path)
    text = path.read_text()
    assert text.startswith("digraph backrefs {")
    assert text.rstrip().endswith("}")
    assert f'label="module {__name__}"' in text
    assert 'label="_CACHE"' in text
    assert 'label="[3]"' in text
    assert 'label="key \'req-9\'"' in text
    _CACHE.clear()


def fake_dot(folder, body):
    script = folder / "dot"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_show_backrefs_svg_through_dot(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_dot(bindir, 'test "$1" = -Tsvg || exit 3\nread -r first\n'
             'test "$first" = "digraph backrefs {" && echo "<svg/>"\n')
    monkeypatch.setenv("PATH", str(bindir))
    path = tmp_path / "refs.svg"
    objects.show_backrefs(Handler(), path)
    assert path.read_text() == "<svg/>\n"


def test_show_backrefs_without_dot_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    path = tmp_path / "refs.svg"
    with pytest.raises(PymemtraceError, match="graphviz's dot is not installed"):
        objects.show_backrefs(Handler(), path)
    assert not path.exists()


def test_show_backrefs_dot_failing_leaves_nothing(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_dot(bindir, 'echo "syntax error in line 1" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(bindir))
    path = tmp_path / "refs.svg"
    with pytest.raises(PymemtraceError, match="dot failed: syntax error in line 1"):
        objects.show_backrefs(Handler(), path)
    assert not path.exists()
    assert os.listdir(tmp_path) == ["bin"]


# -- by_type: untracked objects too ---------------------------------------------

_PAIRS = {}


def test_by_type_finds_untracked_tuples_and_their_holder():
    before = {id(t) for t in objects.by_type("tuple")}
    for i in range(N):
        _PAIRS[f"k{i}"] = ("alice", 10**6 + i)  # atoms only: untracked at the next gc
    gc.collect()
    assert not any(gc.is_tracked(t) for t in _PAIRS.values())
    new = [t for t in objects.by_type(tuple) if id(t) not in before]
    assert {id(t) for t in _PAIRS.values()} <= {id(t) for t in new}
    assert [t for t in objects.by_type("tuple") if t is _PAIRS["k3"]]
    rows = objects.holders([t for t in new if t in _PAIRS.values()])
    assert rows[0].count == N
    assert rows[0].text == f"module {__name__} -> dict _PAIRS -> key ..."
    _PAIRS.clear()


def test_class_no_module_reaches_is_a_root():
    def make():
        class Local:
            items = []

            @classmethod
            def add(cls):
                cls.items.append(Handler("local class"))

        return Local

    local = make()
    for _ in range(3):
        local.add()
    # the class is also this frame's local: classes come before frames
    chain = objects.find_backref_chain(local.items[1])
    assert chain.chain == ["class test_class_no_module_reaches_is_a_root.<locals>.make.<locals>.Local",
                           "list items", "[1]"]


def test_show_backrefs_draws_a_frames_local(tmp_path):
    held = [Handler("in a local")]
    path = tmp_path / "local.gv"
    objects.show_backrefs(held[0], path, max_depth=2)
    text = path.read_text()
    assert "local held" in text
    # every name is a plain DOT identifier
    import re

    for line in text.splitlines()[4:-1]:
        assert re.match(r"^  n\d+( -> n\d+)? \[", line) or re.match(r"^  n\d+ -> n\d+;$", line), line
