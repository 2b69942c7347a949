"""`pymemtrace native`: run a command under the native (malloc-level) tracer.

The command runs with ``libpymemtrace_preload.so`` added to LD_PRELOAD and
the tracer's settings in PYMEMTRACE_NATIVE_* variables; its children
inherit both, so every process it forks or execs writes a capture of its
own to OUTDIR.  ``pymemtrace report OUTDIR`` then shows what each left
live at exit and held at its peak (docs/native.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Dict, List

from pymemtrace._argtypes import number
from pymemtrace._child import Child
from pymemtrace.errors import PymemtraceError, UsageError

PRELOAD_NAME = "libpymemtrace_preload.so"
FORWARD_GRACE = 1.0


def preload_path() -> str:
    """The tracer library shipped beside the extension."""
    import pymemtrace

    return os.path.join(os.path.dirname(os.path.abspath(pymemtrace.__file__)), PRELOAD_NAME)


def tracer_environ(outdir: str, mode: str, depth: int, sample_bytes: int, interval_ms: int,
                   base: Dict[str, str], unwind: str = "dwarf") -> Dict[str, str]:
    """``base`` with the tracer preloaded (after any LD_PRELOAD already set)
    and configured."""
    env = dict(base)
    library = preload_path()
    previous = env.get("LD_PRELOAD", "").strip()
    env["LD_PRELOAD"] = f"{previous} {library}".strip() if previous else library
    env["PYMEMTRACE_NATIVE_DIR"] = os.path.abspath(outdir)
    env["PYMEMTRACE_NATIVE_MODE"] = mode
    env["PYMEMTRACE_NATIVE_DEPTH"] = str(depth)
    env["PYMEMTRACE_NATIVE_SAMPLE_BYTES"] = str(sample_bytes)
    env["PYMEMTRACE_NATIVE_INTERVAL_MS"] = str(interval_ms)
    env["PYMEMTRACE_NATIVE_UNWIND"] = unwind
    return env


# The sitecustomize that `pymemtrace native` puts first on a Python
# command's path: the extension, once imported, hands the tracer the Python
# stack of each allocating thread; a program that never imports it would
# show native frames only.  Then it leaves the path as it was and runs the
# sitecustomize it hid, if there is one.  Any failure of ours is silent (no
# Python frames), the program must run as it would without us.
BOOT_SOURCE = """\
def _pymemtrace_boot():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        import pymemtrace._native  # noqa: F401
    except Exception:
        pass
    sys.path[:] = [entry for entry in sys.path if entry != here]
    # The import system takes this module's entry back when this file ends:
    # the hidden sitecustomize's, or this one's when there is none.
    me = sys.modules.pop("sitecustomize")
    try:
        import sitecustomize  # noqa: F401
    except ImportError as exc:
        sys.modules["sitecustomize"] = me
        if exc.name != "sitecustomize":
            raise


