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
from rich.text import Text

from embedops import commands
from embedops.errors import EmbedopsError, SourceError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Operate an embedding pipeline like a database.")
source_app = typer.Typer(no_args_is_help=True, help="Manage sources.")
app.add_typer(source_app, name="source")

# Markup off: document text, paths and ids are printed as they are ("list[/i]" is text, not a
# closing tag that would crash the render). Styled words are Text objects (_styled).
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def _styled(word: str, style: str, rest: str = "") -> Text:
    """``word`` in ``style`` followed by plain ``rest``; nothing in either is read as markup."""
    return Text.assemble((word, style), rest)

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
        err.print(_styled("error:", "bold red", f" {exc.message}"), highlight=False)
        if exc.hint:
            err.print(_styled("hint:", "dim", f" {exc.hint}"), highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print(_styled("interrupted", "yellow", ": committed work is kept; run the same command again to resume"))
        raise typer.Exit(130) from None


def _progress(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """A rich progress bar per long step, on stderr, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def factory(label: str, total: int) -> Callable[[int], None]:
        progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True)
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
    path: Annotated[Optional[Path], typer.Argument(help="Folder, JSONL file or BEIR directory (none for push).")] = None,
    kind: Annotated[str, typer.Option(help="folder | jsonl | beir | push (documents arrive through the HTTP API)")] = "folder",
    include: Annotated[Optional[list[str]], typer.Option(help="folder: glob to include (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="folder: glob to exclude (repeatable).")] = None,
    id_field: Annotated[Optional[str], typer.Option(help="jsonl: field holding the id.")] = None,
    text_field: Annotated[Optional[str], typer.Option(help="jsonl: field holding the text.")] = None,
    title_field: Annotated[Optional[str], typer.Option(help="jsonl: optional title field, prepended to the text.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Register a source (folder, jsonl, beir, or push: no path, documents arrive through the HTTP API)."""
    options = {"include": include, "exclude": exclude, "id_field": id_field, "text_field": text_field, "title_field": title_field}
    with _errors(as_json):
        result = commands.source_add(workspace, name=name, path=path, kind=kind, **{k: v for k, v in options.items() if v})
    if as_json:
        return _emit_json(result.to_dict())
    out.print(f"added source {result.name} ({result.kind})" + (f" at {result.path}" if result.path else ""))


@app.command()
def sync(
    source: Annotated[Optional[str], typer.Option(help="Sync only this source.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Dry run: print what would change, change nothing.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Bring the indexes in line with the sources: only changed chunks are embedded."""
    with _errors(as_json):
        try:
            result = commands.sync(workspace, source=source, plan=plan, progress=_progress(not as_json))
        except SourceError as exc:
            if not as_json and "result" in exc.details:  # the sources that could be read were synced
                _print_sync(exc.details["result"], plan)
            raise
    data = result.to_dict()
    if as_json:
        return _emit_json(data)
    _print_sync(data, plan)


def _print_sync(data: dict[str, Any], plan: bool) -> None:
    out.print(
        f"sync {'plan' if plan else 'done'}: added {data['added']}, updated {data['updated']}, deleted {data['deleted']},"
        f" unchanged {data['unchanged']}; "
        + (f"{data['chunks_to_embed']} chunks to embed" if plan else f"embedded {data['embedded']} chunks")
        + f" ({data['seconds']:.2f}s)"
    )
    for s in data["skipped"][:20]:
        err.print(_styled("skipped", "yellow", f" {s['id']}: {s['reason']}"), highlight=False)
    if len(data["skipped"]) > 20:
        err.print(_styled(f"... and {len(data['skipped']) - 20} more skipped", "yellow", " (see --json or `embedops history`)"))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 10,
    alias: Annotated[Optional[str], typer.Option(help="Alias to query (default: prod).")] = None,
    index: Annotated[Optional[str], typer.Option(help="Query one index directly instead of an alias.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only documents of this source.")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Metadata filter KEY=VALUE (repeatable).")] = None,
    updated_after: Annotated[Optional[datetime], typer.Option(help="Only documents updated at or after this time.")] = None,
    mode: Annotated[str, typer.Option(help="vector (default), bm25 (full-text) or hybrid (both, fused by RRF).")] = "vector",
    fresh_only: Annotated[bool, typer.Option("--fresh-only", help="Drop stale results (source changed since embedding, or not re-checked within max_lag).")] = False,
    recency_half_life: Annotated[Optional[str], typer.Option(help="Weight scores by document age: halved per half-life, e.g. 30d.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Search the alias (embedding the query with the index's own embedder)."""
    from embedops.monitor.settings import parse_duration

    with _errors(as_json):
        filters = _parse_where(where or [])
        if updated_after is not None and updated_after.tzinfo is None:
            updated_after = updated_after.astimezone(timezone.utc)
        half_life = parse_duration(recency_half_life, what="--recency-half-life") if recency_half_life else None
        result = commands.search(workspace, query=query, k=k, alias=alias, index=index, source=source,
                                 where=filters, updated_after=updated_after, mode=mode, fresh_only=fresh_only,
                                 recency_half_life=half_life)
    if as_json:
        return _emit_json(result.to_list())
    if not result.results:
        out.print(f"no results on {result.alias}" + (" for these filters" if where or source or updated_after else "")
                  + ": `embedops status` shows what is indexed")
        return
    table = Table(title=f"{query!r} on {result.alias}", show_lines=False)
    for col in ("#", "score", "document", "text"):
        table.add_column(col)
    for i, r in enumerate(result.results, 1):
        snippet = " ".join(r.text.split())[:110]
        table.add_row(str(i), f"{r.score:.3f}", Text.assemble(r.document_id, (" (stale)", "yellow") if r.stale else ""), snippet)
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
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    token_env: Annotated[str, typer.Option(help="Env var holding the bearer token that writes (and --auth-reads reads) need.")] = "EMBEDOPS_TOKEN",
    auth_reads: Annotated[bool, typer.Option("--auth-reads", help="Reads need the bearer token too.")] = False,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted (413 above).")] = 1 << 20,
    max_query_chars: Annotated[int, typer.Option(help="Longest query accepted (422 above).")] = 2_000,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (uvicorn's access log).")] = False,
    workspace: WsOpt = None,
) -> None:
    """Run the HTTP service (search, sync, push documents, status, metrics) until Ctrl-C."""
    with _errors(False):
        commands.serve(workspace, host=host, port=port, token_env=token_env, auth_reads=auth_reads,
                       max_body_bytes=max_body_bytes, max_query_chars=max_query_chars, access_log=access_log)


@app.command()
def status(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Sources, documents, chunks, indexes, aliases and spaces."""
    with _errors(as_json):
        data = commands.status(workspace)
    if as_json:
        return _emit_json(data)
    out.print(_styled("workspace", "bold", f" {data['workspace']}  embedder {data['embedder']}  chunker {data['chunker']}"))
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
    t = Table(title="ledger (UTC; `--json` for every detail)")
    for col in ("id", "at", "kind", "details"):
        t.add_column(col, overflow="fold" if col == "details" else "ellipsis", no_wrap=col != "details")
    for r in rows:
        t.add_row(str(r["id"]), r["at"][:19].replace("T", " "), r["kind"], _brief(r["details"]))
    out.print(t)


def _brief(details: dict[str, Any], limit: int = 160) -> str:
    """A ledger row's details on one line: scalars as key=value, collections by size."""
    parts = []
    for key, value in details.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, list):
            value = f"[{len(value)}]"
        elif isinstance(value, dict):
            value = "{" + ", ".join(value) + "}" if len(value) <= 4 else f"{{{len(value)} keys}}"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        elif value is None:
            value = "—"
        elif key.endswith("_at") and isinstance(value, (int, float)):
            value = _when(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        t.add_row(key, str(value))
    out.print(t)


def _render_gate(gate: dict[str, Any] | None) -> None:
    if not gate:
        return
    t = Table(title=f"gate: {'PASS' if gate['passed'] else 'FAIL'}")
    for col in ("check", "result", "gating", "value", "limit", "detail"):
        t.add_column(col)
    for c in gate["checks"]:
        mark = Text("pass", "green") if c["passed"] else Text("fail", "red")
        t.add_row(c["name"], mark, "yes" if c["gating"] else "no", str(c["value"]), "—" if c["limit"] is None else str(c["limit"]), c["detail"])
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
        out.print(Text.assemble(f"alias {data['alias']} → {data['index']} ({data['seconds'] * 1000:.1f} ms)",
                                (" (forced)", "yellow") if data["forced"] else ""))


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


# -- eval ------------------------------------------------------------------------
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
    with _errors(as_json):
        result = commands.eval_import(workspace, name=name, path=path, split=split, source=source, format=format, alias=alias)
    if as_json:
        return _emit_json(result.to_dict())
    info = result.info
    verb = "imported" if result.created else "unchanged:"
    out.print(f"{verb} {info.label} ({info.queries} queries, {info.judgments} judgments, source {info.source})")
    for p in result.problems[:20]:
        err.print(_styled("line skipped", "yellow", f" {p}"), highlight=False)
    if len(result.problems) > 20:
        err.print(_styled(f"... and {len(result.problems) - 20} more problem lines", "yellow", " (see --json)"))
    dropped = result.check.get("dropped") or {}
    if dropped:
        err.print(_styled("a run would drop", "yellow", f": {', '.join(f'{r} {n}' for r, n in dropped.items())}"
                          f"; {result.check.get('scorable_queries')} queries scorable against {result.check.get('documents')} documents"))


@eval_app.command("list")
def eval_list(
    all_versions: Annotated[bool, typer.Option("--all", help="Every version, not only the latest.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Eval sets in the catalog."""
    with _errors(as_json):
        infos = commands.eval_list(workspace, all_versions=all_versions)
    if as_json:
        return _emit_json([i.to_dict() for i in infos])
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
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Score an eval set: metrics, per-segment metrics (worst marked), what was dropped."""
    with _errors(as_json):
        run = commands.eval_run(workspace, name=name, alias=alias, index=index, k=k, mode=mode,
                                segment_by=segment_by, run_out=run_out)
    if as_json:
        return _emit_json(run.to_dict())
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
    err.print(_styled(f"dropped {dropped['total']}", "yellow", f": {reasons}"), highlight=False)
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
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Paired comparison of B against A: mean delta, bootstrap 95% CI, p-value, wins/losses, per segment."""
    from embedops.evaluate.report import comparison_summary

    with _errors(as_json):
        cmp = commands.eval_compare(workspace, name=name, a=a, b=b, k=k, mode=mode, mode_a=mode_a, mode_b=mode_b,
                                    metric=metric, segment_by=None if segment_by == "none" else segment_by)
    if as_json:
        return _emit_json(cmp.to_dict())
    out.print(comparison_summary(cmp), highlight=False, markup=False)


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
    with _errors(as_json):
        result = commands.eval_report(workspace, name=name, out=out_path, a=a, b=b, alias=alias, index=index, k=k,
                                      mode=mode, mode_a=mode_a, mode_b=mode_b,
                                      segment_by=None if segment_by == "none" else segment_by)
    if as_json:
        return _emit_json(result.to_dict())
    out.print(result.summary, highlight=False, markup=False)
    out.print(f"report written to {result.path}")


# -- thresholds ------------------------------------------------------------------
thresholds_app = typer.Typer(no_args_is_help=True, help="Similarity thresholds bound to a space, recalibrated across models.")
app.add_typer(thresholds_app, name="thresholds")

ThresholdAliasOpt = Annotated[Optional[str], typer.Option(help="Alias whose space the threshold is read for (default: prod).")]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _print_problems(problems: list[str]) -> None:
    for p in problems[:20]:
        err.print(_styled("labels line skipped", "yellow", f" {p}"), highlight=False)
    if len(problems) > 20:
        err.print(_styled(f"... and {len(problems) - 20} more", "yellow", " (see --json)"))


@thresholds_app.command("add")
def thresholds_add(
    name: Annotated[str, typer.Argument(help="Threshold name, e.g. dedup.")],
    value: Annotated[float, typer.Argument(help="Value in the space the alias serves, e.g. 0.95.")],
    description: Annotated[str, typer.Option(help="What the rule using it does.")] = "",
    labels: Annotated[Optional[Path], typer.Option(help="Labelled pairs (text_a, text_b, label) as .tsv, .csv or .jsonl.")] = None,
    alias: ThresholdAliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Register a threshold, bound to the space the alias serves."""
    with _errors(as_json):
        result = commands.thresholds_add(workspace, name=name, value=value, description=description, labels=labels,
                                         alias=alias, plan=plan)
    if as_json:
        return _emit_json(result.to_dict())
    _print_problems(result.problems)
    v = result.value
    out.print(f"{'would add' if plan else 'added'} threshold {v.name} = {v.value:g} in space {v.space_key}"
              + (f" ({result.labelled_pairs} labelled pairs)" if result.labelled_pairs else ""), highlight=False)


@thresholds_app.command("labels")
def thresholds_labels(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    path: Annotated[Path, typer.Argument(help="Labelled pairs (text_a, text_b, label) as .tsv, .csv or .jsonl.")],
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Attach (or replace) the labelled pairs that label matching uses."""
    with _errors(as_json):
        data = commands.thresholds_labels(workspace, name=name, path=path, plan=plan)
    if as_json:
        return _emit_json(data)
    _print_problems(data["problems"])
    out.print(f"{'would attach' if plan else 'attached'} {data['pairs']} labelled pairs ({data['positives']} positive)"
              f" to {name}", highlight=False)


@thresholds_app.command("list")
def thresholds_list(
    all_values: Annotated[bool, typer.Option("--all", help="Every recorded value (the history), not only the current ones.")] = False,
    alias: ThresholdAliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Thresholds: current value per space (* the space the alias serves), method, when."""
    with _errors(as_json):
        rows = commands.thresholds_list(workspace, alias=alias, all_values=all_values)
    if as_json:
        return _emit_json(rows)
    t = Table(title="threshold values" if all_values else "thresholds")
    for col in ("name", "space", "value", "method", "when", "reason" if all_values else "description"):
        t.add_column(col)
    if all_values:
        for v in rows:
            t.add_row(v["name"], v["space"], f"{v['value']:g}", v["method"], _when(v["created_at"]), v["reason"] or "")
    for info in [] if all_values else rows:
        for v in info["values"] or [None]:
            if v is None:
                t.add_row(info["name"], "", "", "", "", info["description"])
                continue
            mark = " *" if v["space"] == info["serving_space"] else ""
            t.add_row(info["name"], v["space"] + mark, f"{v['value']:g}", v["method"], _when(v["created_at"]),
                      info["description"])
    out.print(t)


@thresholds_app.command("get")
def thresholds_get(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    space: Annotated[Optional[str], typer.Option(help="Space key, index id or embedder name (default: the alias's space).")] = None,
    alias: ThresholdAliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """The value applications read: for the space the alias serves now."""
    with _errors(as_json):
        result = commands.thresholds_get(workspace, name=name, space=space, alias=alias)
    if as_json:
        return _emit_json(result.to_dict())
    out.print(f"{result.value.value:g}", highlight=False)


@thresholds_app.command("set")
def thresholds_set(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    value: Annotated[float, typer.Argument(help="The value for that space.")],
    space: Annotated[str, typer.Option(help="Space key, index id or embedder name the value is valid in.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; stored with the value and in the ledger.")] = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Record a value chosen by hand for a space (history is kept)."""
    with _errors(as_json):
        result = commands.thresholds_set(workspace, name=name, value=value, space=space, reason=reason, plan=plan)
    if as_json:
        return _emit_json(result.to_dict())
    v = result.value
    out.print(f"{'would set' if plan else 'set'} {v.name} = {v.value:g} in space {v.space_key}", highlight=False)


@thresholds_app.command("calibrate")
def thresholds_calibrate(
    to: Annotated[str, typer.Option(help="New space: space key, index id, or embedder name (its shadow index).")],
    name: Annotated[Optional[list[str]], typer.Option(help="Only this threshold (repeatable; default: all bound ones).")] = None,
    method: Annotated[str, typer.Option(help="distribution | labels | both")] = "both",
    objective: Annotated[str, typer.Option(help="Label matching keeps this: precision or f1.")] = "precision",
    use: Annotated[Optional[str], typer.Option(help="Proposal --apply records: distribution or labels (default: labels when computed).")] = None,
    pairs: Annotated[int, typer.Option(help="Random pairs sampled for distribution matching (a tenth as many anchors for near neighbours).")] = 2000,
    apply: Annotated[bool, typer.Option("--apply", help="Record the proposals for the new space (ledger: method and evidence).")] = False,
    alias: ThresholdAliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Propose values for another space, with evidence and the behaviour change; changes nothing without --apply."""
    with _errors(as_json):
        result = commands.thresholds_calibrate(workspace, to=to, name=name, method=method, objective=objective, use=use,
                                               pairs=pairs, apply=apply, alias=alias, plan=plan)
    data = result.to_dict()
    if as_json:
        return _emit_json(data)
    s = data["sample"]
    out.print(f"{data['from']['space']} → {data['to']['space']}: {s['pairs']} pairs ({s['neighbour_pairs']} near"
              f" neighbours, {s['random_pairs']} random)", highlight=False)
    for p in data["proposals"]:
        _render_proposal(p)
    if data["applied"]:
        for v in data["applied"]:
            out.print(f"applied {v['name']} = {v['value']:g} ({v['method']}) in {v['space']}", highlight=False)
    elif data["proposals"]:
        out.print("nothing changed" + ("" if apply else "; record the proposals with --apply"))
    else:
        out.print(f"no threshold is bound to the space alias {data['alias']} serves")


def _render_proposal(p: dict[str, Any]) -> None:
    t = Table(title=f"{p['name']}: {p['old_value']:g} in the old space; recommended {p['recommended'] or 'none'}")
    for col in ("candidate", "value", "95% interval", "pairs above (old → new)", "precision", "recall", "now above", "now below"):
        t.add_column(col)
    for label, r in p["report"].items():
        match = p.get(label) if label in ("distribution", "labels") else None
        iv = match["interval"] if match and match.get("interval") else None
        corpus, lab = r["corpus"], r["labels"]
        effect = corpus or lab
        above = f"{effect['before']['fraction_above']:.2%} → {effect['after']['fraction_above']:.2%}" if effect else ""
        prec = f"{lab['before']['precision']:.3f} → {lab['after']['precision']:.3f}" if lab else "no labels"
        rec = f"{lab['before']['recall']:.3f} → {lab['after']['recall']:.3f}" if lab else ""
        t.add_row(label, f"{r['value']:.4f}", f"[{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "", above, prec, rec,
                  str(effect["now_above"]) if effect else "", str(effect["now_below"]) if effect else "")
    out.print(t)
    chosen = p["report"].get(p["recommended"] or "", {})
    effect = chosen.get("corpus") or chosen.get("labels") if chosen else None
    for key, word in (("examples_now_above", "now above"), ("examples_now_below", "now below")):
        for f in (effect or {}).get(key, [])[:2]:
            out.print(f"  {word}: {f['old_score']:.3f} → {f['new_score']:.3f}  {f['text_a'][:70]!r} | {f['text_b'][:70]!r}",
                      highlight=False, markup=False)
    for note in p["notes"]:
        err.print(_styled("note", "yellow", f" {note}"), highlight=False)


# -- monitoring ---------------------------------------------------------------------
def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command()
def freshness(
    source: Annotated[Optional[str], typer.Option(help="Only this source.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Per source: documents, stale documents, lag p50/p95/max, oldest stale, SLO status."""
    with _errors(as_json):
        report = commands.freshness(workspace, source=source)
    if as_json:
        return _emit_json(report.to_dict())
    t = Table(title=f"freshness: {report.status}")
    for col in ("source", "docs", "stale", "unindexed", "lag p50", "lag p95", "lag max", "max_lag", "SLO", "oldest stale"):
        t.add_column(col)
    for s in report.sources:
        oldest = f"{s.oldest_stale['id']} ({_ago(s.oldest_stale['lag'])})" if s.oldest_stale else ""
        style = {"breached": "red", "warn": "yellow"}.get(s.slo, "")
        t.add_row(s.source, str(s.documents), str(s.stale), str(s.unindexed), *(_ago(s.lag[q]) for q in ("p50", "p95", "max")),
                  _ago(s.max_lag) if s.max_lag is not None else "off", Text(s.slo, style), oldest)
    out.print(t)


@app.command()
def check(
    only: Annotated[Optional[list[str]], typer.Option(help="Run only this check (repeatable): freshness, fingerprint, drift, canary, coverage.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Run every configured health check. Exit code 0 ok, 1 warning, 2 failing."""
    with _errors(as_json):
        report = commands.check(workspace, only=only)
    if as_json:
        _emit_json(report.to_dict())
    else:
        _render_checks(report)
    raise typer.Exit(report.exit_code)


def _render_checks(report: Any) -> None:
    colors = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for r in report.results:
        out.print(Text.assemble((f"{r.status:>4}", colors[r.status]), " ", (r.name, "bold"), f": {r.summary}"))
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
    with _errors(as_json):
        report = commands.coverage(workspace, alias=alias)
    if as_json:
        return _emit_json(report.to_dict())
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
        err.print(_styled("warning", "yellow", f" {report.reason}"))


monitor_app = typer.Typer(help="Run the checks on a schedule with Prometheus metrics; canaries; drift references.")
app.add_typer(monitor_app, name="monitor")


@monitor_app.callback(invoke_without_command=True)
def monitor(
    ctx: typer.Context,
    every: Annotated[Optional[str], typer.Option(help="Interval between runs, e.g. 30s, 5m, 1h (default: [monitor] every, 5m).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Run the checks once and exit with their exit code.")] = False,
    port: Annotated[Optional[int], typer.Option(help="Serve Prometheus metrics on this port (/metrics).")] = None,
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
            out.print(_styled(datetime.now().isoformat(timespec="seconds"), "bold", f" checks: {report.status}"))
            _render_checks(report)

    with _errors(as_json):
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
    with _errors(as_json):
        data = commands.monitor_canary(workspace, name=name, off=off)
    if as_json:
        return _emit_json(data)
    out.print(f"{name}: canary {'off' if off else 'on'}; canaries: {', '.join(data['canaries']) or 'none'}")


@monitor_app.command("reference")
def monitor_reference(
    index: Annotated[Optional[str], typer.Option(help="Only this index (default: every active index).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Re-take the drift reference samples (corpus and queries) from what exists now."""
    with _errors(as_json):
        rows = commands.monitor_reference(workspace, index=index)
    if as_json:
        return _emit_json(rows)
    for r in rows:
        out.print(f"{r['index']} {r['stream']}: " + (f"{r['rows']} rows" if r["taken"] else "not enough data yet"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
