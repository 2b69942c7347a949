"""pymemtrace.native: captures of `pymemtrace native` read from Python, on
the planted allocations of tests/fixtures/native_prog.c."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import compile_prog, needs_tracer, tracer_env  # noqa: E402

from pymemtrace import native  # noqa: E402
from pymemtrace.errors import PymemtraceError  # noqa: E402

SIZE = 3000


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    return compile_prog(tmp_path_factory.mktemp("native_api"))


def run_traced(prog, outdir, *args):
    os.makedirs(outdir, exist_ok=True)
    subprocess.run([prog, *args], check=True, env=tracer_env(outdir))
    return outdir


@needs_tracer
def test_load_names_the_leak_the_functions_and_the_sizes(prog, tmp_path):
    # GIVEN sized_alloc's 1000 blocks of 3000 bytes, 500 freed by release()
    outdir = run_traced(prog, str(tmp_path / "out"), "sized", "1000")
    # WHEN loaded
    (capture,) = native.load(outdir)
    # THEN the capture is the process's, complete, its leak named
    assert isinstance(capture, native.NativeCapture)
    assert capture.command == [prog, "sized", "1000"] and capture.complete
    assert isinstance(capture.pid, int) and capture.mode == "exact"
    top = capture.leaked.sites[0]
    assert (top.frames[0].function, top.frames[0].library) == ("sized_alloc", prog)
    assert (top.bytes, top.blocks) == (500 * SIZE, 500)
    # AND at the peak all 1000 were live
    assert sum(s.blocks for s in capture.peak.sites if s.frames[0].function == "sized_alloc") == 1000
    # AND the per-function summary and the histogram hold the planted calls
    (row,) = [r for r in capture.functions if r.function == "sized_alloc"]
    assert (row.mallocs, row.frees, row.bytes_allocated, row.bytes_freed) == (1000, 500, 1000 * SIZE, 500 * SIZE)
    (bucket,) = [b for b in capture.sizes if b.bucket_low <= SIZE <= b.bucket_high]
    assert bucket == native.SizeBucket(2048, 4095, 1000)


@needs_tracer
def test_to_dict_is_the_report_json(prog, tmp_path, cli):
    outdir = run_traced(prog, str(tmp_path / "out"), "leak", "300")
    (capture,) = native.load(pathlib.Path(outdir))
    result = cli("report", outdir, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert json.loads(json.dumps(native.to_json([capture]))) == document
    assert json.loads(json.dumps(capture.to_dict())) == document["processes"][0]
    assert document["schema"] == native.SCHEMA


@needs_tracer
def test_load_one_file_and_the_raw_records(prog, tmp_path):
    outdir = run_traced(prog, str(tmp_path / "out"), "free", "200")
    (path,) = [os.path.join(outdir, name) for name in os.listdir(outdir)]
    (capture,) = native.load(path)
    # The twin that frees: keep_kib leaves nothing live, 200 frees counted
    assert not any(s.frames[0].function == "keep_kib" for s in capture.leaked.sites)
    (row,) = [r for r in capture.functions if r.function == "keep_kib"]
    assert (row.mallocs, row.frees) == (200, 200)
    (raw,) = native.load_raw(path)
    assert isinstance(raw, native.RawCapture)
    assert raw.pid == capture.pid and raw.complete
    assert all(isinstance(a, int) for stack in raw.stacks.values() for a in stack)
    assert sum(c.allocations for c in raw.totals.counts.values()) >= 200
    text = native.render_text([capture], functions=True, sizes=True)
    assert "keep_kib" in text and "Distribution" in text


def test_load_refuses_what_is_not_a_capture(tmp_path):
    bogus = tmp_path / "native-1.pmtn"
    bogus.write_bytes(b"not a capture")
    with pytest.raises(native.NativeFormatError, match="not a native capture"):
        native.load(bogus)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PymemtraceError, match="no native capture"):
        native.load(tmp_path / "empty")
    with pytest.raises(PymemtraceError, match="cannot read"):
        native.load(tmp_path / "missing.pmtn")


def test_the_text_report_names_a_c_source_by_its_folder_and_file():
    # The JSON keeps the build's whole path; the text, read by a person,
    # shortens a C frame's (its library is named beside it), never a
    # Python frame's.
    from pymemtrace.analyses.native import Frame
    from pymemtrace.reporters.native_text import _frame_text

    c = Frame("_PyObject_Malloc", "/tmp/python-build.1/Python-3.11.7/Objects/obmalloc.c",
              1996, "/usr/lib/libpython3.11.so.1.0")
    assert _frame_text(c) == "_PyObject_Malloc Objects/obmalloc.c:1996 (libpython3.11.so.1.0)"
    py = Frame("handler", "/srv/app/handlers/leaky.py", 12, None, python=True)
    assert _frame_text(py) == "handler /srv/app/handlers/leaky.py:12"
    short = Frame("leak", "a.c", 3, "/opt/prog")
    assert _frame_text(short) == "leak a.c:3 (prog)"
