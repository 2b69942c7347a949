"""pymemtrace._runner: the one script runner, with any probe (what the
coming `objects` and `hunt` commands will pass it)."""
import sys

import pytest

from pymemtrace import _runner
from pymemtrace.errors import UsageError


class FakeProbe:
    """Records what the runner asks of a probe."""

    def __init__(self):
        self.calls = []
        self.running = False

    def start(self):
        self.calls.append("start")
        self.running = True

    def stack_base(self, on):
        self.calls.append(f"base {on}")

    def is_running(self):
        return self.running

    def snapshot(self, runner_files):
        self.calls.append("snapshot")
        self.runner_files = runner_files
        return {"main": sys.modules["__main__"].__name__}

    def stop(self):
        self.calls.append("stop")
        self.running = False


@pytest.mark.parametrize("body, status", [
    ("x = 1\n", 0),
    ("import sys\nsys.exit(3)\n", 3),
    ("raise ValueError('planted')\n", 1),
])
def test_a_script_runs_as_main_under_the_probe(tmp_path, body, status):
    # GIVEN a script and a probe
    script = tmp_path / "s.py"
    script.write_text("assert __name__ == '__main__'\nimport sys\nassert sys.argv[1:] == ['a']\n" + body)
    probe = FakeProbe()
    saved_argv = sys.argv[:]
    # WHEN run
    got, snap = _runner.run(_runner.script_target(str(script), ["a"]), probe)
    # THEN its status, the probe started before it and stopped after the
    # snapshot, stacks cut around it; sys.argv given back
    assert got == status
    assert probe.calls == ["start", "base True", "base False", "snapshot", "stop"]
    assert snap == {"main": "__main__"}
    assert _runner.__file__ in probe.runner_files
    assert sys.argv == saved_argv


def test_a_module_runs_as_main(tmp_path, monkeypatch):
    (tmp_path / "some_mod.py").write_text("import sys\nsys.exit(0 if __name__ == '__main__' else 9)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = FakeProbe()
    status, _ = _runner.run(_runner.module_target("some_mod", []), probe)
    assert status == 0 and probe.calls[0] == "start" and probe.calls[-1] == "stop"


@pytest.mark.parametrize("make", [
    lambda tmp: _runner.script_target(str(tmp / "missing.py"), []),
    lambda tmp: _runner.script_target(str(tmp), []),
    lambda tmp: _runner.module_target("no_such_module_here", []),
])
def test_a_target_that_cannot_run_is_a_usage_error(tmp_path, make):
    with pytest.raises(UsageError):
        make(tmp_path)
