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
    PYFRAME_TAG,
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


def records(data):
    """(type, whole record bytes) of a capture after its magic."""
    import struct

    pos, out = 8, []
    while pos + 8 <= len(data):
        rtype, length = struct.unpack_from("=II", data, pos)
        out.append((rtype, data[pos : pos + 8 + length]))
        pos += 8 + length
    return out


@needs_tracer
def test_truncated_capture_keeps_counts_of_its_last_whole_snapshot(prog, tmp_path):
    # GIVEN sized_alloc's 3000 blocks of 3000 bytes, half freed, with a
    # periodic snapshot every 1 ms
    path = run_traced(prog, str(tmp_path / "out"), "sized", "6000", interval_ms=1)
    with open(path, "rb") as stream:
        data = stream.read()
    full = read_capture(path)
    bucket = 12  # [2048, 4095]
    assert full.totals.sizes[bucket] == 6000
    (sid,) = [sid for sid, c in full.totals.counts.items() if c.bytes_allocated == 6000 * 3000]
    assert full.totals.counts[sid].frees == 3000

    def consistent(totals):
        # exact mode: per stack, allocations - frees = the blocks live
        for c_sid, counts in totals.counts.items():
            assert counts.allocations - counts.frees == totals.live.get(c_sid, (0, 0))[1]
        assert set(totals.live) <= set(totals.counts)

    consistent(full.totals)
    seen = 0
    # WHEN it is cut anywhere
    cut_path = str(tmp_path / "cut.pmtn")
    for length in range(200, len(data), max(1, len(data) // 300)):
        with open(cut_path, "wb") as stream:
            stream.write(data[:length])
        capture = read_capture(cut_path)
        if capture.totals is None:
            continue
        # THEN its counts are those of a whole snapshot: never more than
        # at the end, never more frees than allocations
        seen += 1
        consistent(capture.totals)
        assert capture.totals.sizes is not None
        assert all(a <= b for a, b in zip(capture.totals.sizes, full.totals.sizes))
        for c_sid, counts in capture.totals.counts.items():
            end = full.totals.counts[c_sid]
            assert counts.allocations <= end.allocations and counts.frees <= counts.allocations
            assert counts.bytes_allocated <= end.bytes_allocated
    assert seen > 0


@needs_tracer
def test_capture_without_summary_records_still_reads(prog, tmp_path):
    # GIVEN a capture rewritten without its SITES and SIZES records (as the
    # library wrote them before the summary existed)
    path = run_traced(prog, str(tmp_path / "out"), "sized", "100")
    with open(path, "rb") as stream:
        data = stream.read()
    old = str(tmp_path / "old.pmtn")
    with open(old, "wb") as stream:
        stream.write(data[:8] + b"".join(rec for rtype, rec in records(data) if rtype not in (5, 6)))
    # WHEN read and analysed
    capture = read_capture(old)
    report = analyse_capture(capture)
    # THEN the sites are there, and no summary (rather than a wrong one)
    assert capture.complete and capture.totals.sizes is None and capture.totals.counts == {}
    assert report.functions == [] and report.sizes == []
    assert report.leaked.sites[0].frames[0].function == "sized_alloc"
    assert report.to_dict()["functions"] == [] and report.to_dict()["sizes"] == []


def test_size_buckets_are_powers_of_two():
    from pymemtrace.snapshots.native import SIZE_BUCKETS, size_bucket_bounds

    assert size_bucket_bounds(0) == (0, 0)
    assert size_bucket_bounds(1) == (1, 1)
    assert size_bucket_bounds(12) == (2048, 4095)
    assert size_bucket_bounds(SIZE_BUCKETS - 1) == (2**62, 2**64 - 1)
    for k in range(1, SIZE_BUCKETS - 1):
        assert size_bucket_bounds(k + 1)[0] == size_bucket_bounds(k)[1] + 1


def test_python_frames_take_the_interpreters_place():
    # GIVEN stacks through an extension's C function, then the interpreter
    # (libpython), then Python frames (code id << 32 | line, tagged), two
    # Python callers of the same C function; and a stack with no Python
    # frames (a thread without the GIL)
    ext = "/nowhere/leaky_ext.so"
    libpython = "/nowhere/libpython3.11.so.1.0"
    maps = [Mapping(0x1000, 0x2000, 0, "r-xp", ext), Mapping(0x5000, 0x6000, 0, "r-xp", libpython)]

    def py(code_id, line):
        return PYFRAME_TAG | code_id << 32 | line

    stacks = {0: (0x1101, 0x5501, 0x5601, py(0, 10), py(2, 18)),
              1: (0x1101, 0x5501, 0x5601, py(1, 15), py(2, 19)),
              2: (0x1101, 0x5501, 0x5601)}
    totals = Totals(SNAP_EXIT, 700, 700, 7, 0, 700, 0, 0, 0,
                    live={0: (400, 4), 1: (200, 2), 2: (100, 1)}, peak={})
    capture = NativeCapture("x", 42, 1, "exact", 16, 0, 0, ["python"], stacks, maps, totals)
    capture.pycodes = {0: ("/p/prog.py", "many"), 1: ("/p/prog.py", "few"), 2: ("/p/prog.py", "<module>")}
    # WHEN analysed
    report = analyse_capture(capture)
    # THEN each Python caller is its own site: the C frame, then the
    # Python frames innermost first, the interpreter's frames left out
    many, few, native = report.leaked.sites
    assert [(f.function, f.file, f.line, f.python) for f in many.frames] == [
        (f"leaky_ext.so+{0x100:#x}", None, None, False),
        ("many", "/p/prog.py", 10, True), ("<module>", "/p/prog.py", 18, True)]
    assert many.frames[1].library is None
    assert [f.function for f in few.frames][1:] == ["few", "<module>"]
    # AND a stack without Python frames keeps its native frames whole
    assert [f.library for f in native.frames] == [ext, libpython, libpython]
