"""One function per CLI verb. Each opens the workspace, calls the library once and
returns a typed result; ``cli.py`` and the server only parse, call and render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from embedops.search.engine import Filters, SearchResult
from embedops.workspace import ProgressFactory, SyncResult, Workspace


@dataclass
class InitResult:
    workspace: str
    config: str
    database: str
    embedder: str
    chunker: str

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

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


def init(
    workspace: Path, *, embedder: str = "minilm-l6", chunker: str = "structured", database: str | None = None
) -> InitResult:
    ws = Workspace.init(workspace, embedder=embedder, chunker=chunker, database=database)
    with ws:
        return InitResult(str(ws.root), str(ws.settings.path), ws.settings.database, embedder, chunker)


def source_add(workspace: Path | None, *, name: str, path: Path, kind: str = "folder", **options: Any) -> SourceAddResult:
    with Workspace.open(workspace) as ws:
        cfg = ws.add_source(name, path, kind, **options)
        return SourceAddResult(cfg.name, cfg.kind, cfg.path, cfg.options)


def sync(
    workspace: Path | None, *, source: str | None = None, plan: bool = False, progress: ProgressFactory | None = None
) -> SyncResult:
    with Workspace.open(workspace) as ws:
        return ws.sync(source=source, plan_only=plan, progress=progress)


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
) -> SearchResults:
    with Workspace.open(workspace) as ws:
        filters = Filters(source=source, metadata=where or {}, updated_after=updated_after)
        results = ws.search(query, k=k, alias=alias, index=index, filters=filters if filters else None)
        return SearchResults(query, alias or ws.settings.alias, results)


def status(workspace: Path | None) -> dict[str, Any]:
    with Workspace.open(workspace) as ws:
        return ws.status()


def history(workspace: Path | None, *, kind: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    with Workspace.open(workspace) as ws:
        return ws.history(kind=kind, limit=limit)


# -- migrations ------------------------------------------------------------------
def _gate(min_overlap: float | None, max_regression: float | None) -> Any:
    from embedops.migrate.gate import GateConfig

    defaults = GateConfig()
    return GateConfig(min_overlap=min_overlap,
                      max_regression=defaults.max_regression if max_regression is None else max_regression)


def migrate_plan(
    workspace: Path | None, *, to: str, chunker: str | None = None, chunker_params: dict[str, Any] | None = None,
    alias: str | None = None, min_overlap: float | None = None, max_regression: float | None = None,
) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        plan = Migrator(ws, alias).plan(to, chunker=chunker, chunker_params=chunker_params,
                                        gate=_gate(min_overlap, max_regression))
        return plan.to_dict()


def migrate_start(
    workspace: Path | None, *, to: str, chunker: str | None = None, chunker_params: dict[str, Any] | None = None,
    alias: str | None = None, min_overlap: float | None = None, max_regression: float | None = None, plan: bool = False,
) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).start(to, chunker=chunker, chunker_params=chunker_params,
                                         gate=_gate(min_overlap, max_regression), plan_only=plan)


def migrate_backfill(
    workspace: Path | None, *, batch: int | None = None, max_rate: float | None = None, alias: str | None = None,
    plan: bool = False, progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).backfill(batch=batch, max_rate=max_rate, progress=progress, plan_only=plan)


def migrate_status(workspace: Path | None, *, alias: str | None = None) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).status()


def migrate_cutover(
    workspace: Path | None, *, force: bool = False, reason: str | None = None, alias: str | None = None,
    min_overlap: float | None = None, max_regression: float | None = None, plan: bool = False,
) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    gate = _gate(min_overlap, max_regression) if (min_overlap is not None or max_regression is not None) else None
    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).cutover(force=force, reason=reason, gate=gate, plan_only=plan)


def migrate_rollback(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).rollback(plan_only=plan)


def migrate_finalize(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).finalize(plan_only=plan)


def migrate_abort(workspace: Path | None, *, alias: str | None = None, plan: bool = False) -> dict[str, Any]:
    from embedops.migrate.run import Migrator

    with Workspace.open(workspace) as ws:
        return Migrator(ws, alias).abort(plan_only=plan)


def doctor(workspace: Path | None) -> dict[str, Any]:
    from embedops.migrate.doctor import audit

    with Workspace.open(workspace) as ws:
        return audit(ws)
