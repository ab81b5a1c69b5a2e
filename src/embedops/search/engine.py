"""alias → index → that index's embedder → store → results with lineage tags."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.errors import NotFound, SearchError, SpaceMismatch
from embedops.monitor.staleness import is_stale
from embedops.vectors.base import IndexInfo, VectorStore

# Freshness of each result (monitor/staleness.py): two primary-key lookups per
# row in the same statement, no extra round trip. Appended after a row's columns.
STALE_COLUMNS = ", fm.catalog_key, d.signature, d.content_hash, s.last_scan_at, sc.checked_at"
STALE_JOINS = (
    " LEFT JOIN freshness_marks fm ON fm.document_id = d.id LEFT JOIN source_checks sc ON sc.source_id = s.id"
)
_ROWS_SQL = (
    "SELECT v.seq, v.chunk_id, v.space_key, v.chunker_key, v.embedded_at, c.text, c.start, c.\"end\","
    " d.external_id, d.source_updated_at, d.metadata, s.name" + STALE_COLUMNS +
    " FROM vectors v JOIN chunks c ON c.id = v.chunk_id JOIN documents d ON d.id = c.document_id"
    " JOIN sources s ON s.id = d.source_id" + STALE_JOINS + " WHERE v.seq IN ({})"
)
_ALIAS_SQL = (
    "SELECT i.id, i.space_key, i.chunker_key, i.status, sp.dims, sp.embedder FROM aliases a"
    " JOIN indexes i ON i.id = a.index_id JOIN spaces sp ON sp.key = i.space_key WHERE a.name = ?"
)
_INDEX_SQL = (
    "SELECT i.id, i.space_key, i.chunker_key, i.status, sp.dims, sp.embedder FROM indexes i"
    " JOIN spaces sp ON sp.key = i.space_key WHERE i.id = ?"
)


# A filter's metadata key ends up in a JSON path (SQLite json_extract, PostgreSQL ->>):
# letters, digits and ``_.:-`` only, so a quote or bracket can never change the path.
METADATA_KEY = r"^[A-Za-z0-9_.:-]{1,128}$"


@dataclass(frozen=True)
class Filters:
    """Metadata filters applied before ranking (exact search over the subset when it is small)."""

    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    updated_after: datetime | None = None

    def __post_init__(self) -> None:
        for key in self.metadata:
            if not isinstance(key, str) or not re.fullmatch(METADATA_KEY, key):
                raise SearchError(
                    f"metadata filter key {key!r} is not allowed",
                    hint="keys are 1-128 letters, digits or _.:- (the document's top-level metadata keys)",
                )

    def __bool__(self) -> bool:
        return bool(self.source or self.metadata or self.updated_after)


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
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


class Searcher:
    """Resolves aliases and answers queries; safe to share between threads."""

    def __init__(self, store: VectorStore, embedder_for: Callable[[IndexInfo], Any]) -> None:
        self.store = store
        self.embedder_for = embedder_for
        self._lock = threading.Lock()
        # Freshness SLO per source name, seconds (None: no SLO); set by the workspace.
        self.max_lag: Mapping[str, float | None] = {}

    def stale(self, source: str, tail: Any, now: float) -> bool:
        """Whether a result row is stale; ``tail`` is the row's :data:`STALE_COLUMNS` values."""
        return is_stale(tail[0], tail[1], tail[2], tail[3], tail[4], self.max_lag.get(source), now=now)

    def resolve(self, alias: str | None = None, index_id: str | None = None) -> IndexInfo:
        if index_id is not None:
            rows = self.store.query(_INDEX_SQL, (index_id,))
            what = f"index {index_id!r}"
        else:
            rows = self.store.query(_ALIAS_SQL, (alias,))
            what = f"alias {alias!r}"
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no {what}", hint="run `embedops sync` first, or `embedops status` to list indexes")
        return IndexInfo(*row)

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
        return np.asarray(self.query_embedder(index).embed([text])[0], dtype=np.float32)

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
        if not hits:
            return []
        rows = {r[0]: r for r in self.store.query(_ROWS_SQL.format(",".join("?" * len(hits))), [h.seq for h in hits])}
        out = []
        now = time.time()
        for hit in hits:
            r = rows.get(hit.seq)
            if r is None:  # deleted between ANN lookup and fetch: skip, never error
                continue
            out.append(
                SearchResult(
                    document_id=r[8], chunk_id=r[1], score=round(hit.score, 6), text=r[5], start=r[6], end=r[7],
                    source=r[11], metadata=json.loads(r[10]) if isinstance(r[10], str) else r[10],
                    tags={"space": r[2], "chunker": r[3], "embedded_at": _iso(r[4]), "source_updated_at": _iso(r[9])},
                    stale=self.stale(r[11], r[12:17], now),
                )
            )
        return out

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
        for key, value in filters.metadata.items():
            q = q.where(d.c.metadata[key].as_string() == str(value))
        if filters.updated_after:
            q = q.where(d.c.source_updated_at >= filters.updated_after.timestamp())
        with self.store.engine.connect() as conn:
            return set(conn.execute(q).scalars())


def _as_query_vector(vector: np.ndarray, index: IndexInfo) -> np.ndarray:
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape[0] != index.dims:
        raise SearchError(f"query vector has {vec.shape[0]} dimensions; index {index.id} has {index.dims}")
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec
