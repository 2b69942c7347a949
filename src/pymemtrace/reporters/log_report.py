"""Text and JSON reports of cPyMemTrace logs (Profile/Trace and
ReferenceTracing).  Pure functions from the analyses in pymemtrace.analyses
to strings; JSON documents carry ``"schema": 1``.
"""
from __future__ import annotations

import json
import os
from typing import List, Sequence

from pymemtrace.analyses.profile import ProfileAnalysis
from pymemtrace.analyses.reftrace import RefTraceAnalysis
from pymemtrace.reporters._units import format_bytes
from pymemtrace.snapshots.logtext import escape

SCHEMA = 1
BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """Values squeezed into width columns of block characters (max per column)."""
    if not values:
        return ""
    if len(values) > width:
        per = len(values) / width
        columns = [max(values[int(i * per): max(int((i + 1) * per), int(i * per) + 1)]) for i in range(width)]
    else:
        columns = list(values)
    low, high = min(columns), max(columns)
    if high == low:
        return BLOCKS[0] * len(columns)
    scale = (len(BLOCKS) - 1) / (high - low)
    return "".join(BLOCKS[int(round((v - low) * scale))] for v in columns)


def _signed_bytes(value: int) -> str:
    """``+1.5 KiB``, ``-3 B``; zero without a sign."""
    return format_bytes(value, signed=value != 0)


def _table(header: Sequence[str], rows: List[Sequence[str]], right: Sequence[int] = ()) -> List[str]:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = []
    for n, row in enumerate([list(header)] + [list(r) for r in rows]):
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


# --------------------------------------------------------------------------
# Profile / Trace


def profile_text(analysis: ProfileAnalysis, top: int = 10) -> str:
    log = analysis.log
    measure = log.measure
    out = [f"pymemtrace report: {log.path}", f"  log: {log.kind} ({measure})"]
    if log.message:
        out.append(f"  message: {log.message}")
    status = "complete" if log.complete else "TRUNCATED (no EOF: the process may have been killed)"
    out.append(f"  {status}; {analysis.n_records} records, {analysis.events} events, {analysis.duration:.3f} s")
    if analysis.first_mem is not None:
        out.append(
            f"  {measure}: first {format_bytes(analysis.first_mem)}, last {format_bytes(analysis.last_mem)}, "
            f"peak {format_bytes(analysis.peak_mem)} "
            f"(net {_signed_bytes(analysis.last_mem - analysis.first_mem)})"
        )
    out.append("")
    out.append(f"Timeline ({measure} over events):")
    values = [mem for _, _, mem in analysis.timeline]
    if values:
        out.append("  " + sparkline(values))
        out.append(f"  event {analysis.timeline[0][0]} .. {analysis.timeline[-1][0]}, "
                   f"{format_bytes(min(values))} .. {format_bytes(max(values))}")
    else:
        out.append("  (no records)")
    out.append("")
    out.append(f"Still held at the end, by line (top {top}; each fall cancels the most recent rises first):")
    if analysis.retained:
        rows = [[format_bytes(t.bytes), f"{t.file}:{t.line}", t.function] for t in analysis.retained[:top]]
        out += _table(["held", "line", "function"], rows, right=(0,))
    else:
        out.append("  (nothing: every rise was given back)")
    if analysis.released:
        out.append(f"  released {format_bytes(analysis.released)} held before the log started")
    out.append("")
    out.append(f"Given back later (churn: rises cancelled by later falls), by line (top {top}):")
    if analysis.churn:
        rows = [[format_bytes(t.bytes), f"{t.file}:{t.line}", t.function] for t in analysis.churn[:top]]
        out += _table(["churn", "line", "function"], rows, right=(0,))
    else:
        out.append("  (none)")
    out.append("")
    out.append(f"Largest growth events (top {top}):")
    growths = analysis.top_growths(top)
    if growths:
        rows = []
        for g in growths:
            since = f"{g.before.what} {g.before.location}" if g.before else "-"
            mark = " ~" if g.approximate else ""
            rows.append([str(g.record.event), _signed_bytes(g.d_rss), g.record.what,
                         g.charged.location + mark, since])
        out += _table(["event", "dRSS", "what", "charged to", "since (event before)"], rows, right=(0, 1))
        if any(g.approximate for g in growths):
            out.append("  ~ approximate: the code that ran before this event was not recorded")
    else:
        out.append("  (none)")
    out.append("")
    out.append(f"Functions ranked by memory growth (top {top}):")
    if analysis.functions:
        rows = [[_signed_bytes(t.growth), str(t.jumps), t.function, t.file] for t in analysis.functions[:top]]
        out += _table(["growth", "jumps", "function", "file"], rows, right=(0, 1))
    else:
        out.append("  (no growth recorded)")
    out.append("")
    out.append(f"Lines ranked by memory growth (top {top}):")
    if analysis.lines:
        rows = [[_signed_bytes(t.growth), str(t.jumps), f"{t.file}:{t.line}", t.function] for t in analysis.lines[:top]]
        out += _table(["growth", "jumps", "line", "function"], rows, right=(0, 1))
    else:
        out.append("  (no growth recorded)")
    if log.messages:
        out.append("")
        out.append("Messages:")
        for m in log.messages:
            out.append(f"  event {m.event} at {m.clock:.6f} s: {escape(m.text)}")
        if log.messages_dropped:
            out.append(f"  ... {log.messages_dropped} more messages not shown")
    return "\n".join(out)


