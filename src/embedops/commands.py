"""One function per CLI verb. Each opens the workspace, calls the library once and
returns a typed result; ``cli.py`` and the server only parse, call and render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedops.config import DEFAULT_CHUNKER
from embedops.execute import ExecutorOptions
from embedops.catalog.db import read_tx
from embedops.catalog.secrets import strip_password
from embedops.migrate.gate import GateConfig
from embedops.vectors.storage import DEFAULT_KEY as DEFAULT_STORAGE, StorageOptions
from embedops.search.engine import Filters, SearchResult
from embedops.sync.driver import ProgressFactory, SyncResult
from embedops.workspace import Workspace

# Result types only: each verb imports what it runs, so a quick command (migrate status) loads little.
if TYPE_CHECKING:
    from embedops.capacity.analysis import CapacityReport
    from embedops.catalog.backup import BackupResult
    from embedops.embedding.spend import SpendReport
    from embedops.evaluate.runner import EvalComparison, EvalRun
    from embedops.evaluate.store import EvalSetInfo, ImportResult
    from embedops.migrate.gate import Preview
    from embedops.migrate.plan import MigrationPlan
    from embedops.migrate.steps import (
        BackfillResult, CloseResult, CutoverResult, GateReport, MigrationStatus, RollbackResult, StartResult,
    )
    from embedops.thresholds.recalibrate import CalibrationResult
    from embedops.thresholds.registry import ThresholdValue
    from embedops.monitor.checks import CheckReport
    from embedops.monitor.coverage import CoverageReport
    from embedops.monitor.freshness import FreshnessReport
    from embedops.sync.watch import WatchState
    from embedops.adopt import AdoptResult
    from embedops.catalog.curation import QuarantineEntry
    from embedops.sync.quarantine import ReleasePlan


@dataclass
class InitResult:
    workspace: str
    config: str
    database: str
    embedder: str
    chunker: str
    curate: bool = False
    storage: str = DEFAULT_STORAGE  # the first index's storage variant

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SourceAddResult:
    name: str
    kind: str
    path: str
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SearchResults:
    query: str
    alias: str
    results: list[SearchResult]
    notes: list[str] = field(default_factory=list)  # why there may be no results (e.g. an unknown metadata key)

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


@dataclass
class MigrationPlanResult:
    """``migrate plan``: the plan, and with ``--sample`` the preview of the gate's eval comparison."""

    plan: MigrationPlan
    preview: Preview | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.plan.to_dict()
        out["preview"] = self.preview.to_dict() if self.preview else None
        return out


def init(
    workspace: Path, *, embedder: str = "minilm-l6", chunker: str = DEFAULT_CHUNKER, database: str | None = None,
    database_env: str | None = None, base_url: str | None = None, api_key_env: str | None = None,
    curate: bool = True, storage: str | None = None,
) -> InitResult:
    """Create the workspace; a password in ``database`` is used now and never written (see ``database_env``).

    ``embedder="openai:MODEL"`` writes an ``[embedders.NAME]`` section; ``embedder`` is then that NAME.
    ``curate`` (on by default here): new workspaces curate documents before embedding them ([curate]).
    ``storage``: the first index's storage variant (``[embedops] storage``, e.g. ``i8+r4``; default f32)."""
    ws = Workspace.init(workspace, embedder=embedder, chunker=chunker, database=database, database_env=database_env,
                        base_url=base_url, api_key_env=api_key_env, curate=curate, storage=storage)
    with ws:
        # The catalog in use, which $EMBEDOPS_DATABASE or database_env may name instead of `database`; no password.
        in_use, _ = strip_password(ws.settings.database_value)
        return InitResult(str(ws.root), str(ws.settings.path), in_use, ws.settings.embedder, chunker, curate,
                          ws.settings.first_index_storage)


def source_list(workspace: Path | None) -> list[dict[str, Any]]:
    """Sources in embedops.toml or in the catalog, with live document counts."""
    with Workspace.open(workspace) as ws:
        return ws.list_sources()


