"""`pymemtrace tree`: watch the memory of a process and all its children.

The options, the run loop and the output are those of
``python -m pymemtrace.process_tree`` (:mod:`pymemtrace.process_tree`);
this module only plugs them into the ``pymemtrace`` command.
"""
from __future__ import annotations

import argparse

from pymemtrace import process_tree


class Command:
    help = "watch the memory of a process and of every process it starts"
    example = process_tree.EXAMPLE.strip()

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        process_tree.add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        return process_tree.run(args)
