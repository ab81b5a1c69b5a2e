"""`embedops migrate ...`: a model or chunker change as a gated, reversible migration."""


from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from embedops import commands
from embedops.cli.common import (
    ActorsOpt, AddressOpt, BatchSizeOpt, ExecutorOpt, GpusPerActorOpt, JsonOpt, PlanOpt, WsOpt, app, emit_json, err,
    executor_options, handle_errors, out, parse_params, progress_bars, render_table, styled,
)
from embedops.commands import GateOptions
from embedops.vectors.storage import StorageOptions

migrate_app = typer.Typer(no_args_is_help=True, help="Change the embedding model or chunker as a migration.")
app.add_typer(migrate_app, name="migrate")

AliasOpt = Annotated[Optional[str], typer.Option(help="Alias to migrate (default: prod).")]
ToOpt = Annotated[Optional[str], typer.Option(help="Embedder to migrate to (default: the alias's own, for a storage change).")]
StorageOpt = Annotated[Optional[str], typer.Option("--storage", help="Precision of the new index's ANN: f32, f16, i8 or b1 (binary).")]
RescoreOpt = Annotated[Optional[int], typer.Option(help="Fetch N×k candidates and re-rank them with the full-precision vectors (0: off).")]
DimsOpt = Annotated[Optional[int], typer.Option(help="Keep N dimensions: the first N, re-normalised (warns unless the model is Matryoshka-trained), or a PCA with --pca.")]
PcaOpt = Annotated[bool, typer.Option("--pca", help="Reduce to --dims by a PCA fitted on the corpus instead of truncating.")]
LayoutOpt = Annotated[Optional[str], typer.Option(help="hnsw (a graph) or flat (no graph: exact search over the encoded vectors; SQLite).")]
ChunkerOpt = Annotated[Optional[str], typer.Option(help="Chunker to migrate to: auto, code, structured or whole (default: keep).")]
ChunkerParamOpt = Annotated[Optional[list[str]], typer.Option(help="Chunker parameter KEY=VALUE (repeatable).")]
MinOverlapOpt = Annotated[Optional[float], typer.Option(help="Gate: minimum top-10 overlap old vs new (default: report only).")]
MaxRegressionOpt = Annotated[Optional[float], typer.Option(help="Gate: largest allowed drop of the metric on a bound eval set (default 0.02).")]
MaxSegmentOpt = Annotated[Optional[float], typer.Option(help="Gate: largest allowed drop in any segment with enough queries (default 0.05).")]
MinSegmentOpt = Annotated[Optional[int], typer.Option(help="Gate: segments with fewer queries are reported, not gating (default 20).")]
SegmentByOpt = Annotated[Optional[list[str]], typer.Option(help="Gate: segment the eval sets by language | source | metadata.KEY | doc.KEY | none (repeatable; default language).")]
MetricOpt = Annotated[Optional[str], typer.Option(help="Gate: metric compared, e.g. ndcg@10 (default) or recall@10.")]


def _gate_options(min_overlap: float | None, max_regression: float | None, max_segment_regression: float | None,
                  min_segment_queries: int | None, segment_by: list[str] | None, metric: str | None) -> GateOptions:
    return GateOptions(min_overlap, max_regression, max_segment_regression, min_segment_queries, segment_by, metric)


def render_gate(gate: dict[str, Any] | None) -> None:
    """The gate's checks, gating ones first; a check that does not gate is marked ``info``."""
    if not gate:
        return
    t = Table(title=f"gate: {'PASS' if gate['passed'] else 'FAIL'}")
    t.add_column("check", overflow="fold")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for c in sorted(gate["checks"], key=lambda c: not c["gating"]):
        if not c["gating"]:
            mark = Text("info", "dim")
        else:
            mark = Text("pass", "green") if c["passed"] else Text("FAIL", "bold red")
        t.add_row(c["name"], mark, c["detail"])
    out.print(t)


def _render_plan(data: dict[str, Any], title: str) -> None:
    evalsets = data.pop("eval_sets")
    preview = data.pop("preview", None)
    gate = data.pop("gate")
    warnings = data.pop("warnings", [])
    render_table(data, title)
    for warning in warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))
    listed = ", ".join(f"{e['name']}@{e['version']} ({e['queries']} queries)" for e in evalsets)
    out.print(f"eval sets gating the cutover: {listed or 'none (bind one with `embedops eval bind NAME --alias ALIAS`)'}")
    out.print("gate: " + ", ".join(f"{k}={v}" for k, v in gate.items()))
    if preview:
        out.print(f"preview on {preview['documents']} documents ({preview['judged_documents']} judged,"
                  f" {preview['chunks_embedded']} chunks embedded, {preview['seconds']:.1f}s):"
                  f" the gate would {'pass' if preview['would_pass'] else 'FAIL'}")
        render_gate({"passed": preview["would_pass"], "checks": preview["checks"]})


