"""`pymemtrace run`: run a Python script under a probe and report.

    pymemtrace run --allocations [--sample-bytes N] [--depth D] [-o OUT.json]
                   [--collapsed OUT.txt] [--pprof OUT.pb.gz] [--flamegraph OUT.svg]
                   [--html OUT.html] (script.py | -m module) [args...]

The script runs as ``python script.py`` would run it: as ``__main__``, with
``sys.argv`` set and its directory first on ``sys.path``.  Its exceptions
print as its own traceback and exit 1; ``SystemExit`` keeps its code.  The
report (memory live at exit and at the peak, by site) goes to stdout, the
JSON document to ``-o``; ``--html`` writes one self-contained HTML page
(zoomable flame graphs and a sortable table, works offline).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys

from pymemtrace import _native, _output
from pymemtrace._argtypes import number
from pymemtrace.errors import PymemtraceError, UsageError

USAGE = (
    "pymemtrace run --allocations [--sample-bytes <n>] [--depth <d>] [-o <out.json>]\n"
    "                      [--collapsed <out.txt>] [--pprof <out.pb.gz>]\n"
    "                      [--flamegraph <out.svg>] [--html <out.html>] [--top <n>]\n"
    "                      (<script.py> | -m <module>) [<args>...]"
)


#: Largest --sample-bytes: 1 TiB between samples.
MAX_SAMPLE_BYTES = 2**40


def _size(text: str) -> int:
    """A byte count, with an optional K/M/G suffix (512K, 4MiB)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = (
        text.strip().lower().rstrip("ib").rstrip("b")
        if text.strip().lower()[-1:] in "bi"
        else text.strip().lower()
    )
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        number = float(t) * mult
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or not 1 <= number <= MAX_SAMPLE_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be a size between 1 and {MAX_SAMPLE_BYTES} bytes (1T), not {text!r}"
        )
    return int(number)


