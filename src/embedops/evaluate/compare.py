"""Paired comparison of two evaluated runs, with bootstrap CIs and a permutation test.

Both runs must have been scored on the same queries (``metrics.evaluate_run``);
the comparison uses the queries they share, so a query's difficulty cancels out.
``delta`` is always ``b - a``: a positive delta means B scores higher, and a
win is a query on which B scores higher.

Example::

    >>> a = {"q1": {"ndcg@10": 0.5}, "q2": {"ndcg@10": 0.2}}
    >>> b = {"q1": {"ndcg@10": 0.7}, "q2": {"ndcg@10": 0.2}}
    >>> c = compare_runs(a, b, "ndcg@10", n_boot=200)
    >>> round(c.delta, 3), c.wins, c.ties
    (0.1, 1, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embedops.errors import ConfigError

PerQuery = Mapping[str, Mapping[str, float]]
FloatArray = npt.NDArray[np.float64]

UNLABELED = "(unlabeled)"
"""Segment label for queries that ``segments`` does not mention."""

# Deltas closer to zero than this are ties: metric values are sums of floats.
_TIE_EPS = 1e-12
# Upper bound on the resample matrix (rows × queries) held at once.
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class SegmentDelta:
    """Means of A and B and their difference over one segment's common queries."""

    segment: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    wins: int
    losses: int
    ties: int
    ci_low: float = 0.0
    ci_high: float = 0.0
    """Bootstrap interval of this segment's mean delta (same confidence as the comparison)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_runs`; ``ci_low``/``ci_high`` bound the mean delta."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    wins: int
    losses: int
    ties: int
    n_boot: int
    seed: int
    per_query: dict[str, float] = field(default_factory=dict)
    """Per-query delta (b − a) on the common queries."""
    segments: dict[str, SegmentDelta] = field(default_factory=dict)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the permutation test rejects "no difference" at level ``alpha``."""
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "segments"}
        out["segments"] = {label: s.to_dict() for label, s in self.segments.items()}
        return out


