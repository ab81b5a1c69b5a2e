"""alias → index → that index's embedder → store → results with lineage tags."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.queries import metadata_equals
from embedops.embedding.base import Embedder
from embedops.embedding.query import QueryEmbeddings
from embedops.errors import NotFound, SearchError, SpaceMismatch
from embedops.monitor.staleness import is_stale
from embedops.vectors.base import IndexInfo, VectorStore
from embedops.vectors.rows import Filters, ResultRow

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Filters", "SearchResult", "Searcher"]  # Filters: defined with the rows it compiles to


@dataclass(frozen=True)
class SearchResult:
    document_id: str
    chunk_id: int
    score: float
    text: str
    start: int
    end: int
    source: str
    metadata: dict[str, Any]
    tags: dict[str, Any]
    stale: bool = False  # the source changed since, or was not re-checked within its max_lag

    def to_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "chunk_id": self.chunk_id,
            "score": self.score,
            "text": self.text,
            "span": [self.start, self.end],
            "source": self.source,
            "metadata": self.metadata,
            "tags": self.tags,
            "stale": self.stale,
        }


@lru_cache(maxsize=4096)
def _iso(ts: float | None) -> str | None:
    # ~5 µs a call, two per result; a whole sync batch shares one embedded_at, and
    # the chunks of a document one source_updated_at, so values repeat across queries.
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # stored before times were checked: answer without it
        return None


class Searcher:
    """Resolves aliases and answers queries; safe to share between threads."""

    def __init__(self, store: VectorStore, embedder_for: Callable[[IndexInfo], Any],
                 queries: QueryEmbeddings | None = None) -> None:
        self.store = store
        self.embedder_for = embedder_for
        # The query path's cache and counters (latency, errors, spend), shared by every search mode.
        self.queries = queries or QueryEmbeddings()
        self._lock = threading.Lock()
        # Freshness SLO per source name, seconds (None: no SLO); set by the workspace.
        self.max_lag: Mapping[str, float | None] = {}

    def stale(self, row: ResultRow, now: float) -> bool:
        """Whether a result's source changed since it was embedded, or was not re-checked within its SLO."""
        return is_stale(row.catalog_key, row.signature, row.content_hash, row.last_scan_at, row.checked_at,
                        self.max_lag.get(row.source), now=now)

    def result(self, row: ResultRow, score: float, now: float) -> SearchResult:
        """The search result of a catalog row: the one place rows become results, for every mode."""
        return SearchResult(
            document_id=row.external_id, chunk_id=row.chunk_id, score=score, text=row.text, start=row.start,
            end=row.end_offset, source=row.source,
            metadata=json.loads(row.metadata) if isinstance(row.metadata, str) else row.metadata,
            tags={"space": row.space_key, "chunker": row.chunker_key, "embedded_at": _iso(row.embedded_at),
                  "source_updated_at": _iso(row.source_updated_at)},
            stale=self.stale(row, now),
        )

    def resolve(self, alias: str | None = None, index_id: str | None = None) -> IndexInfo:
        found = self.store.lookup_index(alias=alias, index_id=index_id)
        if found is None:
            what = f"index {index_id!r}" if index_id is not None else f"alias {alias!r}"
            raise NotFound(f"no {what}", hint="run `embedops sync` first, or `embedops status` to list indexes")
        return found

    def query_embedder(self, index: IndexInfo) -> Any:
        """The index's own embedder, refused if it no longer produces the index's space (invariant 1)."""
        embedder = self.embedder_for(index)
        if embedder.ref.key != index.space_key:
            raise SpaceMismatch(
                f"query embedder {embedder.ref.key} differs from index {index.id}'s space {index.space_key}",
                hint="a query must be embedded with the index's own embedder",
            )
        return embedder

    def embed_query(self, index: IndexInfo, text: str) -> np.ndarray:
        import numpy as np
        vectors: np.ndarray = self.embed_queries(index, [text])
        return np.asarray(vectors[0], dtype=np.float32)

    def embed_queries(self, index: IndexInfo, texts: list[str]) -> np.ndarray:
        """``texts`` embedded with the index's own embedder, through the query cache."""
        embedder: Embedder = self.query_embedder(index)
        return self.queries.embed(index.space_key, index.embedder, embedder, texts)

    def search(
        self,
        query: str | None = None,
        *,
        vector: np.ndarray | None = None,
        k: int = 10,
        alias: str = "prod",
        index_id: str | None = None,
        filters: Filters | None = None,
    ) -> list[SearchResult]:
        if k < 1:
            raise SearchError(f"k must be at least 1 (got {k})")
        index = self.resolve(alias, index_id)
        if vector is None:
            if not query or not query.strip():
                raise SearchError("empty query", hint='pass some text: embedops search "..."')
            vector = self.embed_query(index, query)
        else:
            vector = _as_query_vector(vector, index)
        allowed = self._allowed(index, filters) if filters else None
        hits = self.store.search(index, vector, k, allowed)
        return self._materialize(hits)

    def search_many(
        self, index: IndexInfo, vectors: np.ndarray, k: int, filters: Filters | None = None
    ) -> list[list[SearchResult]]:
        """Top-k for each query vector (rows of ``vectors``) on one resolved index; one ANN call when unfiltered."""
        import numpy as np
        if k < 1:
            raise SearchError(f"k must be at least 1 (got {k})")
        queries = np.empty((len(vectors), index.dims), dtype=np.float32)
        for i, vector in enumerate(vectors):
            queries[i] = _as_query_vector(vector, index)
        if filters:
            allowed = self._allowed(index, filters)
            return [self._materialize(self.store.search(index, q, k, allowed)) for q in queries]
        return [self._materialize(hits) for hits in self.store.search_many(index, queries, k)]

    def _materialize(self, hits: list[Any]) -> list[SearchResult]:
        rows = self.store.result_rows([h.seq for h in hits])
        now = time.time()
        # A vector deleted between the ANN lookup and this read is skipped, never an error.
        return [self.result(rows[h.seq], round(h.score, 6), now) for h in hits if h.seq in rows]

    def _allowed(self, index: IndexInfo, filters: Filters) -> set[int]:
        v, c, d, s = schema.vectors, schema.chunks, schema.documents, schema.sources
        q = (
            sa.select(v.c.seq)
            .join(c, c.c.id == v.c.chunk_id)
            .join(d, d.c.id == c.c.document_id)
            .join(s, s.c.id == d.c.source_id)
            .where(v.c.index_id == index.id)
        )
        if filters.source:
            q = q.where(s.c.name == filters.source)
        q = q.where(*metadata_equals(filters.metadata, chunks=True))
        if filters.updated_after:
            q = q.where(d.c.source_updated_at >= filters.updated_after.timestamp())
        with read_tx(self.store.engine) as conn:  # a read: never waits for a writer
            return set(conn.execute(q).scalars())


def _as_query_vector(vector: np.ndarray, index: IndexInfo) -> np.ndarray:
    import numpy as np
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape[0] != index.dims:
        raise SearchError(f"query vector has {vec.shape[0]} dimensions; index {index.id} has {index.dims}")
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec
