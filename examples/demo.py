"""`make demo`: watch a leaking service grow with pymemtrace.process.

Runs examples/leaky_service.py under ``log_process`` (the C sampler, every
50 ms), labels its phases, prints RSS as it goes, then the per-process
summary table, and writes a JSON Lines log, gnuplot files and an SVG
chart of RSS over time to build/demo/ (paths printed at the end).
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import leaky_service  # noqa: E402

from pymemtrace import process  # noqa: E402

OUTDIR = os.path.join(os.path.dirname(HERE), "build", "demo")


def live_printer():
    """on_record callback: one line at most every 0.5 s, and every label."""
    state = {"first": None, "last_print": 0.0}

    def on_record(event, record):
        rss = record["memory_info"]["rss"]
        if state["first"] is None:
            state["first"] = (record["elapsed_time"], rss)
        now = time.monotonic()
        label = record.get("label")
        if event == "SAMPLE" and label is None and now - state["last_print"] < 0.5:
            return
        state["last_print"] = now
        t0, rss0 = state["first"]
        note = f"  <- {label}" if label else ("  (stop)" if event == "STOP" else "")
        print(f"  {record['elapsed_time'] - t0:5.2f} s  RSS {process.format_bytes(rss):>9}"
              f"  {process.format_bytes(rss - rss0, signed=True):>10}{note}", flush=True)

    return on_record


def main():
    os.makedirs(OUTDIR, exist_ok=True)
    log = os.path.join(OUTDIR, "leaky_service.jsonl")
    print("pymemtrace demo: a service whose response cache never evicts\n")
    print("  time   RSS        growth")
    with process.log_process(interval=0.05, batch=0.25, path=log, label="service start",
                             on_record=live_printer()) as proc:
        cached = leaky_service.serve(seconds=3.0, on_phase=proc.add_message_to_queue)
    print(f"\nthe service kept {cached} responses "
          f"({cached * leaky_service.RESPONSE_SIZE / 2**20:.1f} MiB of bodies)\n")
    print(f"summary of {log}:")
    status = process.summarise_log(log, OUTDIR)
    svg = os.path.join(OUTDIR, f"leaky_service.jsonl_{os.getpid()}.svg")
    print(f"\nRSS chart (open in a browser): {svg}")
    print("the same from the command line:\n"
          "  pymemtrace process -i 0.05 -o run.jsonl --svg run.svg -- "
          "python examples/leaky_service.py\n"
          "  pymemtrace process --summary run.jsonl plots/")
    return status


if __name__ == "__main__":
    sys.exit(main())
