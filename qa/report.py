"""QA reports: terminal summary table and a self-contained HTML page (inline SVG, no CDN)."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

from qa.measure import STAGE_LABELS, STAGES, percentile

PALETTE = ("#8da0cb", "#fc8d62", "#66c2a5", "#e78ac3", "#a6d854", "#ffd92f", "#b3b3b3", "#e5c494")
STAGE_COLORS = dict(zip(STAGES, PALETTE))


def _fmt(v: Any, digits: int | None = None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and digits is not None:
        return f"{v:.{digits}f}"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"
    return str(v)


# ---- terminal ----------------------------------------------------------------------------------


def format_summary(result: dict[str, Any]) -> str:
    """A fixed-width table: one block per run (concurrency level)."""
    lines: list[str] = []
    for run in result.get("runs", []):
        s = run["summary"]
        lines.append(f"== {run['concurrency']} session(s) x {run['turns_per_session']} turn(s): "
                     f"{s['turns'] - s['failed_turns']}/{s['turns']} turns ok, {s['failed_sessions']} failed sessions, "
                     f"{run.get('duration_s', 0):.1f} s")
        lines.append(f"{'metric (ms)':<44}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
        rows = [("turn latency (client heard)", s["turn_ms"]),
                ("barge-in: talk over → reply stops", s["bargein_ms"]),
                ("connect (join → peer connected)", s["connect_ms"]),
                ("first audio (join → first frame)", s.get("first_audio_ms") or {"n": 0, "p50": None, "p95": None,
                                                                                 "p99": None, "max": None}),
                ("server: speech end → first frame", s["server_sum_ms"]),
                ("server overhead (minus providers)", s["server_overhead_ms"])]
        rows += [("  " + STAGE_LABELS[k][:42], s["stages_ms"][k]) for k in STAGES]
        for name, st in rows:
            lines.append(f"{name[:44]:<44}{st['n']:>5}{_fmt(st['p50']):>9}{_fmt(st['p95']):>9}"
                         f"{_fmt(st['p99']):>9}{_fmt(st['max']):>9}")
        lines.append(f"underruns (gaps > 60 ms): {s['underruns']}   silence holes: {s['holes']}   "
                     f"packets lost: {s['packets_lost']}")
        h = run.get("client_health") or {}
        if h:
            lines.append(f"generator: {_fmt(h.get('cpu_pct_per_session'), 2)} % of a core per session (steady "
                         f"{_fmt(h.get('steady_cpu_pct_per_session'), 2)}), {h.get('procs', 1)} process(es), "
                         f"loop lag p99 {_fmt(h.get('loop_lag_p99_ms'))} ms, max {_fmt(h.get('loop_lag_max_ms'))} ms")
    violations = result.get("slo_violations") or []
    if result.get("slo"):
        lines.append("SLO: " + ("PASS" if not violations else "FAIL"))
        lines += [f"  broken: {v}" for v in violations]
    return "\n".join(lines)


# ---- SVG helpers -------------------------------------------------------------------------------


def _nice_step(span: float, target: int = 6) -> float:
    raw = max(span, 1e-9) / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def svg_histogram(values: list[float], title: str, width: int = 520, height: int = 220) -> str:
    xs = [v for v in values if v is not None]
    if not xs:
        return f"<p class='muted'>{html.escape(title)}: no data</p>"
    lo, hi = min(0.0, min(xs)), max(xs)
    step = _nice_step(hi - lo, 12)
    lo = math.floor(lo / step) * step
    nbins = max(1, int(math.ceil((hi - lo) / step + 1e-9)) or 1)
    if lo + nbins * step <= hi:
        nbins += 1
    counts = [0] * nbins
    for v in xs:
        counts[min(nbins - 1, int((v - lo) // step))] += 1
    ml, mb, mt = 40, 34, 24
    pw, ph = width - ml - 10, height - mb - mt
    cmax = max(counts)
    bw = pw / nbins
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
             f"<text x='{width / 2}' y='16' text-anchor='middle' class='t'>{html.escape(title)}</text>"]
    for i, c in enumerate(counts):
        h = ph * c / cmax
        x = ml + i * bw
        parts.append(f"<rect x='{x + 1:.1f}' y='{mt + ph - h:.1f}' width='{max(bw - 2, 1):.1f}' height='{h:.1f}' "
                     f"fill='#4c78a8'><title>{lo + i * step:g}–{lo + (i + 1) * step:g} ms: {c}</title></rect>")
    for i in range(0, nbins + 1, max(1, nbins // 6)):
        x = ml + i * bw
        parts.append(f"<text x='{x:.1f}' y='{height - mb + 14}' text-anchor='middle' class='a'>{lo + i * step:g}</text>")
    parts.append(f"<text x='{ml + pw / 2}' y='{height - 4}' text-anchor='middle' class='a'>ms</text>")
    parts.append(f"<text x='{ml - 6}' y='{mt + 8}' text-anchor='end' class='a'>{cmax}</text>")
    for q, color in ((50, "#2ca02c"), (95, "#d62728")):
        p = percentile(xs, q)
        if p is not None:
            x = ml + (p - lo) / (nbins * step) * pw
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{mt}' y2='{mt + ph}' stroke='{color}' stroke-dasharray='4 3'/>"
                         f"<text x='{x + 3:.1f}' y='{mt + 10}' class='a' fill='{color}'>p{q} {p:.0f}</text>")
    parts.append(f"<line x1='{ml}' x2='{ml + pw}' y1='{mt + ph}' y2='{mt + ph}' stroke='#333'/></svg>")
    return "".join(parts)


def svg_lines(xs: list[float], series: dict[str, list[float | None]], title: str, xlabel: str,
              width: int = 520, height: int = 240) -> str:
    """Line chart (e.g. latency p50/p95 vs concurrency)."""
    ys = [y for vals in series.values() for y in vals if y is not None]
    if not xs or not ys:
        return f"<p class='muted'>{html.escape(title)}: no data</p>"
    ml, mb, mt, mr = 48, 34, 24, 90
    pw, ph = width - ml - mr, height - mb - mt
    x0, x1 = min(xs), max(xs)
    y1 = max(ys) * 1.1 or 1.0
    ystep = _nice_step(y1, 5)

    def px(x: float) -> float:
        return ml + (0.5 if x1 == x0 else (x - x0) / (x1 - x0)) * pw

    def py(y: float) -> float:
        return mt + ph - y / y1 * ph

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
             f"<text x='{width / 2}' y='16' text-anchor='middle' class='t'>{html.escape(title)}</text>"]
    y = 0.0
    while y <= y1:
        parts.append(f"<line x1='{ml}' x2='{ml + pw}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#eee'/>"
                     f"<text x='{ml - 4}' y='{py(y) + 4:.1f}' text-anchor='end' class='a'>{y:g}</text>")
        y += ystep
    for x in xs:
        parts.append(f"<text x='{px(x):.1f}' y='{mt + ph + 14}' text-anchor='middle' class='a'>{x:g}</text>")
    parts.append(f"<text x='{ml + pw / 2}' y='{height - 4}' text-anchor='middle' class='a'>{html.escape(xlabel)}</text>")
    for k, (name, vals) in enumerate(series.items()):
        color = colors[k % len(colors)]
        pts = [(px(x), py(v)) for x, v in zip(xs, vals) if v is not None]
        if pts:
            parts.append("<polyline fill='none' stroke-width='2' stroke='" + color + "' points='"
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + "'/>")
            parts += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{color}'/>" for a, b in pts]
        parts.append(f"<text x='{ml + pw + 8}' y='{mt + 12 + 14 * k}' class='a' fill='{color}'>{html.escape(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def svg_stacked(labels: list[str], rows: list[dict[str, float | None]], title: str, width: int = 760) -> str:
    """Horizontal stacked bars: one bar per label, one segment per stage (negatives drawn as 0)."""
    if not rows:
        return f"<p class='muted'>{html.escape(title)}: no data</p>"
    bar_h, gap, ml, mt = 14, 4, 110, 40
    height = mt + len(rows) * (bar_h + gap) + 30
    totals = [sum(max(0.0, v or 0.0) for v in r.values()) for r in rows]
    tmax = max(totals) or 1.0
    pw = width - ml - 60
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>",
             f"<text x='{width / 2}' y='14' text-anchor='middle' class='t'>{html.escape(title)}</text>"]
    lx = ml
    for stage in STAGES:
        parts.append(f"<rect x='{lx}' y='22' width='10' height='10' fill='{STAGE_COLORS[stage]}'/>"
                     f"<text x='{lx + 13}' y='31' class='a'>{stage}</text>")
        lx += 13 + 7 * len(stage) + 12
    for i, (label, row) in enumerate(zip(labels, rows)):
        y = mt + i * (bar_h + gap)
        parts.append(f"<text x='{ml - 4}' y='{y + bar_h - 3}' text-anchor='end' class='a'>{html.escape(label)}</text>")
        x = float(ml)
        for stage in STAGES:
            v = max(0.0, row.get(stage) or 0.0)
            w = v / tmax * pw
            if w > 0:
                parts.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar_h}' fill='{STAGE_COLORS[stage]}'>"
                             f"<title>{label} {stage}: {v:.1f} ms</title></rect>")
            x += w
        parts.append(f"<text x='{x + 4:.1f}' y='{y + bar_h - 3}' class='a'>{totals[i]:.0f} ms</text>")
    parts.append("</svg>")
    return "".join(parts)


# ---- HTML --------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;font-size:13px}
th{background:#f3f3f3}td.l,th.l{text-align:left}.pass{color:#087f23;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.muted{color:#888}svg .t{font-size:13px;font-weight:600}svg .a{font-size:11px}.plots{display:flex;flex-wrap:wrap;gap:12px}
details{margin:10px 0}"""


