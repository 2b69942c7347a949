"""The native capture format (snapshots/native.py), the offline ELF
symbols (snapshots/native_symbols.py) and the grouping by site
(analyses/native.py), on captures written by the real preload library."""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import KIB, compile_prog, needs_tracer, preload_library, tracer_env  # noqa: E402

from pymemtrace.analyses.native import analyse_capture  # noqa: E402
from pymemtrace.snapshots.native import (  # noqa: E402
    SNAP_EXIT,
    Mapping,
    NativeCapture,
    NativeFormatError,
    Totals,
    parse_maps,
    read_capture,
    read_outdir,
)
from pymemtrace.snapshots.native_symbols import ElfSymbols  # noqa: E402


@pytest.fixture(scope="module")
def prog(tmp_path_factory):
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    return compile_prog(tmp_path_factory.mktemp("native_unit"))


def run_traced(prog, outdir, *args, **env_options):
    os.makedirs(outdir, exist_ok=True)
    subprocess.run([prog, *args], check=True, env=tracer_env(outdir, **env_options))
    (path,) = [os.path.join(outdir, name) for name in os.listdir(outdir)]
    return path


@needs_tracer
def test_truncated_capture_reads_up_to_its_last_whole_snapshot(prog, tmp_path):
    # GIVEN a capture with periodic snapshots (every 1 ms) and the exit one
    path = run_traced(prog, str(tmp_path / "out"), "leak", "6000", interval_ms=1)
    with open(path, "rb") as stream:
        data = stream.read()
    full = read_capture(path)
    assert full.complete and full.truncated_bytes == 0
    assert full.totals.live_bytes >= 6000 * KIB
    # WHEN it is cut at every length (a process killed while writing)
    cut_path = str(tmp_path / "cut.pmtn")
    seen_periodic = 0
    for length in range(0, len(data), max(1, len(data) // 400)):
        with open(cut_path, "wb") as stream:
            stream.write(data[:length])
        try:
            capture = read_capture(cut_path)
        except NativeFormatError:
            assert length < 200  # only a file cut inside its header
            continue
        # THEN it reads: no snapshot yet, or an earlier, consistent one
        assert not capture.complete
        if capture.totals is not None:
            seen_periodic += 1
            assert 0 < capture.totals.live_bytes <= full.totals.live_bytes
            assert set(capture.totals.live) <= set(capture.stacks)
    assert seen_periodic > 0


def test_not_a_capture(tmp_path):
    path = tmp_path / "native-1.pmtn"
    path.write_bytes(b"hello")
    with pytest.raises(NativeFormatError, match="not a native capture"):
        read_capture(str(path))
    with pytest.raises(NativeFormatError, match="not a directory"):
        read_outdir(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NativeFormatError, match="no native capture"):
        read_outdir(str(tmp_path / "empty"))


@needs_tracer
def test_library_is_idle_without_an_output_directory(prog, tmp_path):
    env = tracer_env(tmp_path)
    del env["PYMEMTRACE_NATIVE_DIR"]
    subprocess.run([prog, "leak", "100"], check=True, env=env, cwd=str(tmp_path))
    assert os.listdir(tmp_path) == []


@needs_tracer
def test_library_needs_neither_python_nor_a_sanitizer():
    ldd = shutil.which("ldd")
    if ldd is None:
        pytest.skip("no ldd")
    needed = subprocess.run([ldd, preload_library()], capture_output=True, text=True).stdout
    assert "libpython" not in needed and "libasan" not in needed


def test_elf_symbols_agree_with_nm(prog):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    listing = subprocess.run([nm, "--defined-only", prog], capture_output=True, text=True, check=True).stdout
    expected = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tt":
            expected[parts[2]] = int(parts[0], 16)
    elf = ElfSymbols(prog)
    for name in ("leak_kib", "keep_kib", "thread_leak", "child_leak", "main"):
        assert elf.function_at(expected[name]) == name
        assert elf.function_at(expected[name] + 1) == name
    # A file offset inside the text segment maps back to its address.
    assert elf.vaddr_of(0) is not None


def test_elf_symbols_of_a_non_elf_file(tmp_path):
    path = tmp_path / "x.so"
    path.write_bytes(b"\x7fELF" + b"\0" * 10)
    assert ElfSymbols(str(path)).function_at(0x1000) is None
    assert ElfSymbols(str(tmp_path / "missing")).function_at(0x1000) is None


def test_parse_maps():
    text = ("55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/prog\n"
            "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
            "garbage line\n")
    assert parse_maps(text) == [
        Mapping(0x55D0C0000000, 0x55D0C0001000, 0, "r--p", "/usr/bin/prog"),
        Mapping(0x7F0000000000, 0x7F0000021000, 0, "rw-p", ""),
    ]


def test_sites_merge_stacks_with_the_same_frames():
    # GIVEN two stacks through the same (unnamed, anonymous) addresses and
    # a third through another
    maps = [Mapping(0x1000, 0x9000, 0, "r-xp", "")]
    stacks = {0: (0x1101, 0x2201), 1: (0x1101, 0x2201), 2: (0x3301,)}
    totals = Totals(SNAP_EXIT, 700, 900, 5, 2, 900, 0, 0, 0,
                    live={0: (100, 1), 1: (200, 2), 2: (400, 4)},
                    peak={0: (300, 3), 2: (600, 6)})
    capture = NativeCapture("x", 42, 1, "exact", 16, 0, 0, ["prog"], stacks, maps, totals)
    # WHEN analysed
    report = analyse_capture(capture)
    # THEN the first two are one site; the largest comes first
    assert [(s.bytes, s.blocks) for s in report.leaked.sites] == [(400, 4), (300, 3)]
    assert [f.function for f in report.leaked.sites[1].frames] == ["0x1101", "0x2201"]
    assert report.leaked.bytes == 700 and report.leaked.blocks == 7
    assert [(s.bytes, s.blocks) for s in report.peak.sites] == [(600, 6), (300, 3)]
    assert report.complete
