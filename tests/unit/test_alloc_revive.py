"""alloc_revive.c: alloc_start(retag_revived=True) moves a block revived
from a free list to the stack that revived it (CPython 3.13+, a reference
tracer), and leaves the reference-tracer slot as it found it."""

import sys
import tracemalloc

import pytest

from pymemtrace import _native, allocations, cPyMemTrace

NEEDS_313 = pytest.mark.skipif(sys.version_info < (3, 13), reason="PyRefTracer is 3.13+")
BEFORE_313 = pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ has PyRefTracer")


@pytest.fixture(autouse=True)
def _stopped():
    yield
    allocations.stop()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def _line_of(func, marker):
    import inspect

    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, text in enumerate(lines) if marker in text)


def make_and_free(n, seed):
    made = [(seed, i, -i) for i in range(n)]  # MADE: 3-tuples, freed below
    del made


def revive(n, seed):
    return [(seed, -i, i) for i in range(n)]  # REVIVED: from the free list


MADE = _line_of(make_and_free, "MADE")
REVIVED = _line_of(revive, "REVIVED")
N = 50  # below the tuple free list's 2000 entries per size


def _tuple_blocks_at(snap, line):
    size = sys.getsizeof((1, 2, 3))
    return sum(s.blocks for s in snap.group_by("line")
               if s.file == __file__ and s.line == line and s.bytes >= size * s.blocks / 2)


def _run(retag):
    """Blocks live at MADE and REVIVED after tuples made and freed at MADE
    are revived and kept at REVIVED, and the tracker's stats."""
    seed = object()
    # The free list of 3-tuples emptied first (it holds up to 2000), so the
    # tuples made at MADE are fresh blocks
    drain = [(seed, i, i) for i in range(2100)]
    _native.alloc_start(mode="exact", depth=4, retag_revived=retag)
    make_and_free(N, seed)  # fresh blocks, tracked at MADE, onto the free list
    kept = revive(N, seed)
    snap = allocations.snapshot()
    stats = _native.alloc_stats()
    allocations.stop()
    blocks = (_tuple_blocks_at(snap, MADE), _tuple_blocks_at(snap, REVIVED))
    del kept, drain
    return blocks, stats


@NEEDS_313
def test_a_revived_tuple_is_charged_to_the_line_that_revived_it():
    # WHEN 50 tuples made and freed at MADE are revived and kept at REVIVED
    (at_made, at_revived), stats = _run(retag=True)
    # THEN REVIVED holds them (and the list), MADE nothing
    assert stats["retag_revived"] is True
    assert at_made == 0
    assert at_revived >= N
    assert stats["revived_retagged"] >= N


@NEEDS_313
def test_without_retagging_the_revived_tuples_stay_at_the_line_that_made_them():
    # The twin: the same calls, retagging off; the blocks keep MADE's stack
    # (so the test above can fail).
    (at_made, at_revived), stats = _run(retag=False)
    assert stats["retag_revived"] is False
    assert at_made >= N // 2
    assert at_revived < N


@NEEDS_313
def test_the_slot_is_given_back_and_a_tracer_there_before_keeps_its_events():
    before = _native._reftrace_slot()
    # GIVEN ReferenceTracingSimple holding the slot
    with cPyMemTrace.ReferenceTracingSimple() as simple:
        inside = _native._reftrace_slot()
        _native.alloc_start(mode="exact", depth=4, retag_revived=True)
        ours = _native._reftrace_slot()
        n0 = simple.count_new()
        objs = [object() for _ in range(100)]
        # THEN while we retag it is still called (chained)
        assert simple.count_new() - n0 >= 100
        assert ours != inside
        allocations.stop()
        # AND at stop the slot is its own again
        assert _native._reftrace_slot() == inside
    assert _native._reftrace_slot() == before
    del objs


@NEEDS_313
def test_a_tool_that_takes_the_slot_is_left_alone_and_reported():
    before = _native._reftrace_slot()
    _native.alloc_start(mode="exact", depth=4, retag_revived=True)
    assert _native.alloc_stats()["retag_revived"] is True
    # WHEN ReferenceTracingSimple takes the slot on top of ours (it chains)
    with cPyMemTrace.ReferenceTracingSimple():
        stats = _native.alloc_stats()
        # THEN retagging says it is not working
        assert stats["retag_revived"] is False and stats["retag_displaced"] == 1
        allocations.stop()
    # AND the other tool put ours back on exit, which stop had left: a
    # second start takes it over again and a stop gives the first back
    _native.alloc_start(mode="exact", depth=4, retag_revived=True)
    assert _native.alloc_stats()["retag_revived"] is True
    allocations.stop()
    assert _native._reftrace_slot() == before


@BEFORE_313
def test_before_313_retagging_is_accepted_and_says_it_is_off():
    _native.alloc_start(mode="exact", depth=4, retag_revived=True)
    stats = _native.alloc_stats()
    assert stats["retag_revived"] is False and stats["revived_retagged"] == 0


@NEEDS_313
@pytest.mark.parametrize("retag", [True, False])
def test_blocks_waiting_in_a_free_list_are_charged_to_nobody(retag):
    seed = object()
    drain = [(seed, i, i) for i in range(2100)]
    _native.alloc_start(mode="exact", depth=4, retag_revived=retag)
    # WHEN fresh tuples are made and freed: their blocks wait in the free list
    make_and_free(N, seed)
    snap = allocations.snapshot()
    allocations.stop()
    del drain
    # THEN with retagging they are charged to nobody; without, to MADE (the twin)
    at_made = _tuple_blocks_at(snap, MADE)
    assert (at_made == 0) if retag else (at_made >= N // 2)
