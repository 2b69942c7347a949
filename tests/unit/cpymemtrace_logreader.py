"""A minimal reader of cPyMemTrace logs (docs/log_format.md), for tests.

The full analysis is ``pymemtrace report``; this only splits records so
tests can check what the tracers wrote.
"""
import dataclasses
from typing import List, Optional

EVENT_TAGS = ("FRST:", "NEXT:", "PREV:", "LAST:")


def unescape(text):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}.get(text[i + 1], text[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclasses.dataclass
class Record:
    tag: str
    event: int
    d_event: int
    clock: float
    what: str
    file: str
    line: int
    function: str
    mem: int
    d_mem: int
    thread: Optional[int] = None


@dataclasses.dataclass
class Log:
    message: Optional[str]
    comments: List[str]
    header: List[str]
    records: List[Record]
    messages: List[tuple]
    complete: bool
    warnings: List[tuple] = dataclasses.field(default_factory=list)

    def tagged(self, tag):
        return [r for r in self.records if r.tag == tag]


def parse(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", "a log ends with a newline"
    lines = lines[:-1]
    message = None
    if lines and lines[0] != "SOF":
        message = unescape(lines[0])
        lines = lines[1:]
    assert lines[0] == "SOF", lines[:2]
    comments, header, records, messages, warnings = [], None, [], [], []
    complete = False
    for line in lines[1:]:
        if line.startswith("#"):
            comments.append(line)
            continue
        if line == "EOF":
            complete = True
            continue
        assert not complete, "nothing after EOF"
        fields = line.split("\t")
        tag = fields[0]
        if tag == "HDR:":
            header = fields[1:]
        elif tag == "MSG:":
            assert len(fields) == 4, fields
            messages.append((int(fields[1]), float(fields[2]), unescape(fields[3])))
        elif tag == "WARN:":
            assert len(fields) == 4, fields
            warnings.append((int(fields[1]), float(fields[2]), unescape(fields[3])))
        elif tag in EVENT_TAGS:
            assert header is not None, "a record before HDR:"
            assert len(fields) - 1 == len(header), (fields, header)
            assert fields[2].startswith("+")
            records.append(
                Record(
                    tag=tag,
                    event=int(fields[1]),
                    d_event=int(fields[2]),
                    clock=float(fields[3]),
                    what=fields[4],
                    file=unescape(fields[5]),
                    line=int(fields[6]),
                    function=unescape(fields[7]),
                    mem=int(fields[8]),
                    d_mem=int(fields[9]),
                    thread=int(fields[10]) if len(fields) > 10 else None,
                )
            )
        else:
            raise AssertionError(f"unknown record {line!r}")
    return Log(message, comments, header, records, messages, complete, warnings)
