"""A preview of a migration's eval gate on a sample, before paying for a backfill.

The sample is every document judged by the bound eval sets plus random
distractors up to the requested size. The old side is the old index's stored
vectors of those documents' chunks; the new side is the same documents chunked
by the new chunker and embedded by the new model, in memory. Both are searched
exactly over the sample, so the comparison is fair, and nothing is written.
Smaller than the real corpus, the sample has fewer distractors: absolute
scores run higher than on the full index, the old-vs-new difference is what
the preview is for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.chunking.base import Chunker
from embedops.embedding.base import Embedder
from embedops.evaluate.compare import compare_runs
from embedops.evaluate.metrics import Run, evaluate
from embedops.evaluate.runner import CHUNKS_PER_DOC
from embedops.evaluate.store import EvalSetData, load_evalset
from embedops.migrate.gate import BoundEvalSet, EvalEvidence, GateConfig, SegmentEvidence
from embedops.vectors.base import IndexInfo
from embedops.vectors.sqlite import space_ref, stored_embeddings

N_BOOT = 10_000


@dataclass
class _Side:
    """One side of the preview: chunk vectors (rows) and the document each row belongs to."""

    vectors: np.ndarray
    documents: list[str]


def preview_evidence(
    ws_engine: sa.Engine, old_embedder: Callable[[], Embedder], evalsets: Sequence[BoundEvalSet],
    data: Sequence[EvalSetData], old: IndexInfo, new_embedder: Embedder, new_chunker: Chunker, documents: int,
    config: GateConfig, labels: Sequence[Mapping[str, Mapping[str, str]]],
) -> tuple[list[EvalEvidence], int, int, int]:
    """Compare old vs new on a sample; ``labels[i][spec]`` labels eval set ``i``'s queries per segment spec.

    ``old_embedder`` is called only for query texts the catalog holds no vector for in the old space."""
    judged = {doc for d in data for judgments in d.qrels.values() for doc in judgments}
    source_ids = {d.info.source_id for d in data}
    with read_tx(ws_engine) as conn:
        picked = _sample_documents(conn, source_ids, judged, documents)
        old_side = _old_side(conn, old, picked)
    new_side, embedded = _new_side(ws_engine, new_embedder, new_chunker, picked)
    out = []
    for info, d, seg_labels in zip(evalsets, data, labels, strict=True):
        texts = {qid: q.text for qid, q in d.queries.items() if d.qrels.get(qid)}
        qids = list(texts)
        asked = [texts[q] for q in qids]
        run_old = _search(old_side, _embed_queries(ws_engine, old_embedder, old.space_key, asked), qids, config.k)
        run_new = _search(new_side, _embed_queries(ws_engine, lambda: new_embedder, new_embedder.ref.key, asked),
                          qids, config.k)
        out.append(_evidence(info, d, run_old, run_new, config, seg_labels))
    return out, len(picked), len(judged & {ext for _, ext, _, _ in picked}), embedded


def _sample_documents(conn: sa.Connection, source_ids: set[int], judged: set[str],
                      size: int) -> list[tuple[int, str, str, dict[str, object]]]:
    """(id, external id, text, metadata) of the judged documents plus random others, up to ``size`` in all."""
    d = schema.documents
    live = sa.select(d.c.id, d.c.external_id).where(d.c.deleted_at.is_(None), d.c.source_id.in_(sorted(source_ids)))
    rows = conn.execute(live.order_by(d.c.id)).all()
    chosen = [r.id for r in rows if r.external_id in judged]
    others = [r.id for r in rows if r.external_id not in judged]
    chosen += random.Random(0).sample(others, max(0, min(len(others), size - len(chosen))))
    docs: list[tuple[int, str, str, dict[str, object]]] = []
    for i in range(0, len(chosen), 900):
        q = sa.select(d.c.id, d.c.external_id, d.c.text, d.c.metadata).where(d.c.id.in_(chosen[i : i + 900]))
        docs.extend((r.id, r.external_id, r.text, dict(r.metadata or {})) for r in conn.execute(q))
    return sorted(docs)


def _old_side(conn: sa.Connection, old: IndexInfo, picked: Sequence[tuple[int, str, str, dict[str, object]]]) -> _Side:
    v, c, e = schema.vectors, schema.chunks, schema.embeddings
    external = {doc_id: ext for doc_id, ext, _, _ in picked}
    ids = sorted(external)
    vectors: list[np.ndarray] = []
    owners: list[str] = []
    for i in range(0, len(ids), 900):
        q = (sa.select(c.c.document_id, e.c.vector).join(v, v.c.chunk_id == c.c.id)
             .join(e, sa.and_(e.c.space_key == old.space_key, e.c.content_hash == v.c.content_hash))
             .where(v.c.index_id == old.id, c.c.document_id.in_(ids[i : i + 900])).order_by(c.c.id))
        for doc_id, blob in conn.execute(q):
            vectors.append(np.frombuffer(blob, dtype=np.float32))
            owners.append(external[doc_id])
    return _Side(_unit_rows(np.stack(vectors) if vectors else np.empty((0, old.dims), np.float32)), owners)


def _new_side(engine: sa.Engine, embedder: Embedder, chunker: Chunker,
              picked: Sequence[tuple[int, str, str, dict[str, object]]]) -> tuple[_Side, int]:
    chunks = [(ext, ch) for _, ext, text, meta in picked for ch in chunker.chunk(text, meta)]
    texts = {ch.content_hash: ch.text for _, ch in chunks}
    with read_tx(engine) as conn:
        known = stored_embeddings(conn, embedder.ref.key, list(texts))
    todo = [h for h in texts if h not in known]
    if todo:
        known.update(zip(todo, np.asarray(embedder.embed([texts[h] for h in todo]), np.float32), strict=True))
    vectors = np.stack([known[ch.content_hash] for _, ch in chunks]) if chunks else np.empty((0, embedder.ref.dims))
    return _Side(_unit_rows(np.asarray(vectors, np.float32)), [ext for ext, _ in chunks]), len(todo)


def _embed_queries(engine: sa.Engine, embedder: Callable[[], Embedder], space_key: str, texts: list[str]) -> np.ndarray:
    """Query vectors from the catalog's content-addressed cache where present (read only), else embedded."""
    from embedops.embedding.base import query_hash

    with read_tx(engine) as conn:
        ref = space_ref(conn, space_key)
        hashes = [query_hash(ref, t) for t in texts]
        known = stored_embeddings(conn, space_key, hashes)
    todo = [i for i, h in enumerate(hashes) if h not in known]
    if todo:
        fresh = np.asarray(embedder().embed_queries([texts[i] for i in todo]), np.float32)
        known.update((hashes[i], vec) for i, vec in zip(todo, fresh, strict=True))
    return _unit_rows(np.stack([known[h] for h in hashes]))