def source_remove(workspace: Path | None, *, name: str, plan: bool = False) -> dict[str, Any]:
    """Tombstone a source's documents (their vectors leave every index) and drop it from embedops.toml."""
    with Workspace.open(workspace) as ws:
        return ws.remove_source(name, plan_only=plan)


def backup(workspace: Path | None, *, path: Path, plan: bool = False, pg_dump: str = "pg_dump") -> BackupResult:
    """A consistent copy of the catalog (SQLite backup API; pg_dump for PostgreSQL), in the ledger."""
    from embedops.catalog.backup import backup as run_backup
    from embedops.catalog.db import database_url
    from embedops.catalog.ledger import write_ledger

    with Workspace.open(workspace) as ws:
        result = run_backup(database_url(ws.settings.database_value, ws.root), path, plan_only=plan, pg_dump=pg_dump)
        if not plan:
            with ws.engine.begin() as conn:
                write_ledger(conn, "catalog.backup", path=str(path.resolve()), bytes=result.bytes)
        return result


def restore(workspace: Path | None, *, path: Path, plan: bool = False) -> BackupResult:
    """Put a backup in place of the catalog (the current file is moved aside, never deleted)."""
    from embedops.catalog.backup import restore as run_restore
    from embedops.catalog.db import database_url
    from embedops.catalog.ledger import write_ledger
    from embedops.config import find_workspace, load_settings

    settings = load_settings(find_workspace(workspace))  # the catalog may be gone or unreadable: no Workspace.open
    result = run_restore(database_url(settings.database_value, settings.root), path.resolve(), settings.state_dir,
                         plan_only=plan)
    if not plan:
        with Workspace.open(settings.root) as ws, ws.engine.begin() as conn:
            write_ledger(conn, "catalog.restore", source=str(path.resolve()), replaced=result.replaced)
    return result


def source_add(
    workspace: Path | None, *, name: str, path: Path | None = None, kind: str = "folder", **options: Any
) -> SourceAddResult:
    """Register a source; ``path`` is required except for ``kind="push"`` (documents come through the API)."""
    with Workspace.open(workspace) as ws:
        cfg = ws.add_source(name, path, kind, **options)
        return SourceAddResult(cfg.name, cfg.kind, cfg.path, cfg.options)


def sync(
    workspace: Path | None, *, source: str | None = None, plan: bool = False, progress: ProgressFactory | None = None,
    allow_mass_delete: bool = False, full: bool = False, executor: ExecutorOptions | None = None,
    max_cost: float | None = None,
) -> SyncResult:
    """Bring the kept indexes in line with the sources; ``full`` reads every record again (no signatures)."""
    with Workspace.open(workspace) as ws:
        return ws.sync(source=source, plan_only=plan, progress=progress, allow_mass_delete=allow_mass_delete,
                       full=full, executor=executor, max_cost=max_cost)


def spend(workspace: Path | None, *, since: float | None = None, by: str = "space") -> SpendReport:
    """What embedding cost: tokens, requests, cost, cache hits and what the cache saved, grouped ``by`` space, job,
    day, source or kind, over the spend rows since ``since`` (epoch seconds; None: all)."""
    from embedops.embedding.spend import SpendReport, embedders_in, group_by, report

    group = group_by(by)
    with Workspace.open(workspace) as ws:
        limits = ws.budget_limits()
        with read_tx(ws.engine) as conn:
            rows, total = report(conn, since=since, by=group)
            names = embedders_in(conn, since=since)
        return SpendReport(since, group, rows, total, limits.monthly_usd, limits.month_spent,
                           prices={name: ws.settings.pricing(name) for name in names})


