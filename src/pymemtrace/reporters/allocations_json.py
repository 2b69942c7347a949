"""Allocation snapshot -> the JSON document of ``pymemtrace run --allocations``.

The contract checked by outside tools (extend, never rename)::

    {"schema": 1, "peak_bytes": int,
     "sites": [{"file": str, "line": int, "function": str,
                "stack": [{"file", "line", "function"}, ...],
                "bytes": int, "blocks": int}, ...],
     "peak_sites": [... same shape ...]}

``sites`` is the memory live at the snapshot (at exit, for the CLI) and
``peak_sites`` the memory live at the peak, both one entry per distinct
stack, sorted by bytes descending.  Extra keys: mode, depth, sample_bytes
(the sampling interval in bytes; null in exact mode), bytes (live total),
stats (the tracker's own figures).
"""

from __future__ import annotations


def _sorted(sites):
    return sorted(sites, key=lambda s: (-s.bytes, -s.blocks, s.stack))


def to_dict(snapshot) -> dict:
    return {
        "schema": 1,
        "peak_bytes": int(snapshot.peak_bytes),
        "sites": [s.to_dict() for s in _sorted(snapshot.sites)],
        "peak_sites": [s.to_dict() for s in _sorted(snapshot.peak_sites)],
        "bytes": int(snapshot.bytes),
        "mode": snapshot.mode,
        "depth": snapshot.depth,
        "sample_bytes": snapshot.sample_bytes if snapshot.mode == "sampled" else None,
        "stats": dict(snapshot.stats),
    }


def render(snapshot, indent=None) -> str:
    import json

    return json.dumps(to_dict(snapshot), indent=indent)
