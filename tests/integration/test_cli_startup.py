"""Start-up of `pymemtrace run`: the modules it does not need stay unimported.

No wall-clock bound here (docs/benchmarks.md, "Start-up", has the numbers):
the script run under the tracker lists ``sys.modules`` as it sees them.
"""

import textwrap

import pytest

LIST_MODULES = textwrap.dedent("""\
    import sys
    {extra}
    print("MODULES", " ".join(sorted(sys.modules)))
""")

#: Imported by `pymemtrace run` for nothing before issue 9 (point 5).
NOT_NEEDED = ("psutil", "pymemtrace.process", "pymemtrace.process_tree",
              "pymemtrace.cli.process", "pymemtrace.cli.tree", "pymemtrace.cli.report")
#: What the run path imported before its imports were made lazy (issue 9,
#: point 5: dataclasses about 5 ms with inspect; tempfile and argparse's
#: shutil with bz2 and lzma about 4 ms); the log readers and analyses.
LAZY = ("dataclasses", "inspect", "tempfile", "shutil", "json",
        "pymemtrace.analyses.profile", "pymemtrace.snapshots.profile_log",
        "pymemtrace.reporters.log_report")


def modules_seen(cli, tmp_path, extra=""):
    script = tmp_path / "list_modules.py"
    script.write_text(LIST_MODULES.format(extra=extra))
    result = cli("run", "--allocations", script)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


def test_run_does_not_import_psutil_or_the_other_subcommands(cli, tmp_path):
    # GIVEN a script that only lists the modules loaded when it runs
    # WHEN it runs under `pymemtrace run`
    seen = modules_seen(cli, tmp_path)
    # THEN the runner is there, psutil and the other subcommands are not
    assert "pymemtrace.cli.run" in seen
    assert sorted(seen & set(NOT_NEEDED)) == []


def test_run_imports_nothing_costly_it_does_not_need(cli, tmp_path):
    # GIVEN the same script WHEN it runs under `pymemtrace run`
    seen = modules_seen(cli, tmp_path)
    # THEN the costly modules the run path used to import are not there
    assert sorted(seen & set(LAZY)) == []


@pytest.mark.parametrize("planted", ["psutil", "pymemtrace.process", "dataclasses"])
def test_the_check_sees_a_module_the_script_imports(cli, tmp_path, planted):
    # GIVEN the same script, which imports the module itself (the twin)
    # WHEN it runs under `pymemtrace run`
    seen = modules_seen(cli, tmp_path, extra=f"import {planted}")
    # THEN the listing shows it: the test above can fail
    assert planted in seen


def test_help_still_lists_every_subcommand(cli):
    # GIVEN the subcommand modules are imported only when chosen
    # WHEN the top-level help is asked for
    result = cli("--help")
    # THEN every subcommand is listed with its help line
    assert result.returncode == 0
    for name in ("process", "tree", "report", "run"):
        assert name in result.stdout
    assert "log the RSS of a command" in result.stdout
    assert "run a Python script under the allocation tracker" in result.stdout


def test_a_chosen_subcommand_has_its_full_help(cli):
    # GIVEN only the chosen subcommand module is imported
    # WHEN a subcommand's help is asked for
    result = cli("run", "--help")
    # THEN it is that subcommand's full help
    assert result.returncode == 0
    assert "--group-by" in result.stdout
