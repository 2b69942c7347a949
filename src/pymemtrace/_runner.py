"""Run a Python script, or ``-m module``, as ``__main__`` under a probe.

The one script runner of the ``pymemtrace`` commands (``run`` today;
``objects`` and ``hunt`` next).  A command builds a target and a probe and
calls :func:`run`::

    target = _runner.script_target("my_script.py", ["--its-arg"])  # or module_target
    status, snapshot = _runner.run(target, probe, on_os_exit=report)

A *probe* is any object with these methods (``allocations.RunProbe`` is
the allocation tracker's):

- ``start()``: called just before the script's first line runs;
- ``stack_base``: a callable the runner calls with True just before the
  script's code, from the frame that runs it, and with False after (the
  tracker cuts its stacks at that frame, so the runner's frames are not in
  them); it must be a C function, or the frame it sees is its own;
- ``is_running() -> bool``;
- ``snapshot(runner_files)``: what it measured, at exit; ``runner_files``
  are the files whose frames are the runner's own (memory allocated
  there is the runner's, not the script's);
- ``stop()``: always called last.

What the runner guarantees, as ``python script.py`` would behave:

- the exit status is the script's: ``sys.exit(n)``, 1 for an uncaught
  exception (its traceback printed without our frames), 130 for ^C;
- SIGTERM ends the script as ^C does (status 143) and the report is still
  written;
- non-daemon threads are waited for before the snapshot, as Python's exit
  does;
- a process the script forks never reports (its snapshot is None): only
  the process that started the command writes outputs (``_output.claim``);
- ``os._exit(n)`` called by the script first hands the snapshot to
  ``on_os_exit`` (when given), then exits; if that fails, one line says why
  and the status is 1.
"""

from __future__ import annotations

import os
import signal
import sys

from pymemtrace import _output
from pymemtrace.errors import PymemtraceError, UsageError

__all__ = ["Target", "script_target", "module_target", "callable_target", "run"]

# Globals of the script being run, alive until its snapshot is taken.
_KEEP: list = []

_HERE = os.path.abspath(__file__)