_pymemtrace_boot()
del _pymemtrace_boot
"""


def python_boot_dir() -> str:
    """A new directory holding the boot sitecustomize and a link to this
    pymemtrace package (so that only the package, not the environment it
    is installed in, is visible to the traced program)."""
    import pymemtrace

    boot = tempfile.mkdtemp(prefix="pymemtrace-native-")
    with open(os.path.join(boot, "sitecustomize.py"), "w", encoding="utf-8") as stream:
        stream.write(BOOT_SOURCE)
    os.symlink(os.path.dirname(os.path.abspath(pymemtrace.__file__)), os.path.join(boot, "pymemtrace"))
    return boot


def with_python_boot(env: Dict[str, str], boot: str) -> Dict[str, str]:
    """``env`` with ``boot`` first on PYTHONPATH."""
    env = dict(env)
    previous = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join([boot, previous]) if previous else boot
    return env


def _check_platform(env: Dict[str, str]) -> None:
    if not sys.platform.startswith("linux"):
        raise PymemtraceError(f"pymemtrace native needs Linux (LD_PRELOAD); not available on {sys.platform}")
    if not os.path.isfile(preload_path()):
        raise PymemtraceError(f"the native tracer is not built: {preload_path()} is missing "
                              "(python setup.py build_ext --inplace)")
    if "libasan" in env.get("LD_PRELOAD", ""):
        # ASan's malloc comes first and would hide every allocation from us.
        raise PymemtraceError("cannot trace native allocations under AddressSanitizer (libasan in LD_PRELOAD)")


def _prepare_outdir(outdir: str) -> None:
    from pymemtrace.snapshots.native import capture_paths

    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise PymemtraceError(f"cannot create {outdir}: {(exc.strerror or str(exc)).lower()}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise PymemtraceError(f"cannot write to {outdir}: permission denied")
    if capture_paths(outdir):
        raise PymemtraceError(f"{outdir} already holds native captures: give another -o OUTDIR")


class Command:
    help = "run a command under the native (malloc-level) tracer"
    example = "pymemtrace native -o native_out -- python my_script.py && pymemtrace report native_out"

    def prepare_parser(self, parser):
        parser.usage = ("pymemtrace native [--sample-bytes N | --count] [--depth D] [--unwind (dwarf | fp)] [-o OUTDIR] "
                        "-- <command> [<arg>...]")
        parser.add_argument("-o", "--output", metavar="OUTDIR", default=None,
                            help="directory for the captures, one per process (default native_<time>)")
        parser.add_argument("--depth", type=number(1, 64, integer=True), default=16, metavar="D",
                            help="native frames kept per allocation (1 to 64, default 16)")
        parser.add_argument("--unwind", choices=("dwarf", "fp"), default="dwarf",
                            help="native stacks by DWARF unwinding (default; exact, slower) or by frame "
                            "pointers (fast; stops at the first code built without them)")
        parser.add_argument("--sample-bytes", type=number(1, 2**40, integer=True), default=None, metavar="N",
                            help="sample allocations: on average one per N bytes (blocks of N/2 or more: all)")
        parser.add_argument("--count", action="store_true",
                            help="count allocations and bytes only (no table, no sites)")
        parser.add_argument("--interval-ms", type=number(1, 86400000, integer=True), default=1000, metavar="MS",
                            help="a snapshot at most every MS milliseconds while the program allocates, "
                            "for a capture that survives a kill (default 1000)")
        parser.add_argument("--no-python-frames", action="store_true",
                            help="do not load pymemtrace into Python programs (their stacks are then native only; "
                            "by default a sitecustomize first on PYTHONPATH loads it and runs yours)")
        parser.add_argument("cmd", metavar="command", nargs=argparse.REMAINDER,
                            help="the command to run (after --)")

    def run(self, args) -> int:
        command: List[str] = list(args.cmd)
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise UsageError("no command given: pymemtrace native [options] -- <command> [<arg>...]")
        if args.count and args.sample_bytes is not None:
            raise UsageError("--count and --sample-bytes exclude each other")
        env = dict(os.environ)
        _check_platform(env)
        outdir = args.output or time.strftime("native_%Y%m%d_%H%M%S")
        _prepare_outdir(outdir)
        mode = "count" if args.count else ("sampled" if args.sample_bytes is not None else "exact")
        env = tracer_environ(outdir, mode, args.depth, args.sample_bytes or 512 * 1024, args.interval_ms, env,
                             args.unwind)
        boot = None
        try:
            if not args.no_python_frames:
                boot = python_boot_dir()
                env = with_python_boot(env, boot)
            with Child.start(command, env=env) as child:
                with child.forwarding((signal.SIGTERM,)):
                    status = child.wait_through_interrupts(FORWARD_GRACE)
        finally:
            if boot is not None:
                shutil.rmtree(boot, ignore_errors=True)
        print(f"pymemtrace native: captures in {outdir}; see them with: pymemtrace report {outdir}",
              file=sys.stderr)
        return status