def profile_json(analysis: ProfileAnalysis, top: int = 10) -> str:
    log = analysis.log

    def site(t):
        return {"file": t.file, "line": t.line, "function": t.function, "growth": t.growth,
                "shrink": t.shrink, "jumps": t.jumps}

    def held(t):
        return {"file": t.file, "line": t.line, "function": t.function, "bytes": t.bytes}

    def rec(r):
        if r is None:
            return None
        return {"tag": r.tag, "event": r.event, "clock": r.clock, "what": r.what, "file": r.file,
                "line": r.line, "function": r.function, "rss": r.rss, "d_rss": r.d_rss, "thread": r.thread}

    doc = {
        "schema": SCHEMA,
        "kind": "profile",
        "path": log.path,
        "tracer": log.meta.get("tracer"),
        "measure": log.measure,
        "message": log.message,
        "complete": log.complete,
        "truncated_line": log.truncated_line,
        "records": analysis.n_records,
        "events": analysis.events,
        "duration": analysis.duration,
        "first": analysis.first_mem,
        "last": analysis.last_mem,
        "peak": analysis.peak_mem,
        "functions": [site(t) for t in analysis.functions[:top]],
        "lines": [site(t) for t in analysis.lines[:top]],
        "top_growths": [
            {"record": rec(g.record), "before": rec(g.before), "charged": rec(g.charged),
             "approximate": g.approximate}
            for g in analysis.top_growths(top)
        ],
        "timeline": [{"event": e, "clock": c, "value": v} for e, c, v in analysis.timeline],
        "messages": [{"event": m.event, "clock": m.clock, "text": m.text} for m in log.messages],
        "retained": [held(t) for t in analysis.retained[:top]],
        "churn": [held(t) for t in analysis.churn[:top]],
        "released": analysis.released,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def profile_svg(analysis: ProfileAnalysis) -> str:
    from pymemtrace.reporters.svg_chart import timeline_svg

    measure = analysis.log.measure
    return timeline_svg(
        [(e, v) for e, _, v in analysis.timeline],
        title=f"{measure} over events: {analysis.log.path}",
        y_label=measure,
    )


# --------------------------------------------------------------------------
# ReferenceTracing


def ref_trace_text(analysis: RefTraceAnalysis, top: int = 10, full_path: bool = True) -> str:
    out = [f"pymemtrace report: {analysis.path}", "  log: ReferenceTracing"]
    if analysis.message:
        out.append(f"  message: {analysis.message}")
    status = "complete" if analysis.complete else "TRUNCATED (no EOF: the process may have been killed)"
    out.append(
        f"  {status}; {analysis.n_new} NEW, {analysis.n_del} DEL ({analysis.n_inferred} inferred), "
        f"{analysis.last_event} events, {analysis.last_clock:.3f} s"
    )
    for note in analysis.warnings:
        out.append(f"  WARNING at event {note.event}: {note.text}")
    if "warning" in analysis.meta:
        out.append(f"  note: {analysis.meta['warning']}")
    out.append("")
    out.append("Live objects over events:")
    values = [live for _, _, live in analysis.timeline]
    if values:
        out.append("  " + sparkline(values))
        out.append(f"  {min(values)} .. {max(values)} live, {values[-1]} at the end")
    else:
        out.append("  (no records)")
    out.append("")
    grown = analysis.growing_types()
    out.append(f"Types with net live growth (NEW - DEL), top {top}:")
    if grown:
        rows = [[f"+{t.live}", str(t.created), str(t.destroyed), t.name] for t in grown[:top]]
        out += _table(["live", "created", "destroyed", "type"], rows, right=(0, 1, 2))
    else:
        out.append("  (none: every object created while tracing was destroyed)")
    out.append("")
    sites = analysis.survivor_sites()
    out.append(f"Where the surviving objects were created, top {top}:")
    if sites:
        rows = [
            [str(alive), str(made), tname, str(site) if full_path else _short_site(site)]
            for site, tname, alive, made in sites[:top]
        ]
        out += _table(["alive", "created", "type", "file:line:function"], rows, right=(0, 1))
    else:
        out.append("  (none)")
    if analysis.messages:
        out.append("")
        out.append("Messages:")
        for m in analysis.messages:
            out.append(f"  event {m.event} at {m.clock:.6f} s: {escape(m.text)}")
    return "\n".join(out)


def _short_site(site) -> str:
    """file:line:function with the file's last part only."""
    name = site.file if site.file.startswith("<") else os.path.basename(site.file)
    return f"{name}:{site.line}:{site.function}"


def ref_trace_json(analysis: RefTraceAnalysis, top: int = 10) -> str:
    doc = {
        "schema": SCHEMA,
        "kind": "reference_tracing",
        "path": analysis.path,
        "message": analysis.message,
        "complete": analysis.complete,
        "truncated_line": analysis.truncated_line,
        "new": analysis.n_new,
        "del": analysis.n_del,
        "inferred_del": analysis.n_inferred,
        "events": analysis.last_event,
        "duration": analysis.last_clock,
        "meta": analysis.meta,
        "warnings": [{"event": n.event, "clock": n.clock, "text": n.text} for n in analysis.warnings],
        "messages": [{"event": n.event, "clock": n.clock, "text": n.text} for n in analysis.messages],
        "growing_types": [
            {"type": t.name, "live": t.live, "created": t.created, "destroyed": t.destroyed}
            for t in analysis.growing_types()[:top]
        ],
        "survivor_sites": [
            {"file": s.file, "line": s.line, "function": s.function, "type": tname, "alive": alive,
             "created": made}
            for s, tname, alive, made in analysis.survivor_sites()[:top]
        ],
        "timeline": [{"event": e, "clock": c, "live": v} for e, c, v in analysis.timeline],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def ref_trace_svg(analysis: RefTraceAnalysis) -> str:
    from pymemtrace.reporters.svg_chart import timeline_svg

    return timeline_svg(
        [(e, v) for e, _, v in analysis.timeline],
        title=f"live objects over events: {analysis.path}",
        y_label="live objects",
        y_is_bytes=False,
    )
