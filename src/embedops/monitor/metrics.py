"""Prometheus metrics, read from the catalog at every scrape.

:func:`build_registry` returns a ``CollectorRegistry`` whose one collector
reads the catalog (counts, freshness marks, the latest ``sync.source`` and
``monitor.*`` ledger rows, canary runs) when scraped, so any process can
expose the same figures: ``embedops monitor --port``, or the HTTP service
mounting ``prometheus_client.make_asgi_app(build_registry(ws))``.

>>> from prometheus_client import generate_latest             # doctest: +SKIP
>>> print(generate_latest(build_registry(ws)).decode())        # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.monitor.freshness import stale_counts

if TYPE_CHECKING:
    from embedops.embedding.query import QueryStats
    from embedops.workspace import Workspace

PREFIX = "embedops"
_STATUS_VALUE = {"ok": 0, "warn": 1, "fail": 2, "skip": -1}


@dataclass
class MonitorState:
    """What only the monitor process knows: its runs and the checks that raised."""

    runs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_run_seconds: float = 0.0


def build_registry(ws: Workspace, state: MonitorState | None = None) -> CollectorRegistry:
    """A registry exposing ``ws``'s health; reusable by any server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector(ws, state))
    return registry


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels or [])


class CatalogCollector(Collector):
    """Reads the catalog on every ``collect``: figures are as current as the last sync and check."""

    def __init__(self, ws: Workspace, state: MonitorState | None = None) -> None:
        self.ws = ws
        self.state = state

    def collect(self) -> Iterator[Metric]:
        with read_tx(self.ws.engine) as conn:
            yield from _inventory(conn)
            yield from _freshness(conn)
            yield from _syncs(conn)
            yield from _checks(conn)
            yield from _canaries(conn)
            yield from _errors(conn)
            yield from _spend(conn)
        yield from _queries(self.ws.searcher.queries.snapshot())
        if self.state is not None:
            runs = CounterMetricFamily(f"{PREFIX}_monitor_runs", "Check runs by this monitor process.")
            runs.add_metric([], self.state.runs)
            yield runs
            errors = CounterMetricFamily(f"{PREFIX}_monitor_check_errors", "Checks that raised, by check.", labels=["check"])
            for check, n in sorted(self.state.errors.items()):
                errors.add_metric([check], n)
            yield errors
            last = _gauge("monitor_last_run_seconds", "Duration of the last check run.")
            last.add_metric([], self.state.last_run_seconds)
            yield last


def _latest(conn: sa.Connection, kind: str) -> tuple[float, dict[str, Any]] | None:
    lg = schema.ledger
    row = conn.execute(sa.select(lg.c.at, lg.c.details).where(lg.c.kind == kind).order_by(lg.c.id.desc()).limit(1)).first()
    return (float(row[0]), dict(row[1])) if row is not None else None


def _inventory(conn: sa.Connection) -> Iterator[Metric]:
    s, d, c, v, q = schema.sources, schema.documents, schema.chunks, schema.vectors, schema.query_log
    docs = _gauge("documents", "Live documents per source.", ["source"])
    live = sa.select(s.c.name, sa.func.count(d.c.id)).outerjoin(d, sa.and_(d.c.source_id == s.c.id, d.c.deleted_at.is_(None)))
    for name, n in conn.execute(live.group_by(s.c.name)):
        docs.add_metric([name], n)
    yield docs
    chunks = _gauge("chunks", "Chunks in the catalog.")
    chunks.add_metric([], conn.execute(sa.select(sa.func.count()).select_from(c)).scalar_one())
    yield chunks
    vectors = _gauge("index_vectors", "Vectors per index.", ["index", "embedder", "status"])
    counts: dict[str, int] = {str(i): int(n) for i, n in conn.execute(sa.select(v.c.index_id, sa.func.count()).group_by(v.c.index_id))}
    ix, sp = schema.indexes, schema.spaces
    for index_id, status, embedder in conn.execute(sa.select(ix.c.id, ix.c.status, sp.c.embedder).join(sp, sp.c.key == ix.c.space_key)):
        vectors.add_metric([index_id, embedder, status], counts.get(index_id, 0))
    yield vectors
    logged = _gauge("query_log_queries", "Queries in the query log.")
    logged.add_metric([], conn.execute(sa.select(sa.func.count()).select_from(q)).scalar_one())
    yield logged


