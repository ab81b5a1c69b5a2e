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

import json
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, cast, get_args

import numpy as np

from embedops.catalog.fts import FTS_TABLE
from embedops.errors import SearchError
from embedops.hashing import content_hash
from embedops.search.engine import STALE_COLUMNS, STALE_JOINS, Filters, Searcher, SearchResult
from embedops.vectors.base import IndexInfo
from embedops.vectors.sqlite import stored_embeddings

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

# Rank in FTS5 alone first (BM25 over every matching chunk is the cost; joins
# per match would double it), then keep the index's chunks; widened when the
# top candidates hold too few of them (other chunkers, filters).
_BM25_SQL = (
    "SELECT v.seq, v.chunk_id, v.space_key, v.chunker_key, v.embedded_at, c.text, c.start, c.\"end\","
    " d.external_id, d.source_updated_at, d.metadata, s.name, top.score" + STALE_COLUMNS +
    " FROM (SELECT rowid AS chunk_id, -bm25({fts}) AS score FROM {fts} WHERE {fts} MATCH ?"
    " ORDER BY score DESC LIMIT ?) AS top"
    " JOIN chunks c ON c.id = top.chunk_id"
    " JOIN vectors v ON v.chunk_id = c.id AND v.index_id = ?"
    " JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = d.source_id" + STALE_JOINS +
    " WHERE c.chunker_key = ?{where}"
    " ORDER BY top.score DESC, v.seq LIMIT ?"
)


_COUNT_SQL = f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
_TOTAL_SQL = f"SELECT count(*) FROM {FTS_TABLE}_docsize"  # one row per indexed chunk, O(1) to count
_CHUNKERS_SQL = "SELECT count(DISTINCT chunker_key) FROM indexes"


def check_mode(mode: str) -> SearchMode:
    """``mode`` as a :data:`SearchMode`, or a :class:`SearchError` naming the valid ones."""
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    return cast(SearchMode, mode)


def fts_terms(text: str) -> list[str]:
    """``text``'s distinct words, each quoted for FTS5: punctuation and operators never error."""
    seen: dict[str, str] = {}
    for term in _TERM.findall(text):
        seen.setdefault(term.casefold(), term)
        if len(seen) >= MAX_TERMS:
            break
    return [f'"{t}"' for t in seen.values()]


def fts_query(text: str) -> str | None:
    """An FTS5 query matching any of ``text``'s words; ``None`` when it has no word at all."""
    return " OR ".join(fts_terms(text)) or None


def informative_terms(raw: sqlite3.Connection, terms: list[str]) -> list[str]:
    """The terms that carry BM25 weight: FTS5 floors the IDF of a term found in half
    the chunks or more to ~0, so such terms change no ranking, yet scoring every
    chunk they match costs most of a query's time. All terms if none is informative."""
    if len(terms) < 2:
        return terms
    total = raw.execute(_TOTAL_SQL).fetchone()[0]
    kept = [t for t in terms if raw.execute(_COUNT_SQL, (t,)).fetchone()[0] * 2 < total]
    return kept or terms


def embed_queries(searcher: Searcher, index: IndexInfo, texts: Sequence[str]) -> np.ndarray:
    """All query texts embedded in one call with the index's own embedder (invariant 1)."""
    embedder = searcher.query_embedder(index)
    if not texts:
        return np.empty((0, index.dims), dtype=np.float32)
    return np.asarray(embedder.embed(list(texts)), dtype=np.float32)


def embed_queries_remembered(searcher: Searcher, index: IndexInfo, texts: Sequence[str]) -> np.ndarray:
    """:func:`embed_queries` for queries asked again and again (an eval set, a migration gate).

    Their vectors join the catalog's content-addressed embeddings of the index's
    space, like chunk texts, so a re-run reads them back and needs no model:
    the same text in the same space is the same vector (invariant 1 holds by the key).
    """
    if not texts:
        return np.empty((0, index.dims), dtype=np.float32)
    hashes = [content_hash(t) for t in texts]
    store = searcher.store
    with store.engine.connect() as conn:
        known = stored_embeddings(conn, index.space_key, hashes)
    text_of = dict(zip(hashes, texts, strict=True))
    missing = [h for h in text_of if h not in known]
    if missing:
        fresh = embed_queries(searcher, index, [text_of[h] for h in missing])
        with store.engine.begin() as conn:
            store.put_embeddings(conn, index.space_key, dict(zip(missing, fresh, strict=True)))
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
    """Top ``k`` chunks of ``index`` by FTS5 BM25 (score = −bm25(), higher is better)."""
    if not searcher.store.capabilities.full_text:
        raise SearchError(f"index {index.id}'s store has no full-text engine", hint="use --mode vector")
    terms = fts_terms(text)
    if not terms:
        return []
    where, params = _filter_sql(filters, searcher.store.metadata_filter_sql)
    full_text = getattr(searcher.store, "full_text", None)
    if full_text is not None:  # the store ranks in its own engine (PostgreSQL ts_rank_cd)
        rows = full_text(index, [t.strip('"') for t in terms], k, where, params, columns=STALE_COLUMNS, joins=STALE_JOINS)
        now = time.time()
        return [_result(r, searcher.stale(r[11], r[13:18], now)) for r in rows]
    sql = _BM25_SQL.format(fts=FTS_TABLE, where=where)
    raw = searcher.store.raw().driver_connection
    try:
        match = " OR ".join(informative_terms(raw, terms))
        total = raw.execute(_TOTAL_SQL).fetchone()[0]
        want = k * max(1, raw.execute(_CHUNKERS_SQL).fetchone()[0])
        while True:
            rows = raw.execute(sql, [match, want, index.id, index.chunker_key, *params, k]).fetchall()
            if len(rows) >= k or want >= total:
                now = time.time()
                return [_result(r, searcher.stale(r[11], r[13:18], now)) for r in rows]
            want *= 4
    except sqlite3.OperationalError as exc:
        raise SearchError(
            f"full-text search failed on index {index.id}: {exc}",
            hint="an older catalog may lack the FTS index: open it with this embedops to upgrade it",
        ) from exc


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


def _filter_sql(filters: Filters | None, metadata_sql: Callable[[str], tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """The same filters as vector search (``Searcher._allowed``), as SQL on ``d`` and ``s``."""
    if not filters:
        return "", []
    where: list[str] = []
    params: list[Any] = []
    if filters.source:
        where.append("s.name = ?")
        params.append(filters.source)
    for key, value in filters.metadata.items():
        clause, leading = metadata_sql(key)
        where.append(clause)
        params.extend([*leading, str(value)])
    if filters.updated_after:
        where.append("d.source_updated_at >= ?")
        params.append(filters.updated_after.timestamp())
    return "".join(f" AND {w}" for w in where), params


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _result(r: tuple[Any, ...], stale: bool = False) -> SearchResult:
    # The score stays unrounded: BM25 scores of common terms can be ~1e-6.
    return SearchResult(
        document_id=r[8], chunk_id=r[1], score=float(r[12]), text=r[5], start=r[6], end=r[7],
        source=r[11], metadata=json.loads(r[10]) if isinstance(r[10], str) else r[10],
        tags={"space": r[2], "chunker": r[3], "embedded_at": _iso(r[4]), "source_updated_at": _iso(r[9])},
        stale=stale,
    )
