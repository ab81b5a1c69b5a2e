"""The VectorStore protocol and the records it handles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class IndexInfo:
    id: str
    space_key: str
    chunker_key: str
    status: str
    dims: int
    embedder: str


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
# says otherwise: recall@10 >= 0.95 on 100k vectors drawn like real MiniLM
# embeddings (bench/search_latency.py); embeddings with more structure need less.
DEFAULT_EF_SEARCH = 256


@dataclass(frozen=True)
class Capabilities:
    """What a store can do natively; callers branch on these, never on a backend name."""

    ann: bool
    full_text: bool
    transactional_alias_swap: bool


class VectorStore(Protocol):
    """Where an index's vectors live and how they are searched. One conformance suite
    (the tests parametrized over backends) holds every implementation to the same behaviour."""

    capabilities: Capabilities
    engine: sa.Engine

    def ensure_index(self, conn: sa.Connection, index: IndexInfo) -> None: ...

    def raw(self) -> Any: ...

    def forget(self, index_id: str) -> None: ...

    def put_embeddings(
        self, conn: sa.Connection, space_key: str, vectors: Mapping[str, np.ndarray]
    ) -> None: ...

    def missing_embeddings(self, conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> set[str]: ...

    def write(self, conn: sa.Connection, index: IndexInfo, rows: Sequence[VectorRow]) -> int: ...

    def delete_chunks(self, conn: sa.Connection, chunk_ids: Sequence[int]) -> int: ...

    def search(
        self, index: IndexInfo, query: np.ndarray, k: int, allowed: set[int] | None = None
    ) -> list[Hit]: ...

    def search_many(self, index: IndexInfo, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Unfiltered top-k for each row of ``queries``, as one snapshot of the index."""
        ...

    def count(self, conn: sa.Connection, index_id: str) -> int: ...

    def flush(self, index: IndexInfo) -> dict[str, Any]: ...
