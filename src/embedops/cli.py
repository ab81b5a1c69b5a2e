"""The ``embedops`` command: parse → commands.X → render. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from embedops import commands
from embedops.errors import EmbedopsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Operate an embedding pipeline like a database.")
source_app = typer.Typer(no_args_is_help=True, help="Manage sources.")
app.add_typer(source_app, name="source")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
WsOpt = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace dir (default: nearest embedops.toml upwards, or $EMBEDOPS_WORKSPACE)."),
]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Map library errors to a message (or a JSON error object) and an exit code, once."""
    try:
        yield
    except EmbedopsError as exc:
        if as_json:
            _emit_json(exc.to_dict())
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: committed work is kept; run the same command again to resume")
        raise typer.Exit(130) from None


def _progress(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """A rich progress bar per long step, on stderr, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def factory(label: str, total: int) -> Callable[[int], None]:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True)
        task = progress.add_task(label, total=total)
        progress.start()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress.advance(task, n)
            if done >= total:
                progress.stop()

        return advance

    return factory


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Directory of the new workspace.")] = Path("."),
    embedder: Annotated[str, typer.Option(help="Embedder of the first index (minilm-l6, minilm-l3, minilm-l6-int8, hashing, sentence-transformers:<name>, onnx:<path>).")] = "minilm-l6",
    chunker: Annotated[str, typer.Option(help="Chunker: structured (default) or whole.")] = "structured",
    database: Annotated[Optional[str], typer.Option(help="Database URL or SQLite path (default .embedops/catalog.db).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Create embedops.toml and the catalog."""
    with _errors(as_json):
        result = commands.init(workspace or path, embedder=embedder, chunker=chunker, database=database)
    if as_json:
        return _emit_json(result.to_dict())
    out.print(f"created {result.config} (embedder {result.embedder}, chunker {result.chunker})")


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="Source name.")],
    path: Annotated[Path, typer.Argument(help="Folder, JSONL file or BEIR directory.")],
    kind: Annotated[str, typer.Option(help="folder | jsonl | beir")] = "folder",
    include: Annotated[Optional[list[str]], typer.Option(help="folder: glob to include (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="folder: glob to exclude (repeatable).")] = None,
    id_field: Annotated[Optional[str], typer.Option(help="jsonl: field holding the id.")] = None,
    text_field: Annotated[Optional[str], typer.Option(help="jsonl: field holding the text.")] = None,
    title_field: Annotated[Optional[str], typer.Option(help="jsonl: optional title field, prepended to the text.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Register a source (folder, jsonl or beir)."""
    options = {"include": include, "exclude": exclude, "id_field": id_field, "text_field": text_field, "title_field": title_field}
    with _errors(as_json):
        result = commands.source_add(workspace, name=name, path=path, kind=kind, **{k: v for k, v in options.items() if v})
    if as_json:
        return _emit_json(result.to_dict())
    out.print(f"added source {result.name} ({result.kind}) at {result.path}")


@app.command()
def sync(
    source: Annotated[Optional[str], typer.Option(help="Sync only this source.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Dry run: print what would change, change nothing.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Bring the indexes in line with the sources: only changed chunks are embedded."""
    with _errors(as_json):
        result = commands.sync(workspace, source=source, plan=plan, progress=_progress(not as_json))
    data = result.to_dict()
    if as_json:
        return _emit_json(data)
    out.print(
        f"sync {'plan' if plan else 'done'}: added {data['added']}, updated {data['updated']}, deleted {data['deleted']},"
        f" unchanged {data['unchanged']}; "
        + (f"{data['chunks_to_embed']} chunks to embed" if plan else f"embedded {data['embedded']} chunks")
        + f" ({data['seconds']:.2f}s)"
    )
    for s in data["skipped"][:20]:
        err.print(f"[yellow]skipped[/] {s['id']}: {s['reason']}", highlight=False)
    if len(data["skipped"]) > 20:
        err.print(f"[yellow]... and {len(data['skipped']) - 20} more skipped[/] (see --json or `embedops history`)")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    alias: Annotated[Optional[str], typer.Option(help="Alias to query (default: prod).")] = None,
    index: Annotated[Optional[str], typer.Option(help="Query one index directly instead of an alias.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only documents of this source.")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Metadata filter KEY=VALUE (repeatable).")] = None,
    updated_after: Annotated[Optional[datetime], typer.Option(help="Only documents updated at or after this time.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Search the alias (embedding the query with the index's own embedder)."""
    with _errors(as_json):
        filters = _parse_where(where or [])
        if updated_after is not None and updated_after.tzinfo is None:
            updated_after = updated_after.astimezone(timezone.utc)
        result = commands.search(workspace, query=query, k=k, alias=alias, index=index, source=source,
                                 where=filters, updated_after=updated_after)
    if as_json:
        return _emit_json(result.to_list())
    table = Table(title=f"{query!r} on {result.alias}", show_lines=False)
    for col in ("#", "score", "document", "text"):
        table.add_column(col)
    for i, r in enumerate(result.results, 1):
        snippet = " ".join(r.text.split())[:110]
        table.add_row(str(i), f"{r.score:.3f}", r.document_id, snippet)
    out.print(table)


def _parse_where(items: list[str]) -> dict[str, str]:
    from embedops.errors import SearchError

    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SearchError(f"bad --where {item!r}", hint="use KEY=VALUE, e.g. --where ext=md")
        parsed[key] = value
    return parsed


@app.command()
def status(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Sources, documents, chunks, indexes, aliases and spaces."""
    with _errors(as_json):
        data = commands.status(workspace)
    if as_json:
        return _emit_json(data)
    out.print(f"[bold]workspace[/] {data['workspace']}  embedder {data['embedder']}  chunker {data['chunker']}")
    out.print(f"documents {data['documents']} (deleted {data['deleted_documents']}), chunks {data['chunks']}")
    t = Table(title="sources")
    for col in ("name", "kind", "path", "documents"):
        t.add_column(col)
    for s in data["sources"]:
        t.add_row(s["name"], s["kind"], str(s["path"]), str(s["documents"]))
    out.print(t)
    t = Table(title="indexes")
    for col in ("id", "embedder", "status", "vectors", "aliases", "chunker"):
        t.add_column(col)
    for ix in data["indexes"]:
        names = ", ".join(a for a, i in data["aliases"].items() if i == ix["id"])
        t.add_row(ix["id"], ix["embedder"], ix["status"], str(ix["vectors"]), names, ix["chunker"])
    out.print(t)


@app.command()
def history(
    kind: Annotated[Optional[str], typer.Option(help="Only entries whose kind starts with this (sync, index, alias, ...).")] = None,
    limit: Annotated[int, typer.Option(help="Most recent N entries.")] = 50,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """The ledger: every sync, index and alias change, newest first."""
    with _errors(as_json):
        rows = commands.history(workspace, kind=kind, limit=limit)
    for r in rows:
        r["at"] = datetime.fromtimestamp(r["at"], timezone.utc).isoformat(timespec="seconds")
    if as_json:
        return _emit_json(rows)
    t = Table(title="ledger")
    for col in ("id", "at", "kind", "details"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["at"], r["kind"], json.dumps(r["details"], default=str)[:100])
    out.print(t)


# -- migrations -------------------------------------------------------------------
migrate_app = typer.Typer(no_args_is_help=True, help="Change the embedding model or chunker as a migration.")
app.add_typer(migrate_app, name="migrate")

AliasOpt = Annotated[Optional[str], typer.Option(help="Alias to migrate (default: prod).")]
PlanOpt = Annotated[bool, typer.Option("--plan", help="Dry run: say what would happen, change nothing.")]
MinOverlapOpt = Annotated[Optional[float], typer.Option(help="Gate: minimum top-10 overlap old vs new (default: report only).")]
MaxRegressionOpt = Annotated[Optional[float], typer.Option(help="Gate: maximum allowed drop of the bound eval metric (default 0.02).")]


def _params(items: list[str]) -> dict[str, Any]:
    from embedops.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"bad --chunker-param {item!r}", hint="use KEY=VALUE, e.g. --chunker-param max_tokens=200")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def _render(data: dict[str, Any], title: str) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)[:160]
        t.add_row(key, str(value))
    out.print(t)


def _render_gate(gate: dict[str, Any] | None) -> None:
    if not gate:
        return
    t = Table(title=f"gate: {'PASS' if gate['passed'] else 'FAIL'}")
    for col in ("check", "result", "gating", "value", "limit", "detail"):
        t.add_column(col)
    for c in gate["checks"]:
        mark = "[green]pass[/]" if c["passed"] else "[red]fail[/]"
        t.add_row(c["name"], mark, "yes" if c["gating"] else "no", str(c["value"]), str(c["limit"]), c["detail"])
    out.print(t)


@migrate_app.command("plan")
def migrate_plan(
    to: Annotated[str, typer.Option(help="Embedder to migrate to.")],
    chunker: Annotated[Optional[str], typer.Option(help="Chunker to migrate to (default: keep).")] = None,
    chunker_param: Annotated[Optional[list[str]], typer.Option(help="Chunker parameter KEY=VALUE (repeatable).")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """What a migration would embed, cost and store; changes nothing."""
    with _errors(as_json):
        data = commands.migrate_plan(workspace, to=to, chunker=chunker, chunker_params=_params(chunker_param or []),
                                     alias=alias, min_overlap=min_overlap, max_regression=max_regression)
    if as_json:
        return _emit_json(data)
    _render(data, f"migration plan: {data['from_embedder']} → {data['to_embedder']}")


@migrate_app.command("start")
def migrate_start(
    to: Annotated[str, typer.Option(help="Embedder to migrate to.")],
    chunker: Annotated[Optional[str], typer.Option(help="Chunker to migrate to (default: keep).")] = None,
    chunker_param: Annotated[Optional[list[str]], typer.Option(help="Chunker parameter KEY=VALUE (repeatable).")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Create the shadow index and record the migration (sync dual-writes from now on)."""
    with _errors(as_json):
        data = commands.migrate_start(workspace, to=to, chunker=chunker, chunker_params=_params(chunker_param or []),
                                      alias=alias, min_overlap=min_overlap, max_regression=max_regression, plan=plan)
    if as_json:
        return _emit_json(data)
    if not data["started"]:
        return _render(data["plan"], "migration plan (nothing started)")
    out.print(f"started migration {data['migration']}: shadow index {data['shadow_index']};"
              " next: `embedops migrate backfill`")


@migrate_app.command("backfill")
def migrate_backfill(
    batch: Annotated[Optional[int], typer.Option(help="Chunks per batch (one transaction each).")] = None,
    max_rate: Annotated[Optional[float], typer.Option(help="Throttle: at most this many documents per second.")] = None,
    alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Fill the shadow index from the catalog; resumable, Ctrl-C safe."""
    with _errors(as_json):
        data = commands.migrate_backfill(workspace, batch=batch, max_rate=max_rate, alias=alias, plan=plan,
                                         progress=_progress(not as_json))
    if as_json:
        return _emit_json(data)
    _render(data, "backfill" + (" plan" if plan else ""))


@migrate_app.command("status")
def migrate_status(alias: AliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Phase, done/total, ETA and the last gate result."""
    with _errors(as_json):
        data = commands.migrate_status(workspace, alias=alias)
    if as_json:
        return _emit_json(data)
    gate = data.pop("gate")
    _render(data, f"migration {data['migration']}")
    _render_gate(gate)


@migrate_app.command("cutover")
def migrate_cutover(
    force: Annotated[bool, typer.Option(help="Cut over even if the gate fails (needs --reason).")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why the gate is overridden; stored in the ledger.")] = None,
    alias: AliasOpt = None, min_overlap: MinOverlapOpt = None, max_regression: MaxRegressionOpt = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Run the gate and, if it passes, swap the alias to the new index atomically."""
    with _errors(as_json):
        data = commands.migrate_cutover(workspace, force=force, reason=reason, alias=alias, min_overlap=min_overlap,
                                        max_regression=max_regression, plan=plan)
    if as_json:
        return _emit_json(data)
    _render_gate(data["gate"])
    if plan:
        out.print(f"cutover would {'proceed' if data['would_cut_over'] else 'be refused'}")
    else:
        out.print(f"alias {data['alias']} → {data['index']} ({data['seconds'] * 1000:.1f} ms)"
                  + (" [yellow](forced)[/]" if data["forced"] else ""))


@migrate_app.command("rollback")
def migrate_rollback(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Point the alias back at the previous index (kept current until finalize)."""
    with _errors(as_json):
        data = commands.migrate_rollback(workspace, alias=alias, plan=plan)
    if as_json:
        return _emit_json(data)
    _render(data, "rollback" + (" plan" if plan else ""))


@migrate_app.command("finalize")
def migrate_finalize(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the old index after cutover. Rollback is impossible afterwards."""
    with _errors(as_json):
        data = commands.migrate_finalize(workspace, alias=alias, plan=plan)
    if as_json:
        return _emit_json(data)
    _render(data, "finalize" + (" plan" if plan else ""))


@migrate_app.command("abort")
def migrate_abort(alias: AliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Drop the shadow index of a migration that has not been cut over."""
    with _errors(as_json):
        data = commands.migrate_abort(workspace, alias=alias, plan=plan)
    if as_json:
        return _emit_json(data)
    _render(data, "abort" + (" plan" if plan else ""))


@app.command()
def doctor(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Audit indexes: mixed spaces, orphans, missing vectors. Exit 1 when a problem is found."""
    with _errors(as_json):
        data = commands.doctor(workspace)
    if as_json:
        _emit_json(data)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