def _summary_table(runs: list[dict[str, Any]]) -> str:
    head = ("<tr><th>sessions</th><th>turns ok</th><th>turn p50</th><th>turn p95</th><th>turn p99</th>"
            "<th>barge-in p50</th><th>barge-in p95</th><th>connect p95</th><th>server overhead p95</th>"
            "<th>underruns</th><th>holes</th><th>packets lost</th></tr>")
    rows = []
    for run in runs:
        s = run["summary"]
        cells = [run["concurrency"], f"{s['turns'] - s['failed_turns']}/{s['turns']}", s["turn_ms"]["p50"],
                 s["turn_ms"]["p95"], s["turn_ms"]["p99"], s["bargein_ms"]["p50"], s["bargein_ms"]["p95"],
                 s["connect_ms"]["p95"], s["server_overhead_ms"]["p95"], s["underruns"], s["holes"], s["packets_lost"]]
        rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def _stage_table(run: dict[str, Any]) -> str:
    rows = ["<tr><th class='l'>stage</th><th>n</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>"]
    for k in STAGES:
        st = run["summary"]["stages_ms"][k]
        rows.append(f"<tr><td class='l'>{html.escape(STAGE_LABELS[k])}</td>"
                    + "".join(f"<td>{_fmt(st[c])}</td>" for c in ("n", "p50", "p95", "p99", "max")) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _turn_table(run: dict[str, Any]) -> str:
    cols = ["session", "turn", "latency_ms", "bargein_ms", "server_sum_ms", "server_overhead_ms", "underruns",
            "holes", "error"]
    rows = ["<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "".join(f"<th>{s}</th>" for s in STAGES) + "</tr>"]
    for t in run["turns"]:
        stages = t.get("stages_ms") or {}
        rows.append("<tr>" + "".join(f"<td>{html.escape(_fmt(t.get(c)))}</td>" for c in cols)
                    + "".join(f"<td>{_fmt(stages.get(s))}</td>" for s in STAGES) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_html(result: dict[str, Any], max_bars: int = 60) -> str:
    runs = result.get("runs", [])
    violations = result.get("slo_violations") or []
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>livecoach QA latency report</title>",
           f"<style>{CSS}</style></head><body><h1>livecoach QA latency report</h1>"]
    meta = result.get("meta") or {}
    out.append("<p>" + " · ".join(html.escape(f"{k}: {v}") for k, v in meta.items()) + "</p>")
    if result.get("slo"):
        verdict = "<span class='fail'>FAIL</span>" if violations else "<span class='pass'>PASS</span>"
        out.append(f"<h2>SLO {verdict}</h2><ul>")
        for key, limit in result["slo"].items():
            broken = [v for v in violations if v.startswith(key + ":")]
            cls = "fail" if broken else "pass"
            out.append(f"<li class='{cls}'>{html.escape(key)} ≤ {limit:g}"
                       + (f" — {html.escape(broken[0])}" if broken else "") + "</li>")
        out.append("</ul>")
    out.append("<h2>Summary (ms, measured at the client)</h2>" + _summary_table(runs))
    out.append("<p class='muted'>Turn latency: end of the client's own speech (energy offset of the prompt file) → "
               "first reply audio frame with energy arriving at the client's track. Barge-in: onset of the client's "
               "talk-over speech → reply audio stops arriving. Stages join the server's per-turn timestamps "
               "(shared CLOCK_MONOTONIC) and sum to the client latency.</p>")
    if len(runs) > 1:
        xs = [float(r["concurrency"]) for r in runs]
        series = {"turn p50": [r["summary"]["turn_ms"]["p50"] for r in runs],
                  "turn p95": [r["summary"]["turn_ms"]["p95"] for r in runs],
                  "barge-in p95": [r["summary"]["bargein_ms"]["p95"] for r in runs],
                  "overhead p95": [r["summary"]["server_overhead_ms"]["p95"] for r in runs]}
        out.append("<h2>Latency vs concurrency</h2>" + svg_lines(xs, series, "latency (ms) vs sessions", "sessions"))
        med_rows = [{k: r["summary"]["stages_ms"][k]["p50"] for k in STAGES} for r in runs]
        out.append(svg_stacked([f"{r['concurrency']} sessions" for r in runs], med_rows,
                               "median stage breakdown per concurrency level"))
    for run in runs:
        out.append(f"<h2>{run['concurrency']} session(s) × {run['turns_per_session']} turn(s)</h2><div class='plots'>")
        out.append(svg_histogram([t.get("latency_ms") for t in run["turns"] if not t.get("error")],
                                 "turn latency (ms)"))
        bargein = [t["bargein_ms"] for t in run["turns"] if t.get("bargein_ms") is not None]
        if bargein:
            out.append(svg_histogram(bargein, "barge-in: reply stopped after (ms)"))
        out.append("</div>")
        shown = [t for t in run["turns"] if t.get("stages_ms") and not t.get("error")][:max_bars]
        out.append(svg_stacked([f"s{t['session']} t{t['turn']}" for t in shown], [t["stages_ms"] for t in shown],
                               "where the time went, per turn (ms)"))
        out.append(_stage_table(run))
        out.append(f"<details><summary>raw turns ({len(run['turns'])})</summary>{_turn_table(run)}</details>")
        errors = [s for s in run.get("session_results", []) if s.get("error")]
        if errors:
            out.append("<h3>session errors</h3><ul>" + "".join(
                f"<li>session {s['session']}: {html.escape(str(s['error']))}</li>" for s in errors) + "</ul>")
    out.append(f"<p class='muted'>generated {time.strftime('%Y-%m-%d %H:%M:%S')}</p></body></html>")
    return "".join(out)


def write_html(result: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(result), encoding="utf-8")
    return p
