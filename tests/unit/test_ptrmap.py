"""core/ptrmap.c, the reference tracer's C hash map, tested in plain C.

The C program (tests/c/test_ptrmap.c) is compiled here with the same
warnings as the extension, so `pytest` covers it without a Makefile step.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C_DIR = os.path.join(ROOT, "src", "pymemtrace", "_c")


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_ptrmap_against_a_model(tmp_path):
    exe = tmp_path / "test_ptrmap"
    cc = os.environ.get("CC", "cc")
    build = subprocess.run(
        [cc, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{C_DIR}", "-o", str(exe),
         os.path.join(ROOT, "tests", "c", "test_ptrmap.c"), os.path.join(C_DIR, "core", "ptrmap.c")],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith(" 0 failed")
