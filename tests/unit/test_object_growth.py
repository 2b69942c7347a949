"""objects.call_growth() and objects.gc_experiment() on planted leaks and
their non-leaking twins (tests/fixtures/object_targets.py), and the
analyses they rest on."""
import gc
import os

import pytest

from pymemtrace import _runner, objects
from pymemtrace.analyses.object_growth import (
    classify_gc,
    memory_growth,
    outside_allocators,
    steady_per_call,
    steady_types,
)
from pymemtrace.snapshots.object_growth import CYCLIC, NO_GROWTH, RETAINED, ModeGrowth
from pymemtrace.snapshots.objects import ObjectCensus, TypeCount

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
TARGETS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "object_targets.py")


def target(name):
    return _runner.callable_target(f"{TARGETS}:{name}")[0]


def types_of(report):
    return {t.type: t for t in report.types}


# -- the analyses ------------------------------------------------------------

def test_steady_growth_needs_both_halves():
    assert steady_per_call([0, 10, 20], (10, 10)) == 1.0
    assert steady_per_call([0, 10, 10], (10, 10)) == 0.0  # filled and stopped
    assert steady_per_call([0, 0, 10], (10, 10)) == 0.0  # started late: not steady
    assert steady_per_call([10, 5, 0], (10, 10)) == 0.0  # shrank


def census_of(**counts):
    return ObjectCensus({f"m.{n}": TypeCount(n, f"m.{n}", c, 8 * c) for n, c in counts.items()})


def test_steady_types_ranks_and_sizes():
    rows = steady_types([census_of(a=0, b=5, c=1), census_of(a=10, b=9, c=3),
                         census_of(a=20, b=9, c=5)], (10, 10))
    assert [(r.type, r.per_call, r.bytes_per_call) for r in rows] == [
        ("a", 1.0, 8.0), ("c", 0.2, 1.6)]


def test_unowned_is_what_the_objects_do_not_explain():
    objects = [0, 800, 1600]  # the censuses' total bytes
    owned = memory_growth([0, 800, 1600], [0, 0, 0], (10, 10), objects)
    assert owned.heap_bytes_per_call == 80.0 and owned.unowned_bytes_per_call == 0.0
    jitter = memory_growth([0, 300, 600], [0, 4096, 8192], (10, 10), [0, 0, 0])
    assert jitter.heap_bytes_per_call == 0.0 and jitter.rss_bytes_per_call == 0.0
    raw = memory_growth([0, 40960, 81920], [0, 0, 0], (10, 10), objects)
    assert raw.unowned_bytes_per_call == 4096 - 80
    rss = memory_growth([0, 0, 0], [0, 655360, 1310720], (10, 10), [0, 0, 0])
    assert outside_allocators(rss) == 65536
    assert outside_allocators(raw) == 0.0


def mode(name, grows=0.0, collected=0.0):
    return ModeGrowth(name, grows, grows / 100, collected, collected / 100)


def test_gc_classification():
    assert classify_gc([mode("enabled"), mode("disabled", 500, 500), mode("collect")]) == CYCLIC
    assert classify_gc([mode("enabled", 90), mode("disabled", 90), mode("collect", 90)]) == RETAINED
    assert classify_gc([mode("enabled"), mode("disabled", 8, 8), mode("collect")]) == NO_GROWTH


# -- call_growth on planted leaks and twins -----------------------------------

def test_module_cache_grows():
    report = objects.call_growth(target("cache_grows"))
    found = types_of(report)
    assert found["list"].per_call == pytest.approx(1.0)
    assert found["str"].per_call == pytest.approx(1.0)
    assert report.memory.heap_bytes_per_call > found["list"].bytes_per_call
    assert report.memory.unowned_bytes_per_call == 0.0


def test_class_attribute_grows():
    report = objects.call_growth(target("resolver_grows"), iterations=30)
    found = types_of(report)
    assert found["Handler"].per_call == pytest.approx(1.0)
    assert found["Handler"].qualname.endswith("object_targets.Handler")
    assert found["tuple"].per_call >= 1.0


@pytest.mark.parametrize("name", ["cache_bounded", "resolver_twin", "lru_saturates", "noop",
                                  "alloc_and_free", "c_list_twin", "c_pymem_raw_twin",
                                  "c_pymem_twin", "cycle_garbage"])
def test_twins_and_negatives_leave_nothing(name):
    report = objects.call_growth(target(name), iterations=30)
    assert report.types == []
    assert report.memory.heap_bytes_per_call == 0.0
    assert report.memory.unowned_bytes_per_call == 0.0


def test_c_list_leak():
    report = objects.call_growth(target("c_list"))
    assert types_of(report)["list"].per_call == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["c_pymem_raw", "c_pymem"])
