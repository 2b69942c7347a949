"""`make demo`: watch a leaking service grow with pymemtrace.process.

Runs examples/leaky_service.py under ``log_process`` (the C sampler, every
50 ms), labels its phases, prints RSS as it goes, then the per-process
summary table, and writes a JSON Lines log, gnuplot files and an SVG
chart of RSS over time to build/demo/ (paths printed at the end).  Then one
more second of service under the allocation tracker names the line that
holds the memory and draws a flame graph of it.
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
    where_it_stays()
    hunt_it()
    return status


def where_it_stays():
    """The next step: which lines hold the memory (the allocation tracker)."""
    from pymemtrace import allocations

    print("\nwhich lines hold it: one more second of service under the "
          "allocation tracker")
    with allocations.tracking(mode="exact", depth=16) as tracked:
        leaky_service.serve(seconds=1.0, warmup=0.2)
    snap = tracked.snapshot
    for site in [s for s in snap.top(3) if s.bytes >= 1024]:
        print(f"  {process.format_bytes(site.bytes):>9}  "
              f"{os.path.relpath(site.file)}:{site.line} ({site.function})")
    flame = os.path.join(OUTDIR, "leaky_service_flame.svg")
    with open(flame, "w", encoding="utf-8") as stream:
        stream.write(snap.to_flamegraph(title="leaky_service: memory live after 1 s"))
    print(f"flame graph of the live memory: {flame}")
    print("the same from the command line:\n"
          "  pymemtrace run --allocations --flamegraph flame.svg examples/leaky_service.py")


def hunt_it():
    """The last step: state the leak (frequency, severity, culprit, holder)
    with the hunt, on one request handler."""
    import pymemtrace
    import leaky_handler

    print("\nis it a leak, how often, how badly, who holds it: the hunt of one "
          "request handler\n")
    result = pymemtrace.hunt(leaky_handler.one_request, iterations=500, progress=False,
                             target="examples/leaky_handler.py:one_request")
    print(result.to_text())
    print("the same from the command line:\n"
          "  pymemtrace hunt examples/leaky_handler.py:one_request --iterations 500\n"
          "and as a test that fails until the leak is fixed (pytest plugin):\n"
          "  @pytest.mark.no_leaks(iterations=500)\n"
          "  def test_handler():\n"
          "      leaky_handler.one_request()")


if __name__ == "__main__":
    sys.exit(main())
