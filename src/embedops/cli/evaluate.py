"""`embedops eval ...`: eval sets imported, run, compared and reported."""


from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from embedops import commands
from embedops.errors import ConfigError
from embedops.cli.common import (
    JsonOpt,
    PlanOpt,
    WsOpt,
    app,
    emit_json,
    err,
    handle_errors,
    out,
    styled,
)

eval_app = typer.Typer(no_args_is_help=True, help="Eval sets: import, run, compare, report.")
app.add_typer(eval_app, name="eval")

ModeOpt = Annotated[str, typer.Option(help="vector | bm25 | hybrid")]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Cut-off for the metrics (documents per query).")]


@eval_app.command("import")
def eval_import(
    name: Annotated[str, typer.Argument(help="Eval-set name.")],
    path: Annotated[Path, typer.Argument(help="BEIR folder (queries.jsonl + qrels/) or JSONL of {query, relevant_ids[, grades]}.")],
    split: Annotated[str, typer.Option(help="BEIR: qrels split.")] = "test",
    source: Annotated[Optional[str], typer.Option(help="Source whose external ids the judgments name (default: the only one).")] = None,
    format: Annotated[Optional[str], typer.Option("--format", help="beir | jsonl (default: beir for a folder).")] = None,
    alias: Annotated[Optional[str], typer.Option(help="Bind the set to this alias (migration gates evaluate it).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Store an eval set; different content is a new version, the same content changes nothing."""
    with handle_errors(as_json):
        result = commands.eval_import(workspace, name=name, path=path, split=split, source=source, format=format, alias=alias)
    if as_json:
        return emit_json(result.to_dict())
    info = result.info
    verb = "imported" if result.created else "unchanged:"
    out.print(f"{verb} {info.label} ({info.queries} queries, {info.judgments} judgments, source {info.source})")
    for p in result.problems[:20]:
        err.print(styled("line skipped", "yellow", f" {p}"), highlight=False)
    if len(result.problems) > 20:
        err.print(styled(f"... and {len(result.problems) - 20} more problem lines", "yellow", " (see --json)"))
    dropped = result.check.get("dropped") or {}
    if dropped:
        err.print(styled("a run would drop", "yellow", f": {', '.join(f'{r} {n}' for r, n in dropped.items())}"
                          f"; {result.check.get('scorable_queries')} queries scorable against {result.check.get('documents')} documents"))


@eval_app.command("list")
def eval_list(
    all_versions: Annotated[bool, typer.Option("--all", help="Every version, not only the latest.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Eval sets in the catalog."""
    with handle_errors(as_json):
        infos = commands.eval_list(workspace, all_versions=all_versions)
    if as_json:
        return emit_json([i.to_dict() for i in infos])
    t = Table(title="eval sets")
    for col in ("name", "version", "source", "alias", "queries", "judgments", "problems", "created"):
        t.add_column(col)
    for i in infos:
        created = datetime.fromtimestamp(i.created_at, timezone.utc).isoformat(timespec="seconds")
        t.add_row(i.name, str(i.version), i.source, i.alias or "", str(i.queries), str(i.judgments), str(i.problems), created)
    out.print(t)


@eval_app.command("run")
def eval_run(
    name: Annotated[str, typer.Argument(help="Eval set: NAME (latest version) or NAME@VERSION.")],
    alias: Annotated[Optional[str], typer.Option(help="Alias to evaluate (default: the set's bound alias, else prod).")] = None,
    index: Annotated[Optional[str], typer.Option(help="Evaluate one index directly.")] = None,
    k: KOpt = 10,
    mode: ModeOpt = "vector",
    segment_by: Annotated[Optional[str], typer.Option(help="language | source | metadata.KEY | doc.KEY")] = None,
    run_out: Annotated[Optional[Path], typer.Option(help="Write the run in TREC format (qid Q0 docid rank score tag).")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Refuse (exit 4) if embedding the queries would cost more than this many USD.", min=0)] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Score an eval set: metrics, per-segment metrics (worst marked), what was dropped."""
    with handle_errors(as_json):
        run = commands.eval_run(workspace, name=name, alias=alias, index=index, k=k, mode=mode,
                                segment_by=segment_by, run_out=run_out, max_cost=max_cost)
    if as_json:
        return emit_json(run.to_dict())
    t = Table(title=f"{run.evalset.label} on {run.target.label}: {run.queries} queries ({run.seconds:.1f}s)")
    keys = list(run.metrics)
    for col in (run.segment_by or "segment", "n", *keys):
        t.add_column(col)
    t.add_row(Text("all", "bold"), str(run.queries), *(f"{run.metrics[key]:.4f}" for key in keys))
    for label, values in run.segments.items():
        style = "bold red" if label == run.worst_segment else ""
        t.add_row(label + (" (worst)" if style else ""), str(int(values["n"])),
                  *(f"{values.get(key, 0.0):.4f}" for key in keys), style=style)
    out.print(t)
    _print_dropped(run.to_dict()["dropped"])
    if run_out is not None:
        out.print(f"run written to {run_out}")


def _print_dropped(dropped: dict[str, Any]) -> None:
    if not dropped["total"]:
        return
    reasons = ", ".join(f"{r} {n}" for r, n in dropped["by_reason"].items())
    err.print(styled(f"dropped {dropped['total']}", "yellow", f": {reasons}"), highlight=False)
    for item in dropped["items"][:10]:
        where = f"{item.get('file')}:{item.get('line')}" if item.get("line") else item.get("file", "")
        what = item.get("detail") or f"{item.get('kind')} {item.get('id')}" + (f" → {item['doc_id']}" if item.get("doc_id") else "")
        err.print(f"  {where}: {item['reason']}: {what}", highlight=False)


@eval_app.command("compare")
def eval_compare(
    name: Annotated[str, typer.Argument(help="Eval set: NAME or NAME@VERSION.")],
    b: Annotated[str, typer.Option("--b", help="New target: alias or index id.")],
    a: Annotated[Optional[str], typer.Option("--a", help="Old target: alias or index id (default: the bound alias, else prod).")] = None,
    k: KOpt = 10,
    mode: ModeOpt = "vector",
    mode_a: Annotated[Optional[str], typer.Option(help="Mode for A only (default --mode).")] = None,
    mode_b: Annotated[Optional[str], typer.Option(help="Mode for B only (default --mode).")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Metric compared (default ndcg@K).")] = None,
    segment_by: Annotated[str, typer.Option(help="language | source | metadata.KEY | doc.KEY | none")] = "language",
    fail_if_worse: Annotated[Optional[float], typer.Option(help="Exit 1 when B's mean is below A's by more than this (e.g. 0.02): a CI gate.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Paired comparison of B against A: mean delta, bootstrap 95% CI, p-value, wins/losses, per segment."""
    from embedops.evaluate.report import comparison_summary

    with handle_errors(as_json):
        if fail_if_worse is not None and fail_if_worse < 0:
            raise ConfigError(f"--fail-if-worse {fail_if_worse} is negative", hint="give the largest tolerated drop, e.g. 0.02")
        cmp = commands.eval_compare(workspace, name=name, a=a, b=b, k=k, mode=mode, mode_a=mode_a, mode_b=mode_b,
                                    metric=metric, segment_by=None if segment_by == "none" else segment_by)
    worse = fail_if_worse is not None and cmp.comparison.delta < -fail_if_worse
    if as_json:
        emit_json({**cmp.to_dict(), "fail_if_worse": fail_if_worse, "failed": worse})
    else:
        out.print(comparison_summary(cmp), highlight=False, markup=False)
        if worse:
            err.print(styled("worse:", "bold red", f" {cmp.comparison.metric} of B is {-cmp.comparison.delta:.4f} below A,"
                             f" more than --fail-if-worse {fail_if_worse}"), highlight=False)
    if worse:
        raise typer.Exit(1)


@eval_app.command("bind")
def eval_bind(
    name: Annotated[str, typer.Argument(help="Eval set (its latest version is bound).")],
    alias: Annotated[Optional[str], typer.Option(help="Alias whose migrations this set gates.")] = None,
    unbind: Annotated[bool, typer.Option("--unbind", help="Remove the set's binding instead.")] = False,
    plan: PlanOpt = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Bind an eval set to an alias: every migration of that alias is gated on it."""
    with handle_errors(as_json):
        if unbind == (alias is not None):
            raise ConfigError("pass exactly one of --alias NAME or --unbind", hint=f"e.g. embedops eval bind {name} --alias prod")
        info = commands.eval_bind(workspace, name=name, alias=alias, plan=plan)
    if as_json:
        return emit_json({**info.to_dict(), "plan": plan})
    if unbind:
        out.print(f"{'would unbind' if plan else 'unbound'} {info.label}")
    else:
        out.print(f"{'would bind' if plan else 'bound'} {info.label} to alias {alias}")


@eval_app.command("report")
def eval_report(
    name: Annotated[str, typer.Argument(help="Eval set: NAME or NAME@VERSION.")],
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    a: Annotated[Optional[str], typer.Option("--a", help="Old target (alias or index) for an A/B report.")] = None,
    b: Annotated[Optional[str], typer.Option("--b", help="New target (alias or index): makes it an A/B report.")] = None,
    alias: Annotated[Optional[str], typer.Option(help="Alias for a single-run report.")] = None,
    index: Annotated[Optional[str], typer.Option(help="Index for a single-run report.")] = None,
    k: KOpt = 10,
    mode: ModeOpt = "vector",
    mode_a: Annotated[Optional[str], typer.Option(help="Mode for A only.")] = None,
    mode_b: Annotated[Optional[str], typer.Option(help="Mode for B only.")] = None,
    segment_by: Annotated[str, typer.Option(help="language | source | metadata.KEY | doc.KEY | none")] = "language",
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Write a self-contained HTML report (tables, inline SVG plots; opens offline) and print a summary."""
    with handle_errors(as_json):
        result = commands.eval_report(workspace, name=name, out=out_path, a=a, b=b, alias=alias, index=index, k=k,
                                      mode=mode, mode_a=mode_a, mode_b=mode_b,
                                      segment_by=None if segment_by == "none" else segment_by)
    if as_json:
        return emit_json(result.to_dict())
    out.print(result.summary, highlight=False, markup=False)
    out.print(f"report written to {result.path}")