def test_c_buffer_no_object_owns(name):
    report = objects.call_growth(target(name))
    assert report.types == []
    assert report.memory.unowned_bytes_per_call == pytest.approx(4096, rel=0.05)


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's allocator keeps freed memory in quarantine: RSS is its own")
def test_c_malloc_leak_shows_in_rss_beyond_the_heap():
    report = objects.call_growth(target("c_malloc"))
    assert outside_allocators(report.memory) == pytest.approx(65536, rel=0.1)
    twin = objects.call_growth(target("c_malloc_twin"))
    assert outside_allocators(twin.memory) == 0.0


def test_arguments_are_passed_and_errors_are_the_targets():
    seen = []
    objects.call_growth(seen.append, ["x"], iterations=4, warmup=1)
    # warm-up, the measured calls, and as many again for the reference counts
    assert seen == [["x"]] * (1 + 4 + 4)
    with pytest.raises(ValueError, match="planted failure"):
        objects.call_growth(target("raises"))
    with pytest.raises(ValueError, match="iterations"):
        objects.call_growth(target("noop"), iterations=1)


def test_json_shape():
    data = objects.call_growth(target("cache_grows")).to_dict()
    assert data["schema"] == 1
    assert data["iterations"] == 20
    assert {"type", "per_call", "bytes_per_call"} <= set(data["types"][0])
    assert isinstance(data["holders"], list) and isinstance(data["refcount"], list)


# -- the gc experiment ----------------------------------------------------------

@pytest.mark.parametrize("name,verdict", [
    ("cycle_garbage", CYCLIC),
    ("cache_grows", RETAINED),
    ("c_list", RETAINED),
    ("noop", NO_GROWTH),
    ("lru_saturates", NO_GROWTH),
    ("alloc_and_free", NO_GROWTH),
])
def test_gc_experiment(name, verdict):
    exp = objects.gc_experiment(target(name))
    assert exp.verdict == verdict, exp.text
    assert exp.text.startswith(verdict)


@pytest.mark.parametrize("was_enabled", [True, False])
def test_gc_experiment_restores_the_gc(was_enabled):
    before = gc.isenabled()
    try:
        (gc.enable if was_enabled else gc.disable)()
        objects.gc_experiment(target("noop"), iterations=4)
        assert gc.isenabled() is was_enabled
        with pytest.raises(ValueError):
            objects.gc_experiment(target("raises"), iterations=4)
        assert gc.isenabled() is was_enabled
    finally:
        (gc.enable if before else gc.disable)()


# -- holders and reference counts, joined in the same report --------------------

def holder_texts(report, type_name):
    return [h.text for h in report.holders if h.type == type_name]


def test_module_cache_holder_names_the_module_and_the_dict():
    report = objects.call_growth(target("cache_grows"))
    texts = holder_texts(report, "list")
    assert texts and texts[0].startswith("module object_targets -> dict _CACHE -> key"), texts
    assert report.holders[0].count >= 9  # ten kept by the second half (an address may be reused)


def test_class_attribute_holder_names_the_class_and_the_list():
    report = objects.call_growth(target("resolver_grows"), iterations=30)
    texts = holder_texts(report, "Handler")
    assert texts and "class Resolver -> list implicit_resolvers" in texts[0], texts


def test_c_list_is_held_by_no_python_object():
    from pymemtrace.snapshots.objects import HELD_BY_C

    report = objects.call_growth(target("c_list"))
    texts = holder_texts(report, "list")
    assert texts and HELD_BY_C in texts[0], texts
    assert not any("object_targets" in text for text in texts)


def test_extra_incref_found_and_twin_quiet():
    report = objects.call_growth(target("incref_list"))
    leaks = [r for r in report.refcount if r.type == "list"]
    assert len(leaks) == 1 and leaks[0].refs_per_call == pytest.approx(1.0)
    assert "held by object_targets.HELD" in leaks[0].repr
    assert report.types == [] and report.holders == []
    assert objects.call_growth(target("incref_list_twin")).refcount == []


def test_extra_incref_on_an_interned_str():
    func = target("incref_interned")
    interned = func.__globals__["INTERNED"]
    report = objects.call_growth(func)
    leaks = [r for r in report.refcount if r.type == "str"]
    if objects.is_immortal(interned):
        # 3.12: interned str are immortal, an INCREF changes nothing
        assert leaks == []
    else:
        assert len(leaks) == 1 and leaks[0].refs_per_call == pytest.approx(1.0)
        assert "pymemtrace-interned-target" in leaks[0].repr
    assert objects.call_growth(target("incref_interned_twin")).refcount == []
