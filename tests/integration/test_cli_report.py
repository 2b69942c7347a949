"""`pymemtrace report` end to end, as a user runs it."""
import json
import os
import sys

import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def fixture(name):
    return os.path.join(FIXTURES, name)


def test_help_has_an_example(cli):
    result = cli("report", "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout and "pymemtrace report " in result.stdout


@pytest.mark.parametrize("name", ["not_a_log.log", "does_not_exist.log"])
def test_bad_file_is_one_line_and_exit_1(cli, name):
    result = cli("report", fixture(name))
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("pymemtrace report: error: ")
    assert "Traceback" not in result.stderr


def test_directory_is_one_line_and_exit_1(cli, tmp_path):
    result = cli("report", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_corrupt_record_in_a_complete_log_is_one_line(cli, tmp_path):
    path = tmp_path / "bad.log"
    with open(fixture("profile_growth.log"), encoding="utf-8") as stream:
        text = stream.read().replace("\tRETURN\t", "\tRETURN\tEXTRA\t", 1)
    path.write_text(text, encoding="utf-8")
    result = cli("report", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "bad NEXT: record" in result.stderr


def test_profile_report_text_and_svg(cli, tmp_path):
    svg = tmp_path / "timeline.svg"
    result = cli("report", fixture("profile_growth.log"), "--top", "3", "--svg", svg)
    assert result.returncode == 0, result.stderr
    assert "Functions ranked by memory growth" in result.stdout
    assert result.stdout.index("build_cache") < result.stdout.index("helper")
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")


def test_reference_trace_report_svg(cli, tmp_path):
    svg = tmp_path / "live.svg"
    result = cli("report", fixture("reftrace_leak.log"), "--svg", svg)
    assert result.returncode == 0, result.stderr
    assert "live objects" in svg.read_text(encoding="utf-8")


def test_unwritable_svg_is_one_line(cli, tmp_path):
    result = cli("report", fixture("reftrace_leak.log"), "--svg", tmp_path / "no" / "x.svg")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot write" in result.stderr


def test_reference_trace_report_json(cli):
    result = cli("report", fixture("reftrace_leak.log"), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["growing_types"][0]["type"] == "leaky.Node"


def test_top_must_be_positive(cli):
    result = cli("report", fixture("reftrace_leak.log"), "--top", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_ref_trace_analyse_module(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "pymemtrace.util.ref_trace_analyse", fixture("reftrace_leak.log"), "--top", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "leaky.Node" in result.stdout and "leaky.py:7:grow" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pymemtrace.util.ref_trace_analyse", fixture("not_a_log.log")],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
