"""Evaluation reports: a self-contained HTML file (inline CSS and SVG, no network) and a text summary.

The HTML shows the metrics, the metric per segment (worst segment in red),
the per-query distribution (scores for one run; deltas B − A and old-vs-new
scatter for a comparison), the queries that moved most, and what was dropped.

>>> html = render_html(run=run)                                   # doctest: +SKIP
>>> Path("report.html").write_text(html)                          # doctest: +SKIP
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embedops.evaluate.compare import worst_segment
from embedops.evaluate.runner import EvalComparison, EvalRun

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}tr.worst td{color:#b00020;font-weight:600}
.muted{color:#777}.pos{color:#137333}.neg{color:#b00020}svg{display:block;margin:.5em 0}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle}
"""
_COLOR_A, _COLOR_B, _COLOR_WORST = "#8da0cb", "#fc8d62", "#b00020"


@dataclass
class Report:
    html: str
    summary: str


def build_report(*, run: EvalRun | None = None, comparison: EvalComparison | None = None) -> Report:
    """The HTML page and the terminal summary for one run or one comparison."""
    if comparison is not None:
        return Report(render_html(comparison=comparison), comparison_summary(comparison))
    if run is None:
        raise ValueError("build_report needs a run or a comparison")
    return Report(render_html(run=run), run_summary(run))


# -- text ----------------------------------------------------------------------------
def run_summary(run: EvalRun) -> str:
    """A few lines for the terminal: metrics, segments (worst marked), drops."""
    lines = [
        f"{run.evalset.label} on {run.target.label}: {run.queries} queries, k={run.k}",
        "  " + "  ".join(f"{k} {v:.4f}" for k, v in run.metrics.items()),
    ]
    main = run.main_metric
    for label, values in run.segments.items():
        mark = "  <- worst" if label == run.worst_segment else ""
        lines.append(f"  [{run.segment_by}={label}] n={int(values['n'])} {main} {values.get(main, 0.0):.4f}{mark}")
    lines.extend(_dropped_lines(run.dropped))
    return "\n".join(lines)


def comparison_summary(cmp: EvalComparison) -> str:
    c = cmp.comparison
    verdict = "significant" if c.significant() else "not significant"
    lines = [
        f"{cmp.run_a.evalset.label}: A = {cmp.run_a.target.label}, B = {cmp.run_b.target.label}, {c.n} queries",
        f"  {c.metric}: A {c.mean_a:.4f}  B {c.mean_b:.4f}  delta {c.delta:+.4f}"
        f"  {c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]  p={c.p_value:.3g} ({verdict})",
        f"  B wins {c.wins}, loses {c.losses}, ties {c.ties}",
    ]
    worst = _worst_delta(cmp)
    for label, s in c.segments.items():
        mark = "  <- worst" if label == worst else ""
        lines.append(f"  [{cmp.run_a.segment_by}={label}] n={s.n} A {s.mean_a:.4f} B {s.mean_b:.4f} delta {s.delta:+.4f}{mark}")
    lines.extend(_dropped_lines(cmp.run_a.dropped))
    return "\n".join(lines)


def _dropped_lines(dropped: Sequence[Mapping[str, Any]]) -> list[str]:
    if not dropped:
        return []
    counts: dict[str, int] = {}
    for d in dropped:
        counts[d["reason"]] = counts.get(d["reason"], 0) + 1
    return [f"  dropped {len(dropped)}: " + ", ".join(f"{r} {n}" for r, n in counts.items())]


