"""Search modes: vector (the index's ANN), BM25 (the catalog's FTS5) and hybrid (RRF).

BM25 runs in the database's own full-text engine over the chunks of the queried
index's chunker that have a vector in that index, so all three modes rank the
same set of chunks. Hybrid fuses the two ranked lists by reciprocal rank
fusion: ``score(chunk) = Σ weight / (rrf_k + rank)`` over the lists the chunk
appears in (Cormack et al., 2009; ``rrf_k = 60``).

>>> fts_query('what is "WAL"? (sqlite)')
'"what" OR "is" OR "WAL" OR "sqlite"'
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast, get_args

import numpy as np

from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.embedding.spend import (
    Job, Limits, Line, cache_saving, check_prices, check_whole, cost_of, count_tokens, embed_metered, record,
)
from embedops.embedding.base import query_hash
from embedops.errors import SearchError
from embedops.search.engine import Filters, Searcher, SearchResult
from embedops.vectors.base import IndexInfo
from embedops.vectors.fts import quoted
from embedops.vectors.sqlite import space_ref, stored_embeddings

SearchMode = Literal["vector", "bm25", "hybrid"]
MODES: tuple[str, ...] = get_args(SearchMode)

# A query's distinct terms beyond this add cost, not ranking signal.
MAX_TERMS = 64
_TERM = re.compile(r"\w+")


@dataclass(frozen=True)
class HybridParams:
    """Reciprocal rank fusion settings; ``depth`` is how many candidates each list contributes."""

    rrf_k: int = 60
    vector_weight: float = 1.0
    bm25_weight: float = 1.0
    depth: int | None = None  # default: max(k, 50)

    def candidates(self, k: int) -> int:
        return max(k, self.depth) if self.depth else max(k, 50)

    def fuse(self, by_vector: Sequence[SearchResult], by_bm25: Sequence[SearchResult], k: int) -> list[SearchResult]:
        """The top ``k`` of both ranked lists by weighted reciprocal rank fusion."""
        return fuse([by_vector, by_bm25], [self.vector_weight, self.bm25_weight], self.rrf_k, limit=k)


DEFAULT_HYBRID = HybridParams()

def check_mode(mode: str) -> SearchMode:
    """``mode`` as a :data:`SearchMode`, or a :class:`SearchError` naming the valid ones."""
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    return cast(SearchMode, mode)


def query_terms(text: str) -> list[str]:
    """``text``'s distinct words (regex ``\\w+``, first spelling kept), at most :data:`MAX_TERMS`."""
    seen: dict[str, str] = {}
    for term in _TERM.findall(text):
        seen.setdefault(term.casefold(), term)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen.values())


def fts_query(text: str) -> str | None:
    """An FTS5 query matching any of ``text``'s words; ``None`` when it has no word at all."""
    return " OR ".join(quoted(query_terms(text))) or None


def embed_queries(searcher: Searcher, index: IndexInfo, texts: Sequence[str]) -> np.ndarray:
    """All query texts embedded in one call with the index's own embedder, query side (invariant 1)."""
    if not texts:
        return np.empty((0, index.dims), dtype=np.float32)
    return searcher.embed_queries(index, list(texts))


def embed_queries_remembered(searcher: Searcher, index: IndexInfo, texts: Sequence[str], *,
                             job: Job | None = None, limits: Limits | None = None,
                             command: str = "embedops eval run") -> np.ndarray:
    """:func:`embed_queries` for queries asked again and again (an eval set, a migration gate).

    Their vectors join the catalog's content-addressed embeddings of the index's
    space, like chunk texts, so a re-run reads them back and needs no model:
    the same text in the same space is the same vector (invariant 1 holds by the key).
    ``limits`` refuse (:class:`BudgetExceeded`) queries whose embedding would cost more than they allow.
    An asymmetric space keys them apart from chunks (:func:`query_hash`).
    """
    if not texts:
        return np.empty((0, index.dims), dtype=np.float32)
    store = searcher.store
    with read_tx(store.engine) as conn:
        ref = space_ref(conn, index.space_key)
        hashes = [query_hash(ref, t) for t in texts]
        known = stored_embeddings(conn, index.space_key, hashes)
    text_of = dict(zip(hashes, texts, strict=True))
    missing = [h for h in text_of if h not in known]
    if missing:
        # Outside the query cache: this spend is the job's (``eval`` unless named), written with its ledger row.
        job = job or Job.new("eval")
        embedder, price = searcher.query_embedder(index), searcher.queries.price_of(index.embedder)
        if limits is not None:
            check_prices(limits, {index.embedder: price}, command)
            check_whole(limits, cost_of(count_tokens(embedder, (text_of[h] for h in missing)), price), command)
        spend = cache_saving(embedder, [text_of[h] for h in text_of if h in known], price)
        fresh = np.asarray(embed_metered(embedder, [text_of[h] for h in missing], price, spend, query=True),
                           dtype=np.float32)
        with store.engine.begin() as conn:
            store.put_embeddings(conn, index.space_key, dict(zip(missing, fresh, strict=True)))
            ledger_id = write_ledger(conn, "queries.embed", index=index.id, queries=len(missing), job=job.id)
            record(conn, ledger_id, job, [Line(index.space_key, index.embedder, spend)])
        known.update(zip(missing, fresh, strict=True))
    return np.stack([np.asarray(known[h], dtype=np.float32) for h in hashes])


