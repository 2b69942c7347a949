"""pymemtrace.objects: census() and growth() (issue 10, point 1).

Planted growth is found with its count; its non-leaking twin is not; the
objects the gc does not track are counted; the census leaves its own
bookkeeping out; sizes are sys.getsizeof's.
"""

import gc
import io
import json
import sys

import pytest

from pymemtrace import _native, objects
from pymemtrace.analyses.objects import Peaks
from pymemtrace.snapshots.objects import ObjectCensus, TypeCount

N = 1000


class Handler:
    """The planted type: instances pile up in _CACHE."""

    def __init__(self, key):
        self.key = key


_CACHE = []


def leaky_call(serial):
    """Keeps N Handlers and N new str per call."""
    for i in range(N):
        _CACHE.append(Handler(i))
        _CACHE.append(f"request-{serial}-{i}")


def non_leaky_call(serial):
    """The twin: allocates the same, keeps nothing."""
    kept = []
    for i in range(N):
        kept.append(Handler(i))
        kept.append(f"request-{serial}-{i}")
    del kept


def settled_growth(**kwargs):
    """growth() from peaks at today's counts, after the first calls (whose
    lazy caches are not the test's)."""
    objects.reset_growth()
    for _ in range(3):
        gc.collect()  # garbage of earlier tests would set a peak too high
        objects.growth(file=io.StringIO(), limit=None)
    gc.collect()
    return objects.growth(**kwargs)


def rows_by_name(rows):
    return {row.qualname: row for row in rows}


HANDLER = f"{__name__}.Handler"


class Slotted:
    __slots__ = ("a", "b")


def test_planted_growth_is_reported_per_call():
    settled_growth(file=io.StringIO())
    try:
        for serial in range(3):
            leaky_call(serial)
            gc.collect()
            out = io.StringIO()
            rows = rows_by_name(objects.growth(file=out, limit=None))
            assert rows[HANDLER].delta == N
            assert rows[HANDLER].name == "Handler"
            assert rows["builtins.str"].delta >= N
            # the peak moved up: the count is the total kept so far
            assert rows[HANDLER].count >= (serial + 1) * N
            assert "Handler" in out.getvalue() and f"+{N}" in out.getvalue()
    finally:
        _CACHE.clear()


def test_allocate_and_free_is_not_growth():
    settled_growth(file=io.StringIO())
    for serial in range(3):
        non_leaky_call(serial)
        rows = rows_by_name(objects.growth(file=io.StringIO(), limit=None))
        assert HANDLER not in rows
        assert rows.get("builtins.str") is None or rows["builtins.str"].delta < N // 10


def test_growth_prints_like_show_growth_and_limits():
    class Fresh:  # a type no earlier test made: its peak is 0
        pass

    settled_growth(file=io.StringIO())
    held = [Fresh() for i in range(5)] + [bytearray(8) for _ in range(3)]
    out = io.StringIO()
    rows = objects.growth(limit=1, file=out)
    assert len(rows) == 1 and rows[0].name == "Fresh" and rows[0].delta == 5
    line, = out.getvalue().splitlines()
    name, count, delta, *_ = line.split()
    assert (name, count, delta) == ("Fresh", "5", "+5")
    # every peak moved, whatever the limit: the bytearrays are not news now
    assert "builtins.bytearray" not in rows_by_name(objects.growth(file=io.StringIO(), limit=None))
    del held


def test_untracked_objects_are_counted():
    strs = [f"distinct-{i}-{i * 7}" for i in range(10_000)]
    gc.collect()
    before = objects.census()
    assert not any(gc.is_tracked(s) for s in strs[:10])
    ints = [10**6 + i for i in range(10_000)]
    raw = [b"x%d" % i for i in range(2_000)]
    floats = [i + 0.5 for i in range(2_000)]
    atoms = [(f"t{i}", i + 10**6) for i in range(1_000)]
    gc.collect()  # tuples of atoms are untracked by a collection
    assert not gc.is_tracked(atoms[0])
    gc.collect()
    after = objects.census()
    assert after.count("int") - before.count("int") >= 10_000
    assert after.count("bytes") - before.count("bytes") >= 2_000
    assert after.count("float") - before.count("float") >= 2_000
    assert after.count("tuple") - before.count("tuple") >= 1_000
    assert after.count("str") - before.count("str") >= 1_000
    assert before.count("str") >= 10_000
    del strs, ints, raw, floats, atoms


def test_str_keys_of_dicts_are_counted():
    before = objects.census()
    table = {f"key-{i}-x": None for i in range(5_000)}
    after = objects.census()
    assert after.count("str") - before.count("str") >= 5_000
    del table


def test_the_census_does_not_count_itself():
    settled_growth(file=io.StringIO())
    assert objects.growth(file=io.StringIO(), limit=None) == []
    first = objects.census()
    second = objects.census()
    assert objects.diff(first, second) == []
    # censuses held by the caller, and their rows, stay out
    kept = [objects.census() for _ in range(3)]
    third = objects.census()
    grew = [(row.name, row.delta) for row in objects.diff(second, third) if row.delta > 0]
    assert grew == [("list", 1)]  # kept: the caller's list
    assert third.count("TypeCount") == 0 and third.count("ObjectCensus") == 0
    del kept


