"""The one child runner: spawn a command, pass signals on, report its status.

Every subcommand that runs a command (``process``, ``tree``; later
``objects``, ``hunt``, ``native``) starts it through :class:`Child`::

    with Child.start(argv) as child:      # ChildError: 127 not found, 126 cannot run
        with child.forwarding():          # SIGTERM to us goes on to the command
            status = child.wait_through_interrupts()
    return status                         # the command's exit status, shell style

Exit status, as a shell reports it (what the subcommand returns):

- the command's own exit status when it exits;
- ``128 + N`` when it is killed by signal N (SIGTERM: 143, SIGINT: 130);
- 127 when the command is not found, 126 when it cannot be run (not
  executable, a directory, permission denied); :class:`ChildError` carries
  that code and a one-line message;
- the caller's own failures stay 1 (runtime error) and 2 (usage); they
  are not this module's business.

Signals: the command runs in our process group, so a Ctrl-C at the
terminal reaches it without our help. A SIGINT sent to us alone does not:
:meth:`Child.wait_through_interrupts` gives the command ``grace`` seconds
to end after our first SIGINT, then passes SIGINT on; a second SIGINT sends
SIGTERM, a third SIGKILL. SIGTERM to us is passed on at once while
:meth:`Child.forwarding` is active. Leaving the ``with Child.start(...)``
block never leaves the command running: it is sent SIGTERM, given
``STOP_GRACE`` seconds, then killed, and always reaped (no zombie, no
orphan).
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from typing import Iterator, Optional, Sequence

from pymemtrace.errors import PymemtraceError

#: Exit status when the command is not found (as sh).
NOT_FOUND = 127
#: Exit status when the command exists but cannot be run (as sh).
NOT_EXECUTABLE = 126
#: Seconds a command gets to end after SIGTERM before SIGKILL.
STOP_GRACE = 5.0


class ChildError(PymemtraceError):
    """The command could not be started; ``exit_code`` is 127 or 126."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_status(returncode: int) -> int:
    """``subprocess`` return code -> shell exit status (-N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class Child:
    """A running command. Create it with :meth:`start`."""

    def __init__(self, popen: subprocess.Popen, argv: Sequence[str]) -> None:
        self.popen = popen
        self.argv = list(argv)

    @classmethod
    def start(cls, argv: Sequence[str], **popen_kwargs) -> "Child":
        """Spawn ``argv``; :class:`ChildError` (127/126) when it cannot be run."""
        argv = list(argv)
        if not argv:
            raise ChildError("no command given", 2)
        try:
            popen = subprocess.Popen(argv, **popen_kwargs)
        except FileNotFoundError:
            raise ChildError(f"command not found: {argv[0]}", NOT_FOUND) from None
        except OSError as exc:  # EACCES, EISDIR, ENOEXEC ...
            raise ChildError(f"cannot run {argv[0]}: {_reason(exc)}", NOT_EXECUTABLE) from None
        return cls(popen, argv)

    # -- state --------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> Optional[int]:
        """The raw return code (negative: killed by that signal), None while running."""
        return self.popen.poll()

    @property
    def exit_code(self) -> Optional[int]:
        """Shell-style exit status once it has ended (see the module doc), else None."""
        code = self.popen.returncode
        return None if code is None else exit_status(code)

    # -- signals ------------------------------------------------------------

    def forward(self, signum: int) -> None:
        """Send ``signum`` to the command if it still runs."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    @contextlib.contextmanager
    def forwarding(self, signals: Sequence[int] = (signal.SIGTERM,)) -> Iterator["Child"]:
        """While active, ``signals`` sent to us go on to the command.

        Handlers can be set only in the main thread; elsewhere this does
        nothing (the caller then relies on :meth:`stop`).
        """
        saved = []
        if _in_main_thread():
            for signum in signals:
                saved.append((signum, signal.signal(
                    signum, lambda number, frame: self.forward(number))))
        try:
            yield self
        finally:
            for signum, handler in reversed(saved):
                signal.signal(signum, handler)

    # -- waiting ------------------------------------------------------------

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the command; its shell-style exit status.

        ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
        """
        return exit_status(self.popen.wait(timeout))

    def wait_through_interrupts(self, grace: float = 1.0) -> int:
        """Wait for the command, whatever KeyboardInterrupts arrive meanwhile.

        First SIGINT: the command has ``grace`` seconds to end (a terminal
        Ctrl-C reached it too), then SIGINT is passed on; second: SIGTERM;
        third and later: SIGKILL. Returns its shell-style exit status.
        """
        interrupts = 0
        forwarded = False
        while True:
            try:
                if interrupts == 1 and not forwarded:
                    try:
                        return self.wait(grace)
                    except subprocess.TimeoutExpired:
                        forwarded = True
                        self.forward(signal.SIGINT)
                return self.wait()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 2:
                    self.forward(signal.SIGTERM)
                elif interrupts >= 3:
                    self.forward(signal.SIGKILL)

    def stop(self, signum: Optional[int] = signal.SIGTERM, grace: float = STOP_GRACE) -> int:
        """End the command: ``signum`` (None: none), ``grace`` seconds, then SIGKILL.

        Always reaps it; returns its shell-style exit status.
        """
        try:
            if signum is not None:
                self.forward(signum)
            return self.wait(grace)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            self.forward(signal.SIGKILL)
            return self.wait()

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.popen.poll() is None:
            self.stop()