def search_mode(
    searcher: Searcher,
    query: str | None = None,
    *,
    vector: np.ndarray | None = None,
    k: int = 10,
    alias: str = "prod",
    index_id: str | None = None,
    filters: Filters | None = None,
    mode: str = "vector",
    hybrid: HybridParams = DEFAULT_HYBRID,
) -> list[SearchResult]:
    """One query in any mode. ``query`` is needed for BM25; ``vector`` (precomputed) skips embedding."""
    mode = check_mode(mode)
    if k < 1:
        raise SearchError(f"k must be at least 1 (got {k})")
    if mode == "vector":
        return searcher.search(query, vector=vector, k=k, alias=alias, index_id=index_id, filters=filters)
    index = searcher.resolve(alias, index_id)
    text = _require_text(query, mode)
    if mode == "bm25":
        return bm25_search(searcher, index, text, k, filters)
    depth = hybrid.candidates(k)
    by_vector = searcher.search(text, vector=vector, k=depth, index_id=index.id, filters=filters)
    by_bm25 = bm25_search(searcher, index, text, depth, filters)
    return hybrid.fuse(by_vector, by_bm25, k)


def search_batch(
    searcher: Searcher,
    queries: Sequence[str],
    *,
    k: int = 10,
    alias: str = "prod",
    index_id: str | None = None,
    filters: Filters | None = None,
    mode: str = "vector",
    vectors: np.ndarray | None = None,
    hybrid: HybridParams = DEFAULT_HYBRID,
) -> list[list[SearchResult]]:
    """Many queries against one index, resolved once and embedded in one batch.

    The alias is resolved a single time, so a concurrent alias swap cannot mix
    two indexes within one batch. ``vectors`` (one row per query) skips embedding.
    """
    mode = check_mode(mode)
    if k < 1:
        raise SearchError(f"k must be at least 1 (got {k})")
    index = searcher.resolve(alias, index_id)
    if mode == "bm25":
        return [bm25_search(searcher, index, _require_text(text, mode), k, filters) for text in queries]
    if vectors is None:
        vectors = embed_queries(searcher, index, queries)
    if mode == "vector":
        return searcher.search_many(index, vectors, k, filters)
    depth = hybrid.candidates(k)
    by_vector = searcher.search_many(index, vectors, depth, filters)
    return [
        hybrid.fuse(hits, bm25_search(searcher, index, _require_text(text, mode), depth, filters), k)
        for text, hits in zip(queries, by_vector, strict=True)
    ]


def bm25_search(searcher: Searcher, index: IndexInfo, text: str, k: int, filters: Filters | None = None) -> list[SearchResult]:
    """Top ``k`` chunks of ``index`` by the store's full-text ranking (FTS5 BM25, PostgreSQL ``ts_rank_cd``)."""
    if not searcher.store.capabilities.full_text:
        raise SearchError(f"index {index.id}'s store has no full-text engine", hint="use --mode vector")
    terms = query_terms(text)
    if not terms:
        return []
    now = time.time()
    # The score stays unrounded: BM25 scores of common terms can be ~1e-6.
    return [searcher.result(row, score, now) for row, score in searcher.store.full_text(index, terms, k, filters)]


def fuse(
    ranked: Sequence[Sequence[SearchResult]], weights: Sequence[float], rrf_k: int = 60, *, limit: int | None = None
) -> list[SearchResult]:
    """Reciprocal rank fusion of ranked result lists (same index), best first, at most ``limit``.

    Ties keep the order in which chunks were first seen, lists in the given order.
    """
    scores: dict[int, float] = {}
    first: dict[int, SearchResult] = {}
    for results, weight in zip(ranked, weights, strict=True):
        for rank, result in enumerate(results, start=1):
            scores[result.chunk_id] = scores.get(result.chunk_id, 0.0) + weight / (rrf_k + rank)
            first.setdefault(result.chunk_id, result)
    order = sorted(first, key=lambda cid: -scores[cid])[:limit]  # stable: first-seen order breaks ties
    return [replace(first[cid], score=round(scores[cid], 8)) for cid in order]


def _require_text(query: str | None, mode: str) -> str:
    if not query or not query.strip():
        raise SearchError(f"empty query: {mode} search needs the query text", hint='pass some text: embedops search "..."')
    return query
