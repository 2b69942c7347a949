"""Sites -> a gzip-compressed pprof profile (profile.proto), hand-encoded.

Two sample types: inuse_space (bytes) and inuse_objects (count).  Each site
is one sample whose locations run leaf first, as pprof expects; a location
is one (file, function, line) and a function one (file, function).
Readable with ``go tool pprof`` and speedscope.
"""

from __future__ import annotations

import gzip


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value) if value else b""


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _packed(field: int, values) -> bytes:
    return _bytes(field, b"".join(_varint(v) for v in values))


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.table)
            self.table.append(text)
        return i


def encode(sites) -> bytes:
    """The uncompressed Profile message."""
    strings = _Strings()
    functions: dict[tuple[str, str], int] = {}
    locations: dict[tuple[str, str, int], int] = {}
    out = bytearray()
    for type_, unit in (("inuse_space", "bytes"), ("inuse_objects", "count")):
        out += _bytes(1, _int(1, strings(type_)) + _int(2, strings(unit)))
    samples = bytearray()
    for site in sites:
        ids = []
        for f in site.stack:
            loc = locations.get((f.file, f.function, f.line))
            if loc is None:
                functions.setdefault((f.file, f.function), len(functions) + 1)
                loc = locations[(f.file, f.function, f.line)] = len(locations) + 1
            ids.append(loc)
        samples += _bytes(2, _packed(1, ids) + _packed(2, [site.bytes, site.blocks]))
    out += samples
    for (file, function, line), loc in locations.items():
        fid = functions[(file, function)]
        line_msg = _int(1, fid) + _int(2, line)
        out += _bytes(4, _int(1, loc) + _bytes(4, line_msg))
    for (file, function), fid in functions.items():
        name = strings(function or "<module>")
        out += _bytes(
            5, _int(1, fid) + _int(2, name) + _int(3, name) + _int(4, strings(file))
        )
    for text in strings.table:
        out += _bytes(6, text.encode("utf-8", "surrogatepass"))
    # period_type and period: bytes, 1
    out += _bytes(
        11, _int(1, strings.index["inuse_space"]) + _int(2, strings.index["bytes"])
    )
    out += _int(12, 1)
    return bytes(out)


def render(sites) -> bytes:
    """gzip-compressed profile, what ``go tool pprof`` reads."""
    return gzip.compress(encode(sites), mtime=0)