def _worst_delta(cmp: EvalComparison) -> str | None:
    segs = {label: {"n": float(s.n), "delta": s.delta} for label, s in cmp.comparison.segments.items()}
    return worst_segment(segs, "delta", min_n=max(1, min(10, cmp.comparison.n // 20))) if segs else None


# -- HTML ------------------------------------------------------------------------------
def render_html(*, run: EvalRun | None = None, comparison: EvalComparison | None = None) -> str:
    if comparison is not None:
        title = f"{comparison.run_a.evalset.label}: {comparison.run_a.target.label} vs {comparison.run_b.target.label}"
        body = _comparison_body(comparison)
    elif run is not None:
        title = f"{run.evalset.label} on {run.target.label}"
        body = _run_body(run)
    else:
        raise ValueError("render_html needs a run or a comparison")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f"<p class='muted'>embedops evaluation report, generated {_e(stamp)}</p>{body}</body></html>\n"
    )


def _run_body(run: EvalRun) -> str:
    main = run.main_metric
    parts = [_setup_table(run), "<h2>Metrics</h2>", _table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in run.metrics.items()])]
    if run.segments:
        parts += [f"<h2>{_e(main)} per segment ({_e(run.segment_by or '')})</h2>",
                  _bars({label: [v.get(main, 0.0)] for label, v in run.segments.items()}, [run.target.label], run.worst_segment),
                  _segment_table(run)]
    values = [v.get(main, 0.0) for v in run.per_query.values()]
    parts += [f"<h2>Per-query {_e(main)}</h2>", _histogram(values, 0.0, 1.0, 10, main)]
    low = sorted(run.per_query, key=lambda q: (run.per_query[q].get(main, 0.0), q))[:15]
    parts += ["<h2>Lowest-scoring queries</h2>",
              _table(["query", main, "text"], [[q, f"{run.per_query[q].get(main, 0.0):.3f}", run.queries_text.get(q, "")] for q in low])]
    parts.append(_dropped_section(run.dropped))
    return "".join(parts)


def _comparison_body(cmp: EvalComparison) -> str:
    c, a, b = cmp.comparison, cmp.run_a, cmp.run_b
    rows = [[k, f"{a.metrics.get(k, 0.0):.4f}", f"{b.metrics.get(k, 0.0):.4f}", _signed(b.metrics.get(k, 0.0) - a.metrics.get(k, 0.0))]
            for k in a.metrics]
    parts = [
        _setup_table(a, b),
        "<h2>Metrics, old (A) vs new (B)</h2>", _table(["metric", "A", "B", "B − A"], rows, raw_last=True),
        f"<p>{_e(c.metric)}: Δ {_signed(c.delta)} with {c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}],"
        f" paired permutation p = {c.p_value:.3g}; B wins {c.wins}, loses {c.losses}, ties {c.ties}"
        f" over {c.n} queries.</p>",
    ]
    if c.segments:
        worst = _worst_delta(cmp)
        parts += [f"<h2>{_e(c.metric)} per segment ({_e(a.segment_by or '')})</h2>",
                  _bars({label: [s.mean_a, s.mean_b] for label, s in c.segments.items()}, [a.target.label, b.target.label], worst),
                  _table(["segment", "n", "A", "B", "Δ", "wins", "losses"],
                         [[label, str(s.n), f"{s.mean_a:.4f}", f"{s.mean_b:.4f}", _signed(s.delta), str(s.wins), str(s.losses)]
                          for label, s in c.segments.items()], worst=worst, raw_cols={4})]
    deltas = list(c.per_query.values())
    parts += [f"<h2>Per-query Δ {_e(c.metric)} (B − A)</h2>", _histogram(deltas, -1.05, 1.05, 21, "Δ", zero_line=True),
              f"<h2>Per-query {_e(c.metric)}, A vs B</h2>",
              _scatter([(a.per_query[q].get(c.metric, 0.0), b.per_query[q].get(c.metric, 0.0)) for q in c.per_query])]
    moved = sorted(c.per_query, key=lambda q: (c.per_query[q], q))
    losers = [q for q in moved if c.per_query[q] < 0][:15]
    parts += ["<h2>Largest losses (B worse than A)</h2>",
              _table(["query", "A", "B", "Δ", "text"],
                     [[q, f"{a.per_query[q].get(c.metric, 0.0):.3f}", f"{b.per_query[q].get(c.metric, 0.0):.3f}",
                       _signed(c.per_query[q]), a.queries_text.get(q, "")] for q in losers], raw_cols={3})]
    parts.append(_dropped_section(a.dropped))
    return "".join(parts)


