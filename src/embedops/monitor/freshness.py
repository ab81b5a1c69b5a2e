"""Freshness: which indexed documents no longer match their source, and for how long.

A document is **stale** when its source changed after its vectors were made,
or when its source was not compared with the catalog (by a sync or by this
check) within the source's SLO ``max_lag``. This check compares every source
with the catalog without embedding anything:

* a folder is checked by ``stat`` alone: a file whose ``mtime:size`` signature
  differs from the one stored at the last sync is changed (touching a file
  counts: the index cannot know the content is the same until it reads it);
* a file-backed source (JSONL, BEIR) whose file is no older than the last sync
  scan is unchanged; otherwise its records are read and their content hashes
  compared (no embedding);
* any other source is scanned through its own ``scan``.

A live document gone from its source is stale too (search still returns it).
New records are reported as ``unindexed``. What is observed is stored as
freshness marks, so search can flag stale results in the same statement that
fetches them; a sync that catches up clears a mark by construction.

>>> lag_stats([10.0, 20.0, 30.0, 40.0])
{'p50': 25.0, 'p95': 38.5, 'max': 40.0}
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.config import SourceConfig
from embedops.errors import NotFound
from embedops.monitor.settings import source_slos
from embedops.sources.base import Document, Skipped, Source, SourceItem, Unchanged
from embedops.sources.folder import FolderSource

if TYPE_CHECKING:
    from embedops.workspace import Workspace

SloStatus = Literal["ok", "warn", "breached"]
#: Stale ids listed per source in a report (all are counted).
LIST_LIMIT = 100


@dataclass(frozen=True)
class _Known:
    id: int
    signature: str | None
    content_hash: str
    marked_at: float | None = None  # change time of an earlier, still unresolved mark

    @property
    def key(self) -> str:
        """What a sync changes when it catches up: the signature, else the content hash."""
        return self.signature if self.signature is not None else self.content_hash


@dataclass(frozen=True)
class Observation:
    """One record whose source differs from the catalog."""

    external_id: str
    document_id: int | None  # None: not in the catalog yet (unindexed)
    reason: Literal["changed", "deleted", "new"]
    catalog_key: str  # the document's key in the catalog (see _Known.key); "" when unindexed
    changed_at: float | None


@dataclass
class SourceFreshness:
    """Freshness of one source, as observed now."""

    source: str
    kind: str
    documents: int
    changed: int
    deleted: int
    unindexed: int
    skipped: int
    lag: dict[str, float]
    oldest_stale: dict[str, Any] | None
    last_sync_at: float | None
    max_lag: float | None
    slo: SloStatus
    stale_ids: list[str] = field(default_factory=list)
    method: str = "scan"

    @property
    def stale(self) -> int:
        return self.changed + self.deleted

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["stale"] = self.stale
        return out


@dataclass
class FreshnessReport:
    at: float
    sources: list[SourceFreshness]

    @property
    def status(self) -> Literal["ok", "warn", "fail"]:
        if any(s.slo == "breached" for s in self.sources):
            return "fail"
        return "warn" if any(s.slo == "warn" for s in self.sources) else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "status": self.status, "sources": [s.to_dict() for s in self.sources]}


# -- observing a source ---------------------------------------------------------------
class _StatOnlyFolder(FolderSource):
    """A folder scan that never opens a file: a changed signature is all freshness needs."""

    def _read_document(self, path: str, rel: str, st: Any, signature: str) -> SourceItem | None:
        return Document(rel, "", {}, datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC), signature)


def _stat_only(source: FolderSource) -> FolderSource:
    clone = _StatOnlyFolder.__new__(_StatOnlyFolder)
    clone.__dict__.update(vars(source))
    return clone


def _newest_mtime(path: Path) -> float | None:
    """The newest modification time of a file, or of the files directly in a folder."""
    try:
        if path.is_file():
            return path.stat().st_mtime
        times = [p.stat().st_mtime for p in path.iterdir() if p.is_file()]
    except OSError:
        return None
    return max(times) if times else None


def observe(source: Source, known: Mapping[str, _Known], last_scan_at: float | None) -> tuple[list[Observation], int, str]:
    """Records that differ from the catalog, the number skipped, and the method used."""
    if isinstance(source, FolderSource):
        return (*_diff(_stat_only(source).scan({k: v.signature for k, v in known.items()}), known, by="signature"), "stat")
    path = getattr(source, "path", None)
    if isinstance(path, Path) and last_scan_at is not None:
        newest = _newest_mtime(path)
        if newest is not None and newest < last_scan_at:
            return [], 0, "mtime"
        changed, skipped = _diff(source.scan({k: v.signature for k, v in known.items()}), known, by="content", mtime=newest)
        return changed, skipped, "content"
    return (*_diff(source.scan({k: v.signature for k, v in known.items()}), known, by="content"), "scan")


def _diff(
    items: Iterable[SourceItem], known: Mapping[str, _Known], *, by: str, mtime: float | None = None
) -> tuple[list[Observation], int]:
    out: list[Observation] = []
    seen: set[str] = set()
    skipped = 0
    for item in items:
        if isinstance(item, Skipped):
            skipped += 1  # a sync keeps the previous version: not stale, not fixable by syncing
            if item.keeps_previous:  # else (not part of the source) a sync deletes it, as one left out
                seen.add(item.external_id)
            continue
        seen.add(item.external_id)
        if isinstance(item, Unchanged):
            continue
        doc = known.get(item.external_id)
        at = item.updated_at.timestamp() if item.updated_at else mtime
        if doc is None:
            out.append(Observation(item.external_id, None, "new", "", at))
            continue
        value = item.signature if by == "signature" else item.content_hash
        if value is not None and value != (doc.signature if by == "signature" else doc.content_hash):
            out.append(Observation(item.external_id, doc.id, "changed", doc.key, at))
    out.extend(Observation(ext, doc.id, "deleted", doc.key, doc.marked_at) for ext, doc in known.items() if ext not in seen)
    return out, skipped


# -- the check ------------------------------------------------------------------------------
def check_freshness(ws: Workspace, source: str | None = None, *, record: bool = True) -> FreshnessReport:
    """Compare each source (or one) with the catalog; store the marks and a ``monitor.freshness`` row."""
    configs = _selected(ws, source)
    now = time.time()
    slos = source_slos(ws.settings.monitor, ws.settings.sources)
    results: list[tuple[SourceFreshness, int, list[Observation]]] = []
    for cfg in configs:
        source_id, last_scan_at, previous_check, known = _catalog_view(ws, cfg.name)
        if source_id is None:
            results.append((_never_synced(cfg, slos.get(cfg.name)), -1, []))
            continue
        observed, skipped, method = observe(ws.open_source(cfg), known, last_scan_at)
        observed = [_dated(o, known, last_scan_at, previous_check) for o in observed]
        since = max(last_scan_at or 0.0, previous_check or 0.0) or None
        report = _summarize(cfg, len(known), observed, skipped, last_scan_at, since, slos.get(cfg.name), now)
        report.method = method
        results.append((report, source_id, observed))
    if record:
        _store(ws, results, now)
    return FreshnessReport(now, [r for r, _, _ in results])


def _dated(o: Observation, known: Mapping[str, _Known], last_scan_at: float | None, checked_at: float | None) -> Observation:
    """Give a change the source did not date the earliest time it can have happened after:
    when an earlier check first saw it, else the last time the source was known to match."""
    if o.changed_at is not None:
        return o
    doc = known.get(o.external_id)
    if doc is not None and doc.marked_at is not None:
        return replace(o, changed_at=doc.marked_at)
    return replace(o, changed_at=max(last_scan_at or 0.0, checked_at or 0.0) or None)


def _selected(ws: Workspace, source: str | None) -> list[SourceConfig]:
    if source is None:
        return list(ws.settings.sources.values())
    if source not in ws.settings.sources:
        names = ", ".join(ws.settings.sources) or "none; add one with `embedops source add`"
        raise NotFound(f"no source {source!r}", hint=f"sources: {names}")
    return [ws.settings.sources[source]]


def _catalog_view(ws: Workspace, name: str) -> tuple[int | None, float | None, float | None, dict[str, _Known]]:
    s, d, sc, fm = schema.sources, schema.documents, schema.source_checks, schema.freshness_marks
    with read_tx(ws.engine) as conn:
        row = conn.execute(
            sa.select(s.c.id, s.c.last_scan_at, sc.c.checked_at).outerjoin(sc, sc.c.source_id == s.c.id).where(s.c.name == name)
        ).first()
        if row is None or row.last_scan_at is None:
            return None, None, None, {}
        mark = sa.case((fm.c.catalog_key == sa.func.coalesce(d.c.signature, d.c.content_hash), fm.c.changed_at))
        q = (sa.select(d.c.external_id, d.c.id, d.c.signature, d.c.content_hash, mark)
             .outerjoin(fm, fm.c.document_id == d.c.id).where(d.c.source_id == row.id, d.c.deleted_at.is_(None)))
        known = {r[0]: _Known(r[1], r[2], r[3], r[4]) for r in conn.execute(q)}
    return int(row.id), row.last_scan_at, row.checked_at, known


def _never_synced(cfg: SourceConfig, max_lag: float | None) -> SourceFreshness:
    return SourceFreshness(cfg.name, cfg.kind, 0, 0, 0, 0, 0, lag_stats([]), None, None, max_lag, "warn", method="none")


def lag_stats(lags: list[float]) -> dict[str, float]:
    """p50, p95 and max of the lags in seconds (0 when there is none)."""
    if not lags:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0}
    values = np.asarray(lags, dtype=np.float64)
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3),
            "max": round(float(values.max()), 3)}


def _summarize(
    cfg: SourceConfig, documents: int, observed: list[Observation], skipped: int, last_scan_at: float | None,
    since: float | None, max_lag: float | None, now: float,
) -> SourceFreshness:
    # When the source does not say when a record changed, it changed after the
    # last time it was known to match: the lag is at least that old.
    started = {o.external_id: o.changed_at if o.changed_at is not None else (since or now) for o in observed}
    lags = [max(0.0, now - at) for at in started.values()]
    stale = [o for o in observed if o.reason != "new"]
    oldest = min(stale, key=lambda o: started[o.external_id], default=None)
    stats = lag_stats(lags)
    breached = max_lag is not None and stats["max"] > max_lag
    slo: SloStatus = "breached" if breached else ("warn" if observed else "ok")
    return SourceFreshness(
        source=cfg.name, kind=cfg.kind, documents=documents,
        changed=sum(1 for o in observed if o.reason == "changed"),
        deleted=sum(1 for o in observed if o.reason == "deleted"),
        unindexed=sum(1 for o in observed if o.reason == "new"), skipped=skipped, lag=stats,
        oldest_stale=None if oldest is None else {
            "id": oldest.external_id, "reason": oldest.reason, "since": started[oldest.external_id],
            "lag": round(now - started[oldest.external_id], 3)},
        last_sync_at=last_scan_at, max_lag=max_lag, slo=slo,
        stale_ids=sorted(o.external_id for o in stale)[:LIST_LIMIT],
    )


def _store(ws: Workspace, results: list[tuple[SourceFreshness, int, list[Observation]]], now: float) -> None:
    """Replace each checked source's marks and record the check, in one transaction."""
    fm, sc = schema.freshness_marks, schema.source_checks
    with ws.engine.begin() as conn:
        for report, source_id, observed in results:
            if source_id < 0:
                continue
            conn.execute(sa.delete(fm).where(fm.c.source_id == source_id))
            marks = [{"document_id": o.document_id, "source_id": source_id, "catalog_key": o.catalog_key, "reason": o.reason,
                      "changed_at": o.changed_at, "detected_at": now} for o in observed if o.document_id is not None]
            if marks:
                conn.execute(sa.insert(fm), marks)  # executemany: rowcount is not reliable on every driver
            summary = {k: v for k, v in report.to_dict().items() if k != "stale_ids"}
            if conn.execute(sa.update(sc).where(sc.c.source_id == source_id).values(checked_at=now, summary=summary)).rowcount == 0:
                conn.execute(sa.insert(sc).values(source_id=source_id, checked_at=now, summary=summary))
        write_ledger(conn, "monitor.freshness", sources=[
            {k: v for k, v in r.to_dict().items() if k in ("source", "documents", "stale", "unindexed", "lag", "slo", "max_lag")}
            for r, _, _ in results])


