"""Function names for native return addresses, offline, in pure Python.

An address is placed in its mapping (the capture's copy of
/proc/PID/maps), turned into a file offset, then into the file's virtual
address through its PT_LOAD program headers, and looked up in the ELF
symbol tables (.symtab when the file is not stripped, else .dynsym).  ELF64
little-endian only (x86-64, arm64); anything else gives no name.

Source lines come from the files' DWARF line tables through binutils'
``addr2line`` (one run per file for all of its addresses), C++ names are
demangled by it or by ``c++filt``; without binutils, or without debug
information, ``file`` and ``line`` stay None and names stay as linked.
"""
from __future__ import annotations

import bisect
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pymemtrace.snapshots.native import Mapping

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
PT_LOAD = 1
SHT_SYMTAB = 2
SHT_DYNSYM = 11
STT_FUNC = 2
STT_GNU_IFUNC = 10


@dataclass(frozen=True)
class Symbolized:
    function: Optional[str]  # None when no symbol covers the address
    library: Optional[str]  # the mapped file, None outside any file
    offset: int  # the address in the file's own virtual addresses


class ElfSymbols:
    """The function symbols and load segments of one ELF file."""

    def __init__(self, path: str) -> None:
        self.loads: List[Tuple[int, int, int]] = []  # (p_offset, p_filesz, p_vaddr)
        self.starts: List[int] = []
        self.entries: List[Tuple[int, int, str]] = []  # (value, size, name)
        try:
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError:
            return
        if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            return
        try:
            self._parse(data)
        except (struct.error, IndexError, UnicodeDecodeError):
            self.loads, self.starts, self.entries = [], [], []

    def _parse(self, data: bytes) -> None:
        (_ident, _type, _machine, _version, _entry, phoff, shoff, _flags, _ehsize,
         phentsize, phnum, shentsize, shnum, _shstrndx) = _EHDR.unpack_from(data, 0)
        for i in range(phnum):
            p_type, _f, p_offset, p_vaddr, _pa, p_filesz, _memsz, _al = _PHDR.unpack_from(data, phoff + i * phentsize)
            if p_type == PT_LOAD:
                self.loads.append((p_offset, p_filesz, p_vaddr))
        sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)] if shoff else []
        tables = [s for s in sections if s[1] == SHT_SYMTAB] or [s for s in sections if s[1] == SHT_DYNSYM]
        funcs: Dict[int, Tuple[int, str]] = {}
        for sec in tables:
            _name, _t, _fl, _addr, off, size, link, _info, _align, entsize = sec
            strtab = sections[link]
            str_off = strtab[4]
            entsize = entsize or _SYM.size
            for pos in range(off, off + size - entsize + 1, entsize):
                st_name, st_info, _other, shndx, value, sym_size = _SYM.unpack_from(data, pos)
                if (st_info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC) or value == 0 or shndx == 0:
                    continue
                end = data.index(b"\0", str_off + st_name)
                name = data[str_off + st_name : end].decode("utf-8", "replace")
                if value not in funcs or (funcs[value][0] == 0 and sym_size):
                    funcs[value] = (sym_size, name)
        self.entries = sorted((value, size, name) for value, (size, name) in funcs.items())
        self.starts = [entry[0] for entry in self.entries]

    def vaddr_of(self, file_offset: int) -> Optional[int]:
        for p_offset, p_filesz, p_vaddr in self.loads:
            if p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
        return None

    def function_at(self, vaddr: int) -> Optional[str]:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        value, size, name = self.entries[i]
        if size and vaddr >= value + size:
            return None
        return name


