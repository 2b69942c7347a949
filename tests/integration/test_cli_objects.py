"""`pymemtrace objects TARGET`: the JSON contract, the text report, the gc
experiment and one-line errors, on the planted leaks of
tests/fixtures/object_targets.py."""
import json
import os

import pytest

TARGETS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "object_targets.py")


def objects_json(cli, name, *options):
    result = cli("objects", f"{TARGETS}:{name}", "--format", "json", *options)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_json_contract(cli):
    data = objects_json(cli, "cache_grows", "--iterations", "10")
    assert data["schema"] == 1
    assert data["target"] == f"{TARGETS}:cache_grows"
    assert data["iterations"] == 10
    for row in data["types"]:
        assert isinstance(row["type"], str) and "." not in row["type"]
        assert isinstance(row["per_call"], float) and isinstance(row["bytes_per_call"], float)
    found = {row["type"]: row["per_call"] for row in data["types"]}
    assert found["list"] == pytest.approx(1.0) and found["str"] == pytest.approx(1.0)
    assert data["holders"], "the cache's holder is named"
    assert data["holders"][0]["chain"][:2] == ["module object_targets", "dict _CACHE"]
    for holder in data["holders"]:
        assert isinstance(holder["type"], str) and isinstance(holder["text"], str)
        assert all(isinstance(step, str) for step in holder["chain"])
    for leak in data["refcount"]:
        assert {"type", "repr", "refs_per_call"} <= set(leak)
    assert data["gc"] is None


def test_refcount_leak_in_json(cli):
    data = objects_json(cli, "incref_list")
    assert [(r["type"], r["refs_per_call"]) for r in data["refcount"]] == [("list", 1.0)]


def test_twin_reports_nothing(cli):
    data = objects_json(cli, "cache_bounded")
    assert data["types"] == [] and data["holders"] == [] and data["refcount"] == []
    assert data["memory"]["unowned_bytes_per_call"] == 0.0


def test_text_first_lines_answer(cli):
    leak = cli("objects", f"{TARGETS}:c_pymem")
    assert leak.returncode == 0, leak.stderr
    lines = leak.stdout.splitlines()
    assert lines[0].startswith("pymemtrace objects ") and "20 calls" in lines[0]
    assert "memory no object owns: 4.0 KiB per call" in leak.stdout
    quiet = cli("objects", f"{TARGETS}:noop")
    assert quiet.stdout.splitlines()[1].startswith("no growth")


def test_gc_experiment_option(cli):
    data = objects_json(cli, "cycle_garbage", "--gc-experiment", "--iterations", "10")
    assert data["types"] == []
    assert data["gc"]["verdict"] == "cyclic garbage, collected late"
    assert [m["mode"] for m in data["gc"]["modes"]] == ["enabled", "disabled", "collect"]


def test_module_target(cli, tmp_path):
    (tmp_path / "leakypkg").mkdir()
    (tmp_path / "leakypkg" / "__init__.py").write_text("")
    (tmp_path / "leakypkg" / "work.py").write_text("KEPT = []\ndef run():\n    KEPT.append({})\n")
    result = cli("objects", "leakypkg.work:run", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {row["type"] for row in json.loads(result.stdout)["types"]} == {"dict"}


@pytest.mark.parametrize("args,status,message", [
    (["nofile.py:f"], 2, "no such file"),
    ([f"{TARGETS}:missing"], 2, "has no attribute 'missing'"),
    ([f"{TARGETS}:NOT_CALLABLE"], 2, "not callable"),
    (["no_such_module_xyz:f"], 2, "no module named"),
    (["just-a-name"], 2, "must be MODULE:CALLABLE"),
    ([f"{TARGETS}:raises"], 1, "raised ValueError: planted failure"),
    ([f"{TARGETS}:noop", "--iterations", "1"], 2, "--iterations must be an integer between 2"),
    ([f"{TARGETS}:noop", "--format", "xml"], 2, "invalid choice"),
])
def test_errors_are_one_line(cli, args, status, message):
    result = cli("objects", *args)
    assert result.returncode == status
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_help_has_an_example(cli):
    result = cli("objects", "--help")
    assert result.returncode == 0
    assert "pymemtrace objects app/cache.py:handle_request" in result.stdout
