"""Sites -> collapsed stacks for flame graphs (flamegraph.pl, speedscope).

One line per stack, root first, leaf last, then the live bytes::

    script.py:<module>:12;script.py:build:5;script.py:leaf:9 1048576
"""

from __future__ import annotations


def _frame(f) -> str:
    # ';' separates frames and ' ' separates the count: keep both out.
    text = f"{f.file}:{f.function}:{f.line}"
    return text.replace(";", ",").replace("\n", " ")


def render(sites) -> str:
    totals = {}
    for site in sites:
        if site.bytes <= 0:
            continue
        frames = [_frame(f) for f in reversed(site.stack)] or ["<no Python frame>"]
        key = ";".join(frames)
        totals[key] = totals.get(key, 0) + site.bytes
    return "".join(f"{k} {v}\n" for k, v in sorted(totals.items()))
