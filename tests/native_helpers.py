"""Helpers of the native tracer's tests: the planted-leak program
(tests/fixtures/native_prog.c) compiled once per session, the tracer's
environment, and the skips (not Linux, library not built, no C compiler,
an AddressSanitizer run: the tracer is never injected into ASan runs)."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "native_prog.c")
KIB = 1024


def preload_library():
    import pymemtrace

    return os.path.join(os.path.dirname(pymemtrace.__file__), "libpymemtrace_preload.so")


def skip_reason():
    if not sys.platform.startswith("linux"):
        return "the native tracer is Linux only"
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return "the native tracer is not run under AddressSanitizer"
    if not os.path.isfile(preload_library()):
        return "libpymemtrace_preload.so is not built"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler"
    return None


def compile_prog(directory, *flags):
    out = os.path.join(str(directory), "native_prog" + "".join(flags).replace("-", "_"))
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-O1", "-g", "-pthread", *flags, "-o", out, FIXTURE], check=True)
    return out


def tracer_env(outdir, mode="exact", depth=16, sample_bytes=512 * 1024, interval_ms=1000):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update({
        "LD_PRELOAD": preload_library(),
        "PYMEMTRACE_NATIVE_DIR": str(outdir),
        "PYMEMTRACE_NATIVE_MODE": mode,
        "PYMEMTRACE_NATIVE_DEPTH": str(depth),
        "PYMEMTRACE_NATIVE_SAMPLE_BYTES": str(sample_bytes),
        "PYMEMTRACE_NATIVE_INTERVAL_MS": str(interval_ms),
    })
    return env


def site_bytes(section, function):
    """Bytes of the sites of a JSON section whose frames name function."""
    return sum(site["bytes"] for site in section["sites"]
               if any(frame["function"] == function for frame in site["frames"]))


needs_tracer = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
