"""Long synthetic ReferenceTracing logs and allocation snapshots, for the
bounded-memory fault tests of `pymemtrace report` (the Profile kind is in
synthetic_profile_log.py).  Each writer returns what a report must find.
"""
import json

REF_FILE = "/home/user/project/src/app/objects/churning_objects.py"
LEAK_EVERY = 1000  # cycles between two leaked objects


def write_reftrace_log(path, target_bytes):
    """A complete ReferenceTracing log of about target_bytes (format:
    docs/reference_tracing.md).  Each cycle creates four objects of two
    types at two sites and destroys them, reusing addresses, except every
    LEAK_EVERY cycles one app.Leak that stays.  Returns {"cycles", "new",
    "del", "leaked", "size"}."""
    size = 0
    event = 0
    cycle = 0
    leaked = 0
    live = 0
    chunks = []
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        head = ("synthetic reference trace\nSOF\n# pymemtrace ReferenceTracing log, format 1\n"
                "# python: 3.13.0\nHDR:\tEvent\tClock\tAddress\tType\tLive\tFile\t#line\tFunction\n")
        out.write(head)
        size += len(head)
        n_new = n_del = 0
        while size < target_bytes:
            lines = []
            for k in range(4):
                event += 1
                live += 1
                tname = "app.Tmp" if k % 2 else "app.Node"
                lines.append(f"NEW:\t{event}\t{event / 1e6:.6f}\t0x{0x1000 + k * 0x40:x}\t{tname}"
                             f"\t{live}\t{REF_FILE}\t{10 + k}\tchurn\n")
            for k in range(4):
                event += 1
                live -= 1
                tname = "app.Tmp" if k % 2 else "app.Node"
                lines.append(f"DEL:\t{event}\t{event / 1e6:.6f}\t0x{0x1000 + k * 0x40:x}\t{tname}"
                             f"\t{live}\t{REF_FILE}\t20\tchurn\n")
            n_new += 4
            n_del += 4
            if cycle % LEAK_EVERY == 0:
                event += 1
                live += 1
                leaked += 1
                n_new += 1
                lines.append(f"NEW:\t{event}\t{event / 1e6:.6f}\t0x{0x7f0000000000 + leaked * 0x40:x}"
                             f"\tapp.Leak\t{live}\t{REF_FILE}\t30\tleak\n")
            chunk = "".join(lines)
            chunks.append(chunk)
            size += len(chunk)
            cycle += 1
            if len(chunks) >= 2000:
                out.write("".join(chunks))
                chunks = []
        chunks.append(f"END:\t{event}\t{event / 1e6:.6f}\t{n_new}\t{n_del}\t0\t0\t{live}\nEOF\n")
        out.write("".join(chunks))
    return {"cycles": cycle, "new": n_new, "del": n_del, "leaked": leaked, "size": size}


SNAP_FILE = "/home/user/project/src/app/handlers/request_handler.py"
LINES = 50  # distinct lines of the innermost frames


def write_snapshot(path, target_bytes):
    """A saved allocation snapshot of about target_bytes, as
    AllocationSnapshot.save writes it (one line of JSON): many distinct
    stacks, their innermost frames on LINES lines.  Returns {"sites",
    "bytes", "by_line": {line: bytes}, "size"}."""
    by_line = {}
    total = 0
    n = 0
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        head = '{"schema": 1, "peak_bytes": 0, "sites": ['
        out.write(head)
        size += len(head)
        pieces = []
        while size < target_bytes:
            line = 100 + n % LINES
            stack = [{"file": SNAP_FILE, "line": line, "function": "handle"}] + [
                {"file": SNAP_FILE, "line": 1000 + (n >> shift) % 7, "function": f"caller{shift}"}
                for shift in range(0, 24, 3)
            ]
            nbytes = 1000 + n % 997
            site = {"file": SNAP_FILE, "line": line, "function": "handle", "stack": stack,
                    "bytes": nbytes, "blocks": 1}
            text = ("" if n == 0 else ", ") + json.dumps(site)
            pieces.append(text)
            size += len(text)
            by_line[line] = by_line.get(line, 0) + nbytes
            total += nbytes
            n += 1
            if len(pieces) >= 2000:
                out.write("".join(pieces))
                pieces = []
        tail = (f'], "peak_sites": [], "bytes": {total}, "mode": "exact", "depth": 16,'
                ' "sample_bytes": null, "stats": {}}\n')
        pieces.append(tail)
        out.write("".join(pieces))
        size += len(tail)
    return {"sites": n, "bytes": total, "by_line": by_line, "size": size}