def _freshness(conn: sa.Connection) -> Iterator[Metric]:
    s, sc = schema.sources, schema.source_checks
    stale = _gauge("stale_documents", "Live documents whose source changed since they were embedded (last check, not yet synced).", ["source"])
    counts = stale_counts(conn)
    lag = _gauge("freshness_lag_seconds", "Lag of stale or unindexed documents at the last freshness check.", ["source", "quantile"])
    slo = _gauge("freshness_slo_breached", "1 when a source's lag exceeded its max_lag at the last check.", ["source"])
    scanned = _gauge("source_last_scan_timestamp_seconds", "When a sync last scanned the source.", ["source"])
    checked = _gauge("source_last_check_timestamp_seconds", "When a freshness check last compared the source.", ["source"])
    rows = conn.execute(sa.select(s.c.name, s.c.last_scan_at, sc.c.checked_at, sc.c.summary).outerjoin(sc, sc.c.source_id == s.c.id))
    for name, last_scan, last_check, summary in rows:
        stale.add_metric([name], counts.get(name, 0))
        if last_scan is not None:
            scanned.add_metric([name], last_scan)
        if last_check is not None:
            checked.add_metric([name], last_check)
        if summary:
            for key, quantile in (("p50", "0.5"), ("p95", "0.95"), ("max", "1")):
                lag.add_metric([name, quantile], summary["lag"][key])
            slo.add_metric([name], 1.0 if summary.get("slo") == "breached" else 0.0)
    yield from (stale, lag, slo, scanned, checked)


def _syncs(conn: sa.Connection) -> Iterator[Metric]:
    lg = schema.ledger
    rows = conn.execute(sa.select(lg.c.at, lg.c.details).where(lg.c.kind == "sync.source").order_by(lg.c.id.desc()).limit(500))
    latest: dict[str, tuple[float, dict[str, Any]]] = {}
    embedding: dict[str, dict[str, Any]] = {}  # the last sync of each source that embedded something
    for at, details in rows:
        source = str(details.get("source"))
        latest.setdefault(source, (float(at), dict(details)))
        if details.get("embedded") and details.get("seconds"):
            embedding.setdefault(source, dict(details))
    when = _gauge("last_sync_timestamp_seconds", "When the last sync of a source finished.", ["source"])
    took = _gauge("last_sync_duration_seconds", "Time the last sync of a source took to apply its plan.", ["source"])
    embedded = _gauge("last_sync_embedded_chunks", "Chunks embedded by the last sync of a source.", ["source"])
    for source, (at, details) in sorted(latest.items()):
        when.add_metric([source], at)
        took.add_metric([source], float(details.get("seconds") or 0.0))
        embedded.add_metric([source], int(details.get("embedded") or 0))
    rate = _gauge("embed_throughput_chunks_per_second", "Chunks embedded per second by the last sync of a source that embedded.", ["source"])
    for source, details in sorted(embedding.items()):
        rate.add_metric([source], round(int(details["embedded"]) / float(details["seconds"]), 3))
    yield from (when, took, rate, embedded)


def _checks(conn: sa.Connection) -> Iterator[Metric]:
    status = _gauge("check_status", "Last status per check: 0 ok, 1 warn, 2 fail, -1 skipped.", ["check"])
    last = _latest(conn, "monitor.check")
    if last is not None:
        for name, result in sorted(last[1].get("checks", {}).items()):
            status.add_metric([name], _STATUS_VALUE.get(result.get("status"), -1))
    yield status
    when = _gauge("last_check_timestamp_seconds", "When `embedops check` or the monitor last ran.")
    if last is not None:
        when.add_metric([], last[0])
    yield when
    yield from _fingerprint(conn)
    yield from _drift(conn)


def _fingerprint(conn: sa.Connection) -> Iterator[Metric]:
    ok = _gauge("fingerprint_ok", "1 when the live model matches the index's stored fingerprint and probe.", ["index"])
    cosine = _gauge("fingerprint_min_cosine", "Lowest sentinel cosine, live vs stored.", ["index"])
    agreement = _gauge("probe_neighbour_agreement", "Top-k neighbour agreement of the probe, live vs stored vectors.", ["index"])
    last = _latest(conn, "monitor.fingerprint")
    for item in (last[1].get("indexes", []) if last else []):
        ok.add_metric([item["index"]], 1.0 if item["same"] else 0.0)
        cosine.add_metric([item["index"]], item["sentinel_min_cosine"])
        if item.get("probe"):
            agreement.add_metric([item["index"]], item["probe"]["agreement"])
    yield from (ok, cosine, agreement)


def _drift(conn: sa.Connection) -> Iterator[Metric]:
    labels = ["index", "stream", "segment"]
    mmd = _gauge("drift_mmd2", "MMD² of recent rows against the reference.", labels)
    p_value = _gauge("drift_p_value", "Permutation p-value of the MMD² test.", labels)
    shift = _gauge("drift_centroid_shift", "1 - cosine between reference and recent centroids.", labels)
    detected = _gauge("drift_detected", "1 when the stream (or segment) drifted at the last check.", labels)
    last = _latest(conn, "monitor.drift")
    for stream in (last[1].get("streams", []) if last else []):
        parts = [("all", stream.get("overall"))] + list(stream.get("segments", {}).items())
        for segment, stats in parts:
            if not stats:
                continue
            key = [stream["index"], stream["stream"], segment]
            mmd.add_metric(key, stats["mmd2"])
            p_value.add_metric(key, stats["p_value"])
            shift.add_metric(key, stats["centroid_shift"])
            detected.add_metric(key, 1.0 if stats["drifted"] else 0.0)
    yield from (mmd, p_value, shift, detected)


