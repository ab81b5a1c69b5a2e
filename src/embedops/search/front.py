"""A workspace's searches: checked against its catalog, run in their mode, monitored when configured.

``Workspace.search``, ``Workspace.search_batch`` and ``Workspace.filter_notes``
are these, over the workspace's searcher, catalog engine and settings (a
:class:`SearchFront` is built per call, so a reloaded configuration is the one
used). Freshness filters, recency decay and the query log go through
``monitor/serving.py``; a plain search goes straight to ``search/modes.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from embedops.catalog import queries
from embedops.catalog.db import read_tx
from embedops.config import Settings
from embedops.errors import NotFound
from embedops.search.engine import Filters, Searcher, SearchResult
from embedops.search.params import refuse_nul
from embedops.vectors.base import IndexInfo

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class SearchFront:
    """Searches of one workspace: its searcher, catalog and settings (alias, sources, ``[monitor]``)."""

    searcher: Searcher
    engine: sa.Engine
    settings: Settings

    def search(self, query: str | None, vector: np.ndarray | None, k: int, alias: str | None, index: str | None,
               filters: Filters | None, mode: str, fresh_only: bool, recency_half_life: float | None) -> list[SearchResult]:
        from embedops.search.modes import search_mode

        self.check([query or ""], alias, index, filters)
        if fresh_only or recency_half_life is not None or self.settings.monitor.query_log:
            from embedops.monitor.serving import monitored_search

            return monitored_search(
                self.searcher, self._log_query if self.settings.monitor.query_log else None, query, vector=vector,
                k=k, alias=alias or self.settings.alias, index_id=index, filters=filters, mode=mode,
                fresh_only=fresh_only, recency_half_life=recency_half_life,
            )
        return search_mode(
            self.searcher, query, vector=vector, k=k, alias=alias or self.settings.alias, index_id=index,
            filters=filters, mode=mode,
        )

    def _log_query(self, index: IndexInfo, mode: str, text: str | None, vector: np.ndarray | None) -> None:
        from embedops.monitor.querylog import log_query

        log_query(self.engine, self.settings.monitor, index, mode, text, vector)

    def search_batch(self, texts: Sequence[str], vectors: np.ndarray | None, k: int, alias: str | None,
                     index: str | None, filters: Filters | None, mode: str) -> list[list[SearchResult]]:
        """Many queries against one index, already checked (:meth:`check`)."""
        from embedops.search.modes import search_batch

        return search_batch(
            self.searcher, texts, k=k, alias=alias or self.settings.alias, index_id=index, filters=filters,
            mode=mode, vectors=vectors,
        )

    def check(self, texts: Sequence[str], alias: str | None, index: str | None, filters: Filters | None) -> None:
        """Refuse what no search can mean: a NUL, a filter on a source that does not exist (not 0 results)."""
        refuse_nul(texts, alias, index, filters)
        if filters is None or not filters.source or filters.source in self.settings.sources:
            return
        with read_tx(self.engine) as conn:  # a source removed from the config may still hold documents
            if queries.source_exists(conn, filters.source):
                return
        names = ", ".join(self.settings.sources) or "none (add one with `embedops source add`)"
        raise NotFound(f"no source {filters.source!r}", hint=f"sources: {names}", source=filters.source)

    def filter_notes(self, filters: Filters | None) -> list[str]:
        """Why a filtered search may have found nothing: metadata keys that no live document has."""
        if filters is None or not filters.metadata:
            return []
        with read_tx(self.engine) as conn:
            absent = queries.absent_metadata_keys(conn, list(filters.metadata))
        return [f"no document has metadata key {key!r}" for key in absent]
