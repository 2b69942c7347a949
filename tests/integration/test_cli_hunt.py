"""`pymemtrace hunt TARGET`: the summary, the JSON contract, and one-line errors."""

import json
import textwrap

import pytest

TARGETS = textwrap.dedent("""\
    kept = []

    def leaky():
        kept.append(bytearray(500))  # the leak

    def twin():
        bytearray(500)

    def fails():
        raise ValueError("planted failure")

    def prints():
        print("hello from the target")

    not_callable = 3
""")
LEAK_LINE = 4

CONTRACT = {"schema", "verdict", "iterations", "frequency", "per_call", "types", "sites",
            "holders", "refcount", "unowned_bytes_per_call"}


@pytest.fixture
def targets(tmp_path):
    path = tmp_path / "targets.py"
    path.write_text(TARGETS)
    return path


def test_a_leak_is_stated_in_the_first_lines(cli, targets):
    result = cli("hunt", "-n", "200", f"{targets}:leaky")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pymemtrace hunt: LEAK (confidence ")
    assert lines[1].startswith("  frequency: 1 call in 1 ")
    assert lines[2].startswith("  severity:") and "per hour" in lines[2]
    assert lines[3] == lines[3].rstrip() and f"{targets}:{LEAK_LINE} in leaky" in lines[3]
    # quiet when piped: no progress line
    assert result.stderr == ""


def test_the_twin_is_no_leak(cli, targets):
    result = cli("hunt", "-n", "200", f"{targets}:twin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pymemtrace hunt: no leak")


def test_json_keeps_its_contract_on_stdout_and_in_a_file(cli, targets, tmp_path):
    out = tmp_path / "hunt.json"
    result = cli("hunt", "-n", "200", "--warmup", "5", "--format", "json", "--json", out,
                 f"{targets}:leaky")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert CONTRACT <= set(doc)
    assert doc["schema"] == 1 and doc["verdict"] == "leak"
    assert doc["iterations"] == 200 and doc["warmup"] == 5
    assert doc["per_call"]["native_bytes"] is None
    assert {"bytes", "blocks", "objects", "rss_bytes"} <= set(doc["per_call"])
    assert doc["sites"][0]["file"] == str(targets) and doc["sites"][0]["line"] == LEAK_LINE
    assert set(doc["sites"][0]) >= {"file", "line", "function", "bytes_per_call", "stack"}
    assert doc["types"][0]["type"] == "bytearray"
    assert doc["holders"][0]["type"] == "bytearray"
    assert doc["holders"][0]["chain"][:2] == ["module targets", "list kept"]
    assert doc["refcount"] == []
    saved = json.loads(out.read_text())
    assert saved["verdict"] == "leak" and saved["sites"] == doc["sites"]


def test_a_module_target_is_found_from_the_current_directory(cli, targets):
    result = cli("hunt", "-n", "50", "targets:twin", cwd=targets.parent)
    assert result.returncode == 0, result.stderr
    assert "targets:twin" in result.stdout.splitlines()[0]


@pytest.mark.parametrize("spec, status, message", [
    ("nocolon", 2, "must be MODULE:CALLABLE or FILE.py:CALLABLE"),
    ("{targets}:missing", 2, "has no attribute 'missing'"),
    ("{targets}:not_callable", 2, "is not callable"),
    ("/no/such/file.py:f", 2, "no such file"),
    ("no_such_module_xyz:f", 2, "no module named"),
    ("{targets}:fails", 1, "raised ValueError: planted failure"),
])
def test_a_bad_target_is_one_line(cli, targets, spec, status, message):
    result = cli("hunt", "-n", "20", spec.format(targets=targets))
    assert result.returncode == status
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("pymemtrace hunt: error: ")
    assert message in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-n", "3"], "--iterations must be an integer between 8"),
    (["-w", "-1"], "--warmup must be an integer between 0"),
    (["--format", "xml"], "invalid choice"),
])
def test_bad_options_are_one_line_with_status_2(cli, targets, args, message):
    result = cli("hunt", *args, f"{targets}:twin")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_an_unwritable_json_path_fails_before_the_hunt(cli, targets, tmp_path):
    result = cli("hunt", "-n", "20", "--json", tmp_path / "no" / "dir.json", f"{targets}:prints")
    assert result.returncode == 1
    assert "cannot write" in result.stderr and result.stderr.count("\n") == 1
    assert "hello from the target" not in result.stdout


def test_the_target_failing_import_is_one_line(cli, tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_module_abc\ndef f():\n    pass\n")
    result = cli("hunt", f"{bad}:f")
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr and result.stderr.count("\n") == 1