def test_bookkeeping_roots_and_what_only_they_hold():
    """The C walk: an ignored root, and what exists only because of it, is
    left out; what someone else also refers to is not."""
    shared = [f"shared-{i}-x" for i in range(500)]

    def count(ignore):
        # a tuple of three ints, so one count adds no str, list or dict
        # the other one would see
        rows, _ = _native._census(ignore)
        found = {t: c for t, c, b in rows}
        return found[str], found[list], found[dict]

    root = {"own": [f"own-{i}-x" for i in range(1_000)], "shared": list(shared)}
    plain = count(())
    ignored = count((root,))
    # root dict, its two lists, its two keys? no: the keys are interned,
    # shared with the code object; the 1000 own strs: gone
    assert plain[0] - ignored[0] >= 1_000
    assert plain[0] - ignored[0] < 1_000 + 10
    assert plain[1] - ignored[1] == 2
    assert plain[2] - ignored[2] == 1
    with pytest.raises(TypeError):
        _native._census([root])
    del root


@pytest.mark.parametrize(
    "make",
    [
        # each call makes a new object (a constant would be shared)
        lambda: "".join(["ascii", " text"]),
        lambda: "".join(["non-ascii ", "\u00e9\u00e8"]),
        lambda: "".join(["\U0001f600", " wide"]),
        lambda: int("0") + 10**6 - 10**6 + 1000,
        lambda: int("7") * 10**5,
        lambda: int("1" * 40),
        lambda: -int("2" * 30),
        lambda: bytes(bytearray(b"bytes" * 10)),
        lambda: float("3.25"),
        lambda: tuple(range(3)),
        lambda: list(range(5)),
        lambda: {"a": 1, "b": 2},
        lambda: {1, 2, 3},
        lambda: frozenset(range(40)),
        lambda: bytearray(100),
        lambda: Handler(1),
        lambda: complex(1, 2),
        lambda: Slotted(),
    ],
    ids=lambda make: type(make()).__name__,
)
def test_sizes_agree_with_sys_getsizeof(make):
    # held only by a list, never by a local (3.11's f_locals would hold
    # it); the measures live in store, which the census is told to leave
    # out, so the first measure is not counted by the second
    holder = {0: make()}  # a dict: deleting from it frees no memory of it
    tp = type(holder[0])
    store = [sys.getsizeof(holder[0]), sys.getrefcount(holder[0]) > 2]
    store.append(measure(tp, (store,)))
    del holder[0]
    store.append(measure(tp, (store,)))
    if store[1]:
        pytest.skip("the object is shared (cached or interned)")
    assert store[2][0] - store[3][0] == 1
    assert store[2][1] - store[3][1] == store[0]


def measure(tp, ignore):
    """(count, bytes) of one type."""
    for t, count, size in _native._census(ignore)[0]:
        if t is tp:
            return count, size
    return 0, 0


def test_census_sizes_total_of_many():
    values = [f"v{i}" * (i % 7 + 1) for i in range(3_000)]
    before = objects.census()
    expected = sum(sys.getsizeof(v) for v in values)
    del values
    after = objects.census()
    assert before.bytes("str") - after.bytes("str") == expected


def test_census_reports_its_own_memory():
    result = objects.census()
    assert result.memory > 0
    assert result.total_count > 1_000
    assert result.count("builtins.dict") == result.count("dict")


def test_snapshot_save_and_load(tmp_path):
    result = objects.census()
    path = tmp_path / "census.json"
    result.save(path)
    data = json.loads(path.read_text())
    assert data["schema"] == 1
    assert {"type", "qualname", "count", "bytes"} <= set(data["types"][0])
    loaded = ObjectCensus.load(path)
    assert loaded.types == result.types
    assert loaded.memory == result.memory
    path.write_text(json.dumps({"schema": 2, "types": []}))
    with pytest.raises(ValueError, match="schema"):
        ObjectCensus.load(path)
    with pytest.raises(ValueError):
        ObjectCensus.from_dict({"schema": 1, "types": [{"type": "x", "count": -1, "bytes": 0}]})


def test_peaks_report_passing_the_peak_only():
    peaks = Peaks()

    def census(count):
        return ObjectCensus({"m.T": TypeCount("T", "m.T", count, count * 10)})

    assert [(g.count, g.delta) for g in peaks.update(census(5))] == [(5, 5)]
    assert peaks.update(census(3)) == []  # fell
    assert peaks.update(census(5)) == []  # back to the peak: churn
    assert [(g.count, g.delta, g.bytes_delta) for g in peaks.update(census(8))] == [(8, 3, 30)]


def test_reset_growth_reports_every_type_again():
    settled_growth(file=io.StringIO())
    objects.reset_growth()
    rows = objects.growth(file=io.StringIO(), limit=None)
    assert len(rows) > 20
