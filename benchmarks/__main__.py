"""`make bench` / `python -m benchmarks [--only NAME] [--rounds N]`."""
import argparse
import os
import platform
import sys
import time

from benchmarks.harness import discover, format_table, run_all


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Cost of each pymemtrace tool as a ratio to the bare workload.",
        epilog="example:\n  python -m benchmarks --only Profile --rounds 9",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", help="run only tools whose name contains this")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement (>= 5)")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    print(
        f"# {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, {args.rounds} rounds, median ratios"
    )
    all_results = []
    for module, tools in discover().items():
        results = run_all(tools, args.rounds, args.only)
        if results:
            print(f"\n## {module}\n")
            print(format_table(results), flush=True)
            all_results += results
    over = [r for r in all_results if r.verdict == "OVER"]
    return 1 if over and os.environ.get("BENCH_STRICT") else 0


if __name__ == "__main__":
    sys.exit(main())