# -- stale counts for metrics, without scanning ----------------------------------------------
def _unresolved() -> sa.ColumnElement[bool]:
    fm, d = schema.freshness_marks, schema.documents
    return sa.and_(fm.c.catalog_key == sa.func.coalesce(d.c.signature, d.c.content_hash), d.c.deleted_at.is_(None))


def stale_counts(conn: sa.Connection) -> dict[str, int]:
    """Live documents per source name whose last freshness mark is still unresolved."""
    fm, d, s = schema.freshness_marks, schema.documents, schema.sources
    unresolved = _unresolved()
    q = (sa.select(s.c.name, sa.func.count()).select_from(fm).join(d, d.c.id == fm.c.document_id)
         .join(s, s.c.id == d.c.source_id).where(unresolved).group_by(s.c.name))
    return {name: int(n) for name, n in conn.execute(q)}


def iter_marks(conn: sa.Connection, source_id: int) -> Iterator[tuple[str, str]]:
    """(external id, reason) of a source's unresolved marks."""
    fm, d = schema.freshness_marks, schema.documents
    q = sa.select(d.c.external_id, fm.c.reason).join(d, d.c.id == fm.c.document_id).where(
        fm.c.source_id == source_id, _unresolved())
    yield from ((r[0], r[1]) for r in conn.execute(q))