def _setup_table(a: EvalRun, b: EvalRun | None = None) -> str:
    rows = [["eval set", a.evalset.label], ["source", a.evalset.source], ["queries scored", str(a.queries)],
            ["k", str(a.k)], ["A" if b else "target", _target_text(a)]]
    if b is not None:
        rows.append(["B", _target_text(b)])
    return _table(["", ""], rows)


def _target_text(run: EvalRun) -> str:
    t = run.target
    return f"{t.label} — embedder {t.index.embedder}, chunker {t.index.chunker_key}"


def _segment_table(run: EvalRun) -> str:
    keys = [k for k in run.metrics]
    rows = [[label, str(int(v["n"]))] + [f"{v.get(k, 0.0):.4f}" for k in keys] for label, v in run.segments.items()]
    return _table(["segment", "n", *keys], rows, worst=run.worst_segment)


def _dropped_section(dropped: Sequence[Mapping[str, Any]]) -> str:
    if not dropped:
        return "<h2>Dropped</h2><p>Nothing: every query and judgment was usable.</p>"
    rows = [[str(d.get("reason", "")), str(d.get("id", "")), str(d.get("doc_id", "") or ""),
             f"{d.get('file', '')}:{d.get('line', '')}" if d.get("line") else str(d.get("file", "")),
             str(d.get("detail", ""))] for d in dropped[:200]]
    more = f"<p class='muted'>… and {len(dropped) - 200} more.</p>" if len(dropped) > 200 else ""
    return f"<h2>Dropped ({len(dropped)})</h2>" + _table(["reason", "query", "document", "where", "detail"], rows) + more


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, worst: str | None = None,
    raw_last: bool = False, raw_cols: set[int] | None = None,
) -> str:
    """A table; cells are escaped except ``raw_cols`` (already-marked-up deltas)."""
    raw = set(raw_cols or ()) | ({len(headers) - 1} if raw_last else set())
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f"<tr{' class=worst' if worst is not None and row[0] == worst else ''}>"
        + "".join(f"<td>{cell if i in raw else _e(cell)}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _signed(x: float) -> str:
    cls = "pos" if x > 1e-12 else "neg" if x < -1e-12 else "muted"
    return f"<span class='{cls}'>{x:+.4f}</span>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# Public names for other reports (capacity/report.py) that share this page style.
CSS = _CSS


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An escaped HTML table."""
    return _table(headers, rows)


def escape(text: object) -> str:
    return _e(text)


# -- inline SVG ------------------------------------------------------------------------
def _bars(groups: Mapping[str, Sequence[float]], series: Sequence[str], worst: str | None) -> str:
    """Grouped horizontal bars on a 0..1 scale, one group per segment."""
    width, label_w, bar_h, gap = 720, 160, 14, 8
    per = len(series)
    height = len(groups) * (per * bar_h + gap) + 30
    plot_w = width - label_w - 60
    out = [f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"]
    colors = [_COLOR_A, _COLOR_B]
    y = 10
    for label, values in groups.items():
        color = _COLOR_WORST if label == worst else "#222"
        out.append(f"<text x='{label_w - 8}' y='{y + per * bar_h / 2 + 4:.0f}' text-anchor='end' fill='{color}'>{_e(label)}</text>")
        for i, v in enumerate(values):
            w = max(0.0, min(1.0, v)) * plot_w
            fill = _COLOR_WORST if label == worst and per == 1 else colors[i % 2]
            out.append(f"<rect x='{label_w}' y='{y}' width='{w:.1f}' height='{bar_h - 2}' fill='{fill}'/>"
                       f"<text x='{label_w + w + 4:.1f}' y='{y + bar_h - 4}' font-size='11'>{v:.3f}</text>")
            y += bar_h
        y += gap
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * plot_w
        out.append(f"<line x1='{x:.1f}' y1='4' x2='{x:.1f}' y2='{y}' stroke='#ccc' stroke-dasharray='2,3'/>"
                   f"<text x='{x:.1f}' y='{y + 14}' font-size='11' text-anchor='middle'>{tick:g}</text>")
    out.append("</svg>")
    legend = "".join(f"<span style='background:{colors[i % 2]}'></span>{_e(s)}" for i, s in enumerate(series)) if per > 1 else ""
    return "".join(out) + (f"<div class='legend'>{legend}</div>" if legend else "")


def _histogram(values: Sequence[float], low: float, high: float, bins: int, xlabel: str, *, zero_line: bool = False) -> str:
    """Counts per bin; for deltas (``zero_line``) the middle bin is centred on 0 (the ties)."""
    if not values:
        return "<p class='muted'>no queries</p>"
    counts = [0] * bins
    for v in values:
        i = int((min(max(v, low), high) - low) / (high - low) * bins)
        counts[min(i, bins - 1)] += 1
    width, height, pad = 720, 220, 36
    bw = (width - 2 * pad) / bins
    top = max(counts)
    out = [f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"]
    for i, n in enumerate(counts):
        h = (height - 2 * pad) * n / top if top else 0
        x = pad + i * bw
        out.append(f"<rect x='{x + 1:.1f}' y='{height - pad - h:.1f}' width='{bw - 2:.1f}' height='{h:.1f}' fill='{_COLOR_A}'>"
                   f"<title>{low + i * (high - low) / bins:.2f}…{low + (i + 1) * (high - low) / bins:.2f}: {n}</title></rect>")
        if n:
            out.append(f"<text x='{x + bw / 2:.1f}' y='{height - pad - h - 3:.1f}' font-size='10' text-anchor='middle'>{n}</text>")
    for tick in (low + j * (high - low) / 4 for j in range(5)) if not zero_line else (-1.0, -0.5, 0.0, 0.5, 1.0):
        x = pad + (tick - low) / (high - low) * (width - 2 * pad)
        out.append(f"<text x='{x:.1f}' y='{height - pad + 14}' font-size='11' text-anchor='middle'>{tick:g}</text>")
    if zero_line and low < 0 < high:
        x = pad + (0 - low) / (high - low) * (width - 2 * pad)
        out.append(f"<line x1='{x:.1f}' y1='{pad / 2}' x2='{x:.1f}' y2='{height - pad}' stroke='#444' stroke-dasharray='3,3'/>")
    out.append(f"<text x='{width / 2}' y='{height - 6}' font-size='12' text-anchor='middle'>{_e(xlabel)}"
               f" ({len(values)} queries)</text></svg>")
    return "".join(out)


def _scatter(points: Sequence[tuple[float, float]]) -> str:
    size, pad = 320, 34
    span = size - 2 * pad
    out = [f"<svg width='{size}' height='{size}' viewBox='0 0 {size} {size}' role='img'>",
           f"<rect x='{pad}' y='{pad}' width='{span}' height='{span}' fill='none' stroke='#ccc'/>",
           f"<line x1='{pad}' y1='{size - pad}' x2='{size - pad}' y2='{pad}' stroke='#999' stroke-dasharray='3,3'/>"]
    for xa, yb in points:
        x = pad + max(0.0, min(1.0, xa)) * span
        y = size - pad - max(0.0, min(1.0, yb)) * span
        color = "#137333" if yb > xa + 1e-12 else _COLOR_WORST if yb < xa - 1e-12 else "#777"
        out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5' fill='{color}' fill-opacity='0.6'/>")
    out.append(f"<text x='{size / 2}' y='{size - 8}' font-size='12' text-anchor='middle'>A (old)</text>"
               f"<text x='12' y='{size / 2}' font-size='12' text-anchor='middle' transform='rotate(-90 12 {size / 2})'>B (new)</text>"
               "</svg>")
    return "".join(out)
