"""Long synthetic Profile logs in the format the C writer produces
(docs/log_format.md; src/pymemtrace/_c/tracer_record.c), for the
bounded-memory fault tests of `pymemtrace report` (tests/faults/test_report_faults.py).

Each cycle: a churner rises 5 MB and gives it back, then a leaker keeps
100 KB on one of four lines (a different line from one cycle to the next,
so the stack of unmatched rises grows by one entry per cycle).
"""
import os

CHURN_BYTES = 5_000_000
LEAK_BYTES = 100_000
LEAK_LINES = 4
CHURN_FILE = "/home/user/project/src/app/cache/churning_module.py"
LEAK_FILE = "/home/user/project/src/app/registry/leaking_module.py"
BASE = 50_000_000


def write_log(path, target_bytes):
    """Write a complete log of about target_bytes; returns what a report of
    it must find: {"cycles", "retained": {(file, line, function): bytes},
    "churn": {...}, "first", "last", "peak", "records"}."""
    lines_out = []
    size = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        head = (
            "synthetic: churn and leak\nSOF\n# tracer: Profile\n# measure: rss\n"
            "# d_rss_trigger: 4096\n# python: 3.11.7\n# pid: 4242\n"
            "HDR:\tEvent\tdEvent\tClock\tWhat\tFile\t#line\tFunction\tRSS\tdRSS\n"
            f"FRST:\t0\t+0\t0.000001\tCALL\t{LEAK_FILE}\t1\tmain\t{BASE}\t0\n"
        )
        out.write(head)
        size += len(head)
        mem = BASE
        ref_event = 0
        event = 0
        cycle = 0
        records = 1
        peak = BASE
        while size < target_bytes:
            clock = event / 1e6
            line = 21 + cycle % LEAK_LINES
            e1, e2, e3, e4, e5 = event + 4, event + 5, event + 9, event + 13, event + 14
            high = mem + CHURN_BYTES
            after = mem + LEAK_BYTES
            chunk = (
                f"PREV:\t{e1}\t+{e1 - ref_event}\t{clock:.6f}\tLINE\t{CHURN_FILE}\t10\tchurn\t{mem}\t+0\n"
                f"NEXT:\t{e2}\t+{e2 - ref_event}\t{clock:.6f}\tRETURN\t{CHURN_FILE}\t12\tchurn\t{high}\t+{CHURN_BYTES}\n"
                f"NEXT:\t{e3}\t+{e3 - e2}\t{clock:.6f}\tRETURN\t{CHURN_FILE}\t14\tchurn_free\t{mem}\t-{CHURN_BYTES}\n"
                f"PREV:\t{e4}\t+{e4 - e3}\t{clock:.6f}\tLINE\t{LEAK_FILE}\t20\tleak\t{mem}\t+0\n"
                f"NEXT:\t{e5}\t+{e5 - e3}\t{clock:.6f}\tRETURN\t{LEAK_FILE}\t{line}\tleak\t{after}\t+{LEAK_BYTES}\n"
            )
            lines_out.append(chunk)
            size += len(chunk)
            records += 5
            peak = max(peak, high)
            mem = after
            ref_event = e5
            event = e5 + 1
            cycle += 1
            if len(lines_out) >= 2000:
                out.write("".join(lines_out))
                lines_out = []
        tail = f"LAST:\t{event}\t+{event - ref_event}\t{event / 1e6:.6f}\tRETURN\t{LEAK_FILE}\t2\tmain\t{mem}\t0\nEOF\n"
        lines_out.append(tail)
        out.write("".join(lines_out))
        records += 1
    retained = {}
    for n in range(cycle):
        key = (LEAK_FILE, 21 + n % LEAK_LINES, "leak")
        retained[key] = retained.get(key, 0) + LEAK_BYTES
    return {
        "cycles": cycle,
        "retained": retained,
        "churn": {(CHURN_FILE, 12, "churn"): cycle * CHURN_BYTES},
        "first": BASE,
        "last": mem,
        "peak": peak,
        "records": records,
        "size": os.path.getsize(path),
    }
