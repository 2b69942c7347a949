"""pymemtrace.cpymemtrace_decs: decorators and the module functions."""
import sys

import pytest

from pymemtrace import cPyMemTrace, cpymemtrace_decs as decs

from cpymemtrace_logreader import parse


def test_bare_profile_decorator_writes_a_log_per_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []

    @decs.profile
    def work(x):
        seen.append(decs.profile_log_path())
        assert decs.profile_wrapper_depth() == 1
        return x * 2

    assert work(2) == 4
    assert work(3) == 6
    assert work.__name__ == "work"
    # THEN two calls, two distinct complete logs in the cwd
    assert len(set(seen)) == 2
    for name in seen:
        assert parse(tmp_path / name).complete
    assert decs.profile_log_path() is None
    assert decs.profile_wrapper_depth() == 0


def test_called_decorators_pass_arguments(tmp_path):
    p_path, t_path = tmp_path / "p.log", tmp_path / "t.log"

    @decs.profile(d_rss_trigger=0, message="decorated", filepath=str(p_path))
    def outer():
        decs.profile_write_message_to_log("from outer")
        return inner()

    @decs.trace(0, filepath=str(t_path))
    def inner():
        assert decs.trace_log_path() == str(t_path)
        decs.trace_write_message_to_log("from inner")
        assert decs.trace_wrapper_depth() == 1
        return 7

    assert outer() == 7
    p_log, t_log = parse(p_path), parse(t_path)
    assert p_log.message == "decorated"
    assert "# d_rss_trigger: 0" in p_log.comments
    assert [m[2] for m in p_log.messages] == ["from outer"]
    assert [m[2] for m in t_log.messages] == ["from inner"]


def test_nested_decorated_functions_stack(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = []

    @decs.profile
    def level1():
        paths.append(decs.profile_log_path())
        return level2()

    @decs.profile
    def level2():
        paths.append(decs.profile_log_path())
        return decs.profile_wrapper_depth()

    assert level1() == 2
    assert "_P_0_" in paths[0] and "_P_1_" in paths[1]


def test_decorated_function_that_raises(tmp_path):
    path = tmp_path / "t.log"

    @decs.trace(filepath=str(path))
    def boom():
        raise ValueError("boom")

    with pytest.raises(ValueError):
        boom()
    assert parse(path).complete
    assert sys.gettrace() is None


def test_message_functions_without_a_tracer_raise():
    with pytest.raises(RuntimeError, match="no active Profile"):
        decs.profile_write_message_to_log("x")
    with pytest.raises(RuntimeError, match="no active Trace"):
        decs.trace_write_message_to_log("x")
    assert decs.trace_log_path() is None


def test_reference_tracing_decorator(tmp_path):
    @decs.reference_tracing
    def work():
        return 1

    if hasattr(cPyMemTrace, "ReferenceTracing"):
        pytest.skip("ReferenceTracing present: tested by its own module")
    with pytest.raises(RuntimeError, match="ReferenceTracing"):
        work()