def _search(side: _Side, queries: np.ndarray, qids: list[str], k: int) -> Run:
    """Exact top documents per query: a document scores its best chunk."""
    scores = queries @ side.vectors.T if len(side.documents) else np.empty((len(qids), 0))
    depth = min(scores.shape[1], k * CHUNKS_PER_DOC * 4)
    run: Run = {}
    for qid, row in zip(qids, scores, strict=True):
        top = np.argpartition(-row, depth - 1)[:depth] if depth else np.empty(0, dtype=np.int64)
        docs: dict[str, float] = {}
        for i in top[np.argsort(-row[top])]:
            docs.setdefault(side.documents[i], float(row[i]))
            if len(docs) == k:
                break
        run[qid] = docs
    return run


def _evidence(info: BoundEvalSet, data: EvalSetData, run_old: Run, run_new: Run, config: GateConfig,
              labels: Mapping[str, Mapping[str, str]]) -> EvalEvidence:
    qrels = {qid: dict(j) for qid, j in data.qrels.items() if qid in run_old}
    per_old = evaluate(qrels, run_old, (config.k,)).per_query
    per_new = evaluate(qrels, run_new, (config.k,)).per_query
    overall = compare_runs(per_old, per_new, config.metric, n_boot=N_BOOT)
    segments: list[SegmentEvidence] = []
    for spec, seg in labels.items():
        if len(set(seg.values())) < 2:
            continue
        cmp = compare_runs(per_old, per_new, config.metric, segments=seg, n_boot=N_BOOT)
        segments += [SegmentEvidence(spec, s.segment, s.n, s.mean_a, s.mean_b, s.ci_low, s.ci_high)
                     for s in cmp.segments.values()]
    return EvalEvidence(info.name, info.version, config.metric, overall.n, overall.mean_a, overall.mean_b,
                        overall.ci_low, overall.ci_high, overall.p_value, tuple(segments))


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True) if len(m) else np.ones((0, 1))
    out: np.ndarray = (m / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    return out


def load_for_preview(engine: sa.Engine, evalsets: Sequence[BoundEvalSet]) -> list[EvalSetData]:
    with read_tx(engine) as conn:
        return [load_evalset(conn, f"{e.name}@{e.version}") for e in evalsets]


__all__ = ["load_for_preview", "preview_evidence"]
