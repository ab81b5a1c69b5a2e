"""The cutover gate: pure decisions over evidence gathered elsewhere.

Four kinds of check:
- completeness (always gating): the shadow has exactly one vector per live chunk;
- thresholds (gating when thresholds are valued in the old space): each needs a
  value in the new space;
- eval regression (gating when an eval set is bound to the alias): metric of new
  vs old, overall and per segment, against a maximum allowed drop;
- agreement (reported always, gating only when the user sets a minimum): top-k
  overlap and rank correlation of old vs new on sampled queries. Two different
  models legitimately overlap little, so by default this is evidence, not a veto.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GateConfig:
    min_overlap: float | None = None
    max_regression: float = 0.02
    max_segment_regression: float = 0.05
    metric: str = "ndcg@10"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    gating: bool
    value: float | None
    limit: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalEvidence:
    """One bound eval set's comparison, old (a) vs new (b)."""

    evalset: str
    metric: str
    mean_old: float
    mean_new: float
    ci_low: float
    ci_high: float
    p_value: float
    segments: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # label → (old, new, n)


@dataclass(frozen=True)
class Agreement:
    queries: int
    k: int
    overlap: float
    rank_correlation: float | None
    query_source: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.gating and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}


def completeness_check(live_chunks: int, vectors: int, missing: int) -> Check:
    ok = missing == 0 and vectors == live_chunks
    detail = (
        f"{vectors} vectors for {live_chunks} live chunks"
        + ("" if ok else f"; {missing} missing: run `embedops migrate backfill`")
    )
    return Check("completeness", ok, True, float(vectors), float(live_chunks), detail)


def agreement_checks(agreement: Agreement | None, config: GateConfig) -> list[Check]:
    if agreement is None or agreement.queries == 0:
        return [Check("overlap", True, False, None, config.min_overlap, "no queries to compare")]
    gating = config.min_overlap is not None
    ok = not gating or agreement.overlap >= (config.min_overlap or 0.0)
    checks = [
        Check(
            f"overlap@{agreement.k}", ok, gating, round(agreement.overlap, 4), config.min_overlap,
            f"mean top-{agreement.k} document overlap old vs new on {agreement.queries} {agreement.query_source}"
            + ("" if gating else " (evidence only; set --min-overlap to gate on it)"),
        )
    ]
    if agreement.rank_correlation is not None:
        checks.append(
            Check("rank_correlation", True, False, round(agreement.rank_correlation, 4), None,
                  "mean Kendall tau over the documents both lists share")
        )
    return checks


def eval_checks(evidence: Sequence[EvalEvidence], config: GateConfig) -> list[Check]:
    checks = []
    for ev in evidence:
        drop = ev.mean_old - ev.mean_new
        checks.append(
            Check(
                f"eval:{ev.evalset}:{ev.metric}", drop <= config.max_regression, True, round(ev.mean_new, 4),
                round(ev.mean_old - config.max_regression, 4),
                f"{ev.metric} {ev.mean_old:.4f} → {ev.mean_new:.4f} (Δ {ev.mean_new - ev.mean_old:+.4f},"
                f" 95% CI [{ev.ci_low:+.4f}, {ev.ci_high:+.4f}], p={ev.p_value:.3g}); max drop {config.max_regression}",
            )
        )
        for label, (old, new, n) in sorted(ev.segments.items()):
            seg_drop = old - new
            checks.append(
                Check(
                    f"eval:{ev.evalset}:{ev.metric}[{label}]", seg_drop <= config.max_segment_regression, True,
                    round(new, 4), round(old - config.max_segment_regression, 4),
                    f"segment {label} (n={n}): {old:.4f} → {new:.4f}; max drop {config.max_segment_regression}",
                )
            )
    return checks


def thresholds_check(bound: Sequence[Mapping[str, Any]], to_index: str) -> Check:
    """Gating: every threshold valued in the old space needs a value in the new one before cutover.

    ``bound``: one mapping per threshold with ``name``, ``value`` and ``new_value`` (None when missing).
    """
    missing = [str(b["name"]) for b in bound if b.get("new_value") is None]
    if not missing:
        detail = f"{len(bound)} threshold(s) bound to the old space, each has a value in the new space"
    else:
        detail = (f"no value in the new space for threshold(s) {', '.join(missing)}: run `embedops thresholds"
                  f" calibrate --to {to_index} --apply`, or `embedops thresholds set NAME VALUE --space {to_index}`")
    return Check("thresholds", not missing, True, float(len(bound) - len(missing)), float(len(bound)), detail)


def decide(
    completeness: Check, agreement: Agreement | None, evidence: Sequence[EvalEvidence], config: GateConfig,
    extra: Sequence[Check] = (),
) -> GateResult:
    checks = [completeness, *extra, *eval_checks(evidence, config), *agreement_checks(agreement, config)]
    return GateResult(all(c.passed for c in checks if c.gating), checks)


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    return len(set(a[:k]) & set(b[:k])) / k if k else 0.0


def kendall_tau(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Kendall tau of the shared items' ranks; None with fewer than two shared items."""
    shared = [x for x in a if x in set(b)]
    if len(shared) < 2:
        return None
    pos_b = {x: i for i, x in enumerate(b)}
    concordant = discordant = 0
    for i in range(len(shared)):
        for j in range(i + 1, len(shared)):
            if pos_b[shared[i]] < pos_b[shared[j]]:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / (concordant + discordant)
