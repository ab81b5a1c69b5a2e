"""Measure every storage variant of an alias's index on an eval set (``embedops capacity``).

Each variant is built from the catalog's full-precision vectors by the store
itself (``VectorStore.scratch``: the same codec, ANN and rescoring a served
index of that variant gets), apart from everything served. The eval set's
query vectors come from the catalog's content-addressed cache (the model is
loaded only if they were never embedded). For each variant: nDCG@10 and
recall@10 with the paired bootstrap interval of the difference from float32,
recall@10 against exact float32 search, single-query latency, sizes measured
at two points of the build, and their projection to the requested sizes.

>>> with Workspace.open() as ws:                                           # doctest: +SKIP
...     report = analyze(ws, sizes=[1_000_000, 10_000_000])
...     report.choice, report.verdict
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from embedops.capacity.project import (
    DEFAULT_MAX_LOSS, DEFAULT_PRICE_GB_MONTH, DEFAULT_SIZES, Candidate, Footprint, Projected, cheapest_within,
    default_variants, project,
)
from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.errors import ConfigError
from embedops.evaluate.compare import compare_runs
from embedops.evaluate.metrics import Run, evaluate
from embedops.evaluate.runner import CHUNKS_PER_DOC, validated_queries
from embedops.evaluate.store import bound_evalsets, live_doc_ids, load_evalset
from embedops.vectors.base import IndexInfo
from embedops.vectors.storage import StorageSpec

if TYPE_CHECKING:
    from embedops.vectors.scratch import ScratchVariant
    from embedops.workspace import Workspace

K = 10
METRICS = ("ndcg", "recall")
N_BOOT = 10_000
_EXACT_ROWS = 20_000  # catalog rows per step of the exact float32 search


@dataclass(frozen=True)
class Delta:
    """B − A of one metric over the eval set's queries, with its paired bootstrap interval."""

    mean: float
    delta: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.__dict__.items()}


@dataclass
class VariantResult:
    """One variant, measured."""

    storage: str
    ndcg: Delta
    recall: Delta
    relative_loss: float  # of nDCG@10 against float32: (f32 − variant) / f32
    ann_recall: float  # recall@10 against exact float32 search over the same vectors
    p50_ms: float
    p99_ms: float
    bytes_per_vector: float  # ANN memory per vector: measured slope of the graph file / index relation, or flat arrays
    overhead_bytes: float  # ANN memory beyond that (allocator arenas), measured now
    memory_bytes: int  # now
    file_bytes: int  # now
    build_seconds: float
    projected: list[Projected] = field(default_factory=list)
    serving: bool = False  # the variant the alias serves now

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ndcg"], out["recall"] = self.ndcg.to_dict(), self.recall.to_dict()
        out["projected"] = [p.to_dict() for p in self.projected]
        return out


@dataclass
class CapacityReport:
    """``embedops capacity``: every variant measured, and the cheapest within the quality budget."""

    alias: str
    index: str
    embedder: str
    dims: int
    vectors: int
    evalset: str
    queries: int
    backend: str
    sizes: list[int]
    price_gb_month: float
    max_loss: float
    max_p50_ms: float | None
    variants: list[VariantResult]
    choice: str | None
    verdict: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["variants"] = [v.to_dict() for v in self.variants]
        out["seconds"] = round(self.seconds, 2)
        return out


@dataclass(frozen=True)
class _EvalInput:
    name: str
    qids: list[str]
    vectors: np.ndarray
    qrels: dict[str, dict[str, int]]
    doc_of: dict[int, str]  # vector seq → judged document id (rows of the eval set's source only)


