"""pymemtrace.hunt(): arguments, errors, progress, and the lazy export."""

import io
import subprocess
import sys

import pytest

import pymemtrace
from pymemtrace import allocations, hunting


def test_import_pymemtrace_does_not_import_the_hunt():
    code = "import sys, pymemtrace; print('pymemtrace.hunting' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    assert pymemtrace.hunt is hunting.hunt
    with pytest.raises(AttributeError):
        pymemtrace.no_such_name  # noqa: B018


def test_arguments_are_passed_to_every_call():
    seen = []

    def target(a, b=0):
        seen.append((a, b))

    result = pymemtrace.hunt(target, 1, b=2, iterations=8, warmup=2, progress=False)
    assert result.iterations == 8 and result.warmup == 2
    assert set(seen) == {(1, 2)}
    assert len(seen) >= 10  # warm-up + measured calls (+1 to time malloc's figures)


def test_the_target_exception_propagates():
    def fails():
        raise KeyError("planted")

    with pytest.raises(KeyError, match="planted"):
        pymemtrace.hunt(fails, iterations=8, progress=False)
    # the counters were released: the tracker can start
    allocations.start()
    allocations.stop()


@pytest.mark.parametrize("options, message", [
    ({"iterations": 7}, "iterations must be an integer"),
    ({"iterations": 1.5}, "iterations must be an integer"),
    ({"warmup": -1}, "warmup must be an integer"),
    ({"iterations": True}, "iterations must be an integer"),
])
def test_bad_counts_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        pymemtrace.hunt(lambda: None, progress=False, **options)


def test_a_non_callable_is_a_type_error():
    with pytest.raises(TypeError, match="needs a callable"):
        pymemtrace.hunt(3)


def test_the_tracker_already_running_is_refused():
    with allocations.tracking():
        with pytest.raises(RuntimeError, match="tracker is running already"):
            pymemtrace.hunt(lambda: None, iterations=8, progress=False)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_on_a_terminal_and_not_on_a_pipe(monkeypatch):
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    pymemtrace.hunt(lambda: None, iterations=8, warmup=1)
    assert "\rpymemtrace hunt: " in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")  # the line is cleared at the end
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    pymemtrace.hunt(lambda: None, iterations=8, warmup=1)
    assert pipe.getvalue() == ""


def test_the_result_renders_saves_and_loads(tmp_path):
    kept = []
    result = pymemtrace.hunt(lambda: kept.append([0] * 10), iterations=200, progress=False)
    assert str(result) == result.to_text()
    assert result.to_text().startswith("pymemtrace hunt: LEAK")
    path = tmp_path / "h.json"
    result.save(path)
    again = hunting.load(path)
    assert isinstance(again, hunting.Hunt)
    assert again.to_text() == result.to_text()
    assert result.leaks and again.leaks


MODULE_KEPT = []


def test_holders_and_refcount_come_from_objects():
    MODULE_KEPT.append(Leaked())
    rows = hunting.holders_of([MODULE_KEPT[-1]])
    assert rows and rows[0]["type"] == "Leaked" and rows[0]["count"] == 1
    assert rows[0]["chain"][1:] == ["list MODULE_KEPT", f"[{len(MODULE_KEPT) - 1}]"]
    assert rows[0]["chain"][0].startswith("module ") and rows[0]["chain"][0].endswith("test_hunt_api")
    from pymemtrace import cMemLeak

    target = [1, 2, 3]
    leaks = hunting.refcount_anomalies(lambda: cMemLeak.leak_incref(target), 30)
    assert [(r["type"], r["refs_per_call"]) for r in leaks] == [("list", 1.0)]
    assert hunting.refcount_anomalies(lambda: cMemLeak.no_leak_incref(target), 30) == []


class Leaked:
    pass


def test_the_holders_seam_gets_the_new_objects_of_the_growing_type(monkeypatch):
    handed = []

    def fake_holders(objs, limit=5):
        handed.append([type(o).__name__ for o in objs])
        return [{"type": "Leaked", "chain": ["module", "kept"], "text": "kept in a list"}]

    monkeypatch.setattr(hunting, "holders_of", fake_holders)
    kept = []
    result = pymemtrace.hunt(lambda: kept.append(Leaked()), iterations=100, progress=False)
    assert result.verdict == "leak"
    assert handed and set(handed[0]) == {"Leaked"} and len(handed[0]) == hunting.HOLDER_CALLS
    assert result.holders[0]["text"] == "kept in a list"
    assert "kept in a list" in result.to_text()
