"""Threshold arithmetic across spaces: pure functions over pair scores and labels.

A threshold ``t`` fires for a pair when ``score >= t``. Every function here takes
arrays (or plain sequences) and returns data; nothing reads the catalog or a
model, so each is tested with literal inputs.

- :func:`match_distribution`: quantile matching. The same pairs are scored in
  the old and the new space; the new threshold puts the same *number* of pairs
  above it as the old one did (linear interpolation inside the gap between two
  neighbouring pair scores, so a linear change of scale maps exactly).
- :func:`match_labels`: keep the old threshold's precision (or F1) on labelled
  pairs, with a percentile bootstrap interval over the pairs.
- :func:`behaviour`: what a candidate does differently: fraction of pairs above,
  precision/recall on the labels, and concrete pairs that flip.

>>> match_distribution([0.1, 0.5, 0.9], [0.2, 0.4, 0.6], 0.7).value
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Objective = Literal["precision", "f1"]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ArrayLike = Sequence[float] | npt.NDArray[Any]

DEFAULT_BOOTSTRAP = 500
LEVEL = 0.95


def _floats(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _paired(old: ArrayLike, new: ArrayLike) -> tuple[FloatArray, FloatArray]:
    a, b = _floats(old), _floats(new)
    if a.shape != b.shape:
        raise ValueError(f"old and new scores must describe the same pairs ({a.size} vs {b.size})")
    if a.size == 0:
        raise ValueError("no pairs to calibrate on")
    return a, b


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval of a proposed threshold."""

    low: float
    high: float
    level: float
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile_interval(values: ArrayLike, level: float = LEVEL) -> Interval:
    v = _floats(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(float("nan"), float("nan"), level, 0)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(v, [tail, 100 - tail])
    return Interval(round(float(low), 6), round(float(high), 6), level, int(v.size))


# -- distribution matching ------------------------------------------------------------
def fraction_above(scores: ArrayLike, threshold: float) -> float:
    s = _floats(scores)
    return float(np.mean(s >= threshold)) if s.size else 0.0


def quantile_map(old: ArrayLike, new: ArrayLike, threshold: float) -> tuple[float, bool]:
    """The new-space threshold with as many pairs above it as ``threshold`` has in the old space.

    Returns ``(value, extrapolated)``; ``extrapolated`` is true when ``threshold``
    lies outside the sampled old scores (the value is then shifted from the
    nearest extreme pair and deserves more near-neighbour pairs).
    """
    a, b = _paired(old, new)
    o, s = np.sort(a)[::-1], np.sort(b)[::-1]  # descending: position k-1 is the k-th highest
    k = int(np.sum(a >= threshold))
    if k == 0:
        return float(s[0] + (threshold - o[0])), True
    if k == a.size:
        return float(s[-1] - (o[-1] - threshold)), True
    lo_old, hi_old, lo_new, hi_new = o[k], o[k - 1], s[k], s[k - 1]
    gap = hi_old - lo_old
    frac = (threshold - lo_old) / gap if gap > 0 else 1.0
    return float(lo_new + frac * (hi_new - lo_new)), False


@dataclass(frozen=True)
class DistributionMatch:
    """Quantile matching of one threshold on one sample of pairs."""

    value: float
    old_value: float
    fraction_above: float  # of the sampled pairs, old space at the old value
    fraction_above_new: float  # same pairs, new space at the proposed value
    pairs: int
    extrapolated: bool
    interval: Interval | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = self.interval.to_dict() if self.interval else None
        return out


def match_distribution(
    old: ArrayLike, new: ArrayLike, threshold: float, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
    level: float = LEVEL,
) -> DistributionMatch:
    """Map ``threshold`` so that the same fraction of the pairs lies above it in the new space.

    >>> m = match_distribution([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 0.5, bootstrap=0)
    >>> round(m.value, 6), m.fraction_above
    (0.45, 0.5)
    """
    a, b = _paired(old, new)
    value, extrapolated = quantile_map(a, b, threshold)
    interval = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = [quantile_map(a[i], b[i], threshold)[0] for i in _resamples(rng, a.size, bootstrap)]
        interval = percentile_interval(draws, level)
    return DistributionMatch(
        value=round(value, 6), old_value=threshold, fraction_above=fraction_above(a, threshold),
        fraction_above_new=fraction_above(b, value), pairs=int(a.size), extrapolated=extrapolated, interval=interval,
    )


def _resamples(rng: np.random.Generator, n: int, times: int) -> list[npt.NDArray[np.int64]]:
    return [rng.integers(0, n, n) for _ in range(times)]


# -- label matching ---------------------------------------------------------------------
@dataclass(frozen=True)
class Cuts:
    """Every distinct way to split scored, labelled pairs into above/below, highest threshold first."""

    thresholds: FloatArray
    above: npt.NDArray[np.int64]
    true_pos: npt.NDArray[np.int64]
    positives: int

    @property
    def precision(self) -> FloatArray:
        return self.true_pos / self.above

    @property
    def recall(self) -> FloatArray:
        return self.true_pos / self.positives if self.positives else np.zeros(self.above.size)

    @property
    def f1(self) -> FloatArray:
        p, r = self.precision, self.recall
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def cuts(scores: ArrayLike, labels: Sequence[bool] | BoolArray) -> Cuts:
    """All cut points; a cut's threshold is midway between the lowest pair above and the highest below."""
    s = _floats(scores)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"need one label per score ({s.size} scores, {y.size} labels)")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    last = np.append(s[1:] < s[:-1], True)  # a cut may only fall between distinct scores
    pos = np.flatnonzero(last)
    nxt = np.append(s[pos[:-1] + 1], s[-1])
    thresholds = np.where(pos < s.size - 1, (s[pos] + nxt) / 2, s[pos])
    return Cuts(thresholds, pos + 1, tp[pos], int(y.sum()))


