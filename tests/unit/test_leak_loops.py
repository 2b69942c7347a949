"""The --leak-loops option of tests/conftest.py (tracemalloc reruns)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.mark.parametrize("leaks", [True, False])
def test_leak_loops_fails_a_growing_test_and_passes_its_twin(tmp_path, leaks):
    # GIVEN a test marked 'leaks' that keeps a little memory per run (or not)
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    kept = "KEPT.append(bytearray(10_000))" if leaks else "bytearray(10_000)"
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent(
            f"""
            import pytest
            KEPT = []

            @pytest.mark.leaks
            def test_sample():
                {kept}
            """
        )
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    leaks: leak checks\n")
    # WHEN pytest runs it with --leak-loops
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--leak-loops", "20", "test_sample.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN the growing test fails with the bytes per loop; the twin passes
    if leaks:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "memory still growing after 20 loops" in done.stdout
    else:
        assert done.returncode == 0, done.stdout + done.stderr
