"""Run an eval set through the workspace's search, score it, and compare two targets.

A document's score is the best score of its chunks, so an eval set judged on
documents measures any chunker. Queries go through the same search path users
get (``Workspace.search_batch``): embedded in one batch with the index's own
embedder, the alias resolved once.

>>> with Workspace.open() as ws:                                   # doctest: +SKIP
...     run = run_evalset(ws, "scifact", alias="prod", k=10)
...     round(run.metrics["ndcg@10"], 3), run.queries
(0.645, 300)
...     cmp = compare_targets(ws, "scifact", "prod", "ix2-minilm-l3")
...     cmp.delta, (cmp.ci_low, cmp.ci_high), cmp.p_value
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from embedops.catalog.curation import language_of
from embedops.curate.language import LanguageDetector
from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.embedding.spend import Limits
from embedops.errors import ConfigError, NotFound
from embedops.evaluate.compare import Comparison, compare_runs, segment_metrics, worst_segment
from embedops.evaluate.metrics import DEFAULT_METRICS, Qrels, Run, evaluate
from embedops.evaluate.qrels import drop_summary, validate
from embedops.evaluate.segments import parse_segment_by, segment_labels
from embedops.evaluate.store import EvalSetData, EvalSetInfo, live_doc_ids, load_evalset
from embedops.search.engine import Filters, SearchResult
from embedops.search.modes import DEFAULT_HYBRID, HybridParams, check_mode, embed_queries_remembered, search_batch
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.workspace import Workspace

# Chunks asked for per wanted document: enough for k distinct documents under
# the structured chunker (a few chunks per document); widened when short.
CHUNKS_PER_DOC = 5
MAX_CHUNKS_PER_DOC = 80
# Run-file scores are nudged by at most this per position so ties cannot
# reorder documents: the scored order is the served order.
_NUDGE = 1e-9


@dataclass(frozen=True)
class Target:
    """What a run queried: an index, reached through an alias or directly, in one mode."""

    index: IndexInfo
    alias: str | None
    mode: str

    @property
    def label(self) -> str:
        where = f"{self.alias} ({self.index.id})" if self.alias else self.index.id
        return f"{where} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "index": self.index.id, "embedder": self.index.embedder,
                "chunker": self.index.chunker_key, "mode": self.mode}


@dataclass
class EvalRun:
    """One eval set scored against one target; ``to_dict`` is the ``eval run --json`` contract."""

    evalset: EvalSetInfo
    target: Target
    k: int
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: Run
    queries_text: dict[str, str]
    dropped: list[dict[str, Any]]
    segment_by: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    segments: dict[str, dict[str, float]] = field(default_factory=dict)
    worst_segment: str | None = None
    seconds: float = 0.0

    @property
    def queries(self) -> int:
        return len(self.per_query)

    @property
    def main_metric(self) -> str:
        return f"ndcg@{self.k}"

    def to_dict(self, *, per_query: bool = False, dropped_limit: int = 200) -> dict[str, Any]:
        out: dict[str, Any] = {
            "evalset": self.evalset.name,
            "version": self.evalset.version,
            "source": self.evalset.source,
            "target": self.target.to_dict(),
            "k": self.k,
            "metrics": _rounded(self.metrics),
            "segment_by": self.segment_by,
            "segments": {label: _rounded(values) for label, values in self.segments.items()},
            "worst_segment": self.worst_segment,
            "queries": self.queries,
            "dropped": dropped_dict(self.dropped, dropped_limit),
            "seconds": round(self.seconds, 3),
        }
        if per_query:
            out["per_query"] = {q: _rounded(v) for q, v in self.per_query.items()}
        return out

    def write_trec(self, path: str | Path, tag: str | None = None) -> int:
        """Write the run as ``qid Q0 docid rank score tag`` lines; returns the line count."""
        tag = tag or f"embedops-{self.target.index.id}-{self.target.mode}"
        lines = [
            f"{qid} Q0 {doc} {rank} {score:.9f} {tag}"
            for qid, docs in self.run.items()
            for rank, (doc, score) in enumerate(sorted(docs.items(), key=lambda d: -d[1]), start=1)
        ]
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return len(lines)


@dataclass
class EvalComparison:
    """Two runs of one eval set and their paired comparison (``delta`` = B − A)."""

    run_a: EvalRun
    run_b: EvalRun
    comparison: Comparison

    def to_dict(self, *, per_query: bool = False) -> dict[str, Any]:
        c = self.comparison.to_dict()
        if not per_query:
            c.pop("per_query")
        return {
            "evalset": self.run_a.evalset.name,
            "version": self.run_a.evalset.version,
            "metric": self.comparison.metric,
            "a": {"target": self.run_a.target.to_dict(), "metrics": _rounded(self.run_a.metrics)},
            "b": {"target": self.run_b.target.to_dict(), "metrics": _rounded(self.run_b.metrics)},
            "segment_by": self.run_a.segment_by,
            "comparison": c,
            "queries": self.comparison.n,
            "dropped": dropped_dict(self.run_a.dropped, 50),
        }


def dropped_dict(dropped: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {"total": len(dropped), "by_reason": drop_summary(dropped), "items": dropped[:limit]}


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}


# -- targets -----------------------------------------------------------------------
def resolve_target(ws: Workspace, name: str | None = None, *, index: str | None = None, mode: str = "vector") -> Target:
    """``index`` names an index directly; ``name`` is an alias or else an index id."""
    mode = check_mode(mode)
    if index is not None:
        return Target(ws.searcher.resolve(index_id=index), None, mode)
    alias = name or ws.settings.alias
    try:
        return Target(ws.searcher.resolve(alias=alias), alias, mode)
    except NotFound:
        if name is None:
            raise
    try:
        return Target(ws.searcher.resolve(index_id=name), None, mode)
    except NotFound:
        raise NotFound(f"{name!r} is neither an alias nor an index",
                       hint="`embedops status` lists aliases and indexes") from None


# -- running -------------------------------------------------------------------------
def run_evalset(
    ws: Workspace,
    evalset: str,
    *,
    alias: str | None = None,
    index: str | None = None,
    k: int = 10,
    mode: str = "vector",
    segment_by: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    hybrid: HybridParams = DEFAULT_HYBRID,
    limits: Limits | None = None,
) -> EvalRun:
    """Score eval set ``evalset`` (``NAME`` or ``NAME@VERSION``) on a target.

    ``limits`` (``--max-cost``, the monthly budget) refuse a run whose query embedding would cost more.

    The target is ``index``, else ``alias``, else the alias the set is bound to,
    else the workspace's default alias. Invalid input (bad lines, unknown
    documents, queries without judgments) is dropped and listed in ``dropped``.
    """
    started = time.perf_counter()
    if k < 1:
        raise ConfigError(f"k must be at least 1 (got {k})")
    if segment_by is not None:
        parse_segment_by(segment_by)  # fail before any retrieval
    with read_tx(ws.engine) as conn:
        data = load_evalset(conn, evalset)
        known = live_doc_ids(conn, data.info.source_id)
    texts, qrels, dropped = _validated(data, known)
    if not texts:
        raise ConfigError(
            f"no query of eval set {data.info.label} can be scored against source {data.info.source!r}"
            f" ({len(known)} live documents): " + ", ".join(f"{r} {n}" for r, n in drop_summary(dropped).items()),
            hint="run `embedops sync` first" if not known else "the judgments must name the source's external ids",
        )
    target = resolve_target(ws, alias or data.info.alias, index=index, mode=mode)
    run = retrieve_documents(ws, target, texts, k, filters=_source_filter(ws, data.info.source), hybrid=hybrid,
                             limits=limits)
    evaluation = evaluate(qrels, run, (k,), metrics)
    result = EvalRun(data.info, target, k, evaluation.means, evaluation.per_query, run, texts, dropped)
    if segment_by is not None:
        _segment(ws, result, data, segment_by)
    result.seconds = time.perf_counter() - started
    return result


def validated_queries(data: EvalSetData, known: set[str]) -> tuple[dict[str, str], Qrels, list[dict[str, Any]]]:
    """Kept queries and judgments of an eval set against the source's ``known`` live documents; the dropped
    items with the file and line they came from."""
    return _validated(data, known)


def _validated(data: EvalSetData, known: set[str]) -> tuple[dict[str, str], Qrels, list[dict[str, Any]]]:
    """Kept queries and judgments; the dropped items with the file and line they came from."""
    queries_file, qrels_file = data.info.files()
    texts, qrels, dropped = validate({q.id: q.text for q in data.queries.values()}, data.qrels, known)
    for item in dropped:
        if item["kind"] == "judgment":
            item.update(file=qrels_file, line=data.qrel_lines.get((item["id"], item["doc_id"])))
        else:
            query = data.queries.get(item["id"])
            item.update(file=queries_file, line=query.line if query else None)
    lines = [{"kind": "line", "file": p.file, "line": p.line, "reason": _problem_reason(p.reason),
              "detail": p.reason} for p in data.problems]
    return texts, qrels, lines + dropped


def _problem_reason(detail: str) -> str:
    return "duplicate id" if detail.startswith(("duplicate", "document")) else "malformed line"


def _source_filter(ws: Workspace, source: str) -> Filters | None:
    # Only filter when other sources share the index: a filter costs an extra
    # lookup per query, and with one source every result is from it anyway.
    return Filters(source=source) if len(ws.settings.sources) > 1 else None


def retrieve_documents(
    ws: Workspace, target: Target, queries: Mapping[str, str], k: int, *, filters: Filters | None = None,
    hybrid: HybridParams = DEFAULT_HYBRID, limits: Limits | None = None,
) -> Run:
    """Top ``k`` documents per query; a document scores its best chunk's score."""
    qids = list(queries)
    texts = [queries[q] for q in qids]
    vectors = embed_queries_remembered(ws.searcher, target.index, texts, limits=limits) \
        if target.mode != "bm25" else None
    depth = k * CHUNKS_PER_DOC
    results = _search(ws, target, texts, vectors, depth, filters, hybrid)
    run = {qid: _collapse(r, k) for qid, r in zip(qids, results, strict=True)}
    short = [i for i, r in enumerate(results) if len(run[qids[i]]) < k and len(r) >= depth]
    while short and depth < k * MAX_CHUNKS_PER_DOC:
        depth *= 4
        more = _search(ws, target, [texts[i] for i in short], None if vectors is None else vectors[short], depth,
                       filters, hybrid)
        for i, r in zip(short, more, strict=True):
            run[qids[i]] = _collapse(r, k)
        short = [i for i, r in zip(short, more, strict=True) if len(run[qids[i]]) < k and len(r) >= depth]
    return run


