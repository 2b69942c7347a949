"""`pymemtrace tree`: placeholder until its issue lands."""
from pymemtrace.errors import PymemtraceError


class Command:
    help = "not yet available"
    example = "pymemtrace tree --help"

    def prepare_parser(self, parser):
        pass

    def run(self, args):
        raise PymemtraceError("tree is not available yet")
