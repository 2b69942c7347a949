"""`make` says what it installs system-wide before it installs it.

The *-deps targets install Debian packages with apt-get when a tool is
missing and make runs as root.  Here apt-get, id and dpkg-query are fakes
on PATH: nothing is installed; the fake apt-get appends its arguments to the
same file as make's output, so the order of the two is checked.
"""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_bin(tmp_path, log):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "apt-get": f'#!/bin/sh\necho "APT-GET $*" >> {log}\nexit 0\n',
        "id": "#!/bin/sh\necho 0\n",  # as root
        "dpkg-query": "#!/bin/sh\nexit 1\n",  # nothing installed
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def run_make(tmp_path, target, *variables):
    log = tmp_path / "out.log"
    bin_dir = fake_bin(tmp_path, log)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    with open(log, "a") as out:  # make's output and apt-get's calls, in order
        subprocess.run(["make", "-s", "-C", str(ROOT), target, *variables],
                       stdout=out, stderr=subprocess.STDOUT, env=env, timeout=60)
    return log.read_text().splitlines()


@pytest.mark.parametrize(
    "target, variables, packages",
    [
        ("chromium-deps", ["CHROMIUM=no-such-chromium-for-test"], ["chromium"]),
        ("clang-format-deps", ["CLANG_FORMAT=no-such-clang-format-for-test"],
         ["clang-format"]),
        ("dbg-deps", [], ["python3.11-dbg", "python3.11-dev", "python3.11-venv",
                          "python3-pytest", "python3-psutil"]),
    ],
)
def test_each_system_install_is_announced_first(tmp_path, target, variables, packages):
    # GIVEN the tool is missing and make runs as root
    # WHEN the target runs
    lines = run_make(tmp_path, target, *variables)
    installs = [i for i, x in enumerate(lines) if x.startswith("APT-GET install")]
    notices = [i for i, x in enumerate(lines) if "installing system-wide" in x]
    # THEN apt-get install ran, after one line that names the target and
    # every package it installs system-wide
    assert installs, lines
    assert len(notices) == 1 and notices[0] < installs[0], lines
    notice = lines[notices[0]]
    assert notice.startswith(f"== {target}: ")
    assert all(p in notice.split() for p in packages), notice
    assert all(p in lines[installs[0]].split() for p in packages)


@pytest.mark.parametrize(
    "target, variables", [("chromium-deps", ["CHROMIUM=sh"]),
                          ("clang-format-deps", ["CLANG_FORMAT=sh"])],
)
def test_nothing_is_said_or_installed_when_the_tool_is_there(tmp_path, target, variables):
    # GIVEN the tool is present (the twin)
    lines = run_make(tmp_path, target, *variables)
    # THEN no install and no notice
    assert not any("APT-GET" in x or "installing" in x for x in lines), lines
