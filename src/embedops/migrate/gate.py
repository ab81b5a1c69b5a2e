"""The cutover gate: pure decisions over evidence gathered elsewhere.

Four kinds of check:
- completeness (always gating): the shadow has exactly one vector per live chunk;
- thresholds (gating when thresholds are valued in the old space): each needs a
  value in the new space;
- eval regression (gating for every eval set bound to the alias): the metric of
  new vs old on the same queries, overall and per segment, against a maximum
  allowed drop; a segment with fewer than ``min_segment_queries`` queries is
  reported but does not gate (a handful of queries is noise, not a collapse);
- agreement (reported always, gating only when the user sets a minimum): top-k
  overlap and rank correlation of old vs new on sampled queries. Two different
  models legitimately overlap little, so by default this is evidence, not a veto.

The evidence (eval comparisons, agreement) is measured by an
:class:`EvidenceProvider` that the composition root passes in, and kept with the
migration together with each index's change stamp: while neither index changes,
a later gate or cutover decides from the kept evidence without running anything.

>>> config = GateConfig(max_regression=0.02)
>>> ev = EvalEvidence("scifact", 1, "ndcg@10", 300, 0.645, 0.513, -0.16, -0.10, 0.0001)
>>> decide(completeness_check(10, 10, 0), None, [ev], config).passed
False
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from embedops.errors import ConfigError
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.chunking.base import Chunker
    from embedops.embedding.base import Embedder

DEFAULT_SEGMENT_BY = ("language",)


@dataclass(frozen=True)
class GateConfig:
    """What the gate requires; stored with the migration at start, overridable per gate run."""

    min_overlap: float | None = None
    max_regression: float = 0.02
    max_segment_regression: float = 0.05
    metric: str = "ndcg@10"
    min_segment_queries: int = 20
    segment_by: tuple[str, ...] = DEFAULT_SEGMENT_BY

    def __post_init__(self) -> None:
        for name in ("max_regression", "max_segment_regression"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"gate setting {name} = {value!r} is out of range", hint="use a value from 0 to 1, e.g. 0.02")
        if self.min_overlap is not None and not 0.0 <= self.min_overlap <= 1.0:
            raise ConfigError(f"gate setting min_overlap = {self.min_overlap!r} is out of range", hint="use 0 to 1")
        if self.min_segment_queries < 1:
            raise ConfigError(f"gate setting min_segment_queries = {self.min_segment_queries} must be at least 1")
        if "@" not in self.metric:
            raise ConfigError(f"gate metric {self.metric!r} is not a metric@k", hint="e.g. ndcg@10 or recall@10")

    @property
    def k(self) -> int:
        return int(self.metric.rpartition("@")[2])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["segment_by"] = list(self.segment_by)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateConfig:
        """A stored config; keys an older embedops did not write take their defaults."""
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        if "segment_by" in known:
            known["segment_by"] = tuple(known["segment_by"] or ())
        return cls(**known)

    def replace(self, **changes: Any) -> GateConfig:
        """This config with the non-None ``changes`` applied."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return GateConfig.from_dict(data)


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
class SegmentEvidence:
    """One segment of an eval set, old vs new on the same queries."""

    segment_by: str
    label: str
    n: int
    mean_old: float
    mean_new: float
    ci_low: float
    ci_high: float

    @property
    def delta(self) -> float:
        return self.mean_new - self.mean_old


@dataclass(frozen=True)
class EvalEvidence:
    """One bound eval set's paired comparison, old index (a) vs new index (b)."""

    evalset: str
    version: int
    metric: str
    queries: int
    mean_old: float
    mean_new: float
    ci_low: float
    ci_high: float
    p_value: float
    segments: tuple[SegmentEvidence, ...] = ()

    @property
    def delta(self) -> float:
        return self.mean_new - self.mean_old

    @property
    def label(self) -> str:
        return f"{self.evalset}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["delta"] = self.delta
        out["segments"] = [asdict(s) for s in self.segments]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalEvidence:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "segments"}
        return cls(**fields, segments=tuple(SegmentEvidence(**s) for s in data.get("segments", ())))