def analyze(
    ws: Workspace, *, alias: str | None = None, evalset: str | None = None, sizes: Sequence[int] = DEFAULT_SIZES,
    price_gb_month: float = DEFAULT_PRICE_GB_MONTH, variants: Sequence[StorageSpec] | None = None,
    max_loss: float = DEFAULT_MAX_LOSS, max_p50_ms: float | None = None,
) -> CapacityReport:
    """Measure ``variants`` (default: :func:`default_variants`) of the index ``alias`` serves; writes nothing
    served (a PCA variant's fit is kept in the catalog, content-addressed, for a later migration to reuse)."""
    started = time.perf_counter()
    if price_gb_month < 0 or not 0 <= max_loss < 1:
        raise ConfigError("--price-gb-month must be >= 0 and --max-loss in [0, 1)")
    alias = alias or ws.settings.alias
    index = ws.searcher.resolve(alias=alias)
    caps = ws.store.capabilities
    chosen = list(variants or default_variants(index.dims, caps.precisions, caps.layouts))
    specs = [StorageSpec(), *[s for s in dict.fromkeys(chosen) if not s.is_default]]  # float32 is the reference
    data = _eval_input(ws, index, alias, evalset)
    truth = exact_top_k(ws.engine, index, data.vectors, K)
    with tempfile.TemporaryDirectory(prefix="embedops-capacity-") as scratch_dir:
        measured = [_measure(ws, index, _fitted(ws, index, spec), data, truth, scratch_dir) for spec in specs]
    results = _results(measured, sizes, price_gb_month, index)
    choice, verdict = _choose(results, max_loss, sizes, max_p50_ms)
    return CapacityReport(alias, index.id, index.embedder, index.dims, len(data.doc_of), data.name, len(data.qids),
                          ws.engine.dialect.name, list(sizes), price_gb_month, max_loss, max_p50_ms, results, choice, verdict,
                          time.perf_counter() - started)


# -- inputs ----------------------------------------------------------------------------------------
def _eval_input(ws: Workspace, index: IndexInfo, alias: str, name: str | None) -> _EvalInput:
    from embedops.search.modes import embed_queries_remembered

    with read_tx(ws.engine) as conn:
        if name is None:
            bound = bound_evalsets(conn, alias)
            if not bound:
                raise ConfigError(f"no eval set is bound to alias {alias!r}: capacity is measured on one",
                                  hint=f"pass --eval-set NAME, or bind one: `embedops eval bind NAME --alias {alias}`")
            name = f"{bound[0].name}@{bound[0].version}"
        data = load_evalset(conn, name)
        texts, qrels, _ = validated_queries(data, live_doc_ids(conn, data.info.source_id))
        doc_of = _documents_of(conn, index, data.info.source_id)
    if not texts:
        raise ConfigError(f"no query of eval set {data.info.label} can be scored", hint="run `embedops sync` first")
    qids = list(texts)
    vectors = embed_queries_remembered(ws.searcher, index, [texts[q] for q in qids])
    return _EvalInput(data.info.label, qids, vectors, {q: dict(qrels[q]) for q in qids}, doc_of)


def _documents_of(conn: sa.Connection, index: IndexInfo, source_id: int) -> dict[int, str]:
    v, c, d = schema.vectors, schema.chunks, schema.documents
    q = (sa.select(v.c.seq, d.c.external_id).join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id)
         .where(v.c.index_id == index.id, d.c.source_id == source_id, d.c.deleted_at.is_(None)))
    return {int(seq): ext for seq, ext in conn.execute(q)}


def exact_top_k(engine: sa.Engine, index: IndexInfo, queries: np.ndarray, k: int) -> list[set[int]]:
    """Each query's top-``k`` vector seqs by exact float32 cosine over the whole index, read in steps."""
    v, e = schema.vectors, schema.embeddings
    best_keys = np.zeros((len(queries), 0), dtype=np.int64)
    best = np.zeros((len(queries), 0), dtype=np.float32)
    q = (sa.select(v.c.seq, e.c.vector).join(e, sa.and_(e.c.space_key == v.c.space_key, e.c.content_hash == v.c.content_hash))
         .where(v.c.index_id == index.id).order_by(v.c.seq))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(q)
        while rows := result.fetchmany(_EXACT_ROWS):
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), index.dims)
            scores = np.concatenate([best, queries @ vecs.T], axis=1)
            all_keys = np.concatenate([best_keys, np.broadcast_to(keys, (len(queries), len(keys)))], axis=1)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best, best_keys = np.take_along_axis(scores, top, 1), np.take_along_axis(all_keys, top, 1)
    return [set(map(int, row)) for row in best_keys]


