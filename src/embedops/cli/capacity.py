"""`embedops capacity`: what each storage variant of the served index costs and keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from embedops import commands
from embedops.cli.common import JsonOpt, WsOpt, app, emit_json, handle_errors, out


@app.command()
def capacity(
    alias: Annotated[Optional[str], typer.Option(help="Alias whose index is measured (default: prod).")] = None,
    eval_set: Annotated[Optional[str], typer.Option(help="Eval set to score (default: the one bound to the alias).")] = None,
    sizes: Annotated[str, typer.Option(help="Corpus sizes to project to, e.g. 1M,10M,100M (k, M, B).")] = "1M,10M,100M",
    price_gb_month: Annotated[float, typer.Option(help="Price of a GB of memory per month, for the cost projection.")] = 3.8,
    variants: Annotated[Optional[str], typer.Option(help="Storage variants to measure, e.g. f16,i8+r4,b1+r10,f32:d192,f32:pca96 (default: a standard set).")] = None,
    max_loss: Annotated[float, typer.Option(help="Quality budget: the largest relative nDCG@10 loss a recommended variant may have.")] = 0.01,
    max_p50_ms: Annotated[Optional[float], typer.Option(help="Latency budget: the recommended variant's p50 in ms (a flat index's projected to the largest size).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write a self-contained HTML report (with a quality-vs-memory plot) here.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Build each storage variant from the stored vectors (no model call, nothing served changes), score the eval
    set through each, and project memory, disk and cost; then name the cheapest within the quality budget."""
    with handle_errors(as_json):
        result = commands.capacity(workspace, alias=alias, eval_set=eval_set, sizes=sizes, price_gb_month=price_gb_month,
                                   variants=variants, max_loss=max_loss, max_p50_ms=max_p50_ms, report=report)
    if as_json:
        return emit_json(result.to_dict())
    from embedops.capacity.report import headers, rows

    r = result.report
    t = Table(title=f"capacity: {r.alias} ({r.index}, {r.embedder}, {r.vectors:,} vectors, {r.evalset},"
                    f" {r.queries} queries, {r.backend})")
    for h in headers(r):
        t.add_column(h, overflow="fold")
    for row in rows(r):
        t.add_row(*row)
    out.print(t)
    out.print(r.verdict)
    if result.html:
        out.print(f"report: {result.html}")
