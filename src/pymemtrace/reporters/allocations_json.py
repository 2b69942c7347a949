"""Allocation snapshot -> the JSON document of ``pymemtrace run --allocations``.

The document and its contract live with the snapshot
(:mod:`pymemtrace.snapshots.allocations`, docs/allocations.md): this
module only serialises it, whole or streamed.
"""

from __future__ import annotations

from pymemtrace.snapshots.allocations import to_dict

__all__ = ["render", "to_dict"]


def render(snapshot, indent=None) -> str:
    import json

    return json.dumps(to_dict(snapshot), indent=indent)


def write_stream(header: dict, items, write) -> None:
    """The document of a snapshot read one site at a time: ``header`` has
    its scalar fields, ``items`` yields ``("site" | "peak_site", Site)`` (and
    anything else, ignored) as :func:`pymemtrace.snapshots.allocations.iter_file`
    does.  Sites keep the order of ``items`` (``save`` writes them largest
    first); ``write`` gets the text piece by piece, one site per line.
    """
    import json

    scalars = {
        "schema": 1,
        "peak_bytes": int(header["peak_bytes"]),
        "bytes": int(header["bytes"]),
        "mode": header["mode"],
        "depth": header["depth"],
        "sample_bytes": header["sample_bytes"] if header["mode"] == "sampled" else None,
        "stats": dict(header["stats"]),
    }
    write(json.dumps(scalars)[:-1])
    keys = {"site": "sites", "peak_site": "peak_sites"}
    written = set()
    current = None
    for tag, site in items:
        key = keys.get(tag)
        if key is None:
            continue
        if key != current:
            write(("]" if current else "") + f',\n "{key}": [\n  ')
            written.add(key)
            current = key
        else:
            write(",\n  ")
        write(json.dumps(site.to_dict()))
    if current:
        write("]")
    for key in ("sites", "peak_sites"):
        if key not in written:
            write(f',\n "{key}": []')
    write("}\n")
