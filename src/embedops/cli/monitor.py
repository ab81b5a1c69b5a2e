"""Health: freshness, check, coverage and the `monitor` loop."""


import json
import sys
from datetime import datetime
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from embedops import commands
from embedops.cli.common import (
    JsonOpt,
    WsOpt,
    ago,
    app,
    emit_json,
    err,
    handle_errors,
    literal,
    out,
    styled,
)


@app.command()
def freshness(
    source: Annotated[Optional[str], typer.Option(help="Only this source.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Per source: documents, stale documents, lag p50/p95/max, oldest stale, SLO status."""
    with handle_errors(as_json):
        report = commands.freshness(workspace, source=source)
    if as_json:
        return emit_json(report.to_dict())
    t = Table(title=f"freshness: {report.status}")
    for col in ("source", "docs", "stale", "unindexed", "lag p50", "lag p95", "lag max", "max_lag", "SLO", "oldest stale"):
        t.add_column(col)
    for s in report.sources:
        oldest = f"{s.oldest_stale['id']} ({ago(s.oldest_stale['lag'])})" if s.oldest_stale else ""
        style = {"breached": "red", "warn": "yellow"}.get(s.slo, "")
        t.add_row(s.source, str(s.documents), str(s.stale), str(s.unindexed), *(ago(s.lag[q]) for q in ("p50", "p95", "max")),
                  ago(s.max_lag) if s.max_lag is not None else "off", Text(s.slo, style), oldest)
    out.print(t)


@app.command()
def check(
    only: Annotated[Optional[list[str]], typer.Option(help="Run only this check (repeatable): freshness, fingerprint, drift, canary, coverage.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Run every configured health check. Exit code 0 ok, 1 warning, 2 failing."""
    with handle_errors(as_json):
        report = commands.check(workspace, only=only)
    if as_json:
        emit_json(report.to_dict())
    else:
        _render_checks(report)
    raise typer.Exit(report.exit_code)


def _render_checks(report: Any) -> None:
    colors = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for r in report.results:
        out.print(Text.assemble((f"{r.status:>4}", colors[r.status]), " ", (r.name, "bold"), literal(f": {r.summary}")))
        if r.status in ("warn", "fail"):
            out.print(f"      means: {r.failing_means}", highlight=False)
            out.print(f"      fix:   {r.fix}", highlight=False)


@app.command()
def coverage(
    alias: Annotated[Optional[str], typer.Option(help="Alias whose logged queries are compared (default: prod).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Eval-set coverage of recent logged queries: nearest-eval similarity, uncovered share and clusters."""
    with handle_errors(as_json):
        report = commands.coverage(workspace, alias=alias)
    if as_json:
        return emit_json(report.to_dict())
    if report.status == "skip":
        out.print(f"coverage: skipped: {report.reason}")
        return
    out.print(f"coverage: {report.status}: {report.queries} recent queries vs {report.eval_queries} eval queries"
              f" ({', '.join(report.evalsets)}, newest {report.eval_set_age_days:.0f} days old)")
    out.print(f"nearest eval query similarity: p10 {report.similarity['p10']:.2f}, p50 {report.similarity['p50']:.2f};"
              f" uncovered (< {report.min_similarity}): {report.uncovered_share:.0%}")
    for c in report.clusters:
        out.print(f"  cluster of {c['size']}: " + " | ".join(str(x)[:60] for x in c["examples"]))
    if report.reason:
        err.print(styled("warning", "yellow", f" {report.reason}"))


monitor_app = typer.Typer(help="Run the checks on a schedule with Prometheus metrics; canaries; drift references.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.callback(invoke_without_command=True)
def monitor(
    ctx: typer.Context,
    every: Annotated[Optional[str], typer.Option(help="Interval between runs, e.g. 30s, 5m, 1h (default: [monitor] every, 5m).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run the checks once and exit with their exit code.")] = False,
    port: Annotated[Optional[int], typer.Option(help="Serve Prometheus metrics on this port (/metrics).", min=1, max=65535)] = None,
    addr: Annotated[str, typer.Option(help="Address the metrics server binds.")] = "0.0.0.0",
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Run the checks every --every (ledger rows monitor.*), serving metrics on --port."""
    if ctx.invoked_subcommand is not None:
        return
    from embedops.monitor.settings import parse_duration

    def show(report: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
            sys.stdout.flush()
        else:
            out.print(styled(datetime.now().isoformat(timespec="seconds"), "bold", f" checks: {report.status}"))
            _render_checks(report)

    with handle_errors(as_json):
        interval = parse_duration(every, what="--every") if every is not None else None
        code = commands.monitor(workspace, every=interval, once=once, port=port, addr=addr, on_report=show)
    raise typer.Exit(code)


@monitor_app.command("canary")
def monitor_canary(
    name: Annotated[str, typer.Argument(help="Eval set to run on every check (its latest version).")],
    off: Annotated[bool, typer.Option("--off", help="Stop running it as a canary.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Make an eval set a canary: every check runs it and alerts on a recall drop."""
    with handle_errors(as_json):
        data = commands.monitor_canary(workspace, name=name, off=off)
    if as_json:
        return emit_json(data)
    out.print(f"{name}: canary {'off' if off else 'on'}; canaries: {', '.join(data['canaries']) or 'none'}")


@monitor_app.command("reference")
def monitor_reference(
    index: Annotated[Optional[str], typer.Option(help="Only this index (default: every active index).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Re-take the drift reference samples (corpus and queries) from what exists now."""
    with handle_errors(as_json):
        rows = commands.monitor_reference(workspace, index=index)
    if as_json:
        return emit_json(rows)
    for r in rows:
        out.print(f"{r['index']} {r['stream']}: " + (f"{r['rows']} rows" if r["taken"] else "not enough data yet"))