def search(
    workspace: Path | None,
    *,
    query: str,
    k: int = 10,
    alias: str | None = None,
    index: str | None = None,
    source: str | None = None,
    where: dict[str, str] | None = None,
    updated_after: datetime | None = None,
    mode: str = "vector",
    fresh_only: bool = False,
    recency_half_life: float | None = None,
) -> SearchResults:
    with Workspace.open(workspace) as ws:
        filters = Filters(source=source, metadata=where or {}, updated_after=updated_after)
        results = ws.search(query, k=k, alias=alias, index=index, filters=filters if filters else None, mode=mode,
                            fresh_only=fresh_only, recency_half_life=recency_half_life)
        notes = [] if results else ws.filter_notes(filters)
        return SearchResults(query, alias or ws.settings.alias, results, notes)


def serve(
    workspace: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token_env: str = "EMBEDOPS_TOKEN",
    auth_reads: bool = False,
    allow_public_reads: bool = False,
    max_body_bytes: int = 1 << 20,
    max_query_chars: int = 2_000,
    access_log: bool = False,
    watch_every: float | None = None,
) -> None:
    """Run the HTTP service over the workspace until interrupted (see docs/service.md); ``watch_every``: keep the
    sources synced inside it too (as `embedops watch`).

    A non-loopback ``host`` without ``auth_reads`` is refused unless ``allow_public_reads``.
    """
    from embedops.server.config import ServerConfig
    from embedops.server.run import serve as run_server

    config = ServerConfig(token_env=token_env, auth_reads=auth_reads, max_body_bytes=max_body_bytes,
                          max_query_chars=max_query_chars, watch_every=watch_every)
    run_server(workspace, host=host, port=port, config=config, access_log=access_log,
               allow_public_reads=allow_public_reads)


def adopt(
    workspace: Path | None, *, name: str, embedder: str, vector: str = "embedding", file: Path | None = None,
    min_cosine: float = 0.999, sample: int = 200, plan: bool = False, **options: Any,
) -> AdoptResult:
    """Adopt vectors embedded elsewhere (a table, or a JSONL or Parquet ``file``) as source ``name`` when a
    re-embedded random sample matches them; ``options`` are the sql source's (table, query, id_column, text,
    url_env...) or, for a file, ``id_field`` and ``text_field``."""
    from embedops.adopt import AdoptInput
    from embedops.adopt import adopt as run_adopt

    given = {k: v for k, v in options.items() if v is not None}
    if file is None:
        source = AdoptInput("sql", vector, given)
    else:
        source = AdoptInput("parquet" if file.suffix.lower() == ".parquet" else "jsonl", vector, given, file.resolve())
    with Workspace.open(workspace) as ws:
        return run_adopt(ws, name, source, embedder=embedder, min_cosine=min_cosine, sample=sample, plan_only=plan)


def watch(
    workspace: Path | None, *, every: float = 30.0, debounce: float = 0.2, port: int | None = None,
    addr: str = "0.0.0.0",
) -> WatchState:
    """Keep every source synced until SIGINT/SIGTERM: file events for folders, polling every ``every`` seconds for
    tables and files; Prometheus metrics on ``port``. Returns what the watcher did."""
    from embedops.sync.watch import run_watch

    return run_watch(workspace, every=every, debounce=debounce, port=port, addr=addr)


def status(workspace: Path | None) -> dict[str, Any]:
    with Workspace.open(workspace) as ws:
        return ws.status()


def quarantine_list(workspace: Path | None, *, reason: str | None = None, source: str | None = None,
                    released: bool = False) -> list[QuarantineEntry]:
    """Documents curation held back (with ``released``: also those released since), oldest decision first."""
    from embedops.catalog.db import read_tx
    from embedops.sync.quarantine import list_quarantine

    with Workspace.open(workspace) as ws, read_tx(ws.engine) as conn:
        return list_quarantine(conn, reason=reason, source=source, released=released)


def quarantine_show(workspace: Path | None, *, document: str, source: str | None = None) -> QuarantineEntry:
    """One document's curation decision: status, reason, every finding (value, limit) and its canonical document."""
    from embedops.catalog.db import read_tx
    from embedops.sync.quarantine import find_entry

    with Workspace.open(workspace) as ws, read_tx(ws.engine) as conn:
        return find_entry(conn, document, source)


