"""The pytest plugin (pymemtrace.pytest_plugin), run in pytester sessions:
the no_leaks marker and the hunt fixture fail a leaking test with the
hunt's summary and pass its twin."""

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

kept = []

@pytest.mark.no_leaks(iterations=200)
def test_leaky():
    kept.append(bytearray(300))

@pytest.mark.no_leaks(iterations=200)
def test_twin():
    bytearray(300)

@pytest.mark.no_leaks(iterations=200, max_bytes_per_call=10_000)
def test_leaky_but_allowed():
    kept.append(bytearray(300))

@pytest.fixture
def box():
    return []

@pytest.mark.no_leaks(iterations=200)
def test_fixture_made_once_and_leaked_into(box):
    box.append(object())

def test_with_the_fixture(hunt):
    result = hunt(lambda: None, iterations=50)
    assert result.verdict == "no-leak"
    hunt.assert_no_leaks(lambda: kept.append([0] * 20), iterations=200)
"""


@pytest.fixture
def plugin(request):
    """The options that load the plugin in a pytester session: none once
    pymemtrace is installed with its pytest11 entry point (loading the
    module a second time under another name is an error), else ``-p``."""
    if request.config.pluginmanager.has_plugin("pymemtrace"):
        return ["-p", "no:cacheprovider"]
    return ["-p", "pymemtrace.pytest_plugin", "-p", "no:cacheprovider"]


_RESULTS = {}


@pytest.fixture
def session(pytester, plugin):
    """The planted session's result; run once (it hunts five tests), read
    by every test that needs it."""
    if "planted" not in _RESULTS:
        pytester.makepyfile(test_planted=TESTS)
        _RESULTS["planted"] = pytester.runpytest(*plugin)
    return _RESULTS["planted"]


def test_the_marker_and_fixture_fail_leaks_and_pass_twins(session):
    session.assert_outcomes(passed=2, failed=3)
    out = session.stdout.str()
    for name in ("test_leaky", "test_fixture_made_once_and_leaked_into",
                 "test_with_the_fixture"):
        assert f"FAILED test_planted.py::{name}" in out


def test_the_failure_message_is_the_summary(session):
    out = session.stdout.str()
    assert "pymemtrace hunt: LEAK (confidence" in out
    assert "test_planted.py::test_leaky" in out
    assert "frequency: 1 call in 1" in out
    # the summary replaces the traceback: no plugin frames in it
    assert "pytest_plugin.py" not in out


def test_an_unknown_option_is_a_usage_error(pytester, plugin):
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.no_leaks(iterations=10, max_byte=3)
        def test_x():
            pass
    """)
    result = pytester.runpytest(*plugin)
    assert "no_leaks has no option 'max_byte'" in result.stdout.str() + result.stderr.str()
    assert result.ret != 0


def test_the_marker_is_registered(pytester, plugin):
    result = pytester.runpytest(*plugin, "--markers")
    assert "@pytest.mark.no_leaks(iterations=1000" in result.stdout.str()
