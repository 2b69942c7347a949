"""The pytest plugin: leak tests in one line (loaded by the ``pytest11``
entry point once pymemtrace is installed; ``-p no:pymemtrace`` turns it off).

- ``@pytest.mark.no_leaks(iterations=1000, warmup=20, max_bytes_per_call=0)``
  on a test hunts the test itself: its body (with its fixtures, made once)
  is called ``warmup + iterations`` times and the test fails when the hunt
  finds a leak of more than ``max_bytes_per_call`` bytes per call; the
  failure message is the hunt's text summary.  ``fail_inconclusive=True``
  fails an inconclusive hunt too.
- the ``hunt`` fixture hunts inside a test: ``hunt(func, *args,
  iterations=..., **kwargs)`` returns the result (:func:`pymemtrace.hunt`),
  and ``hunt.assert_no_leaks(func, *args, max_bytes_per_call=0, ...)``
  fails the test with the summary when ``func`` leaks.

Importing this module imports nothing of pymemtrace's probes: pytest loads
it in every session, leak tests or not.
"""

from __future__ import annotations

import pytest

MARKER = ("no_leaks(iterations=1000, warmup=20, max_bytes_per_call=0, "
          "fail_inconclusive=False): hunt the test body for leaks (pymemtrace)")

_OPTIONS = ("iterations", "warmup", "max_bytes_per_call", "fail_inconclusive")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", MARKER)


def _failure(result, max_bytes_per_call: float, fail_inconclusive: bool) -> bool:
    if result.verdict == "leak":
        return result.leak_bytes_per_call > max_bytes_per_call
    return fail_inconclusive and result.verdict == "inconclusive"


def check(result, max_bytes_per_call: float = 0, fail_inconclusive: bool = False) -> None:
    """Fail the current test with the text summary when ``result`` leaks."""
    if _failure(result, max_bytes_per_call, fail_inconclusive):
        pytest.fail(result.to_text(), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("no_leaks")
    if marker is None:
        return None
    if marker.args:
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: no_leaks takes keyword arguments only")
    unknown = set(marker.kwargs) - set(_OPTIONS)
    if unknown:
        raise pytest.UsageError(
            f"{pyfuncitem.nodeid}: no_leaks has no option {sorted(unknown)[0]!r} "
            f"(options: {', '.join(_OPTIONS)})")
    options = dict(marker.kwargs)
    func = pyfuncitem.obj
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    from pymemtrace.hunting import hunt

    result = hunt(func, iterations=options.get("iterations", 1000),
                  warmup=options.get("warmup", 20), progress=False,
                  target=pyfuncitem.nodeid, **kwargs)
    check(result, options.get("max_bytes_per_call", 0), options.get("fail_inconclusive", False))
    return True


class Hunter:
    """The ``hunt`` fixture: ``hunt(func, ...)`` and ``hunt.assert_no_leaks(func, ...)``."""

    def __call__(self, func, *args, **kwargs):
        from pymemtrace.hunting import hunt

        kwargs.setdefault("progress", False)
        return hunt(func, *args, **kwargs)

    def assert_no_leaks(self, func, *args, max_bytes_per_call: float = 0,
                        fail_inconclusive: bool = False, **kwargs):
        result = self(func, *args, **kwargs)
        check(result, max_bytes_per_call, fail_inconclusive)
        return result


@pytest.fixture
def hunt():
    """Hunt a function for leaks inside a test (see :class:`Hunter`)."""
    return Hunter()
