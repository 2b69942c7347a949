"""`pymemtrace process`: placeholder until its issue lands."""
from pymemtrace.errors import PymemtraceError


class Command:
    help = "not yet available"
    example = "pymemtrace process --help"

    def prepare_parser(self, parser):
        pass

    def run(self, args):
        raise PymemtraceError("process is not available yet")
