"""_runner.callable_target: TARGETs of `objects` and `hunt` resolved, every
failure one line."""
import sys

import pytest

from pymemtrace import _runner
from pymemtrace.errors import PymemtraceError, UsageError


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    (tmp_path / "helper_mod_ct.py").write_text("VALUE = 41\n")
    (tmp_path / "app_ct.py").write_text(
        "import helper_mod_ct\n"
        "def work():\n    return helper_mod_ct.VALUE + 1\n"
        "class Service:\n    @staticmethod\n    def handle():\n        return 'handled'\n"
        "COUNT = 3\n")
    (tmp_path / "broken_ct.py").write_text("raise RuntimeError('import-time failure')\n")
    (tmp_path / "exits_ct.py").write_text("import sys\nsys.exit(4)\n")
    (tmp_path / "pkg_ct").mkdir()
    (tmp_path / "pkg_ct" / "__init__.py").write_text("")
    (tmp_path / "pkg_ct" / "mod.py").write_text("def f():\n    return 'pkg'\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_file_target_imports_its_neighbours(project):
    func, spec = _runner.callable_target(str(project / "app_ct.py") + ":work")
    assert func() == 42
    assert spec.endswith("app_ct.py:work")


def test_dotted_callable(project):
    func, _ = _runner.callable_target("app_ct.py:Service.handle")
    assert func() == "handled"


def test_module_target_from_the_working_directory(project):
    func, _ = _runner.callable_target("pkg_ct.mod:f")
    assert func() == "pkg"


@pytest.mark.parametrize("spec,error,message", [
    ("app_ct.py", UsageError, "must be MODULE:CALLABLE"),
    (":work", UsageError, "must be MODULE:CALLABLE"),
    ("app_ct.py:", UsageError, "must be MODULE:CALLABLE"),
    ("missing_ct.py:work", UsageError, "no such file"),
    ("app_ct.py:nothing", UsageError, "has no attribute 'nothing'"),
    ("app_ct.py:COUNT", UsageError, "not callable (a int)"),
    ("no_such_module_ct:f", UsageError, "no module named 'no_such_module_ct'"),
    ("broken_ct.py:f", PymemtraceError, "raised RuntimeError: import-time failure"),
    ("exits_ct.py:f", PymemtraceError, "raised SystemExit: 4"),
])
def test_failures_are_one_line(project, spec, error, message):
    with pytest.raises(error) as caught:
        _runner.callable_target(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    if error is PymemtraceError:
        assert not isinstance(caught.value, UsageError)
        assert spec.split(":")[0].split(".")[0] not in sys.modules  # no half-imported module left