class Symbolizer:
    """Names return addresses of one process (its maps), caching ELF files."""

    def __init__(self, cache: Optional[Dict[str, ElfSymbols]] = None) -> None:
        self._files: Dict[str, ElfSymbols] = cache if cache is not None else {}

    def _elf(self, path: str) -> ElfSymbols:
        elf = self._files.get(path)
        if elf is None:
            elf = self._files[path] = ElfSymbols(path)
        return elf

    def symbolize(self, address: int, maps: Sequence[Mapping], starts: Sequence[int]) -> Symbolized:
        """``address`` is a return address: the call is the byte before it."""
        target = address - 1 if address else address
        i = bisect.bisect_right(starts, target) - 1
        if i < 0 or target >= maps[i].end:
            return Symbolized(None, None, target)
        mapping = maps[i]
        if not mapping.path.startswith("/"):
            return Symbolized(None, mapping.path or None, target)
        library = mapping.path
        if library.endswith(" (deleted)") or not os.path.isfile(library):
            return Symbolized(None, library, target - mapping.start + mapping.offset)
        elf = self._elf(library)
        file_offset = target - mapping.start + mapping.offset
        vaddr = elf.vaddr_of(file_offset)
        if vaddr is None:
            return Symbolized(None, library, file_offset)
        return Symbolized(elf.function_at(vaddr), library, vaddr)


#: Seconds one addr2line or c++filt run may take before its answer is
#: dropped (the report is then without lines, never stuck).
TOOL_TIMEOUT = 120


@dataclass(frozen=True)
class SourceLine:
    file: str
    line: int
    function: Optional[str]  # demangled, None when addr2line has no name


def _run_tool(argv: List[str], text: str) -> Optional[str]:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *argv[1:]], input=text, capture_output=True, text=True,
                              errors="replace", timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _is_address_line(text: str) -> bool:
    return text.startswith("0x") and all(c in "0123456789abcdef" for c in text[2:])


def _parse_addr2line(out: str) -> Dict[int, SourceLine]:
    """``addr2line -a -f -C -i`` output: per address its line, then pairs of
    (function, file:line) from the innermost inlined function out.  The
    last pair is the function the symbol table names, at the line that
    holds the address (the call into the inlined code, when there is one)."""
    found: Dict[int, SourceLine] = {}
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        if not _is_address_line(lines[i]):
            i += 1
            continue
        address = int(lines[i], 16)
        i += 1
        pairs = []
        while i + 1 < len(lines) and not _is_address_line(lines[i]):
            pairs.append((lines[i], lines[i + 1]))
            i += 2
        if not pairs:
            continue
        function, place = pairs[-1]
        file, _, line = place.rpartition(":")
        line = line.split(" ", 1)[0]
        if file and file != "??" and line.isdigit() and int(line) > 0:
            found[address] = SourceLine(file, int(line), None if function == "??" else function)
    return found


class SourceLines:
    """File, line and demangled name of addresses, by ELF file, cached."""

    def __init__(self) -> None:
        self._lines: Dict[Tuple[str, int], Optional[SourceLine]] = {}
        self._names: Dict[str, str] = {}

    def resolve(self, wanted: Dict[str, Iterable[int]]) -> None:
        """Look up, one addr2line run per file, the addresses not seen yet."""
        for path, vaddrs in wanted.items():
            todo = sorted({v for v in vaddrs if (path, v) not in self._lines})
            if not todo:
                continue
            out = _run_tool(["addr2line", "-a", "-f", "-C", "-i", "-e", path], "\n".join(f"{v:#x}" for v in todo))
            found = _parse_addr2line(out) if out else {}
            for v in todo:
                self._lines[(path, v)] = found.get(v)

    def at(self, path: str, vaddr: int) -> Optional[SourceLine]:
        return self._lines.get((path, vaddr))

    def demangle(self, names: Iterable[str]) -> None:
        """Demangle C++ symbol names (``_Z...``) not seen yet, in one run."""
        todo = sorted({n for n in names if n.startswith("_Z") and n not in self._names})
        if not todo:
            return
        out = _run_tool(["c++filt"], "\n".join(todo))
        shown = out.splitlines() if out else []
        if len(shown) != len(todo):
            shown = todo
        self._names.update(zip(todo, shown))

    def name(self, symbol: str) -> str:
        return self._names.get(symbol, symbol)