def _search(
    ws: Workspace, target: Target, texts: list[str], vectors: np.ndarray | None, depth: int, filters: Filters | None,
    hybrid: HybridParams,
) -> list[list[SearchResult]]:
    # The path ``Workspace.search_batch`` takes, with the fusion settings passed through.
    return search_batch(ws.searcher, texts, vectors=vectors, k=depth, index_id=target.index.id, filters=filters,
                        mode=target.mode, hybrid=hybrid)


def _collapse(results: Sequence[SearchResult], k: int) -> dict[str, float]:
    """First ``k`` distinct documents (results are best first), scores strictly falling."""
    docs: dict[str, float] = {}
    previous = float("inf")
    for r in results:
        if r.document_id in docs:
            continue
        score = float(r.score)
        if score >= previous:
            score = previous - _NUDGE
        docs[r.document_id] = previous = score
        if len(docs) == k:
            break
    return docs


def _segment(ws: Workspace, result: EvalRun, data: EvalSetData, spec: str) -> None:
    labels = query_segments(ws, data, result.per_query, spec)
    result.segment_by, result.labels = spec, labels
    result.segments = segment_metrics(result.per_query, labels)
    result.worst_segment = worst_segment(result.segments, result.main_metric, min_n=_min_segment(len(labels)))


def query_segments(ws: Workspace, data: EvalSetData, qids: Mapping[str, Any], spec: str) -> dict[str, str]:
    """A ``spec`` label (``--segment-by``) for each of ``qids``, queries of eval set ``data``."""
    kind, _ = parse_segment_by(spec)
    queries = {qid: (data.queries[qid].text, data.queries[qid].metadata) for qid in qids}
    doc_meta = _judged_doc_metadata(ws, data, qids) if kind == "doc" else None
    return segment_labels(spec, queries, source=data.info.source, doc_metadata=doc_meta,
                          detect=LanguageDetector.of(ws.settings.curate).queries)


