"""The VectorStore protocol and the records it handles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from embedops.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from embedops.vectors.rows import Filters, ResultRow
    from embedops.vectors.scratch import ScratchVariant
    from embedops.vectors.storage import StorageSpec


@dataclass(frozen=True)
class IndexInfo:
    """One index: its identity (space, chunker, storage variant), status, the space's dims and embedder."""

    id: str
    space_key: str
    chunker_key: str
    status: str
    dims: int  # the space's dimensions: what a query vector has before the variant reduces it
    embedder: str
    storage: str = "f32"  # the storage variant's key (vectors/storage.py)

    @property
    def spec(self) -> StorageSpec:
        from embedops.vectors.storage import StorageSpec

        return StorageSpec.parse(self.storage)


@dataclass(frozen=True)
class VectorRow:
    """One index row: a chunk's vector with its lineage tags."""

    chunk_id: int
    content_hash: str
    space_key: str
    chunker_key: str
    source_version: str


@dataclass(frozen=True)
class Hit:
    seq: int
    score: float


# HNSW candidates per query (ef_search) on every backend unless ``ann_ef_search``
# says otherwise. A fixed ef_search loses recall as the graph grows, so the
# default grows with the index: 256 up to 100k vectors (recall@10 0.967 on 100k
# vectors drawn like real MiniLM embeddings, bench/search_latency.py), then
# proportional to n^0.65 (1M: 1,136; at 1M, 256 gave 0.80 and 1,000 gave 0.953).
# Embeddings with more structure than those Gaussian ones need less.
DEFAULT_EF_SEARCH = 256
EF_SEARCH_FLAT_UP_TO = 100_000
EF_SEARCH_GROWTH = 0.65
MAX_EF_SEARCH = 4096  # the most the default or ``ann_ef_search`` may ask of usearch
PG_MAX_EF_SEARCH = 1000  # pgvector's limit for hnsw.ef_search


def default_ef_search(vectors: int, cap: int) -> int:
    """The ef_search an index of ``vectors`` vectors is searched with when none is configured.

    Steps of 16, so a growing index changes the setting rarely; never above ``cap``
    (the backend's limit)."""
    if vectors <= EF_SEARCH_FLAT_UP_TO:
        return min(DEFAULT_EF_SEARCH, cap)
    grown = DEFAULT_EF_SEARCH * (vectors / EF_SEARCH_FLAT_UP_TO) ** EF_SEARCH_GROWTH
    return min(cap, int(grown) // 16 * 16)


@dataclass(frozen=True)
class Capabilities:
    """What a store can do natively; callers branch on these, never on a backend name."""

    full_text: bool  # ``full_text`` ranks in the store's own engine (BM25 / hybrid modes)
    ann_file: bool  # the ANN is derived state in a file beside the catalog (``flush`` saves it)
    precisions: tuple[str, ...] = ("f32", "f16", "i8", "b1")  # storage precisions its ANN holds (vectors/storage.py)
    layouts: tuple[str, ...] = ("hnsw", "flat")  # hnsw: a graph; flat: exact search over the encoded vectors

    def check_holds(self, spec: StorageSpec) -> None:
        """ConfigError unless this store can hold an index of storage ``spec``."""
        if spec.precision not in self.precisions:
            raise ConfigError(f"this catalog's vector store holds no {spec.precision} vectors",
                              hint=f"use one of: {', '.join(self.precisions)} (with --rescore to re-rank at full precision)")
        if spec.layout not in self.layouts:
            raise ConfigError(f"this catalog's vector store has no {spec.layout} layout", hint=f"use {', '.join(self.layouts)}")


class VectorStore(Protocol):
    """Where an index's vectors live and how they are searched. One conformance suite
    (the tests parametrized over backends) holds every implementation to the same behaviour.

    Callers never pass SQL: each read a search needs is a method, answered on the
    calling thread's own connection (the hot path), rows mapped by column name
    (:class:`~embedops.vectors.rows.ResultRow`). ``capabilities`` says what the
    store does natively; callers branch on it, never on a backend name."""

    capabilities: Capabilities
    engine: sa.Engine

    def ensure_index(self, conn: sa.Connection, index: IndexInfo) -> None: ...

    def forget(self, index_id: str) -> None: ...

    def put_embeddings(
        self, conn: sa.Connection, space_key: str, vectors: Mapping[str, np.ndarray]
    ) -> None: ...

    def missing_embeddings(self, conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> set[str]: ...

    def write(self, conn: sa.Connection, index: IndexInfo, rows: Sequence[VectorRow]) -> int: ...

    def delete_chunks(self, conn: sa.Connection, chunk_ids: Sequence[int]) -> int: ...

    def lookup_index(self, *, alias: str | None = None, index_id: str | None = None) -> IndexInfo | None:
        """The index ``index_id`` names, else the one ``alias`` points at; None when there is none."""
        ...

    def result_rows(self, seqs: Sequence[int]) -> dict[int, ResultRow]:
        """The result rows of these vector seqs (a seq deleted meanwhile is simply absent)."""
        ...

    def full_text(self, index: IndexInfo, terms: Sequence[str], k: int, filters: Filters | None) -> list[tuple[ResultRow, float]]:
        """Top ``k`` chunks of ``index`` matching any of ``terms`` by the store's full-text ranking, best first.

        Only when ``capabilities.full_text``."""
        ...

    def search(
        self, index: IndexInfo, query: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[Hit]: ...

    def search_many(self, index: IndexInfo, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Unfiltered top-k for each row of ``queries``, as one snapshot of the index."""
        ...

    def count(self, conn: sa.Connection, index_id: str) -> int: ...

    def flush(self, index: IndexInfo) -> dict[str, Any]: ...

    def scratch(self, index: IndexInfo, storage: StorageSpec, directory: Path) -> ScratchVariant:
        """``index`` rebuilt as ``storage`` from its stored vectors, apart from everything served (capacity analysis);
        ``directory`` holds any file it needs. Close it when done."""
        ...
