"""Vector stores, chosen by the catalog database's dialect (a registry, not ``if`` chains)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from embedops.errors import ConfigError
from embedops.vectors.base import VectorStore


def _sqlite(engine: sa.Engine, state_dir: Path, ef_search: int | None) -> VectorStore:
    from embedops.vectors.sqlite import SqliteVectorStore

    return SqliteVectorStore(engine, state_dir / "ann", ef_search=ef_search)


def _postgresql(engine: sa.Engine, state_dir: Path, ef_search: int | None) -> VectorStore:
    from embedops.vectors.pgvector import PgVectorStore

    return PgVectorStore(engine, ef_search=ef_search)


STORES: dict[str, Callable[[sa.Engine, Path, int | None], VectorStore]] = {"sqlite": _sqlite, "postgresql": _postgresql}


def make_store(engine: sa.Engine, state_dir: Path, ef_search: int | None = None) -> VectorStore:
    """The vector store for ``engine``'s dialect; ``ef_search``: HNSW candidates per query
    (None: the default, which grows with each index's size)."""
    factory = STORES.get(engine.dialect.name)
    if factory is None:
        raise ConfigError(
            f"no vector store for database dialect {engine.dialect.name!r}",
            hint=f"use one of: {', '.join(STORES)}",
        )
    return factory(engine, state_dir, ef_search)
