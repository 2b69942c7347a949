"""rss(): the kept-open /proc/self/statm read against the seed's fopen/fscanf."""
from benchmarks.harness import Pair
from pymemtrace import _native

TOOLS = [
    Pair(
        name="rss() vs fopen/fscanf/fclose",
        baseline=_native._rss_slow,
        candidate=_native.rss,
        calls=20_000,
        target=0.25,
    ),
]