def compare_runs(
    per_query_a: PerQuery,
    per_query_b: PerQuery,
    metric: str,
    *,
    segments: Mapping[str, str] | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare ``metric`` between runs A and B on their common queries.

    The CI is a percentile bootstrap of the mean per-query delta; the p-value is
    a two-sided paired sign-flip permutation test (exact when ``2**n <= n_boot``).
    Both are deterministic for a given ``seed``.
    """
    if n_boot < 1 or not 0.0 < confidence < 1.0:
        raise ConfigError(
            f"invalid comparison settings n_boot={n_boot}, confidence={confidence}",
            hint="use n_boot >= 1 and 0 < confidence < 1 (e.g. 10000 and 0.95)",
        )
    common = sorted(set(per_query_a) & set(per_query_b))
    if not common:
        raise ConfigError(
            f"cannot compare {metric!r}: the two runs share no query",
            hint="evaluate both runs against the same eval set",
        )
    a = _column(per_query_a, common, metric, "A")
    b = _column(per_query_b, common, metric, "B")
    deltas = b - a
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    low, high = _bootstrap_ci(deltas, n_boot, confidence, boot_rng)
    wins, losses, ties = _wins_losses_ties(deltas)
    return Comparison(
        metric=metric,
        n=len(common),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        delta=float(deltas.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        p_value=_permutation_p(deltas, n_boot, perm_rng),
        wins=wins,
        losses=losses,
        ties=ties,
        n_boot=n_boot,
        seed=seed,
        per_query={q: float(d) for q, d in zip(common, deltas)},
        segments=_segment_deltas(common, a, b, segments, n_boot, confidence, seed) if segments is not None else {},
        only_a=sorted(set(per_query_a) - set(per_query_b)),
        only_b=sorted(set(per_query_b) - set(per_query_a)),
    )


def segment_metrics(
    per_query: PerQuery, segments: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Mean of every metric per segment, plus ``"n"``: the segment's query count.

    Queries absent from ``segments`` are grouped under :data:`UNLABELED`.
    """
    groups: dict[str, list[Mapping[str, float]]] = {}
    for qid, values in per_query.items():
        groups.setdefault(segments.get(qid, UNLABELED), []).append(values)
    out: dict[str, dict[str, float]] = {}
    for label in sorted(groups):
        rows = groups[label]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        means = {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}
        out[label] = {"n": len(rows), **means}
    return out


def worst_segment(
    seg_metrics: Mapping[str, Mapping[str, float]], metric: str, *, min_n: int = 1
) -> str | None:
    """The segment with the lowest mean ``metric`` among those with ``n >= min_n``.

    Ties go to the label that sorts first; ``None`` when no segment qualifies.
    """
    candidates = [
        (values[metric], label)
        for label, values in seg_metrics.items()
        if metric in values and values.get("n", 0) >= min_n
    ]
    return min(candidates)[1] if candidates else None


def _column(per_query: PerQuery, qids: list[str], metric: str, side: str) -> FloatArray:
    missing = [q for q in qids if metric not in per_query[q]]
    if missing:
        available = sorted({k for q in qids for k in per_query[q]})
        raise ConfigError(
            f"run {side} has no {metric!r} for {len(missing)} query(ies), e.g. {missing[0]!r}",
            hint=f"compare a metric both runs computed: {', '.join(available) or 'none'}",
        )
    return np.array([per_query[q][metric] for q in qids], dtype=np.float64)


def _wins_losses_ties(deltas: FloatArray) -> tuple[int, int, int]:
    wins = int(np.count_nonzero(deltas > _TIE_EPS))
    losses = int(np.count_nonzero(deltas < -_TIE_EPS))
    return wins, losses, len(deltas) - wins - losses


def _bootstrap_ci(
    deltas: FloatArray, n_boot: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    n = len(deltas)
    means = np.empty(n_boot, dtype=np.float64)
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        means[start : start + rows] = deltas[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def _permutation_p(deltas: FloatArray, n_boot: int, rng: np.random.Generator) -> float:
    n = len(deltas)
    observed = abs(float(deltas.mean()))
    if observed <= _TIE_EPS:
        return 1.0
    threshold = observed - _TIE_EPS
    n_assignments = 1 << n
    if n_assignments <= n_boot:
        # Few queries: enumerate every sign assignment for an exact p-value.
        signs = ((np.arange(n_assignments)[:, None] >> np.arange(n)) & 1) * 2 - 1
        flipped = np.abs((signs * deltas).mean(axis=1))
        return np.count_nonzero(flipped >= threshold) / n_assignments
    extreme = 0
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        signs = rng.integers(0, 2, size=(rows, n)) * 2 - 1
        extreme += int(np.count_nonzero(np.abs((signs * deltas).mean(axis=1)) >= threshold))
    # +1 counts the observed assignment, so a Monte Carlo p-value is never 0.
    return (extreme + 1) / (n_boot + 1)


def _segment_deltas(
    qids: list[str], a: FloatArray, b: FloatArray, segments: Mapping[str, str], n_boot: int, confidence: float,
    seed: int,
) -> dict[str, SegmentDelta]:
    labels = np.array([segments.get(q, UNLABELED) for q in qids], dtype=object)
    out: dict[str, SegmentDelta] = {}
    for label in sorted(set(labels.tolist())):
        mask = labels == label
        seg_a, seg_b = a[mask], b[mask]
        wins, losses, ties = _wins_losses_ties(seg_b - seg_a)
        # Each segment's interval from its own resamples, seeded per label so it does not depend on the others.
        low, high = _bootstrap_ci(seg_b - seg_a, n_boot, confidence, np.random.default_rng([seed, len(label), *map(ord, label[:32])]))
        out[label] = SegmentDelta(
            segment=label,
            n=int(mask.sum()),
            mean_a=float(seg_a.mean()),
            mean_b=float(seg_b.mean()),
            delta=float((seg_b - seg_a).mean()),
            wins=wins,
            losses=losses,
            ties=ties,
            ci_low=low,
            ci_high=high,
        )
    return out