@dataclass(frozen=True)
class Agreement:
    queries: int
    k: int
    overlap: float
    rank_correlation: float | None
    query_source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BoundEvalSet:
    """An eval set that guards an alias: what `migrate plan` lists."""

    name: str
    version: int
    queries: int
    judgments: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    """Everything the gate measured for one migration, and the state it measured.

    ``stamps`` are the two indexes' change stamps and ``evalsets`` the bound
    eval sets' versions at measurement; the evidence stands while they hold.
    """

    evals: tuple[EvalEvidence, ...]
    agreement: Agreement | None
    stamps: dict[str, str]
    evalsets: dict[str, int]
    segment_by: tuple[str, ...]
    metric: str
    measured_at: float
    seconds: float

    def holds_for(self, stamps: Mapping[str, str], evalsets: Sequence[BoundEvalSet], config: GateConfig) -> bool:
        """Whether this evidence still describes both indexes, the bound eval sets and the config's measures."""
        return (
            dict(stamps) == self.stamps
            and {e.name: e.version for e in evalsets} == self.evalsets
            and tuple(config.segment_by) == self.segment_by
            and config.metric == self.metric
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "evals": [e.to_dict() for e in self.evals],
            "agreement": self.agreement.to_dict() if self.agreement else None,
            "stamps": self.stamps, "evalsets": self.evalsets, "segment_by": list(self.segment_by),
            "metric": self.metric, "measured_at": self.measured_at, "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        agreement = data.get("agreement")
        return cls(
            evals=tuple(EvalEvidence.from_dict(e) for e in data.get("evals", ())),
            agreement=Agreement(**agreement) if agreement else None,
            stamps=dict(data.get("stamps", {})), evalsets=dict(data.get("evalsets", {})),
            segment_by=tuple(data.get("segment_by", ())), metric=str(data.get("metric", "")),
            measured_at=float(data.get("measured_at", 0.0)), seconds=float(data.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class Preview:
    """``migrate plan --sample N``: the gate's eval comparison on a sample, before any backfill.

    Both sides are searched exactly over the same sample of documents (every judged
    document of the bound eval sets, then random distractors), so old and new
    compete on equal ground; nothing is written to the catalog.
    """

    documents: int
    judged_documents: int
    chunks_embedded: int
    evals: tuple[EvalEvidence, ...]
    checks: tuple[Check, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "judged_documents": self.judged_documents,
                "chunks_embedded": self.chunks_embedded, "evals": [e.to_dict() for e in self.evals],
                "checks": [c.to_dict() for c in self.checks], "would_pass": all(c.passed for c in self.checks if c.gating),
                "seconds": self.seconds}


class EvidenceProvider(Protocol):
    """Measures eval sets for the gate; the migration code is given one, it never finds one itself."""

    def bound(self, alias: str) -> list[BoundEvalSet]:
        """The eval sets bound to ``alias`` (latest version of each)."""
        ...

    def measure(self, evalsets: Sequence[BoundEvalSet], old: IndexInfo, new: IndexInfo,
                config: GateConfig) -> list[EvalEvidence]:
        """Each eval set run on both indexes and compared, overall and per ``config.segment_by`` segment."""
        ...

    def preview(self, evalsets: Sequence[BoundEvalSet], old: IndexInfo, new_embedder: Embedder, new_chunker: Chunker,
                documents: int, config: GateConfig) -> tuple[list[EvalEvidence], int, int, int]:
        """The same comparison on a sample of ``documents`` documents, the new side embedded in memory.

        Returns the evidence, the documents sampled, how many are judged, and the chunks embedded."""
        ...


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[Check]
    evidence: Evidence | None = field(default=None, compare=False)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.gating and not c.passed]

    def summary(self) -> str:
        """One line per failed gating check, or that every gating check passed."""
        if self.passed:
            return f"gate passed: {sum(c.gating for c in self.checks)} gating checks"
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}
        if self.evidence is not None:
            out["evidence"] = {"measured_at": self.evidence.measured_at, "seconds": self.evidence.seconds,
                               "evals": [e.to_dict() for e in self.evidence.evals]}
        return out


def completeness_check(live_chunks: int, vectors: int, missing: int) -> Check:
    ok = missing == 0 and vectors == live_chunks
    detail = (
        f"{vectors} vectors for {live_chunks} live chunks"
        + ("" if ok else f"; {missing} missing: run `embedops migrate backfill`")
    )
    return Check("completeness", ok, True, float(vectors), float(live_chunks), detail)


def agreement_checks(agreement: Agreement | None, config: GateConfig) -> list[Check]:
    if agreement is None or agreement.queries == 0:
        gating = config.min_overlap is not None
        return [Check("overlap", not gating, gating, None, config.min_overlap,
                      "no queries to compare" + (" (the shadow is incomplete)" if gating else ""))]
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
        checks.append(Check(
            f"eval:{ev.evalset}:{ev.metric}", ev.delta >= -config.max_regression, True, round(ev.mean_new, 4),
            round(ev.mean_old - config.max_regression, 4),
            f"{ev.metric} {ev.mean_old:.3f} -> {ev.mean_new:.3f} (delta {ev.delta:+.3f}, 95% CI"
            f" [{ev.ci_low:+.3f}, {ev.ci_high:+.3f}], {ev.queries} queries, p={ev.p_value:.3g}) on eval set"
            f" {ev.label}; max drop {config.max_regression}",
        ))
        for seg in ev.segments:
            gating = seg.n >= config.min_segment_queries
            ok = seg.delta >= -config.max_segment_regression
            checks.append(Check(
                f"eval:{ev.evalset}:{ev.metric}[{seg.segment_by}={seg.label}]", ok or not gating, gating,
                round(seg.mean_new, 4), round(seg.mean_old - config.max_segment_regression, 4),
                f"segment {seg.segment_by}={seg.label} of {ev.label} ({seg.n} queries): {ev.metric} {seg.mean_old:.3f}"
                f" -> {seg.mean_new:.3f} (delta {seg.delta:+.3f}, 95% CI [{seg.ci_low:+.3f}, {seg.ci_high:+.3f}]);"
                f" max drop {config.max_segment_regression}"
                + ("" if gating else f" (not gating: fewer than {config.min_segment_queries} queries)"),
            ))
    return checks


def unguarded_check(alias: str) -> Check:
    """Reported (not gating) when no eval set guards the alias: the gate cannot compare quality."""
    return Check("eval", True, False, None, None,
                 f"no eval set is bound to alias {alias!r}, so retrieval quality is not compared: bind one with"
                 f" `embedops eval bind NAME --alias {alias}`")


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
