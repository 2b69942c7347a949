"""Native frames named from debug information: file and line from DWARF
(through binutils' addr2line), C++ names demangled; without binutils the
names stay as linked and file and line null."""
import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from native_helpers import FIXTURE, KIB, compile_prog, needs_tracer  # noqa: E402

from pymemtrace.snapshots import native_symbols  # noqa: E402
from pymemtrace.snapshots.native_symbols import SourceLine, _parse_addr2line  # noqa: E402

CXX_SOURCE = r"""
#include <cstdlib>
#include <cstring>

namespace shop {
struct Basket {
    __attribute__((noinline)) static void *grow(int n);
};
void *Basket::grow(int n)
{
    void *p = std::malloc(1024);  // GROW
    std::memset(p, n, 1024);
    return p;
}
}

void *volatile sink;

int main()
{
    for (int i = 0; i < 64; i++)
        sink = shop::Basket::grow(i);
    return 0;
}
"""


def line_of(path, text, start=1):
    """The 1-based number of the first line at or after ``start`` holding ``text``."""
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            if number >= start and text in line:
                return number
    raise AssertionError(f"{text!r} not in {path}")


def leaked_sites(cli, outdir, command, env=None):
    result = cli("native", "-o", outdir, "--", *command, env=env)
    assert result.returncode == 0, result.stderr
    report = cli("report", outdir, "--format", "json", env=env)
    assert report.returncode == 0, report.stderr
    (process,) = json.loads(report.stdout)["processes"]
    return process["leaked"]["sites"]


def site_of(sites, function):
    (site,) = [s for s in sites if s["frames"] and s["frames"][0]["function"] == function]
    return site


@needs_tracer
@pytest.mark.skipif(shutil.which("addr2line") is None, reason="binutils' addr2line is not installed")
def test_c_frames_carry_their_file_and_line(cli, tmp_path):
    # GIVEN the planted C program, built with -g, leaking 50 blocks
    prog = compile_prog(tmp_path)
    sites = leaked_sites(cli, tmp_path / "out", [prog, "leak", "50"])
    # THEN the leaking function's frame is the malloc line of its source,
    # and its caller's frame the line of the call in main()
    site = site_of(sites, "leak_kib")
    assert site["bytes"] == 50 * KIB
    first, caller = site["frames"][0], site["frames"][1]
    assert first["file"] == FIXTURE or first["file"].endswith("fixtures/native_prog.c"), first
    assert first["line"] == line_of(FIXTURE, "malloc(1024)", line_of(FIXTURE, "leak_kib(void)"))
    assert caller["function"] == "main"
    assert caller["line"] == line_of(FIXTURE, "leak_kib();", line_of(FIXTURE, '"leak") == 0'))


@needs_tracer
@pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler")
def test_cxx_names_are_demangled(cli, tmp_path):
    # GIVEN a C++ program whose member function leaks
    source = tmp_path / "basket.cpp"
    source.write_text(CXX_SOURCE)
    prog = tmp_path / "basket"
    subprocess.run([shutil.which("g++"), "-O1", "-g", "-o", str(prog), str(source)], check=True)
    sites = leaked_sites(cli, tmp_path / "out", [str(prog)])
    # THEN the frame is named as the source names it, at its line
    site = site_of(sites, "shop::Basket::grow(int)")
    assert site["blocks"] == 64
    if shutil.which("addr2line"):
        assert site["frames"][0]["file"] == str(source)
        assert site["frames"][0]["line"] == line_of(source, "// GROW")


@needs_tracer
def test_without_binutils_names_stay_and_lines_are_null(cli, tmp_path, monkeypatch):
    # GIVEN a PATH on which neither addr2line nor c++filt is found
    prog = compile_prog(tmp_path)
    result = cli("native", "-o", tmp_path / "out", "--", prog, "leak", "10")
    assert result.returncode == 0, result.stderr
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {"PATH": str(bare)}
    report = cli("report", tmp_path / "out", "--format", "json", env=env)
    # THEN the report still names the function, without file and line
    assert report.returncode == 0, report.stderr
    (process,) = json.loads(report.stdout)["processes"]
    site = site_of(process["leaked"]["sites"], "leak_kib")
    assert (site["frames"][0]["file"], site["frames"][0]["line"]) == (None, None)


def test_addr2line_output_takes_the_outermost_function_of_inlined_code():
    # addr2line -a -f -C -i: an address, then (function, file:line) pairs
    # from the innermost inlined function out; "??" where nothing is known
    out = "\n".join([
        "0x0000000000001139",
        "inlined_helper", "/src/a.c:10",
        "outer", "/src/a.c:42 (discriminator 3)",
        "0x0000000000002000",
        "??", "??:0",
        "0x0000000000003000",
        "stripped", "??:?",
    ])
    found = _parse_addr2line(out)
    assert found == {0x1139: SourceLine("/src/a.c", 42, "outer")}


def test_demangling_falls_back_to_the_linked_name(monkeypatch):
    # GIVEN no c++filt  WHEN names are demangled  THEN they stay as linked
    monkeypatch.setattr(native_symbols.shutil, "which", lambda name: None)
    lines = native_symbols.SourceLines()
    lines.demangle(["_ZN4shop6Basket4growEi"])
    assert lines.name("_ZN4shop6Basket4growEi") == "_ZN4shop6Basket4growEi"
    lines.resolve({"/bin/true": [0x1000]})
    assert lines.at("/bin/true", 0x1000) is None
