"""Vector stores, chosen by the catalog database's dialect (a registry, not ``if`` chains)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from embedops.errors import ConfigError
from embedops.vectors.base import VectorStore


def _sqlite(engine: sa.Engine, state_dir: Path) -> VectorStore:
    from embedops.vectors.sqlite import SqliteVectorStore

    return SqliteVectorStore(engine, state_dir / "ann")


def _postgresql(engine: sa.Engine, state_dir: Path) -> VectorStore:
    from embedops.vectors.pgvector import PgVectorStore

    return PgVectorStore(engine)


STORES: dict[str, Callable[[sa.Engine, Path], VectorStore]] = {"sqlite": _sqlite, "postgresql": _postgresql}


def make_store(engine: sa.Engine, state_dir: Path) -> VectorStore:
    factory = STORES.get(engine.dialect.name)
    if factory is None:
        raise ConfigError(
            f"no vector store for database dialect {engine.dialect.name!r}",
            hint=f"use one of: {', '.join(STORES)}",
        )
    return factory(engine, state_dir)