def _canaries(conn: sa.Connection) -> Iterator[Metric]:
    r, e = schema.canary_runs, schema.evalsets
    recall = _gauge("canary_recall", "Recall@k of the latest run of each canary.", ["evalset", "index", "k"])
    newest = sa.select(sa.func.max(r.c.id)).group_by(r.c.evalset_id, r.c.index_id, r.c.k).scalar_subquery()
    q = sa.select(e.c.name, e.c.version, r.c.index_id, r.c.k, r.c.recall).join(e, e.c.id == r.c.evalset_id).where(r.c.id.in_(newest))
    for name, version, index_id, k, value in conn.execute(q):
        recall.add_metric([f"{name}@{version}", index_id, str(k)], value)
    yield recall


def _errors(conn: sa.Connection) -> Iterator[Metric]:
    """Problems by kind, as the catalog shows them now."""
    errors = _gauge("errors", "Current problems by kind: records skipped by the last sync of each source,"
                    " indexes whose model changed, checks that raised in the last run.", ["kind"])
    lg = schema.ledger
    skipped: dict[str, int] = {}
    for details in conn.execute(sa.select(lg.c.details).where(lg.c.kind == "sync.source").order_by(lg.c.id.desc()).limit(500)).scalars():
        skipped.setdefault(str(details.get("source")), int(details.get("skipped_count") or 0))
    errors.add_metric(["skipped_record"], sum(skipped.values()))
    fp = _latest(conn, "monitor.fingerprint")
    errors.add_metric(["model_changed"], sum(1 for i in (fp[1].get("indexes", []) if fp else []) if not i["same"]))
    check = _latest(conn, "monitor.check")
    raised = sum(1 for c in (check[1].get("checks", {}).values() if check else []) if str(c.get("summary", "")).startswith("error:"))
    errors.add_metric(["check_error"], raised)
    yield errors
    up = _gauge("up", "1: the catalog could be read.")
    up.add_metric([], 1)
    yield up
    now = _gauge("scrape_timestamp_seconds", "When these figures were read.")
    now.add_metric([], time.time())
    yield now


def _spend(conn: sa.Connection) -> Iterator[Metric]:
    """What the catalog's spend rows add up to, by job kind and space (every process's jobs, flushed ones)."""
    sp = schema.spend
    rows = conn.execute(sa.select(sp.c.kind, sp.c.space_key, sa.func.sum(sp.c.cost), sa.func.sum(sp.c.tokens),
                                  sa.func.sum(sp.c.requests), sa.func.sum(sp.c.cache_saved_cost))
                        .group_by(sp.c.kind, sp.c.space_key)).all()
    names = (("spend_usd", "Embedding cost recorded in the catalog, USD."),
             ("spend_tokens", "Embedding tokens recorded in the catalog."),
             ("spend_requests", "Provider requests recorded in the catalog."),
             ("spend_cache_saved_usd", "What the content-hash cache saved, USD."))
    for i, (name, doc) in enumerate(names):
        family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["kind", "space"])
        for row in rows:
            family.add_metric([row[0], row[1]], float(row[2 + i] or 0))
        yield family


def _queries(stats: dict[str, QueryStats]) -> Iterator[Metric]:
    """This process's query embedding: latency, errors, cache hits and spend, by space."""
    from embedops.embedding.query import BUCKETS

    labels = ["space", "embedder"]
    latency = HistogramMetricFamily(f"{PREFIX}_query_embed_seconds", "Query embedding latency (cache misses).",
                                    labels=labels)
    counters = {name: CounterMetricFamily(f"{PREFIX}_query_{name}", doc, labels=labels) for name, doc in (
        ("texts", "Query texts embedded or read from the query cache."),
        ("cache_hits", "Query texts answered from the in-memory query cache."),
        ("embed_errors", "Query embedding calls that failed."),
        ("requests", "Provider requests made for queries."),
        ("tokens", "Tokens of embedded queries."),
        ("cost_usd", "What embedding queries cost, USD."))}
    for space, s in sorted(stats.items()):
        cumulative, buckets = 0, []
        for bound, n in zip(BUCKETS, s.latency, strict=False):
            cumulative += n
            buckets.append((repr(bound), cumulative))
        buckets.append(("+Inf", cumulative + s.latency[-1]))
        latency.add_metric([space, s.embedder], buckets, s.latency_sum)
        values = {"texts": s.texts, "cache_hits": s.cache_hits, "embed_errors": s.errors,
                  "requests": s.spend.requests, "tokens": s.spend.tokens, "cost_usd": s.spend.cost}
        for name, family in counters.items():
            family.add_metric([space, s.embedder], values[name])
    yield latency
    yield from counters.values()