def _fitted(ws: Workspace, index: IndexInfo, spec: StorageSpec) -> StorageSpec:
    """A PCA variant with its projection fitted on the index's stored vectors (reused when already fitted)."""
    if spec.reduction != "pca" or spec.projection or not spec.reduces:
        return spec
    from embedops.migrate.storage import fit_projection

    with ws.engine.begin() as conn:
        return spec.fitted(fit_projection(conn, index, spec, index.space_key))


# -- measuring ---------------------------------------------------------------------------------------
@dataclass
class _Measured:
    spec: StorageSpec
    per_query: dict[str, dict[str, float]]
    ann_recall: float
    latencies_ms: list[float]
    sizes: Any  # ScratchSizes


def _measure(ws: Workspace, index: IndexInfo, spec: StorageSpec, data: _EvalInput, truth: list[set[int]],
             directory: str) -> _Measured:
    from pathlib import Path

    variant: ScratchVariant = ws.store.scratch(index, spec, Path(directory))
    try:
        run = _run(variant, data)
        found = variant.search_many(data.vectors, K)
        ann_recall = float(np.mean([len(t & set(map(int, keys[:K]))) / max(1, len(t))
                                    for t, (keys, _) in zip(truth, found, strict=True)]))
        latencies = _latencies(variant, data.vectors)
    finally:
        variant.close()
    per_query = evaluate(data.qrels, run, (K,), METRICS).per_query
    return _Measured(spec, per_query, ann_recall, latencies, variant.sizes)


def _run(variant: ScratchVariant, data: _EvalInput) -> Run:
    """Top-10 documents per query (a document scores its best chunk), as ``eval run`` collapses them."""
    depth = K * CHUNKS_PER_DOC
    run: Run = {}
    for qid, (keys, scores) in zip(data.qids, variant.search_many(data.vectors, depth), strict=True):
        docs: dict[str, float] = {}
        for key, score in zip(keys, scores, strict=True):
            doc = data.doc_of.get(int(key))
            if doc is not None and doc not in docs:
                docs[doc] = float(score) - 1e-9 * len(docs)  # served order, strictly falling
            if len(docs) == K:
                break
        run[qid] = docs
    return run


def _latencies(variant: ScratchVariant, queries: np.ndarray) -> list[float]:
    """Milliseconds of one k=10 search per query, after a warm-up of a few."""
    for q in queries[:5]:
        variant.search_many(q[None, :], K)
    out = []
    for q in queries:
        started = time.perf_counter()
        variant.search_many(q[None, :], K)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _delta(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str) -> Delta:
    c = compare_runs(a, b, metric, n_boot=N_BOOT)
    return Delta(c.mean_b, c.delta, c.ci_low, c.ci_high)


