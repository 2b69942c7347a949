"""The build switches of setup.py and the out-of-tree builder
(tests/fixtures/build.py) used by make test-asan and make test-dbg."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pymemtrace._native as native

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import build  # noqa: E402

C_DIR = build.ROOT / "src" / "pymemtrace" / "_c"


def the_extension(env=None):
    (ext,) = [e for e in build.extensions_from_setup(env) if e.name == "pymemtrace._native"]
    return ext


def test_builder_reads_every_c_file_from_setup_py():
    # GIVEN setup.py  WHEN read by the builder (no setuptools involved)
    ext = the_extension()
    sources = {Path(s).relative_to("src/pymemtrace/_c").as_posix() for s in ext.sources}
    # THEN every concern file and core file is compiled, and exactly one
    # platform file of core/rss_*.c, core/gotpatch_*.c, core/shrinkwatch_*.c
    platform_prefixes = ("rss_", "gotpatch_", "shrinkwatch_")
    expected = {p.relative_to(C_DIR).as_posix() for p in C_DIR.glob("*.c")}
    expected |= {p.relative_to(C_DIR).as_posix() for p in (C_DIR / "core").glob("*.c")
                 if not p.name.startswith(platform_prefixes)}
    assert expected <= sources
    for prefix in platform_prefixes:
        platform_files = [s for s in sources if s.startswith("core/" + prefix)]
        if sys.platform.startswith("linux"):
            assert platform_files == [f"core/{prefix}linux.c"]
        else:
            assert len(platform_files) == 1


@pytest.mark.parametrize(
    "env, present, absent",
    [
        ({}, ["-O2", "-fvisibility=hidden"], ["-fsanitize=address,undefined", "-UNDEBUG", "-Werror"]),
        ({"PYMEMTRACE_WERROR": "1"}, ["-Werror"], []),
        ({"PYMEMTRACE_DEBUG": "1"}, ["-O0", "-UNDEBUG"], ["-O2"]),
        ({"PYMEMTRACE_SANITIZE": "1"},
         ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-UNDEBUG", "-O0"], []),
        ({"PYMEMTRACE_COVERAGE": "1"}, ["--coverage"], []),
    ],
    ids=["default", "werror", "debug", "sanitize", "coverage"],
)
def test_environment_switches_reach_the_compiler(env, present, absent, monkeypatch):
    for name in ("PYMEMTRACE_WERROR", "PYMEMTRACE_DEBUG", "PYMEMTRACE_SANITIZE", "PYMEMTRACE_COVERAGE"):
        monkeypatch.delenv(name, raising=False)
    # GIVEN a PYMEMTRACE_* switch  WHEN setup.py is read with it
    flags = the_extension(env).extra_compile_args
    # THEN the flags it stands for are there, and the others are not
    for flag in present:
        assert flag in flags
    for flag in absent:
        assert flag not in flags


def test_builder_leaves_the_environment_as_it_was():
    before = dict(os.environ)
    build.extensions_from_setup({"PYMEMTRACE_SANITIZE": "1"})
    assert dict(os.environ) == before
    assert "setuptools" not in sys.modules or hasattr(sys.modules["setuptools"], "__file__")


@pytest.mark.skipif(
    "libasan" not in os.environ.get("LD_PRELOAD", ""), reason="only under make test-asan"
)
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_the_extension_under_test_is_the_sanitized_build():
    # GIVEN the ASan run  WHEN the loaded _native's symbols are listed
    symbols = subprocess.run(["nm", "-D", "--undefined-only", native.__file__],
                             capture_output=True, text=True, check=True).stdout
    # THEN it calls into the ASan and UBSan runtimes (it is instrumented)
    assert "__asan_init" in symbols or "__asan_report" in symbols
    assert "__ubsan_handle" in symbols
    assert "/build/asan/" in native.__file__