@migrate_app.command("plan")
def migrate_plan(
    to: ToOpt = None, chunker: ChunkerOpt = None, chunker_param: ChunkerParamOpt = None,
    storage: StorageOpt = None, rescore: RescoreOpt = None, dims: DimsOpt = None, pca: PcaOpt = False,
    layout: LayoutOpt = None,
    probe: Annotated[bool, typer.Option("--probe", help="Load the new model and time it here (default: the throughput earlier jobs recorded).")] = False,
    sample: Annotated[Optional[int], typer.Option(help="Preview the eval gate: embed N documents (the judged ones, then random others) with the new model and compare, in memory.")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    max_segment_regression: MaxSegmentOpt = None, min_segment_queries: MinSegmentOpt = None,
    segment_by: SegmentByOpt = None, metric: MetricOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """What a migration would embed, take, cost and store, and the gate it will face; changes nothing."""
    gate = _gate_options(min_overlap, max_regression, max_segment_regression, min_segment_queries, segment_by, metric)
    with handle_errors(as_json):
        result = commands.migrate_plan(workspace, to=to, chunker=chunker, chunker_params=parse_params(chunker_param or []),
                                       alias=alias, gate=gate, probe=probe, sample=sample,
                                       storage=StorageOptions(storage, dims, pca, rescore, layout))
    data = result.to_dict()
    if as_json:
        return emit_json(data)
    _render_plan(data, f"migration plan: {data['from_embedder']} ({data['from_storage']}) → {data['to_embedder']}"
                       f" ({data['to_storage']})")


@migrate_app.command("start")
def migrate_start(
    to: ToOpt = None, chunker: ChunkerOpt = None, chunker_param: ChunkerParamOpt = None,
    storage: StorageOpt = None, rescore: RescoreOpt = None, dims: DimsOpt = None, pca: PcaOpt = False,
    layout: LayoutOpt = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    max_segment_regression: MaxSegmentOpt = None, min_segment_queries: MinSegmentOpt = None,
    segment_by: SegmentByOpt = None, metric: MetricOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Create the shadow index and record the migration and its gate (sync dual-writes from now on)."""
    gate = _gate_options(min_overlap, max_regression, max_segment_regression, min_segment_queries, segment_by, metric)
    with handle_errors(as_json):
        result = commands.migrate_start(workspace, to=to, chunker=chunker, chunker_params=parse_params(chunker_param or []),
                                        alias=alias, gate=gate, plan=plan, storage=StorageOptions(storage, dims, pca, rescore, layout))
    if as_json:
        return emit_json(result.to_dict())
    if not result.started:
        return _render_plan(result.plan.to_dict(), "migration plan (nothing started)")
    for warning in result.plan.facts.warnings:
        err.print(styled("warning:", "yellow", f" {warning}"))
    out.print(f"started migration {result.migration}: shadow index {result.shadow_index}"
              f" ({result.plan.facts.to_storage}); next: `embedops migrate backfill`")


@migrate_app.command("backfill")
def migrate_backfill(
    batch: Annotated[Optional[int], typer.Option(help="Chunks per batch (one transaction each); same as --batch-size.")] = None,
    max_rate: Annotated[Optional[float], typer.Option(help="Throttle: at most this many documents per second.")] = None,
    executor: ExecutorOpt = "local", address: AddressOpt = None, actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = 0.0, batch_size: BatchSizeOpt = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop once this run has spent this many USD (exit 4; run it again to resume).", min=0)] = None,
    alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Fill the shadow index from the catalog (resumable, Ctrl-C safe); when complete, measure the gate."""
    with handle_errors(as_json):
        options = executor_options(executor, address, actors, gpus_per_actor, batch_size)
        result = commands.migrate_backfill(workspace, batch=batch, max_rate=max_rate, alias=alias, plan=plan,
                                           progress=progress_bars(not as_json), executor=options,
                                          max_cost=max_cost)
    data = result.to_dict()
    if as_json:
        return emit_json(data)
    gate = data.pop("gate", None)
    render_table(data, "backfill" + (" plan" if plan else ""))
    render_gate(gate)


@migrate_app.command("status")
def migrate_status(alias: AliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Phase, done/total, ETA, the last gate result and whether its evidence still holds. Loads no model."""
    with handle_errors(as_json):
        data = commands.migrate_status(workspace, alias=alias).to_dict()
    if as_json:
        return emit_json(data)
    gate = data.pop("gate")
    render_table(data, f"migration {data['migration']}")
    render_gate(gate)


@migrate_app.command("gate")
def migrate_gate(
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    max_segment_regression: MaxSegmentOpt = None, min_segment_queries: MinSegmentOpt = None,
    segment_by: SegmentByOpt = None, metric: MetricOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Run the gate now without cutting over. Exit 0 when it passes, 1 when it fails (for CI)."""
    gate = _gate_options(min_overlap, max_regression, max_segment_regression, min_segment_queries, segment_by, metric)
    with handle_errors(as_json):
        report = commands.migrate_gate(workspace, alias=alias, gate=gate)
    if as_json:
        emit_json(report.to_dict())
    else:
        render_gate(report.gate.to_dict())
        how = "kept evidence (both indexes unchanged since measured)" if report.reused_evidence else "measured now"
        out.print(f"gate {'PASS' if report.passed else 'FAIL'} ({how}, {report.seconds:.2f}s)")
    raise typer.Exit(0 if report.passed else 1)


@migrate_app.command("cutover")
def migrate_cutover(
    force: Annotated[bool, typer.Option(help="Cut over even if the gate fails (needs --reason).")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why the gate is overridden; stored in the ledger.")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    max_segment_regression: MaxSegmentOpt = None, min_segment_queries: MinSegmentOpt = None,
    segment_by: SegmentByOpt = None, metric: MetricOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Decide the gate and, if it passes, swap the alias to the new index atomically."""
    gate = _gate_options(min_overlap, max_regression, max_segment_regression, min_segment_queries, segment_by, metric)
    with handle_errors(as_json):
        result = commands.migrate_cutover(workspace, force=force, reason=reason, alias=alias, gate=gate, plan=plan)
    if as_json:
        return emit_json(result.to_dict())
    render_gate(result.gate.to_dict())
    if plan:
        out.print(f"cutover would {'proceed' if result.would_cut_over else 'be refused'}")
    else:
        out.print(Text.assemble(f"alias {result.alias} → {result.index} ({result.seconds * 1000:.1f} ms)",
                                (" (forced)", "yellow") if result.forced else ""))


def _closing_step(step: str, call: Callable[[], Any], plan: bool, as_json: bool) -> None:
    """Run rollback / finalize / abort and print its result as a table (or JSON)."""
    with handle_errors(as_json):
        data = call().to_dict()
    if as_json:
        return emit_json(data)
    render_table(data, step + (" plan" if plan else ""))


@migrate_app.command("rollback")
def migrate_rollback(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Point the alias back at the previous index (kept current until finalize)."""
    _closing_step("rollback", lambda: commands.migrate_rollback(workspace, alias=alias, plan=plan), plan, as_json)


@migrate_app.command("finalize")
def migrate_finalize(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the old index after cutover. Rollback is impossible afterwards."""
    _closing_step("finalize", lambda: commands.migrate_finalize(workspace, alias=alias, plan=plan), plan, as_json)


@migrate_app.command("abort")
def migrate_abort(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the shadow index of a migration that has not been cut over."""
    _closing_step("abort", lambda: commands.migrate_abort(workspace, alias=alias, plan=plan), plan, as_json)


@app.command()
def doctor(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Audit indexes: mixed spaces, orphans, missing vectors. Exit 1 when a problem is found."""
    with handle_errors(as_json):
        data = commands.doctor(workspace)
    if as_json:
        emit_json(data)
    else:
        t = Table(title=f"doctor: {'ok' if data['ok'] else 'PROBLEMS'}")
        cols = ("index", "vectors", "mixed_space", "orphans", "missing_vectors", "missing_embeddings", "stale_source_version")
        for col in cols:
            t.add_column(col)
        for r in data["indexes"]:
            t.add_row(*(str(r[c]) for c in cols))
        out.print(t)
        for r in data["indexes"]:
            if r["backfill"]:  # a shadow lacks vectors until its backfill ends: said, not counted as a problem
                out.print(f"{r['index']} is a migration's shadow, backfill {r['backfill']}")
    if not data["ok"]:
        raise typer.Exit(1)
