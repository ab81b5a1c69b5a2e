"""Retrieval metrics that agree with trec_eval, computed from plain data.

``Qrels`` maps query id → doc id → graded relevance (a grade > 0 is relevant).
``Run`` maps query id → doc id → score. A run is ranked by score descending,
ties broken by doc id descending, exactly as trec_eval (and pytrec_eval) does,
so every value here equals the corresponding trec_eval measure:

=================  ==========================================
key                trec_eval measure
=================  ==========================================
``ndcg@k``         ``ndcg_cut_k`` (gain = grade, log2 discount)
``recall@k``       ``recall_k``
``precision@k``    ``P_k`` (divides by k even if fewer results)
``mrr@k``          ``recip_rank`` on the run cut to k
``map``            ``map`` over the whole run
``map@k``          ``map_cut_k``
=================  ==========================================

Example::

    >>> qrels = {"q1": {"d1": 2, "d2": 0}}
    >>> run = {"q1": {"d2": 0.9, "d1": 0.8}}
    >>> evaluate_run(qrels, run, k_values=(1,), metrics=("precision", "mrr"))
    {'q1': {'precision@1': 0.0, 'mrr@1': 0.0}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedops.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

METRICS: tuple[str, ...] = ("ndcg", "recall", "precision", "mrr", "map")
DEFAULT_METRICS: tuple[str, ...] = METRICS
DEFAULT_K: tuple[int, ...] = (10,)


@dataclass(frozen=True)
class RunEvaluation:
    """Per-query scores plus an account of which queries were left out and why."""

    per_query: dict[str, dict[str, float]]
    means: dict[str, float]
    excluded: list[str] = field(default_factory=list)
    """Queries in the qrels without any relevant judgment: not scored."""
    unretrieved: list[str] = field(default_factory=list)
    """Scored queries for which the run returned nothing: they score 0."""
    unjudged: list[str] = field(default_factory=list)
    """Queries in the run that the qrels do not know: ignored."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_queries": len(self.per_query),
            "means": dict(self.means),
            "excluded": list(self.excluded),
            "unretrieved": list(self.unretrieved),
            "unjudged": list(self.unjudged),
            "per_query": {q: dict(v) for q, v in self.per_query.items()},
        }


def metric_keys(
    k_values: Sequence[int] = DEFAULT_K, metrics: Sequence[str] = DEFAULT_METRICS
) -> list[str]:
    """The result keys ``evaluate_run`` produces for these metrics and cut-offs."""
    ks, names = _check_args(k_values, metrics)
    keys: list[str] = []
    for name in names:
        if name == "map":
            keys.append("map")
        keys.extend(f"{name}@{k}" for k in ks)
    return keys


def evaluate(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Sequence[int] = DEFAULT_K,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> RunEvaluation:
    """Score every query of ``qrels`` that has a relevant judgment; see :class:`RunEvaluation`."""
    ks, names = _check_args(k_values, metrics)
    per_query: dict[str, dict[str, float]] = {}
    excluded: list[str] = []
    unretrieved: list[str] = []
    for qid, judgments in qrels.items():
        if not any(grade > 0 for grade in judgments.values()):
            excluded.append(qid)
            continue
        scores = run.get(qid) or {}
        if not scores:
            unretrieved.append(qid)
        per_query[qid] = _score_query(judgments, scores, ks, names)
    unjudged = [qid for qid in run if qid not in qrels]
    return RunEvaluation(per_query, mean_metrics(per_query), excluded, unretrieved, unjudged)


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    k_values: Sequence[int] = DEFAULT_K,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """Per-query metric values, keyed like ``"ndcg@10"`` and ``"map"``.

    Queries without a relevant judgment are left out (``evaluate`` lists them);
    queries missing from the run, or with no results, score 0.
    """
    return evaluate(qrels, run, k_values, metrics).per_query


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the queries that have it (keys in first-seen order)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for values in per_query.values():
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}


def rank(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by score descending, ties by doc id descending (trec_eval's order)."""
    # Sorting (score, id) pairs in reverse is both orders at once; Python compares
    # str by code point, which is the byte order strcmp sees in UTF-8.
    return [doc for _, doc in sorted(((s, d) for d, s in scores.items()), reverse=True)]


def run_from_rankings(rankings: Mapping[str, Sequence[str]]) -> Run:
    """Turn ranked doc-id lists (best first) into a ``Run`` with strictly falling scores.

    Duplicate ids keep their best rank, as a search result list would show them.
    """
    run: Run = {}
    for qid, docs in rankings.items():
        scores: dict[str, float] = {}
        for position, doc in enumerate(docs):
            scores.setdefault(doc, float(len(docs) - position))
        run[qid] = scores
    return run


def _check_args(k_values: Iterable[int], metrics: Iterable[str]) -> tuple[list[int], list[str]]:
    ks = list(dict.fromkeys(k_values))
    names = list(dict.fromkeys(metrics))
    bad_k = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad_k or not ks:
        raise ConfigError(
            f"invalid cut-off(s) {bad_k or ks!r}: k must be a positive integer",
            hint="pass k values such as (1, 10, 100)",
        )
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ConfigError(
            f"unknown metric(s) {unknown or names!r}",
            hint=f"choose among {', '.join(METRICS)}",
        )
    return ks, names


def _score_query(
    judgments: Mapping[str, int], scores: Mapping[str, float], ks: list[int], names: list[str]
) -> dict[str, float]:
    import numpy as np
    ranked = rank(scores)
    # trec_eval counts negative grades as gain 0 (verified against pytrec_eval).
    gains = np.array([max(judgments.get(doc, 0), 0) for doc in ranked], dtype=np.float64)
    hits = gains > 0
    n_rel = sum(1 for grade in judgments.values() if grade > 0)
    ideal = np.sort(np.array([g for g in judgments.values() if g > 0], dtype=np.float64))[::-1]
    cum_hits = np.cumsum(hits, dtype=np.int64)
    ranks = np.arange(1, len(ranked) + 1, dtype=np.float64)
    prec_at_hits = cum_hits[hits] / ranks[hits]
    first_hit = int(np.argmax(hits)) + 1 if hits.any() else 0

    out: dict[str, float] = {}
    for name in names:
        if name == "map":
            out["map"] = float(prec_at_hits.sum()) / n_rel
        for k in ks:
            out[f"{name}@{k}"] = _at_k(name, k, gains, ideal, cum_hits, prec_at_hits, first_hit, n_rel)
    return out


def _at_k(
    name: str,
    k: int,
    gains: FloatArray,
    ideal: FloatArray,
    cum_hits: npt.NDArray[np.int64],
    prec_at_hits: FloatArray,
    first_hit: int,
    n_rel: int,
) -> float:
    hits_at_k = int(cum_hits[min(k, len(cum_hits)) - 1]) if len(cum_hits) else 0
    if name == "ndcg":
        return _dcg(gains[:k]) / _dcg(ideal[:k])
    if name == "recall":
        return hits_at_k / n_rel
    if name == "precision":
        return hits_at_k / k
    if name == "mrr":
        return 1.0 / first_hit if 0 < first_hit <= k else 0.0
    # map@k: precisions at the relevant hits within the cut, over all relevant docs.
    return float(prec_at_hits[:hits_at_k].sum()) / n_rel


def _dcg(gains: FloatArray) -> float:
    import numpy as np
    if not len(gains):
        return 0.0
    return float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))