def _min_segment(n_queries: int) -> int:
    # A segment of 2 queries is noise, not a collapse: needs 5% of the set (at least 1, at most 10).
    return max(1, min(10, n_queries // 20))


def _judged_doc_metadata(ws: Workspace, data: EvalSetData, qids: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    best = {qid: max(data.qrels[qid].items(), key=lambda d: (d[1], d[0]))[0] for qid in qids if data.qrels.get(qid)}
    d = schema.documents
    wanted = sorted(set(best.values()))
    meta: dict[str, dict[str, Any]] = {}
    with read_tx(ws.engine) as conn:
        for i in range(0, len(wanted), 900):
            q = sa.select(d.c.external_id, d.c.metadata, language_of()).where(
                d.c.source_id == data.info.source_id, d.c.external_id.in_(wanted[i : i + 900]))
            # ``doc.lang``: the document's language tag from curation, when it has one.
            meta.update({ext: {**(m or {}), **({"lang": lang} if lang else {})} for ext, m, lang in conn.execute(q)})
    return {qid: meta.get(doc, {}) for qid, doc in best.items()}


# -- comparing -------------------------------------------------------------------------
def compare_evalset(
    ws: Workspace,
    evalset: str,
    a: str | None,
    b: str,
    *,
    k: int = 10,
    mode: str = "vector",
    mode_a: str | None = None,
    mode_b: str | None = None,
    metric: str | None = None,
    segment_by: str | None = "language",
    n_boot: int = 10_000,
    seed: int = 0,
) -> EvalComparison:
    """Run ``evalset`` on targets A and B (alias or index id; A defaults to the bound alias) and compare."""
    with read_tx(ws.engine) as conn:
        bound = load_evalset(conn, evalset).info.alias
    target_a = resolve_target(ws, a or bound, mode=mode_a or mode)
    target_b = resolve_target(ws, b, mode=mode_b or mode)
    run_a = _run_on(ws, evalset, target_a, k, segment_by)
    run_b = _run_on(ws, evalset, target_b, k, None)
    metric = metric or f"ndcg@{k}"
    comparison = compare_runs(run_a.per_query, run_b.per_query, metric,
                              segments=run_a.labels if segment_by else None, n_boot=n_boot, seed=seed)
    if segment_by:
        run_b.segment_by, run_b.labels = segment_by, run_a.labels
        run_b.segments = segment_metrics(run_b.per_query, run_a.labels)
    return EvalComparison(run_a, run_b, comparison)


def compare_targets(
    ws: Workspace, evalset: str, a: str | None, b: str, k: int = 10, mode: str = "vector", **options: Any
) -> Comparison:
    """The paired comparison of B against A on ``evalset`` (what a migration gate calls).

    ``options`` are :func:`compare_evalset`'s (``mode_b``, ``metric``, ``segment_by``, ``n_boot``, ``seed``).
    """
    return compare_evalset(ws, evalset, a, b, k=k, mode=mode, **options).comparison


def _run_on(ws: Workspace, evalset: str, target: Target, k: int, segment_by: str | None) -> EvalRun:
    if target.alias is not None:
        return run_evalset(ws, evalset, alias=target.alias, k=k, mode=target.mode, segment_by=segment_by)
    return run_evalset(ws, evalset, index=target.index.id, k=k, mode=target.mode, segment_by=segment_by)