class Target:
    """What to run: ``argv`` (``sys.argv`` of the script) and ``execute(probe)``."""

    __slots__ = ("argv", "execute")

    def __init__(self, argv: list, execute) -> None:
        self.argv = argv
        self.execute = execute


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def script_target(path: str, rest) -> Target:
    """A script file, a directory or a zip file with ``__main__.py``
    (UsageError when there is none)."""
    if not os.path.exists(path):
        raise UsageError(f"can't open file {path!r}: no such file")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "__main__.py")):
        raise UsageError(f"can't find '__main__' module in {path!r}")
    full = os.path.abspath(path)
    if os.path.isdir(full) or not full.endswith((".py", ".pyw")) and _is_zip(full):

        def execute(probe):
            import runpy

            sys.path.insert(0, full)
            probe.start()
            stack_base = probe.stack_base
            stack_base(True)
            try:
                return runpy.run_path(path, run_name="__main__")
            finally:
                stack_base(False)

        return Target([path, *rest], execute)
    try:
        with open(full, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise UsageError(f"can't open file {path!r}: {exc.strerror or exc}") from None

    def execute(probe):
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
            probe.start()
            # Stacks stop at the script's own frames: ours are left out.
            stack_base = probe.stack_base
            stack_base(True)
            try:
                exec(code, main.__dict__)  # noqa: S102 - running the script
            finally:
                stack_base(False)
        finally:
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
        return main.__dict__

    return Target([path, *rest], execute)


def module_target(module: str, rest) -> Target:
    """``python -m module`` (UsageError when it cannot be found)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(f"no module named {module!r}")

    def execute(probe):
        import runpy

        sys.path.insert(0, os.getcwd())
        probe.start()
        stack_base = probe.stack_base
        stack_base(True)
        try:
            return runpy.run_module(module, run_name="__main__", alter_sys=True)
        finally:
            stack_base(False)

    return Target([module, *rest], execute)


def callable_target(spec: str):
    """The function a TARGET names: ``package.module:callable`` or
    ``path/to/file.py:callable`` (``callable`` may be dotted, as in
    ``Class.method``).  Returns ``(function, spec)``.

    A file is imported under its own name, with its folder first on
    ``sys.path`` as ``python file.py`` would have it, so that it may import
    its neighbours.  Every failure is a one-line UsageError (the target
    cannot be found or called) or PymemtraceError (importing it raised).
    """
    import importlib
    import importlib.util

    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise UsageError(f"TARGET {spec!r} must be MODULE:CALLABLE or FILE.py:CALLABLE")
    is_file = where.endswith((".py", ".pyw")) or os.sep in where
    try:
        if is_file:
            if not os.path.isfile(where):
                raise UsageError(f"TARGET {spec!r}: no such file {where!r}")
            full = os.path.abspath(where)
            module_name = os.path.splitext(os.path.basename(full))[0]
            if not module_name.isidentifier():
                module_name = "__pymemtrace_target__"
            if os.path.dirname(full) not in sys.path:
                sys.path.insert(0, os.path.dirname(full))
            loaded = sys.modules.get(module_name)
            if loaded is None or os.path.abspath(getattr(loaded, "__file__", "") or "") != full:
                import_spec = importlib.util.spec_from_file_location(module_name, full)
                if import_spec is None or import_spec.loader is None:
                    raise UsageError(f"TARGET {spec!r}: {where!r} is not a Python file")
                loaded = importlib.util.module_from_spec(import_spec)
                sys.modules[module_name] = loaded
                try:
                    import_spec.loader.exec_module(loaded)
                except BaseException:
                    sys.modules.pop(module_name, None)
                    raise
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                found = importlib.util.find_spec(where)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise UsageError(f"TARGET {spec!r}: no module named {where!r}")
            loaded = importlib.import_module(where)
    except PymemtraceError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the target's own import failed
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PymemtraceError(f"TARGET {spec!r}: importing {where!r} raised {detail}") from None
    found_obj = loaded
    for part in name.split("."):
        try:
            found_obj = getattr(found_obj, part)
        except AttributeError:
            raise UsageError(f"TARGET {spec!r}: {where!r} has no attribute {name!r}") from None
    if not callable(found_obj):
        raise UsageError(f"TARGET {spec!r}: {name!r} is not callable (a {type(found_obj).__name__})")
    return found_obj, spec


class _Terminated(KeyboardInterrupt):
    """SIGTERM during the script: it ends as ^C does, and the report is written."""


def _on_sigterm(signum, frame):
    raise _Terminated


def run(target: Target, probe, *, runner_files=(), on_os_exit=None, prog="pymemtrace run"):
    """Run ``target`` under ``probe``: (exit status, snapshot at exit).

    The snapshot is None in a process the script forked.  ``runner_files``
    are the caller's own files (with this one) whose frames mark memory the
    runner allocated, not the script.  See the module docstring.
    """
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = list(target.argv)
    runner_files = (_HERE, *runner_files)
    status = 0
    result = None
    real_exit = os._exit
    old_term = None

    def exit_hook(code=0):
        if _output.is_owner() and on_os_exit is not None and probe.is_running():
            try:
                snap = probe.snapshot(runner_files)
                probe.stop()
                on_os_exit(snap)
            except Exception as exc:  # noqa: BLE001 - exiting anyway: one line
                why = _output.reason(exc)
                print(f"{prog}: error: the script called os._exit({code}): "
                      f"no report: {why}", file=sys.stderr)
                code = 1  # as when the report fails at a normal exit
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
        real_exit(code)

    try:
        try:
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread: SIGTERM stays as it is
            old_term = None
        os._exit = exit_hook
        try:
            try:
                result = target.execute(probe)
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
                except _Terminated:
                    status = 128 + signal.SIGTERM
                except KeyboardInterrupt:
                    status = 130
        finally:
            os._exit = real_exit
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
        if not _output.is_owner():
            return status, None
        # Memory live at exit: the script's globals (result) are still held.
        if not probe.is_running():
            raise PymemtraceError("the script did not start")
        snap = probe.snapshot(runner_files)
        del result
        _KEEP.clear()
    finally:
        probe.stop()
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
    here = os.path.dirname(_HERE)
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
