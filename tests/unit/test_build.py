"""The build switches of setup.py (the Makefile builds build/asan and
build/dbg with them through setuptools) and the fixture builder
(tests/fixtures/build.py)."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import pymemtrace._native as native

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures import build  # noqa: E402

C_DIR = build.ROOT / "src" / "pymemtrace" / "_c"
SWITCHES = ("PYMEMTRACE_WERROR", "PYMEMTRACE_DEBUG", "PYMEMTRACE_SANITIZE", "PYMEMTRACE_COVERAGE")
CASES = {
    "default": {},
    "werror": {"PYMEMTRACE_WERROR": "1"},
    "debug": {"PYMEMTRACE_DEBUG": "1"},
    "sanitize": {"PYMEMTRACE_SANITIZE": "1"},
    "coverage": {"PYMEMTRACE_COVERAGE": "1"},
}

# setuptools reads setup.py up to the point where it would build, once per
# case, in a child of its own (it is not imported into the test process).
READ_SETUP = """
import json, os, sys
import setuptools
from distutils.core import run_setup
found = {}
for case, env in json.loads(sys.argv[1]).items():
    for name in %r:
        os.environ.pop(name, None)
    os.environ.update(env)
    ext, = [e for e in run_setup("setup.py", stop_after="init").ext_modules if e.name == "pymemtrace._native"]
    found[case] = {"sources": ext.sources, "compile": ext.extra_compile_args, "link": ext.extra_link_args}
print(json.dumps(found))
""" % (SWITCHES,)


@pytest.fixture(scope="module")
def extension():
    done = subprocess.run([sys.executable, "-c", READ_SETUP, json.dumps(CASES)], cwd=build.ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_setup_py_compiles_every_c_file(extension):
    # GIVEN setup.py  WHEN read by setuptools
    sources = {Path(s).relative_to("src/pymemtrace/_c").as_posix() for s in extension["default"]["sources"]}
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
    "case, present, absent",
    [
        ("default", ["-O2", "-fvisibility=hidden"], ["-fsanitize=address,undefined", "-UNDEBUG", "-Werror"]),
        ("werror", ["-Werror"], []),
        ("debug", ["-O0", "-UNDEBUG"], ["-O2"]),
        ("sanitize", ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-UNDEBUG", "-O0"], []),
        ("coverage", ["--coverage"], []),
    ],
)
def test_environment_switches_reach_the_compiler_flags(extension, case, present, absent):
    # GIVEN a PYMEMTRACE_* switch  WHEN setup.py is read with it
    flags = extension[case]["compile"]
    # THEN the flags it stands for are there, and the others are not
    for flag in present:
        assert flag in flags
    for flag in absent:
        assert flag not in flags


def test_sanitizer_and_coverage_reach_the_linker_too(extension):
    assert "-fsanitize=address,undefined" in extension["sanitize"]["link"]
    assert "--coverage" in extension["coverage"]["link"]
    assert not any(f.startswith(("-fsanitize", "--coverage")) for f in extension["default"]["link"])


def test_fixture_is_built_once_and_again_when_older_than_its_source():
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    # GIVEN a variant folder of the fixture, absent (this process's own:
    # CI runs the suites of two interpreters side by side)
    variant = f"test-build-{os.getpid()}"
    out = build.ROOT / "build" / "fixtures" / variant
    shutil.rmtree(out, ignore_errors=True)
    # WHEN built  THEN the folder holds the extension for this interpreter
    assert build.build_fixture("leaky_ext", variant=variant) == out
    target = out / ("leaky_ext" + suffix)
    first = target.stat().st_mtime_ns
    # AND a second call leaves it as it is
    build.build_fixture("leaky_ext", variant=variant)
    assert target.stat().st_mtime_ns == first
    # WHEN the .so is older than leaky_ext.c  THEN it is built anew
    old = (build.FIXTURES / "leaky_ext.c").stat().st_mtime - 60
    os.utime(target, (old, old))
    build.build_fixture("leaky_ext", variant=variant)
    assert target.stat().st_mtime > old + 60
    # AND it imports in a fresh interpreter
    done = subprocess.run([sys.executable, "-c", "import leaky_ext; print(leaky_ext.__file__)"],
                          env=dict(os.environ, PYTHONPATH=str(out)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    shutil.rmtree(out)


def test_a_failed_fixture_build_says_why():
    # GIVEN a flag the compiler refuses  WHEN the fixture is built with it
    with pytest.raises(RuntimeError) as failed:
        build.build_fixture("leaky_ext", ["-fno-such-flag-for-test"], variant=f"test-build-fails-{os.getpid()}")
    shutil.rmtree(build.ROOT / "build" / "fixtures" / f"test-build-fails-{os.getpid()}", ignore_errors=True)
    # THEN the error names the fixture and carries the compiler's words
    assert "building leaky_ext failed" in str(failed.value)
    assert "-fno-such-flag-for-test" in str(failed.value)


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
