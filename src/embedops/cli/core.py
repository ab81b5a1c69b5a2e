"""Workspace, sources, sync, search, serve, status, history and doctor."""


from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table
from rich.text import Text

from embedops import commands
from embedops.cli.common import (
    ActorsOpt,
    AddressOpt,
    BatchSizeOpt,
    ExecutorOpt,
    GpusPerActorOpt,
    JsonOpt,
    PlanOpt,
    WsOpt,
    app,
    brief,
    emit_json,
    err,
    executor_options,
    handle_errors,
    literal,
    out,
    price_note,
    progress_bars,
    styled,
)
from embedops.config import DEFAULT_CHUNKER
from embedops.errors import BudgetExceeded, SourceError
from embedops.search.params import parse_time, parse_where

source_app = typer.Typer(no_args_is_help=True, help="Manage sources.")
app.add_typer(source_app, name="source")


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Directory of the new workspace.")] = Path("."),
    embedder: Annotated[str, typer.Option(help="Embedder of the first index (minilm-l6, minilm-l3, minilm-l6-int8, hashing, sentence-transformers:<name>, onnx:<path>, openai:<model>, or the NAME of an [embedders.NAME] section).")] = "minilm-l6",
    chunker: Annotated[str, typer.Option(help="Chunker: auto (default: code files by syntax, the rest as prose), code, structured or whole.")] = DEFAULT_CHUNKER,
    database: Annotated[Optional[str], typer.Option(help="Database URL or SQLite path (default .embedops/catalog.db); a password in it is used now and never written.")] = None,
    database_env: Annotated[Optional[str], typer.Option(help="Name of an environment variable holding the catalog URL with its password, read at every open.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="openai:<model>: the endpoint (POST {base-url}/embeddings); default https://api.openai.com/v1.")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="openai:<model>: NAME of the env var holding the API key (the key is never written); default OPENAI_API_KEY for api.openai.com.")] = None,
    curate: Annotated[bool, typer.Option("--curate/--no-curate", help="Curate documents before they are embedded: duplicates, near-duplicates and low-quality text are quarantined, every document gets a language tag ([curate] enabled; on by default).")] = True,
    storage: Annotated[Optional[str], typer.Option(help="Storage variant of the first index's ANN ([embedops] storage): f32 (default), f16, i8+r4 (int8 graph, full-precision rescoring: 3x less memory, 2-3x faster graph build), b1:flat+r10 ... (docs/capacity.md).")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Create embedops.toml and the catalog (keeping [embedders.*] sections already written there; a failed
    init leaves nothing behind)."""
    with handle_errors(as_json):
        result = commands.init(workspace or path, embedder=embedder, chunker=chunker, database=database,
                               database_env=database_env, base_url=base_url, api_key_env=api_key_env, curate=curate,
                               storage=storage)
    if as_json:
        return emit_json(result.to_dict())
    held = "" if storage is None else f", storage {result.storage}"
    out.print(f"created {result.config} (embedder {result.embedder}, chunker {result.chunker},"
              f" curation {'on' if result.curate else 'off'}{held})")


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="Source name.")],
    path: Annotated[Optional[Path], typer.Argument(help="Folder, JSONL or Parquet file, or BEIR directory (none for push and sql).")] = None,
    kind: Annotated[str, typer.Option(help="folder | jsonl | parquet | beir | push (documents arrive through the HTTP API) | sql (a database table or query)")] = "folder",
    include: Annotated[Optional[list[str]], typer.Option(help="folder: glob to include (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="folder: glob to exclude (repeatable).")] = None,
    follow_external_symlinks: Annotated[bool, typer.Option("--follow-external-symlinks", help="folder: index files that symbolic links lead to outside the folder (skipped by default).")] = False,
    id_field: Annotated[Optional[str], typer.Option(help="jsonl, parquet: field (column) holding the id.")] = None,
    text_field: Annotated[Optional[str], typer.Option(help="jsonl, parquet: field (column) holding the text.")] = None,
    title_field: Annotated[Optional[str], typer.Option(help="jsonl, parquet: optional title field, prepended to the text.")] = None,
    url_env: Annotated[Optional[str], typer.Option(help="sql: environment variable holding the database URL (with its password).")] = None,
    url: Annotated[Optional[str], typer.Option(help="sql: database URL without password (one with a password is refused).")] = None,
    table: Annotated[Optional[str], typer.Option(help="sql: table or view (schema.table), quoted as an identifier.")] = None,
    query: Annotated[Optional[str], typer.Option(help="sql: a SELECT to read instead of a table (your SQL, run as is).")] = None,
    id_column: Annotated[Optional[str], typer.Option("--id", help="sql: id column (default id).")] = None,
    text: Annotated[Optional[str], typer.Option(help="sql: SQL expression giving the text (default: column text).")] = None,
    title: Annotated[Optional[str], typer.Option(help="sql: SQL expression giving a title, put before the text.")] = None,
    updated_at: Annotated[Optional[str], typer.Option(help="sql: column that changes when the row does (syncs then read only rows whose value changed).")] = None,
    where: Annotated[Optional[str], typer.Option(help="sql: SQL condition selecting the rows (your SQL, run as is).")] = None,
    metadata: Annotated[Optional[str], typer.Option(help="sql: comma-separated columns kept as metadata.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Register a source (folder, jsonl, beir, sql, or push: no path, documents arrive through the HTTP API)."""
    columns = [c.strip() for c in metadata.split(",") if c.strip()] if metadata is not None else None
    options = {"include": include, "exclude": exclude, "follow_external_symlinks": follow_external_symlinks,
               "id_field": id_field, "text_field": text_field,
               "title_field": title_field, "url_env": url_env, "url": url, "table": table, "query": query,
               "id_column": id_column, "text": text, "title": title, "updated_at": updated_at, "where": where,
               "metadata": columns}
    with handle_errors(as_json):
        result = commands.source_add(workspace, name=name, path=path, kind=kind, **{k: v for k, v in options.items() if v})
    if as_json:
        return emit_json(result.to_dict())
    # Soft-wrapped: the terminal folds a long path, and a copied path has no line break inside it.
    out.print(f"added source {result.name} ({result.kind})" + (f" at {result.path}" if result.path else ""),
              soft_wrap=True)


@source_app.command("list")
def source_list(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Sources in embedops.toml or still in the catalog, with their live documents."""
    with handle_errors(as_json):
        rows = commands.source_list(workspace)
    if as_json:
        return emit_json(rows)
    t = Table(title="sources")
    for col in ("name", "kind", "path", "documents", "configured"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["kind"], str(r["path"] or "—"), str(r["documents"]),
                  "yes" if r["configured"] else Text("no: `embedops source remove` it", "yellow"))
    out.print(t)


@source_app.command("remove")
def source_remove(
    name: Annotated[str, typer.Argument(help="Source name.")],
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Remove a source: its documents are tombstoned and leave every index (in the ledger)."""
    with handle_errors(as_json):
        data = commands.source_remove(workspace, name=name.strip(), plan=plan)
    if as_json:
        return emit_json(data)
    verb = "would remove" if plan else "removed"
    out.print(f"{verb} source {data['source']} and its {data['documents']} documents")
    if data["evalsets"]:
        err.print(styled("note:", "yellow", f" eval sets bound to it can no longer be scored: {', '.join(data['evalsets'])}"))


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="File to write (never overwritten).")],
    pg_dump: Annotated[str, typer.Option(help="PostgreSQL: the pg_dump binary (the server's major version or newer).")] = "pg_dump",
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """A consistent copy of the catalog while it is in use (SQLite backup API; pg_dump for PostgreSQL)."""
    with handle_errors(as_json):
        result = commands.backup(workspace, path=path, plan=plan, pg_dump=pg_dump)
    if as_json:
        return emit_json(result.to_dict())
    out.print(f"{'would write' if plan else 'wrote'} {result.path} ({result.bytes:,} bytes)")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A file written by `embedops backup`.")],
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Put a backup in place of the SQLite catalog; the current file is moved aside, never deleted."""
    with handle_errors(as_json):
        result = commands.restore(workspace, path=path, plan=plan)
    if as_json:
        return emit_json(result.to_dict())
    out.print(f"{'would restore' if plan else 'restored'} {result.path} from {path}"
              + (f"; the previous catalog is at {result.replaced}" if result.replaced else ""))


@app.command()
def sync(
    source: Annotated[Optional[str], typer.Option(help="Sync only this source.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Dry run: print what would change, change nothing.")] = False,
    allow_mass_delete: Annotated[bool, typer.Option("--allow-mass-delete", help="Delete more than max_delete_share of a source (an emptied source is refused by default).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Read every record again, ignoring signatures (a table's updated_at, a file's mtime); only changed text is re-embedded.")] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = 0.0,
    batch_size: BatchSizeOpt = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop once this run has spent this many USD (exit 4; run it again to resume).", min=0)] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Bring the indexes in line with the sources: only changed chunks are embedded."""
    with handle_errors(as_json):
        options = executor_options(executor, address, actors, gpus_per_actor, batch_size)
        try:
            result = commands.sync(workspace, source=source, plan=plan, progress=progress_bars(not as_json),
                                   allow_mass_delete=allow_mass_delete, full=full,
                                   executor=options, max_cost=max_cost)
        except (SourceError, BudgetExceeded) as exc:
            if not as_json and "result" in exc.details:  # the sources that could be read were synced
                _print_sync(exc.details["result"], plan)
            raise
    data = result.to_dict()
    if as_json:
        return emit_json(data)
    _print_sync(data, plan)


def _print_sync(data: dict[str, Any], plan: bool) -> None:
    out.print(
        f"sync {'plan' if plan else 'done'}: added {data['added']}, updated {data['updated']}, deleted {data['deleted']},"
        f" unchanged {data['unchanged']}; "
        + (f"{data['chunks_to_embed']} chunks to embed" if plan else f"embedded {data['embedded']} chunks")
        + f" ({data['seconds']:.2f}s)"
    )
    for src in data["sources"]:
        if src.get("unchanged_by") == "fingerprint":
            out.print(f"{src['source']}: unchanged, by its fingerprint (the same ids and updated_at as at the last"
                      " sync): no row read")
    reasons: dict[str, int] = {}
    for src in data["sources"]:
        for reason, n in (src.get("quarantined") or {}).items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        shown = ", ".join(f"{r} {n}" for r, n in reasons.items())
        out.print(f"{'would quarantine' if plan else 'quarantined'} {sum(reasons.values())} ({shown}):"
                  " see `embedops quarantine list`")
    priced = price_note(data["prices"])
    if plan:
        cost = data["estimated_cost"]
        out.print(f"estimated {data['estimated_tokens']:,} tokens, "
                  + ("cost unknown (an embedder has no price)" if cost is None else f"${cost:.6g}")
                  + (f" at {priced}" if priced else ""))
    elif data.get("spend"):
        spent = data["spend"]
        out.print(f"spent {spent['tokens']:,} tokens in {spent['requests']} requests, ${spent['cost']:.6g}; the cache"
                  f" saved {spent['cache_hits']} chunks (${spent['cache_saved_cost']:.6g})"
                  + (f"; at {priced}" if priced else ""))
    for s in data["skipped"][:20]:
        err.print(styled("skipped", "yellow", f" {s['id']}: {s['reason']}"), highlight=False)
    if len(data["skipped"]) > 20:
        err.print(styled(f"... and {len(data['skipped']) - 20} more skipped", "yellow", " (see --json or `embedops history`)"))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results.")] = 10,
    alias: Annotated[Optional[str], typer.Option(help="Alias to query (default: prod).")] = None,
    index: Annotated[Optional[str], typer.Option(help="Query one index directly instead of an alias.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only documents of this source.")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="Metadata filter KEY=VALUE (repeatable).")] = None,
    updated_after: Annotated[Optional[str], typer.Option(help="Only documents updated at or after this ISO 8601 time (a time without a zone is UTC).")] = None,
    mode: Annotated[str, typer.Option(help="vector (default), bm25 (full-text) or hybrid (both, fused by RRF).")] = "vector",
    fresh_only: Annotated[bool, typer.Option("--fresh-only", help="Drop stale results (source changed since embedding, or not re-checked within max_lag).")] = False,
    recency_half_life: Annotated[Optional[str], typer.Option(help="Weight scores by document age: halved per half-life, e.g. 30d.")] = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Search the alias (embedding the query with the index's own embedder)."""
    from embedops.monitor.settings import parse_duration

    with handle_errors(as_json):
        filters = parse_where(where or [])
        after = parse_time(updated_after) if updated_after is not None else None
        half_life = parse_duration(recency_half_life, what="--recency-half-life") if recency_half_life else None
        result = commands.search(workspace, query=query, k=k, alias=alias, index=index, source=source,
                                 where=filters, updated_after=after, mode=mode, fresh_only=fresh_only,
                                 recency_half_life=half_life)
    for note in result.notes:
        err.print(styled("note:", "yellow", f" {note}"), highlight=False)
    if as_json:
        return emit_json(result.to_list())
    if not result.results:
        out.print(f"no results on {result.alias}" + (" for these filters" if where or source or updated_after else "")
                  + ": `embedops status` shows what is indexed")
        return
    table = Table(title=f"{query!r} on {result.alias}", show_lines=False)
    for col in ("#", "score", "document", "text"):
        table.add_column(col)
    for i, r in enumerate(result.results, 1):
        snippet = " ".join(r.text.split())[:110]
        table.add_row(str(i), f"{r.score:.3f}", Text.assemble(literal(r.document_id), (" (stale)", "yellow") if r.stale else ""),
                      snippet)
    out.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8765,
    token_env: Annotated[str, typer.Option(help="Env var holding the bearer token that writes (and --auth-reads reads) need.")] = "EMBEDOPS_TOKEN",
    auth_reads: Annotated[bool, typer.Option("--auth-reads", help="Reads need the bearer token too.")] = False,
    allow_public_reads: Annotated[bool, typer.Option("--allow-public-reads", help="Serve reads without a token on a non-loopback --host (refused otherwise).")] = False,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted (413 above).")] = 1 << 20,
    max_query_chars: Annotated[int, typer.Option(help="Longest query accepted (422 above).")] = 2_000,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (uvicorn's access log; query values are never shown).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep the sources synced inside the service (as `embedops watch`).")] = False,
    every: Annotated[str, typer.Option(help="With --watch: how often tables and files are polled (e.g. 30s, 5m).")] = "30s",
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Run the HTTP service (search, sync, push documents, status, metrics) until Ctrl-C."""
    from embedops.monitor.settings import parse_duration

    with handle_errors(as_json):
        watch_every = parse_duration(every, what="--every") if watch else None
        commands.serve(workspace, host=host, port=port, token_env=token_env, auth_reads=auth_reads,
                       allow_public_reads=allow_public_reads, max_body_bytes=max_body_bytes,
                       max_query_chars=max_query_chars, access_log=access_log,
                       watch_every=watch_every)


@app.command()
def watch(
    every: Annotated[str, typer.Option(help="How often tables and files are polled (e.g. 30s, 5m); folders follow file events.")] = "30s",
    debounce: Annotated[float, typer.Option(help="Seconds within which file events count as one change.", min=0.001, max=60)] = 0.2,
    port: Annotated[Optional[int], typer.Option(help="Serve Prometheus metrics on this port (/metrics).", min=1, max=65535)] = None,
    addr: Annotated[str, typer.Option(help="Interface for --port.")] = "0.0.0.0",
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Keep every source synced until Ctrl-C or SIGTERM (the sync in progress finishes first)."""
    from embedops.monitor.settings import parse_duration

    with handle_errors(as_json):
        interval = parse_duration(every, what="--every")
        err.print(f"watching the sources (polling every {interval:g}s); Ctrl-C to stop", highlight=False)
        state = commands.watch(workspace, every=interval, debounce=debounce, port=port, addr=addr)
    if as_json:
        return emit_json({"syncs": state.syncs, "errors": state.errors, "embedded": state.embedded})
    synced = ", ".join(f"{name} {n}" for name, n in sorted(state.syncs.items())) or "none"
    failed = sum(state.errors.values())
    out.print(f"stopped: syncs per source: {synced}" + (f"; {failed} failed (see the warnings)" if failed else ""))


@app.command()
def status(as_json: JsonOpt = False, workspace: WsOpt = None) -> None:
    """Sources, documents, chunks, indexes, aliases and spaces."""
    with handle_errors(as_json):
        data = commands.status(workspace)
    if as_json:
        return emit_json(data)
    out.print(styled("workspace", "bold", f" {data['workspace']}  embedder {data['embedder']}  chunker {data['chunker']}"))
    out.print(f"documents {data['documents']} (quarantined {data['quarantined_documents']}, deleted"
              f" {data['deleted_documents']}; seen {data['seen_documents']}), chunks {data['chunks']}")
    if data["quarantined_by_reason"]:
        out.print("quarantined by reason: " + ", ".join(f"{r} {n}" for r, n in data["quarantined_by_reason"].items()))
    if data["documents_by_language"]:
        out.print("documents by language: " + ", ".join(f"{k} {n}" for k, n in data["documents_by_language"].items()))
    if data["unchecked_documents"] and data.get("curate"):
        out.print(f"{data['unchecked_documents']} documents not checked by curation yet: the next sync checks them")
    t = Table(title="sources")
    for col in ("name", "kind", "path", "documents"):
        t.add_column(col)
    for s in data["sources"]:
        t.add_row(s["name"], s["kind"], str(s["path"]), str(s["documents"]))
    out.print(t)
    t = Table(title="indexes")
    for col in ("id", "embedder", "storage", "status", "vectors", "aliases", "chunker"):
        t.add_column(col)
    for ix in data["indexes"]:
        names = ", ".join(a for a, i in data["aliases"].items() if i == ix["id"])
        t.add_row(ix["id"], ix["embedder"], ix["storage"], ix["status"], str(ix["vectors"]), names, ix["chunker"])
    out.print(t)
    for a in data.get("ann", []):
        if a["graph"] == "none":
            continue
        state = {"running": "compacting now (searches go on)",
                 "due": "compaction due: the next sync, or the service's next search, starts it"}.get(a["compaction"])
        out.print(f"ANN {a['index']}: {a['vectors']} vectors, {a['tombstones']} tombstones"
                  f" ({a['tombstone_share']:.0%})" + (f"; {state}" if state else ""))


@app.command()
def history(
    kind: Annotated[Optional[str], typer.Option(help="Only entries whose kind starts with this (sync, index, alias, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent N entries (at least 1).")] = 50,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """The ledger: every sync, index and alias change, newest first."""
    with handle_errors(as_json):
        rows = commands.history(workspace, kind=kind, limit=limit)
    for r in rows:
        r["at"] = datetime.fromtimestamp(r["at"], timezone.utc).isoformat(timespec="seconds")
    if as_json:
        return emit_json(rows)
    t = Table(title="ledger (UTC; `--json` for every detail)")
    for col in ("id", "at", "kind", "details"):
        t.add_column(col, overflow="fold" if col == "details" else "ellipsis", no_wrap=col != "details")
    for r in rows:
        t.add_row(str(r["id"]), r["at"][:19].replace("T", " "), r["kind"], brief(r["details"]))
    out.print(t)


@app.command()
def adopt(
    name: Annotated[str, typer.Argument(help="Name of the source the adopted documents become.")],
    embedder: Annotated[str, typer.Option(help="The embedder that made the vectors (must be the workspace's).")],
    table: Annotated[Optional[str], typer.Option(help="Table holding id, text and vector (or --query / --file).")] = None,
    query: Annotated[Optional[str], typer.Option(help="A SELECT giving id, text and vector columns.")] = None,
    file: Annotated[Optional[Path], typer.Option(help="A JSONL (.jsonl/.jsonl.gz) or Parquet (.parquet) file with id, text and vector fields.")] = None,
    id_column: Annotated[str, typer.Option("--id", help="Id column or field.")] = "id",
    text: Annotated[str, typer.Option(help="Text column or field (for a table: an SQL expression, as in `source add`).")] = "text",
    vector: Annotated[str, typer.Option(help="Vector column (pgvector, JSON text, float32 bytes; in Parquet a list of floats) or field (JSON list).")] = "embedding",
    url_env: Annotated[Optional[str], typer.Option(help="Environment variable holding the database URL.")] = None,
    url: Annotated[Optional[str], typer.Option(help="Database URL without password.")] = None,
    updated_at: Annotated[Optional[str], typer.Option(help="Column that changes when a row does (incremental syncs after).")] = None,
    where: Annotated[Optional[str], typer.Option(help="SQL condition selecting the rows.")] = None,
    metadata: Annotated[Optional[str], typer.Option(help="Comma-separated columns kept as metadata.")] = None,
    min_cosine: Annotated[float, typer.Option(help="Every sampled vector must have at least this cosine with its text re-embedded.", min=-1.0, max=1.0)] = 0.999,
    sample: Annotated[int, typer.Option(help="Rows drawn at random and re-embedded.", min=1, max=100_000)] = 200,
    plan: PlanOpt = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Take over vectors embedded elsewhere when a re-embedded random sample matches them; refuse otherwise."""
    with handle_errors(as_json):
        if file is not None:
            options: dict[str, Any] = {"id_field": id_column, "text_field": text}
        else:
            columns = [c.strip() for c in metadata.split(",") if c.strip()] if metadata else None
            options = {"url_env": url_env, "url": url, "table": table, "query": query, "id_column": id_column,
                       "text": text, "updated_at": updated_at, "where": where, "metadata": columns}
        result = commands.adopt(workspace, name=name, embedder=embedder, vector=vector, file=file,
                                min_cosine=min_cosine, sample=sample, plan=plan, **options)
    data = result.to_dict()
    if as_json:
        emit_json(data)
    else:
        _print_adopt(data)
    if plan and not result.check.passed:
        raise typer.Exit(1)


def _print_adopt(data: dict[str, Any]) -> None:
    check = data["check"]
    measured = (f"cosine min {check['min_cosine']:.4f}, median {check['median_cosine']:.4f} over {check['compared']}"
                f" sampled rows" if check["compared"] else "no sampled row could be compared")
    extra = f" ({check['split']} split by the chunker, {check['unusable']} unusable)" if check["split"] or check["unusable"] else ""
    if data["plan"]:
        verdict = "would adopt" if check["passed"] else f"would refuse (needs >= {check['threshold']})"
        out.print(f"adopt plan for {data['source']} from {data['origin']}: {measured}{extra}; {verdict}")
        return
    left = ", ".join(f"{k} {v}" for k, v in data["not_adopted"].items()) or "none"
    sync = data["sync"] or {}
    out.print(f"adopted {data['adopted']} vectors into {data['source']} ({measured}); already present"
              f" {data['present']}; left to embed: {left}; the sync embedded {sync.get('embedded', 0)} chunks"
              f" ({data['seconds']:.2f}s)")
    for problem in data["problems"]:
        out.print(f"  not adopted: {problem}", soft_wrap=True)


@app.command()
def spend(
    since: Annotated[Optional[str], typer.Option(help="Only spend in this past window, e.g. 30d, 12h (default: all).")] = None,
    by: Annotated[str, typer.Option(help="Group by space, job, day, source or kind.")] = "space",
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """What embedding cost: tokens, requests, cost, cache hits and the money the cache saved."""
    import time

    from embedops.monitor.settings import parse_duration

    with handle_errors(as_json):
        start = time.time() - parse_duration(since, what="--since") if since else None
        data = commands.spend(workspace, since=start, by=by).to_dict()
    if as_json:
        return emit_json(data)
    keys = {"space": ["embedder", "space_key"], "job": ["job", "kind"], "day": ["day"], "source": ["source"],
            "kind": ["kind"]}[data["by"]]
    t = Table(title=f"spend by {data['by']}" + (f" since {data['since']}" if data["since"] else ""))
    for col in [*keys, "requests", "tokens", "estimated", "cost $", "cache hits", "saved $"]:
        t.add_column(col)
    for r in [*data["rows"], {**{k: "total" if i == 0 else "" for i, k in enumerate(keys)}, **data["total"]}]:
        t.add_row(*[str(r[k] or "—") for k in keys], f"{r['requests']:,}", f"{r['tokens']:,}",
                  f"{r['estimated_tokens']:,}", f"{r['cost']:.6g}", f"{r['cache_hits']:,}", f"{r['cache_saved_cost']:.6g}")
    out.print(t)
    priced = price_note(data["prices"])
    if priced:
        out.print(f"prices now: {priced}")
    budget = data["budget"]
    if budget["monthly_usd"] is not None:
        out.print(f"monthly budget ${budget['monthly_usd']:.6g}: ${budget['month_spent']:.6g} spent this month,"
                  f" ${budget['month_left']:.6g} left")
