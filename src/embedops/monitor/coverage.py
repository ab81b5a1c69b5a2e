"""Eval-set decay: do the eval queries still look like the queries users send?

For the queries logged within ``coverage_window`` (``[monitor] query_log``),
each query's cosine similarity to its nearest eval query (the latest version of
every eval set bound to the alias, else of every eval set), embedded with the
served index's own model. A query with no eval query at
``coverage_min_similarity`` or above is **uncovered**. The report gives the
similarity distribution, the uncovered share, the uncovered queries grouped into
clusters (with examples) and the eval sets' age; it warns when the uncovered
share exceeds ``coverage_max_uncovered`` or the newest eval set is older than
``coverage_max_age``.

>>> import numpy as np
>>> v = np.eye(3, dtype=np.float32)
>>> [len(c) for c in leader_clusters(np.vstack([v[0], v[0], v[1]]), 0.9)]
[2, 1]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embedops.catalog.db import read_tx
from embedops.evaluate.store import list_evalsets, load_evalset
from embedops.monitor.querylog import logged_queries, prune_query_log

if TYPE_CHECKING:
    from embedops.workspace import Workspace

#: Fewer recent queries than this say nothing about coverage.
MIN_QUERIES = 10
CLUSTERS_SHOWN = 5
EXAMPLES_PER_CLUSTER = 3


@dataclass
class CoverageReport:
    status: Literal["ok", "warn", "skip"]
    reason: str = ""
    index: str | None = None
    queries: int = 0
    evalsets: list[str] = field(default_factory=list)
    eval_queries: int = 0
    similarity: dict[str, float] = field(default_factory=dict)
    uncovered_share: float = 0.0
    min_similarity: float = 0.0
    clusters: list[dict[str, Any]] = field(default_factory=list)
    eval_set_age_days: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def leader_clusters(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Greedy clusters: a row joins the first cluster whose leader it matches at ``threshold``
    (cosine of unit rows), else leads a new one. Largest first; ties in input order."""
    leaders: list[int] = []
    clusters: list[list[int]] = []
    for i, row in enumerate(vectors):
        sims = vectors[leaders] @ row if leaders else np.empty(0)
        best = int(np.argmax(sims)) if len(sims) else -1
        if best >= 0 and sims[best] >= threshold:
            clusters[best].append(i)
        else:
            leaders.append(i)
            clusters.append([i])
    return sorted(clusters, key=lambda c: (-len(c), c[0]))


def check_coverage(ws: Workspace, *, alias: str | None = None, now: float | None = None) -> CoverageReport:
    """How well the eval sets cover the recent logged queries of ``alias``'s index."""
    settings = ws.settings.monitor
    now = now or time.time()
    if not settings.query_log:
        return CoverageReport("skip", "the query log is off: set query_log = true in [monitor]")
    prune_query_log(ws.engine, ws.settings.monitor, now=now)
    alias = alias or ws.settings.alias
    index = ws.searcher.resolve(alias)
    with read_tx(ws.engine) as conn:
        logged = logged_queries(conn, index.space_key, after=now - settings.seconds("coverage_window"), limit=5000)
        infos = list_evalsets(conn, latest_only=True)
        bound = [i for i in infos if i.alias == alias] or infos
        texts = [q.text for i in bound for q in load_evalset(conn, i.label).queries.values()]
    base = CoverageReport("skip", index=index.id, queries=len(logged), evalsets=[i.label for i in bound],
                          eval_queries=len(texts), min_similarity=settings.coverage_min_similarity)
    if not bound:
        base.reason = "no eval set: import one with `embedops eval import`"
        return base
    if len(logged) < MIN_QUERIES:
        base.reason = f"{len(logged)} logged queries in the window; at least {MIN_QUERIES} are needed"
        return base
    eval_vectors = _unit(np.asarray(ws.embedder_for(index).embed_queries(texts), dtype=np.float32))
    return _report(base, _unit(logged.vectors), logged.texts, eval_vectors, max(i.created_at for i in bound), ws, now)


def _report(
    report: CoverageReport, queries: np.ndarray, texts: list[str | None], eval_vectors: np.ndarray, newest: float,
    ws: Workspace, now: float,
) -> CoverageReport:
    settings = ws.settings.monitor
    nearest = (queries @ eval_vectors.T).max(axis=1)
    uncovered = np.flatnonzero(nearest < settings.coverage_min_similarity)
    report.similarity = {"p10": _r(np.percentile(nearest, 10)), "p50": _r(np.percentile(nearest, 50)),
                         "mean": _r(nearest.mean()), "min": _r(nearest.min())}
    report.uncovered_share = _r(len(uncovered) / len(nearest))
    report.eval_set_age_days = _r((now - newest) / 86400)
    groups = leader_clusters(queries[uncovered], settings.coverage_min_similarity)[:CLUSTERS_SHOWN]
    report.clusters = [
        {"size": len(g), "share": _r(len(g) / len(nearest)),
         "nearest_eval_similarity": _r(float(nearest[uncovered[g]].mean())),
         "examples": [texts[uncovered[i]] or "(text not logged)" for i in g[:EXAMPLES_PER_CLUSTER]]}
        for g in groups
    ]
    problems = []
    if report.uncovered_share > settings.coverage_max_uncovered:
        problems.append(f"{report.uncovered_share:.0%} of recent queries have no eval query within"
                        f" similarity {settings.coverage_min_similarity}")
    if now - newest > settings.seconds("coverage_max_age"):
        problems.append(f"the newest eval set is {report.eval_set_age_days:.0f} days old")
    report.status = "warn" if problems else "ok"
    report.reason = "; ".join(problems)
    return report


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _r(value: float) -> float:
    return round(float(value), 4)
