"""Errors that end a command with a one-line message instead of a traceback."""


class PymemtraceError(Exception):
    """A failure the user can act on; ``exit_code`` 1 (failure) or 2 (usage)."""

    exit_code = 1


class UsageError(PymemtraceError):
    """The command line asks for something impossible (exit status 2)."""

    exit_code = 2