@dataclass(frozen=True)
class OperatingPoint:
    """What a threshold does on a set of pairs (precision/recall only with labels)."""

    threshold: float
    pairs: int
    above: int
    fraction_above: float
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def operating_point(scores: ArrayLike, threshold: float, labels: Sequence[bool] | BoolArray | None = None) -> OperatingPoint:
    s = _floats(scores)
    fired = s >= threshold
    above = int(fired.sum())
    point = OperatingPoint(threshold, int(s.size), above, above / s.size if s.size else 0.0)
    if labels is None:
        return point
    y = np.asarray(labels, dtype=bool).reshape(-1)
    tp, positives = int((fired & y).sum()), int(y.sum())
    precision = tp / above if above else 1.0  # nothing fires, nothing is wrong
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return OperatingPoint(threshold, int(s.size), above, point.fraction_above, precision, recall, f1)


def threshold_for_precision(scores: ArrayLike, labels: Sequence[bool] | BoolArray, target: float) -> tuple[float, float, bool]:
    """The lowest threshold (most recall) whose precision is at least ``target``.

    Returns ``(threshold, precision there, reachable)``; when no cut reaches the
    target, the cut of highest precision is returned with ``reachable=False``.

    >>> threshold_for_precision([0.9, 0.8, 0.7, 0.6], [True, True, False, True], 0.75)
    (0.6, 0.75, True)
    """
    c = cuts(scores, labels)
    p = c.precision
    ok = np.flatnonzero(p >= target - 1e-12)
    if ok.size:
        i = int(ok[-1])
        return float(c.thresholds[i]), float(p[i]), True
    i = int(np.flatnonzero(p == p.max())[-1])
    return float(c.thresholds[i]), float(p[i]), False


def threshold_for_f1(
    scores: ArrayLike, labels: Sequence[bool] | BoolArray, target: float, side: Literal["high", "low"]
) -> tuple[float, float, bool]:
    """The threshold whose F1 is closest to ``target``, on the given side of the F1 peak.

    F1 is reached twice (a strict and a lenient threshold); ``side`` keeps the
    regime of the old threshold: ``high`` above the F1-optimal threshold.
    """
    c = cuts(scores, labels)
    f1 = c.f1
    peak = int(np.argmax(f1))
    idx = np.arange(0, peak + 1) if side == "high" else np.arange(peak, f1.size)
    i = int(idx[np.argmin(np.abs(f1[idx] - target))])
    return float(c.thresholds[i]), float(f1[i]), bool(f1[peak] >= target - 1e-12)


def f1_side(scores: ArrayLike, labels: Sequence[bool] | BoolArray, threshold: float) -> Literal["high", "low"]:
    c = cuts(scores, labels)
    return "high" if threshold >= float(c.thresholds[int(np.argmax(c.f1))]) else "low"


@dataclass(frozen=True)
class LabelMatch:
    """Label matching of one threshold: the new value keeping the old precision (or F1)."""

    value: float
    old_value: float
    objective: str
    target: float  # the objective at the old value, old space
    achieved: float  # the objective at the new value, new space
    reachable: bool
    pairs: int
    positives: int
    interval: Interval | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = self.interval.to_dict() if self.interval else None
        return out


def _match_once(
    old: FloatArray, new: FloatArray, y: BoolArray, threshold: float, objective: Objective
) -> tuple[float, float, float, bool]:
    point = operating_point(old, threshold, y)
    if objective == "precision":
        target = point.precision if point.precision is not None else 1.0
        value, achieved, reachable = threshold_for_precision(new, y, target)
    else:
        target = point.f1 or 0.0
        value, achieved, reachable = threshold_for_f1(new, y, target, f1_side(old, y, threshold))
    return target, value, achieved, reachable


