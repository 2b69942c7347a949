"""The one byte formatter every reporter uses."""

from __future__ import annotations

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(value: float, signed: bool = False) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``signed=True`` gives ``'+1.5 KiB'`` / ``'+0 B'``.

    Binary units, the largest one below the value; bytes as a whole number,
    larger units with one decimal.  A negative value always keeps its sign.
    """
    if value < 0:
        sign = "-"
    elif signed:
        sign = "+"
    else:
        sign = ""
    size = abs(float(value))
    for unit in BYTE_UNITS:
        if size < 1024 or unit == BYTE_UNITS[-1]:
            if unit == "B":
                return f"{sign}{size:.0f} B"
            return f"{sign}{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
