"""The README's Python snippets run as a newcomer would paste them, and
show something: where the log went and what it found (issue 8, point 6)."""
import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks():
    with open(README, encoding="utf-8") as f:
        return BLOCK.findall(f.read())


def _programs():
    return [b for b in _blocks() if ">>>" not in b]


def _sessions():
    return [b for b in _blocks() if ">>>" in b]


def test_the_readme_has_python_snippets():
    assert _programs() and _sessions()


@pytest.mark.parametrize("index", range(len(_programs())))
def test_each_program_snippet_runs_and_says_what_it_found(tmp_path, index):
    # GIVEN a program snippet of the README, pasted into a file
    script = tmp_path / "snippet.py"
    script.write_text(_programs()[index], encoding="utf-8")
    # WHEN it runs in an empty directory
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=300)
    # THEN it succeeds and shows something
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert out.strip()
    if "cPyMemTrace.Profile()" in _programs()[index]:
        # where the log went, and the line that still holds memory
        match = re.search(r"Profile log: (\S+)", done.stdout)
        assert match and (tmp_path / match.group(1)).is_file(), done.stdout
        held = done.stdout.split("Still held at the end", 1)
        assert len(held) == 2 and "run_my_workload" in held[1].splitlines()[3], done.stdout


def test_each_session_snippet_runs(tmp_path):
    # GIVEN the README's interactive sessions, as statements
    for block in _sessions():
        code = "\n".join(line[4:] for line in block.splitlines() if line.startswith((">>> ", "... ")))
        # WHEN they run  THEN they succeed
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                              timeout=120)
        assert done.returncode == 0, done.stderr