class Command:
    help = (
        "run a Python script under the allocation tracker and report where memory stays"
    )
    example = "pymemtrace run --allocations -o allocs.json my_script.py --its-arg"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = USAGE
        parser.add_argument(
            "--allocations",
            action="store_true",
            help="track Python allocations by site (the default and only probe for now)",
        )
        parser.add_argument(
            "--sample-bytes",
            type=_size,
            metavar="N",
            help="sampled mode: one sample per N bytes on average (e.g. 512K); "
            "default: exact mode, every block",
        )
        parser.add_argument(
            "--depth",
            type=number(1, 256, integer=True),
            default=16,
            metavar="D",
            help="frames kept per stack (default 16)",
        )
        parser.add_argument(
            "--seed",
            type=number(0, 2**64 - 1, integer=True),
            default=0,
            metavar="N",
            help="fix the sampling sequence (reproducible sampled runs)",
        )
        parser.add_argument(
            "-o", "--output", metavar="OUT.json", help="write the JSON report here"
        )
        parser.add_argument(
            "--collapsed",
            metavar="OUT.txt",
            help="write collapsed stacks of memory live at exit (flame graphs)",
        )
        parser.add_argument(
            "--pprof",
            metavar="OUT.pb.gz",
            help="write a gzip pprof profile of memory live at exit",
        )
        parser.add_argument(
            "--flamegraph",
            metavar="OUT.svg",
            help="draw a flame graph (SVG) of memory live at exit",
        )
        parser.add_argument(
            "--html",
            metavar="OUT.html",
            help="write one self-contained HTML report (flame graphs, sortable table)",
        )
        parser.add_argument(
            "--top",
            type=number(1, 10**6, integer=True),
            default=10,
            metavar="N",
            help="sites shown in the text report (default 10)",
        )
        parser.add_argument(
            "--group-by",
            choices=("line", "function", "file", "stack"),
            default="line",
            help="grouping of the text report",
        )
        parser.add_argument(
            "-m",
            dest="module",
            metavar="MODULE",
            help="run a library module as a script, like python -m",
        )
        parser.add_argument(
            "target", nargs=argparse.REMAINDER, help="the script and its arguments"
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.module is None and not args.target:
            raise UsageError(
                "no script given (usage: pymemtrace run --allocations script.py)"
            )
        if args.module is None and args.target[0] == "--":
            args.target = args.target[1:]
            if not args.target:
                raise UsageError("no script given")
        paths = _output_paths(args)
        for path in paths.values():
            _output.check_writable(path)  # a bad path fails before the script runs
        if args.module is not None:
            runner, argv = _module_runner(args.module, args.target)
        else:
            runner, argv = _script_runner(args.target[0], args.target[1:])
        mode = "sampled" if args.sample_bytes else "exact"

        def report(snap) -> None:
            _write_outputs(snap, paths)
            _print_report(
                snap.to_text(top=args.top, key=args.group_by, live_title="live at exit")
            )

        status, snap = _run_tracked(
            runner,
            argv,
            mode,
            args.depth,
            args.sample_bytes or 512 * 1024,
            args.seed,
            on_os_exit=report,
        )
        if snap is None:
            # A process forked by the script: its parent writes the outputs.
            return status
        report(snap)
        return status


def _print_report(text: str) -> None:
    """Print to stdout, even when the script closed sys.stdout."""
    out = sys.stdout
    if out is None or getattr(out, "closed", False):
        try:
            with open(1, "w", closefd=False, encoding="utf-8", errors="replace") as fd1:
                fd1.write(text)
        except OSError:
            pass
        return
    out.flush()
    out.write(text)
    out.flush()


def _output_paths(args) -> dict:
    """Output name -> path, for the outputs asked for."""
    asked = {
        "json": args.output,
        "collapsed": args.collapsed,
        "pprof": args.pprof,
        "flamegraph": args.flamegraph,
        "html": args.html,
    }
    return {name: path for name, path in asked.items() if path}


def _write_outputs(snap, paths: dict) -> None:
    """Each output complete under its name, or not there (see _output)."""
    from pymemtrace.reporters import allocations_json

    renders = {
        "json": lambda: allocations_json.render(snap) + "\n",
        "collapsed": snap.to_collapsed,
        "pprof": snap.to_pprof,
        "flamegraph": snap.to_flamegraph,
        "html": lambda: snap.to_html(live_label="live at exit"),
    }
    for name, path in paths.items():
        _output.write_file(path, renders[name]())


def _script_runner(path: str, rest):
    if not os.path.exists(path):
        raise UsageError(f"can't open file {path!r}: no such file")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "__main__.py")):
        raise UsageError(f"can't find '__main__' module in {path!r}")
    full = os.path.abspath(path)
    if os.path.isdir(full) or not full.endswith((".py", ".pyw")) and _is_zip(full):

        def runner(begin):
            import runpy

            sys.path.insert(0, full)
            begin()
            _native.alloc_set_stack_base(True)
            try:
                return runpy.run_path(path, run_name="__main__")
            finally:
                _native.alloc_set_stack_base(False)

        return runner, [path, *rest]
    try:
        with open(full, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise UsageError(f"can't open file {path!r}: {exc.strerror or exc}") from None

    def runner(begin):
        # As python does: a fresh __main__ whose globals we keep, so memory
        # they hold counts as live at exit even when the script raises.
        import types

        sys.path.insert(0, os.path.dirname(full))
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__builtins__ = __builtins__
        saved_main = sys.modules.get("__main__")
        sys.modules["__main__"] = main
        _KEEP.append(main.__dict__)
        try:
            code = compile(source, path, "exec", dont_inherit=True)
            begin()
            # Stacks stop at the script's own frames: ours are left out.
            _native.alloc_set_stack_base(True)
            try:
                exec(code, main.__dict__)  # noqa: S102 - running the script
            finally:
                _native.alloc_set_stack_base(False)
        finally:
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
        return main.__dict__

    return runner, [path, *rest]


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Globals of the script being run, alive until its snapshot is taken.
_KEEP: list = []


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _module_runner(module: str, rest):
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(f"no module named {module!r}")

    def runner(begin):
        import runpy

        sys.path.insert(0, os.getcwd())
        begin()
        _native.alloc_set_stack_base(True)
        try:
            return runpy.run_module(module, run_name="__main__", alter_sys=True)
        finally:
            _native.alloc_set_stack_base(False)

    return runner, [module, *rest]


class _Terminated(KeyboardInterrupt):
    """SIGTERM during the script: it ends as ^C does, and the report is written."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _run_tracked(runner, argv, mode, depth, sample_bytes, seed=0, on_os_exit=None):
    """Run the target under the tracker: (exit status, snapshot at exit).

    The snapshot is None in a process the script forked: only the process
    that started the command reports.  SIGTERM ends the script as SIGINT
    does (status 143).  When ``on_os_exit`` is given, ``os._exit`` called by
    the script first hands it the snapshot (the report is written), then
    exits.
    """
    from pymemtrace import allocations

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = list(argv)
    status = 0
    result = None
    real_exit = os._exit
    old_term = None

    def exit_hook(code=0):
        if _output.is_owner() and on_os_exit is not None and allocations.is_tracking():
            try:
                snap = allocations.snapshot()
                allocations.stop()
                on_os_exit(snap)
            except Exception as exc:  # noqa: BLE001 - exiting anyway: one line
                why = _output.reason(exc)
                print(f"pymemtrace run: error: the script called os._exit({code}): "
                      f"no report: {why}", file=sys.stderr)
                code = 1  # as when the report fails at a normal exit
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
        real_exit(code)

    def begin():
        allocations.start(mode=mode, depth=depth, sample_bytes=sample_bytes, seed=seed)

    try:
        try:
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: SIGTERM stays as it is
            old_term = None
        os._exit = exit_hook
        try:
            try:
                result = runner(begin)
            except SystemExit as exc:
                status = _exit_status(exc.code)
            except _Terminated:
                status = 128 + signal.SIGTERM
            except KeyboardInterrupt:
                import traceback

                traceback.print_exc()
                status = 130
            except BaseException as exc:  # noqa: BLE001 - the script's own error
                _print_script_traceback(exc)
                status = 1
            if _output.is_owner():
                # Its non-daemon threads still run, as at Python's exit.
                try:
                    _join_threads()
                except KeyboardInterrupt:
                    status = 130
                except _Terminated:
                    status = 128 + signal.SIGTERM
        finally:
            os._exit = real_exit
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        if not _output.is_owner():
            return status, None
        # Memory live at exit: the script's globals (result) are still held.
        if not allocations.is_tracking():
            raise PymemtraceError("the script did not start")
        # pymemtrace's frames are not the script's: leave them out, and the
        # memory this runner allocated itself (the script's stacks stop
        # above the runner, see alloc_set_stack_base).
        snap = allocations.snapshot().without_files_under(
            _PACKAGE_DIR, drop_sites_under=os.path.dirname(os.path.abspath(__file__))
        )
        del result
        _KEEP.clear()
    finally:
        allocations.stop()
        sys.argv, sys.path[:] = saved_argv, saved_path
    return status, snap


def _join_threads() -> None:
    """Wait for the script's non-daemon threads, as Python's exit does
    (threading._shutdown): what they allocate is live at exit too."""
    threading = sys.modules.get("threading")
    if threading is None:  # no thread was started through threading
        return
    me = threading.current_thread()
    while True:
        waiting = [
            t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()
        ]
        if not waiting:
            return
        for thread in waiting:  # they may start others: look again after
            thread.join()


def _exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_script_traceback(exc: BaseException) -> None:
    """Print exc as python would, without our own and runpy's frames."""
    import traceback

    tb = exc.__traceback__
    here = os.path.dirname(os.path.abspath(__file__))
    while tb is not None:
        raw = tb.tb_frame.f_code.co_filename
        filename = os.path.abspath(raw)
        if (
            filename.startswith(here)
            or os.path.basename(raw) == "runpy.py"
            or raw.startswith("<frozen runpy")
        ):
            tb = tb.tb_next
            continue
        break
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()
