"""`embedops migrate ...`: a model or chunker change as a gated, reversible migration."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from embedops import commands
from embedops.cli.common import (
    JsonOpt,
    PlanOpt,
    WsOpt,
    app,
    emit_json,
    handle_errors,
    out,
    parse_params,
    progress_bars,
    render_gate,
    render_table,
)

migrate_app = typer.Typer(no_args_is_help=True, help="Change the embedding model or chunker as a migration.")
app.add_typer(migrate_app, name="migrate")

AliasOpt = Annotated[Optional[str], typer.Option(help="Alias to migrate (default: prod).")]
MinOverlapOpt = Annotated[Optional[float], typer.Option(help="Gate: minimum top-10 overlap old vs new (default: report only).")]
MaxRegressionOpt = Annotated[Optional[float], typer.Option(help="Gate: maximum allowed drop of the bound eval metric (default 0.02).")]


@migrate_app.command("plan")
def migrate_plan(
    to: Annotated[str, typer.Option(help="Embedder to migrate to.")],
    chunker: Annotated[Optional[str], typer.Option(help="Chunker to migrate to: auto, code, structured or whole (default: keep).")] = None,
    chunker_param: Annotated[Optional[list[str]], typer.Option(help="Chunker parameter KEY=VALUE (repeatable).")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """What a migration would embed, cost and store; changes nothing."""
    with handle_errors(as_json):
        data = commands.migrate_plan(workspace, to=to, chunker=chunker, chunker_params=parse_params(chunker_param or []),
                                     alias=alias, min_overlap=min_overlap, max_regression=max_regression)
    if as_json:
        return emit_json(data)
    render_table(data, f"migration plan: {data['from_embedder']} → {data['to_embedder']}")


@migrate_app.command("start")
def migrate_start(
    to: Annotated[str, typer.Option(help="Embedder to migrate to.")],
    chunker: Annotated[Optional[str], typer.Option(help="Chunker to migrate to: auto, code, structured or whole (default: keep).")] = None,
    chunker_param: Annotated[Optional[list[str]], typer.Option(help="Chunker parameter KEY=VALUE (repeatable).")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Create the shadow index and record the migration (sync dual-writes from now on)."""
    with handle_errors(as_json):
        data = commands.migrate_start(workspace, to=to, chunker=chunker, chunker_params=parse_params(chunker_param or []),
                                      alias=alias, min_overlap=min_overlap, max_regression=max_regression, plan=plan)
    if as_json:
        return emit_json(data)
    if not data["started"]:
        return render_table(data["plan"], "migration plan (nothing started)")
    out.print(f"started migration {data['migration']}: shadow index {data['shadow_index']};"
              " next: `embedops migrate backfill`")


@migrate_app.command("backfill")
def migrate_backfill(
    batch: Annotated[Optional[int], typer.Option(help="Chunks per batch (one transaction each).")] = None,
    max_rate: Annotated[Optional[float], typer.Option(help="Throttle: at most this many documents per second.")] = None,
    alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Fill the shadow index from the catalog; resumable, Ctrl-C safe."""
    with handle_errors(as_json):
        data = commands.migrate_backfill(workspace, batch=batch, max_rate=max_rate, alias=alias, plan=plan,
                                         progress=progress_bars(not as_json))
    if as_json:
        return emit_json(data)
    render_table(data, "backfill" + (" plan" if plan else ""))


@migrate_app.command("status")
def migrate_status(alias: AliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Phase, done/total, ETA and the last gate result."""
    with handle_errors(as_json):
        data = commands.migrate_status(workspace, alias=alias)
    if as_json:
        return emit_json(data)
    gate = data.pop("gate")
    render_table(data, f"migration {data['migration']}")
    render_gate(gate)


@migrate_app.command("cutover")
def migrate_cutover(
    force: Annotated[bool, typer.Option(help="Cut over even if the gate fails (needs --reason).")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why the gate is overridden; stored in the ledger.")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Run the gate and, if it passes, swap the alias to the new index atomically."""
    with handle_errors(as_json):
        data = commands.migrate_cutover(workspace, force=force, reason=reason, alias=alias, min_overlap=min_overlap,
                                        max_regression=max_regression, plan=plan)
    if as_json:
        return emit_json(data)
    render_gate(data["gate"])
    if plan:
        out.print(f"cutover would {'proceed' if data['would_cut_over'] else 'be refused'}")
    else:
        out.print(Text.assemble(f"alias {data['alias']} → {data['index']} ({data['seconds'] * 1000:.1f} ms)",
                                (" (forced)", "yellow") if data["forced"] else ""))


@migrate_app.command("rollback")
def migrate_rollback(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Point the alias back at the previous index (kept current until finalize)."""
    with handle_errors(as_json):
        data = commands.migrate_rollback(workspace, alias=alias, plan=plan)
    if as_json:
        return emit_json(data)
    render_table(data, "rollback" + (" plan" if plan else ""))


@migrate_app.command("finalize")
def migrate_finalize(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the old index after cutover. Rollback is impossible afterwards."""
    with handle_errors(as_json):
        data = commands.migrate_finalize(workspace, alias=alias, plan=plan)
    if as_json:
        return emit_json(data)
    render_table(data, "finalize" + (" plan" if plan else ""))


@migrate_app.command("abort")
def migrate_abort(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the shadow index of a migration that has not been cut over."""
    with handle_errors(as_json):
        data = commands.migrate_abort(workspace, alias=alias, plan=plan)
    if as_json:
        return emit_json(data)
    render_table(data, "abort" + (" plan" if plan else ""))


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
    if not data["ok"]:
        raise typer.Exit(1)
