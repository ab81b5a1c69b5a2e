"""Search with the monitoring options: fresh-only, recency weighting, the query log.

``Workspace.search`` comes here only when one of them is in use, so the plain
search path stays exactly as fast as before.

Recency weighting multiplies a result's score by ``0.5 ** (age / half_life)``,
where age is the time since its document last changed in the source (else
since it was embedded): with a half-life of 30 days, a month-old document needs
twice the similarity of a new one. It re-ranks the top ``max(4k, 50)``
candidates, as does the fresh-only filter (widened until ``k`` survive).

>>> recency_weight(0.8, age_s=30 * 86400, half_life_s=30 * 86400)
0.4
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from collections.abc import Callable

import numpy as np

from embedops.search.engine import Filters, Searcher, SearchResult
from embedops.vectors.base import IndexInfo

# (index, mode, query text, query vector) → recorded; the workspace binds it to its catalog and settings.
QueryLogger = Callable[[IndexInfo, str, "str | None", "np.ndarray | None"], None]


def recency_weight(score: float, *, age_s: float, half_life_s: float) -> float:
    return round(float(score * 0.5 ** (max(0.0, age_s) / half_life_s)), 6)


def monitored_search(
    searcher: Searcher,
    log: QueryLogger | None,
    query: str | None,
    *,
    vector: np.ndarray | None,
    k: int,
    alias: str,
    index_id: str | None,
    filters: Filters | None,
    mode: str,
    fresh_only: bool,
    recency_half_life: float | None,
) -> list[SearchResult]:
    """One query with the monitoring options (see the module docstring); ``log`` records it when given."""
    from embedops.search.modes import check_mode, search_mode

    mode = check_mode(mode)
    target = searcher.resolve(alias, index_id)  # resolved once: a concurrent alias swap cannot split this query
    if log is not None:
        vector = _logged(searcher, log, target, query, vector, mode)
    if not fresh_only and recency_half_life is None:
        return search_mode(searcher, query, vector=vector, k=k, index_id=target.id, filters=filters, mode=mode)
    depth = max(4 * k, 50)
    now = time.time()
    while True:
        results = search_mode(searcher, query, vector=vector, k=depth, index_id=target.id, filters=filters, mode=mode)
        kept = [r for r in results if not r.stale] if fresh_only else results
        if recency_half_life is not None:
            kept = sorted((_reweighted(r, recency_half_life, now) for r in kept), key=lambda r: -r.score)
        if len(kept) >= k or len(results) < depth:
            return kept[:k]
        depth *= 4


def _logged(
    searcher: Searcher, log: QueryLogger, target: IndexInfo, query: str | None, vector: np.ndarray | None, mode: str
) -> np.ndarray | None:
    """Log the query; embed it here (once) so the vector is logged and reused by the search."""
    if vector is None and mode != "bm25" and query and query.strip():
        vector = searcher.embed_query(target, query)
    log(target, mode, query, vector)
    return vector


def _reweighted(result: SearchResult, half_life_s: float, now: float) -> SearchResult:
    stamp = result.tags.get("source_updated_at") or result.tags.get("embedded_at")
    age = now - datetime.fromisoformat(stamp).timestamp() if stamp else 0.0
    return replace(result, score=recency_weight(result.score, age_s=age, half_life_s=half_life_s))