def _results(measured: list[_Measured], sizes: Sequence[int], price: float, index: IndexInfo) -> list[VariantResult]:
    reference = measured[0].per_query
    out = []
    for m in measured:
        s = m.sizes
        points = [(p.vectors, p.serialized_bytes) for p in s.samples]
        disk = Footprint.fit(points)
        if s.table_bytes:  # PostgreSQL: the reduced vectors' heap is on disk beside the index
            disk = Footprint(disk.bytes_per_vector + s.table_bytes / max(1, points[-1][0]), disk.overhead_bytes)
        memory = _memory_footprint(s)
        ndcg, recall = _delta(reference, m.per_query, f"ndcg@{K}"), _delta(reference, m.per_query, f"recall@{K}")
        base = ndcg.mean - ndcg.delta
        out.append(VariantResult(
            m.spec.key, ndcg, recall, round(-ndcg.delta / base, 6) if base > 0 else 0.0, round(m.ann_recall, 4),
            round(float(np.percentile(m.latencies_ms, 50)), 3), round(float(np.percentile(m.latencies_ms, 99)), 3),
            memory.bytes_per_vector, memory.overhead_bytes, s.memory_bytes, s.file_bytes, round(s.build_seconds, 3),
            project(memory, disk, sizes, price, _scan(m)), serving=_same_variant(m.spec, index.spec)))
    return out


def _scan(m: _Measured) -> tuple[float, int] | None:
    """A flat variant's measured p50 and the vectors it scanned (its latency grows with them); None for a graph."""
    if m.spec.layout != "flat":
        return None
    return float(np.percentile(m.latencies_ms, 50)), m.sizes.samples[-1].vectors


def _memory_footprint(s: Any) -> Footprint:
    """Memory per vector and overhead. A graph's allocation grows in arenas, so its slope is the file's (payload,
    links, keys) and what the allocator holds beyond that now is the overhead; flat sizes are memory already."""
    if not s.memory_tracks_file:
        return Footprint.fit([(p.vectors, p.memory_bytes) for p in s.samples])
    per_vector = Footprint.fit([(p.vectors, p.serialized_bytes) for p in s.samples]).bytes_per_vector
    n = s.samples[-1].vectors
    return Footprint(per_vector, round(max(0.0, s.memory_bytes - per_vector * n), 1))


def _same_variant(a: StorageSpec, b: StorageSpec) -> bool:
    return a.key == b.key or (a.reduction == b.reduction == "pca" and a.dims == b.dims and a.precision == b.precision
                              and a.rescore == b.rescore)


def _choose(results: list[VariantResult], max_loss: float, sizes: Sequence[int],
            max_p50_ms: float | None) -> tuple[str | None, str]:
    """The cheapest variant within the budget, and a sentence saying so with its interval."""
    candidates = [Candidate(r.storage, r.relative_loss, -r.ndcg.ci_low / (r.ndcg.mean - r.ndcg.delta or 1.0),
                            r.projected[-1].memory_bytes, r.projected[-1].p50_ms or r.p50_ms) for r in results]
    best = cheapest_within(candidates, max_loss, max_p50_ms)
    latency = f" and p50 {max_p50_ms:g} ms" if max_p50_ms is not None else ""
    if best is None:
        return None, f"no variant keeps nDCG@{K} within {max_loss:.1%} of float32{latency} on this eval set"
    r = next(r for r in results if r.storage == best.storage)
    ref = results[0]
    saving = ref.projected[-1].memory_bytes / max(1.0, r.projected[-1].memory_bytes)
    interval = (f"the 95% interval of the difference is [{r.ndcg.ci_low:+.4f}, {r.ndcg.ci_high:+.4f}]"
                f" (a loss of at most {max(0.0, best.worst_loss):.2%} at its low end")
    interval += ", inside the budget)" if best.worst_loss <= max_loss else ", beyond the budget: more queries would tell)"
    scan = (f"; a flat index scans every vector: p50 {r.projected[-1].p50_ms:,.1f} ms projected at {sizes[-1]:,}"
            " (bound it with --max-p50-ms)") if r.projected[-1].p50_ms is not None else ""
    return best.storage, (
        f"cheapest within {max_loss:.1%} nDCG@{K} loss{latency}: {r.storage}, nDCG@{K} {r.ndcg.mean:.4f} vs"
        f" {ref.ndcg.mean:.4f} for f32 ({-r.relative_loss:+.2%}); {interval}; {saving:.1f}x less ANN memory at"
        f" {sizes[-1]:,} vectors{scan}")
