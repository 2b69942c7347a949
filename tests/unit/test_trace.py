"""cPyMemTrace.Trace specifics: line events, and Trace beside Profile.

The behaviour Profile and Trace share is tested in test_profile.py, for
both classes.
"""
import inspect
import sys

import pytest

from pymemtrace import _native, cPyMemTrace

from cpymemtrace_logreader import parse

# Both hook backends where both exist: sys.monitoring (3.12+, the default
# there) and the legacy PyEval_SetProfile/SetTrace hooks.
BACKENDS = ["legacy"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    old = _native._set_default_backend(request.param)
    yield request.param
    _native._set_default_backend(old)



def three_lines():
    a = 1
    b = a + 1
    return a + b


def test_every_line_is_logged_with_its_number(tmp_path):
    # GIVEN Trace logging every event
    path = tmp_path / "t.log"
    with cPyMemTrace.Trace(0, filepath=str(path)):
        three_lines()
    recs = [r for r in parse(path).records
            if r.function.endswith("three_lines") and r.tag in ("FRST:", "NEXT:")]
    first = inspect.getsourcelines(three_lines)[1]
    # THEN the call, its three lines in order, and the return are there
    assert [r.what for r in recs] == ["CALL", "LINE", "LINE", "LINE", "RETURN"]
    assert [r.line for r in recs if r.what == "LINE"] == [first + 1, first + 2, first + 3]
    assert recs[0].file == __file__


def test_profile_events_are_calls_not_lines(tmp_path):
    path = tmp_path / "p.log"
    with cPyMemTrace.Profile(0, filepath=str(path)):
        three_lines()
    whats = {r.what for r in parse(path).records if r.function.endswith("three_lines")}
    assert whats == {"CALL", "RETURN"}


def test_trace_and_profile_together(tmp_path):
    # GIVEN a Profile inside a Trace
    t_path, p_path = tmp_path / "t.log", tmp_path / "p.log"
    with cPyMemTrace.Trace(0, filepath=str(t_path)) as tracer:
        with cPyMemTrace.Profile(0, filepath=str(p_path)) as profiler:
            if profiler.backend == "legacy":
                assert sys.getprofile() is profiler
                assert sys.gettrace() is tracer
            three_lines()
        assert sys.getprofile() is None
        if tracer.backend == "legacy":
            assert sys.gettrace() is tracer
        three_lines()
    assert sys.gettrace() is None
    # THEN each logged its own kind of events
    t_lines = [r for r in parse(t_path).records if r.what == "LINE"
               and r.function.endswith("three_lines")]
    assert len(t_lines) == 6
    assert not [r for r in parse(p_path).records if r.what == "LINE"]


def test_exception_events(tmp_path):
    path = tmp_path / "t.log"

    def raiser():
        raise KeyError("k")

    with cPyMemTrace.Trace(0, filepath=str(path)):
        try:
            raiser()
        except KeyError:
            pass
    whats = [r.what for r in parse(path).records if r.function.endswith("raiser")]
    assert "EXCEPT" in whats