def quarantine_release(workspace: Path | None, *, document: str, source: str | None = None,
                       plan: bool = False) -> ReleasePlan:
    """Embed a quarantined document anyway; it is not checked again until its content changes."""
    with Workspace.open(workspace) as ws:
        return ws.release(document, source=source, plan_only=plan)


def history(workspace: Path | None, *, kind: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` ledger rows (None: all), optionally of kinds starting with ``kind``."""
    if limit is not None and limit < 1:
        from embedops.errors import ConfigError

        raise ConfigError(f"limit must be at least 1 (got {limit})", hint="leave it out for the default 50")
    with Workspace.open(workspace) as ws:
        return ws.history(kind=kind, limit=limit)


# -- migrations ------------------------------------------------------------------
@dataclass(frozen=True)
class GateOptions:
    """Gate settings given on the command line; None keeps the migration's (or the default) value."""

    min_overlap: float | None = None
    max_regression: float | None = None
    max_segment_regression: float | None = None
    min_segment_queries: int | None = None
    segment_by: list[str] | None = None
    metric: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in self.__dict__.values())

    def apply(self, base: GateConfig) -> GateConfig:
        changes = dict(self.__dict__)
        if self.segment_by is not None:
            changes["segment_by"] = [s for s in self.segment_by if s != "none"]
        return base.replace(**changes)


def migrate_plan(
    workspace: Path | None, *, to: str | None = None, chunker: str | None = None,
    chunker_params: dict[str, Any] | None = None, alias: str | None = None, gate: GateOptions = GateOptions(),
    probe: bool = False, sample: int | None = None, storage: StorageOptions = StorageOptions(),
) -> MigrationPlanResult:
    """What a migration would embed, take, cost and store, its gate and bound eval sets; ``sample``: a preview.

    ``to`` defaults to the alias's own model; ``storage`` changes the storage variant (precision, dims, rescoring)."""
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        m = migrator(ws, alias)
        config = gate.apply(GateConfig())
        plan = m.plan(to, chunker=chunker, chunker_params=chunker_params, gate=config, probe=probe, storage=storage)
        preview = m.preview(to, sample, chunker=chunker, chunker_params=chunker_params, gate=config) if sample else None
        return MigrationPlanResult(plan, preview)


def migrate_start(
    workspace: Path | None, *, to: str | None = None, chunker: str | None = None,
    chunker_params: dict[str, Any] | None = None, alias: str | None = None, gate: GateOptions = GateOptions(),
    plan: bool = False, storage: StorageOptions = StorageOptions(),
) -> StartResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).start(to, chunker=chunker, chunker_params=chunker_params,
                                         gate=gate.apply(GateConfig()), plan_only=plan, storage=storage)


def migrate_backfill(
    workspace: Path | None, *, batch: int | None = None, max_rate: float | None = None, alias: str | None = None,
    plan: bool = False, progress: ProgressFactory | None = None, executor: ExecutorOptions | None = None,
    max_cost: float | None = None,
) -> BackfillResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).backfill(batch=batch, max_rate=max_rate, progress=progress, plan_only=plan,
                                            executor=executor, max_cost=max_cost)


def migrate_status(workspace: Path | None, *, alias: str | None = None) -> MigrationStatus:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).status()


def migrate_gate(workspace: Path | None, *, alias: str | None = None, gate: GateOptions = GateOptions()) -> GateReport:
    """Decide the gate now without cutting over (evidence reused while both indexes are unchanged)."""
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        m = migrator(ws, alias)
        config = gate.apply(m.require("open", "rolled_back").gate_config) if gate.given() else None
        return m.gate(config=config)


def migrate_cutover(
    workspace: Path | None, *, force: bool = False, reason: str | None = None, alias: str | None = None,
    gate: GateOptions = GateOptions(), plan: bool = False,
) -> CutoverResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        m = migrator(ws, alias)
        config = gate.apply(m.require("open", "rolled_back").gate_config) if gate.given() else None
        return m.cutover(force=force, reason=reason, gate=config, plan_only=plan)


def migrate_rollback(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> RollbackResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).rollback(plan_only=plan)


def migrate_finalize(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> CloseResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).finalize(plan_only=plan)


def migrate_abort(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> CloseResult:
    from embedops.compose import migrator

    with Workspace.open(workspace) as ws:
        return migrator(ws, alias).abort(plan_only=plan)


def doctor(workspace: Path | None) -> dict[str, Any]:
    from embedops.migrate.doctor import audit

    with Workspace.open(workspace) as ws:
        return audit(ws)


# -- thresholds ------------------------------------------------------------------
@dataclass
class ThresholdResult:
    """One threshold value (added, set or read), with what the labels file held."""

    value: ThresholdValue
    plan: bool = False
    labelled_pairs: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.value.to_dict(), "plan": self.plan, "labelled_pairs": self.labelled_pairs,
                "problems": self.problems}


def thresholds_add(
    workspace: Path | None, *, name: str, value: float, description: str = "", labels: Path | None = None,
    alias: str | None = None, plan: bool = False,
) -> ThresholdResult:
    """Register a threshold, valued in the space the alias serves; ``labels``: labelled pairs for label matching."""
    from embedops.thresholds.labels import read_labels

    pairs = read_labels(labels) if labels is not None else None
    with Workspace.open(workspace) as ws:
        added = ws.thresholds.add(name, value, description=description, labels=pairs, alias=alias, plan_only=plan)
    return ThresholdResult(added, plan, len(pairs.pairs) if pairs else 0, pairs.problems if pairs else [])


def thresholds_labels(workspace: Path | None, *, name: str, path: Path, plan: bool = False) -> dict[str, Any]:
    """Attach (or replace) a threshold's labelled pairs."""
    from embedops.thresholds.labels import read_labels

    pairs = read_labels(path)
    with Workspace.open(workspace) as ws:
        return ws.thresholds.set_labels(name, pairs, plan_only=plan)


def thresholds_list(workspace: Path | None, *, alias: str | None = None, all_values: bool = False) -> list[dict[str, Any]]:
    """Current value per (threshold, space), marking the alias's space; ``all_values``: every recorded value."""
    from embedops.thresholds.registry import ThresholdRegistry

    with Workspace.open(workspace) as ws:
        registry = ThresholdRegistry(ws.engine, alias or ws.settings.alias, ws.settings.embedder, ws.settings.embedders)
        if all_values:
            return [v.to_dict(evidence=False) for v in registry.history()]
        return [info.to_dict() for info in registry.list()]


def thresholds_get(
    workspace: Path | None, *, name: str, space: str | None = None, alias: str | None = None
) -> ThresholdResult:
    """What applications read: the value for the space the alias serves (or ``space``)."""
    with Workspace.open(workspace) as ws:
        return ThresholdResult(ws.thresholds.current(name, space=space, alias=alias))


def thresholds_set(
    workspace: Path | None, *, name: str, value: float, space: str, reason: str | None = None, plan: bool = False
) -> ThresholdResult:
    """Record a value chosen by hand for a space (space key, index id or embedder name)."""
    with Workspace.open(workspace) as ws:
        return ThresholdResult(ws.thresholds.set(name, value, space=space, reason=reason, plan_only=plan), plan)


def thresholds_calibrate(
    workspace: Path | None, *, to: str, name: list[str] | None = None, method: str = "both",
    objective: str = "precision", use: str | None = None, pairs: int = 2000, apply: bool = False,
    alias: str | None = None, plan: bool = False,
) -> CalibrationResult:
    """Propose values in space ``to`` for the thresholds bound to the alias's space, with evidence and the
    behaviour change; ``apply`` records them (method and evidence in the ledger)."""
    from embedops.thresholds.recalibrate import SampleConfig, calibrate

    with Workspace.open(workspace) as ws:
        return calibrate(ws, to, names=name or None, method=method, objective=objective, use=use,
                         sample=SampleConfig.for_pairs(pairs), apply=apply, alias=alias, plan_only=plan)


# -- evaluation ------------------------------------------------------------------
@dataclass
class EvalReportResult:
    path: str
    summary: str
    kind: str  # "run" or "comparison"
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, **self.data}


def eval_import(
    workspace: Path | None,
    *,
    name: str,
    path: Path,
    split: str = "test",
    source: str | None = None,
    format: str | None = None,
    alias: str | None = None,
) -> ImportResult:
    from embedops.evaluate.store import import_evalset

    with Workspace.open(workspace) as ws:
        return import_evalset(ws, name, path, split=split, source=source, fmt=format, alias=alias)


def eval_bind(workspace: Path | None, *, name: str, alias: str | None, plan: bool = False) -> EvalSetInfo:
    """Bind eval set ``name`` (its latest version) to ``alias``, or unbind it with ``alias=None``."""
    from embedops.evaluate.store import bind_evalset

    with Workspace.open(workspace) as ws:
        return bind_evalset(ws, name, alias, plan_only=plan)


def eval_list(workspace: Path | None, *, all_versions: bool = False) -> list[EvalSetInfo]:
    from embedops.catalog.db import read_tx
    from embedops.evaluate.store import list_evalsets

    with Workspace.open(workspace) as ws, read_tx(ws.engine) as conn:
        return list_evalsets(conn, latest_only=not all_versions)


def eval_run(
    workspace: Path | None,
    *,
    name: str,
    alias: str | None = None,
    index: str | None = None,
    k: int = 10,
    mode: str = "vector",
    segment_by: str | None = None,
    run_out: Path | None = None,
    max_cost: float | None = None,
) -> EvalRun:
    """Score eval set ``name`` on a target; the summary is appended to the ledger (``eval.run``). ``max_cost`` (USD)
    refuses a run whose query embedding would cost more (so does ``[budget] monthly_usd``)."""
    from embedops.evaluate.runner import run_evalset
    from embedops.evaluate.store import record_run

    with Workspace.open(workspace) as ws:
        run = run_evalset(ws, name, alias=alias, index=index, k=k, mode=mode, segment_by=segment_by,
                          limits=ws.budget_limits(max_cost))
        if run_out is not None:
            run.write_trec(run_out)
        summary = run.to_dict(dropped_limit=0)
        record_run(ws, "eval.run", **{key: summary[key] for key in
                                      ("evalset", "version", "target", "k", "metrics", "segment_by", "queries")},
                   worst_segment=run.worst_segment, dropped=summary["dropped"]["total"])
        return run


def eval_compare(
    workspace: Path | None,
    *,
    name: str,
    b: str,
    a: str | None = None,
    k: int = 10,
    mode: str = "vector",
    mode_a: str | None = None,
    mode_b: str | None = None,
    metric: str | None = None,
    segment_by: str | None = "language",
) -> EvalComparison:
    from embedops.evaluate.runner import compare_evalset

    with Workspace.open(workspace) as ws:
        return compare_evalset(ws, name, a, b, k=k, mode=mode, mode_a=mode_a, mode_b=mode_b, metric=metric,
                               segment_by=segment_by)


def eval_report(
    workspace: Path | None,
    *,
    name: str,
    out: Path,
    a: str | None = None,
    b: str | None = None,
    alias: str | None = None,
    index: str | None = None,
    k: int = 10,
    mode: str = "vector",
    mode_a: str | None = None,
    mode_b: str | None = None,
    segment_by: str | None = "language",
) -> EvalReportResult:
    """Write a self-contained HTML report: one run, or A vs B when ``b`` is given."""
    from embedops.evaluate.report import build_report
    from embedops.evaluate.runner import compare_evalset, run_evalset

    with Workspace.open(workspace) as ws:
        if b is not None:
            cmp = compare_evalset(ws, name, a or alias, b, k=k, mode=mode, mode_a=mode_a, mode_b=mode_b,
                                  segment_by=segment_by)
            report, kind, data = build_report(comparison=cmp), "comparison", cmp.to_dict()
        else:
            run = run_evalset(ws, name, alias=a or alias, index=index, k=k, mode=mode, segment_by=segment_by)
            report, kind, data = build_report(run=run), "run", run.to_dict()
    out.write_text(report.html, encoding="utf-8")
    return EvalReportResult(str(out), report.summary, kind, data)


# -- monitoring ------------------------------------------------------------------
def freshness(workspace: Path | None, *, source: str | None = None) -> FreshnessReport:
    """Compare the sources with the catalog: stale documents, lag, SLO status (``monitor.freshness``)."""
    from embedops.monitor.freshness import check_freshness

    with Workspace.open(workspace) as ws:
        return check_freshness(ws, source)


def check(workspace: Path | None, *, only: list[str] | None = None) -> CheckReport:
    """Run every configured health check (or ``only`` these); ``exit_code`` is 0 ok, 1 warn, 2 fail."""
    from embedops.monitor.checks import run_checks

    with Workspace.open(workspace) as ws:
        return run_checks(ws, only)


def coverage(workspace: Path | None, *, alias: str | None = None) -> CoverageReport:
    """How well the eval sets cover the recent logged queries."""
    from embedops.monitor.coverage import check_coverage

    with Workspace.open(workspace) as ws:
        return check_coverage(ws, alias=alias)


def monitor(
    workspace: Path | None, *, every: float | None = None, once: bool = False, port: int | None = None, addr: str = "0.0.0.0",
    on_report: Callable[[CheckReport], None] | None = None,
) -> int:
    """Run the checks every ``every`` seconds (default ``[monitor] every``) or once, serving metrics on ``port``."""
    from embedops.monitor.loop import run_monitor

    return run_monitor(workspace, every=every, once=once, port=port, addr=addr, on_report=on_report)


def monitor_canary(workspace: Path | None, *, name: str, off: bool = False) -> dict[str, Any]:
    """Make eval set ``name`` a canary (run by every check), or stop with ``off``."""
    from embedops.monitor.canary import set_canary

    with Workspace.open(workspace) as ws:
        return set_canary(ws, name, enabled=not off)


def monitor_reference(workspace: Path | None, *, index: str | None = None) -> list[dict[str, Any]]:
    """Re-take the drift reference samples from what exists now (after an intended change)."""
    from embedops.monitor.drift import retake_references

    with Workspace.open(workspace) as ws:
        return retake_references(ws, index)


# -- capacity --------------------------------------------------------------------
@dataclass
class CapacityResult:
    """``embedops capacity``: the measured report, and where its HTML page was written (if asked)."""

    report: CapacityReport
    html: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "report_path": self.html}


def capacity(
    workspace: Path | None, *, alias: str | None = None, eval_set: str | None = None, sizes: str = "1M,10M,100M",
    price_gb_month: float = 3.8, variants: str | None = None, max_loss: float = 0.01, max_p50_ms: float | None = None,
    report: Path | None = None,
) -> CapacityResult:
    """Measure the alias's index as every storage variant on an eval set; nothing served changes."""
    from embedops.capacity.analysis import analyze
    from embedops.capacity.project import parse_sizes, parse_variants

    with Workspace.open(workspace) as ws:
        caps = ws.store.capabilities
        specs = parse_variants(variants, caps.precisions, caps.layouts) if variants else None
        result = analyze(ws, alias=alias, evalset=eval_set, sizes=parse_sizes(sizes), price_gb_month=price_gb_month,
                         variants=specs, max_loss=max_loss, max_p50_ms=max_p50_ms)
    if report is not None:
        from embedops.capacity.report import render_html

        report.write_text(render_html(result), encoding="utf-8")
    return CapacityResult(result, str(report) if report is not None else None)
