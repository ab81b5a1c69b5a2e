"""The capacity report: a self-contained HTML page (inline SVG, no network) and the terminal lines.

Uses the evaluation reports' page style and tables (evaluate/report.py); the
plot is quality (nDCG@10 with its interval) against ANN bytes per vector.
"""

from __future__ import annotations

import math
import time

from embedops.capacity.analysis import CapacityReport, VariantResult
from embedops.evaluate.report import CSS, escape, table

_POINT, _CHOSEN, _REF = "#8da0cb", "#137333", "#444"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def rows(report: CapacityReport) -> list[list[str]]:
    """The table both the terminal and the page show, one row per variant."""
    out = []
    for v in report.variants:
        mark = (" *" if v.storage == report.choice else "") + (" (serving)" if v.serving else "")
        cells = [v.storage + mark, f"{v.ndcg.mean:.4f}", _interval(v, report), f"{v.recall.mean:.4f}",
                 f"{v.ann_recall:.3f}", f"{v.p50_ms:.2f}/{v.p99_ms:.2f}", f"{v.bytes_per_vector:.0f}",
                 human_bytes(v.memory_bytes), human_bytes(v.file_bytes)]
        cells += [f"{human_bytes(p.memory_bytes)} / {human_bytes(p.disk_bytes)} / ${p.monthly_cost:,.0f}"
                  + (f" / p50 {p.p50_ms:,.0f} ms" if p.p50_ms is not None else "") for p in v.projected]
        out.append(cells)
    return out


def headers(report: CapacityReport) -> list[str]:
    return ["variant", "nDCG@10", "Δ vs f32 [95% CI]", "recall@10", "recall vs exact f32", "p50/p99 ms",
            "bytes/vector", "ANN memory", "ANN file", *[f"{n:,}: mem / disk / $/mo" for n in report.sizes]]


def _interval(v: VariantResult, report: CapacityReport) -> str:
    if v is report.variants[0]:
        return "reference"
    return f"{v.ndcg.delta:+.4f} [{v.ndcg.ci_low:+.4f}, {v.ndcg.ci_high:+.4f}]"


def render_html(report: CapacityReport) -> str:
    title = f"capacity of {report.alias} ({report.index}, {report.embedder}, {report.dims}-d)"
    setup = table(["", ""], [
        ["eval set", f"{report.evalset} ({report.queries} queries)"], ["vectors", f"{report.vectors:,}"],
        ["backend", report.backend], ["memory price", f"${report.price_gb_month}/GB-month"],
        ["quality budget", f"at most {report.max_loss:.1%} relative nDCG@10 loss"]])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
        f"<p class='muted'>embedops capacity report, generated {escape(stamp)}</p>{setup}"
        f"<h2>Verdict</h2><p>{escape(report.verdict)}</p>"
        f"<h2>Quality against ANN memory</h2>{_plot(report)}"
        f"<h2>Variants</h2>{table(headers(report), rows(report))}"
        "<p class='muted'>Δ: nDCG@10 of the variant minus float32's, paired over the eval set's queries, with the"
        " 95% bootstrap interval. Projections: measured bytes per vector × N + measured overhead; cost is the"
        " memory's.</p></body></html>\n"
    )


def _plot(report: CapacityReport) -> str:
    """nDCG@10 (with its interval) against bytes per vector on a log scale, one labelled point per variant."""
    width, height, pad = 720, 360, 56
    xs = [math.log10(max(v.bytes_per_vector, 1.0)) for v in report.variants]
    lows = [v.ndcg.mean - (v.ndcg.delta - v.ndcg.ci_low) for v in report.variants]
    highs = [v.ndcg.mean + (v.ndcg.ci_high - v.ndcg.delta) for v in report.variants]
    x0, x1 = min(xs) - 0.1, max(xs) + 0.1
    y0, y1 = min(lows) - 0.01, max(highs) + 0.01

    def px(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def py(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    ref = report.variants[0].ndcg.mean
    out = [f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>",
           f"<line x1='{pad}' y1='{py(ref):.1f}' x2='{width - pad}' y2='{py(ref):.1f}' stroke='{_REF}' stroke-dasharray='3,3'/>",
           f"<line x1='{pad}' y1='{py(ref * (1 - report.max_loss)):.1f}' x2='{width - pad}'"
           f" y2='{py(ref * (1 - report.max_loss)):.1f}' stroke='#b00020' stroke-dasharray='2,4'/>"]
    for v, x, lo, hi in zip(report.variants, xs, lows, highs, strict=True):
        color = _CHOSEN if v.storage == report.choice else _POINT
        out.append(f"<line x1='{px(x):.1f}' y1='{py(lo):.1f}' x2='{px(x):.1f}' y2='{py(hi):.1f}' stroke='{color}'/>"
                   f"<circle cx='{px(x):.1f}' cy='{py(v.ndcg.mean):.1f}' r='4' fill='{color}'>"
                   f"<title>{escape(v.storage)}: nDCG@10 {v.ndcg.mean:.4f}, {v.bytes_per_vector:.0f} B/vector</title></circle>"
                   f"<text x='{px(x) + 6:.1f}' y='{py(v.ndcg.mean) - 6:.1f}' font-size='11'>{escape(v.storage)}</text>")
    for e in range(int(math.floor(x0)), int(math.ceil(x1)) + 1):
        if x0 <= e <= x1:
            out.append(f"<text x='{px(e):.1f}' y='{height - pad + 16}' font-size='11' text-anchor='middle'>{10 ** e:,}</text>")
    out.append(f"<text x='{width / 2}' y='{height - 12}' font-size='12' text-anchor='middle'>ANN bytes per vector (log)</text>"
               f"<text x='14' y='{height / 2}' font-size='12' text-anchor='middle' transform='rotate(-90 14 {height / 2})'>"
               f"nDCG@10</text><text x='{pad}' y='{py(y1) + 12:.1f}' font-size='11'>{y1:.3f}</text>"
               f"<text x='{pad}' y='{py(y0) - 4:.1f}' font-size='11'>{y0:.3f}</text></svg>"
               "<p class='muted'>Dashed: float32's nDCG@10; dotted red: the budget. Bars: 95% intervals.</p>")
    return "".join(out)