def match_labels(
    old: ArrayLike, new: ArrayLike, labels: Sequence[bool] | BoolArray, threshold: float, *,
    objective: Objective = "precision", bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = LEVEL,
) -> LabelMatch:
    """The new-space threshold that keeps the old threshold's precision (or F1) on labelled pairs.

    The interval resamples the pairs (with replacement) and repeats the whole
    match, target included, so it reflects how many labelled pairs there are.
    """
    if objective not in ("precision", "f1"):
        raise ValueError(f"objective must be precision or f1, not {objective!r}")
    a, b = _paired(old, new)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if y.shape != a.shape:
        raise ValueError(f"need one label per pair ({a.size} pairs, {y.size} labels)")
    target, value, achieved, reachable = _match_once(a, b, y, threshold, objective)
    interval = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = [_match_once(a[i], b[i], y[i], threshold, objective)[1] for i in _resamples(rng, a.size, bootstrap)]
        interval = percentile_interval(draws, level)
    return LabelMatch(
        value=round(value, 6), old_value=threshold, objective=objective, target=round(target, 6),
        achieved=round(achieved, 6), reachable=reachable, pairs=int(a.size), positives=int(y.sum()), interval=interval,
    )


# -- behaviour change ---------------------------------------------------------------------
@dataclass(frozen=True)
class PairScores:
    """One set of pairs scored in both spaces (labels optional), with their texts for examples."""

    old: FloatArray
    new: FloatArray
    texts: Sequence[tuple[str, str]] = ()
    labels: BoolArray | None = None

    def __post_init__(self) -> None:
        a, b = _paired(self.old, self.new)
        object.__setattr__(self, "old", a)
        object.__setattr__(self, "new", b)
        if self.labels is not None:
            object.__setattr__(self, "labels", np.asarray(self.labels, dtype=bool).reshape(-1))


@dataclass(frozen=True)
class Flip:
    text_a: str
    text_b: str
    old_score: float
    new_score: float
    label: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Effect:
    """A candidate threshold in the new space compared with the old threshold in the old space."""

    before: OperatingPoint
    after: OperatingPoint
    now_above: int  # were below the old threshold, are above the candidate
    now_below: int
    examples_now_above: list[Flip] = field(default_factory=list)
    examples_now_below: list[Flip] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(), "after": self.after.to_dict(),
            "now_above": self.now_above, "now_below": self.now_below,
            "examples_now_above": [f.to_dict() for f in self.examples_now_above],
            "examples_now_below": [f.to_dict() for f in self.examples_now_below],
        }


def behaviour(
    pairs: PairScores, old_threshold: float, new_threshold: float, *, examples: int = 5, text_chars: int = 240
) -> Effect:
    """What using ``new_threshold`` in the new space changes on ``pairs``, with the clearest flips first."""
    was, now = pairs.old >= old_threshold, pairs.new >= new_threshold
    # Margin on both sides: a flip far from both thresholds is the one a human should see.
    margin_up = (old_threshold - pairs.old) + (pairs.new - new_threshold)
    margin_down = (pairs.old - old_threshold) + (new_threshold - pairs.new)
    return Effect(
        before=operating_point(pairs.old, old_threshold, pairs.labels),
        after=operating_point(pairs.new, new_threshold, pairs.labels),
        now_above=int((~was & now).sum()),
        now_below=int((was & ~now).sum()),
        examples_now_above=_flips(pairs, np.flatnonzero(~was & now), margin_up, examples, text_chars),
        examples_now_below=_flips(pairs, np.flatnonzero(was & ~now), margin_down, examples, text_chars),
    )


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def _flips(pairs: PairScores, idx: npt.NDArray[np.int64], margin: FloatArray, limit: int, chars: int) -> list[Flip]:
    if not len(pairs.texts) or not idx.size or limit <= 0:
        return []
    top = idx[np.argsort(-margin[idx], kind="stable")[:limit]]
    return [
        Flip(_clip(pairs.texts[i][0], chars), _clip(pairs.texts[i][1], chars), round(float(pairs.old[i]), 6),
             round(float(pairs.new[i]), 6),
             None if pairs.labels is None else bool(pairs.labels[i]))
        for i in top
    ]


__all__ = [
    "Cuts", "DistributionMatch", "Effect", "Flip", "Interval", "LabelMatch", "Objective", "OperatingPoint",
    "PairScores", "behaviour", "cuts", "f1_side", "fraction_above", "match_distribution", "match_labels",
    "operating_point", "percentile_interval", "quantile_map", "threshold_for_f1", "threshold_for_precision",
]
