"""Recalibrating thresholds for another space: sample pairs, score them in both spaces, propose, apply.

The I/O edge around :mod:`embedops.thresholds.calibrate`:

1. **pairs** (distribution matching): anchor chunks drawn from the index the
   alias serves; their nearest neighbours found through each index's own search
   (the old index and, when it exists, the new one), so the high-similarity tail
   that dedup-style thresholds live in is well covered; plus random pairs for
   the bulk of the distribution;
2. **scores**: every pair scored in both spaces (cosine) with that space's
   vectors from the catalog's ``embeddings`` table; a text missing there is
   embedded with the space's own embedder and not stored (calibrating changes
   nothing);
3. **labelled pairs** (label matching), if the threshold has them, scored the
   same way;
4. proposals, the behaviour-change report, and with ``apply`` one value row per
   threshold for the new space, each with its ledger row, in one transaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.errors import ConfigError, NotFound, SpaceMismatch
from embedops.hashing import content_hash
from embedops.vectors.sqlite import stored_embeddings
from embedops.thresholds.calibrate import (
    DEFAULT_BOOTSTRAP, DistributionMatch, LabelMatch, Objective, PairScores, behaviour, match_distribution, match_labels,
)
from embedops.thresholds.registry import (
    SpaceRef, ThresholdRegistry, ThresholdValue, current_values, resolve_space, value_in,
)

if TYPE_CHECKING:
    from embedops.embedding.base import Embedder
    from embedops.workspace import Workspace

MethodChoice = Literal["distribution", "labels", "both"]
_IN_BATCH = 900  # SQLite's bound-parameter limit
EMBED_BATCH = 64


@dataclass(frozen=True)
class SampleConfig:
    """How many pairs distribution matching scores."""

    anchors: int = 200
    neighbours: int = 5
    random_pairs: int = 2000
    seed: int = 0

    @classmethod
    def for_pairs(cls, pairs: int, seed: int = 0) -> SampleConfig:
        """``pairs`` random pairs, and a tenth as many anchors with 5 neighbours in each index."""
        if pairs < 10:
            raise ConfigError(f"--pairs must be at least 10 (got {pairs})")
        return cls(anchors=max(1, pairs // 10), random_pairs=pairs, seed=seed)


# -- scoring ---------------------------------------------------------------------------------
class SpaceScorer:
    """Unit vectors of texts in one space: the catalog's embeddings first, the space's embedder for the rest."""

    def __init__(self, ws: Workspace, space: SpaceRef) -> None:
        self.ws = ws
        self.space = space
        self.embedded = 0
        self._cache: dict[str, np.ndarray] = {}

    def vectors(self, texts: dict[str, str]) -> dict[str, np.ndarray]:
        """``content hash → unit vector`` for ``texts`` (``content hash → text``)."""
        wanted = [h for h in texts if h not in self._cache]
        with read_tx(self.ws.engine) as conn:
            self._cache.update(_stored_vectors(conn, self.space.key, wanted))
        missing = [h for h in wanted if h not in self._cache]
        if missing:
            embedder = self._embedder()
            for i in range(0, len(missing), EMBED_BATCH):
                part = missing[i : i + EMBED_BATCH]
                for h, v in zip(part, np.asarray(embedder.embed([texts[h] for h in part]), np.float32), strict=True):
                    self._cache[h] = _unit(v)
            self.embedded += len(missing)
        return {h: self._cache[h] for h in texts}

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        texts = {content_hash(t): t for pair in pairs for t in pair}
        vecs = self.vectors(texts)
        if not pairs:
            return np.empty(0)
        a = np.stack([vecs[content_hash(x)] for x, _ in pairs])
        b = np.stack([vecs[content_hash(y)] for _, y in pairs])
        scores: np.ndarray = np.einsum("ij,ij->i", a, b).astype(np.float64)
        return scores

    def _embedder(self) -> Embedder:
        embedder = self.ws.embedder(self.space.embedder)
        if embedder.ref.key != self.space.key:
            raise SpaceMismatch(
                f"embedder {self.space.embedder!r} now describes space {embedder.ref.key}, not {self.space.key};"
                " the texts missing from the catalog cannot be embedded in the old space",
                hint="restore that model, or calibrate against a space whose vectors are all in the catalog",
            )
        return embedder


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _stored_vectors(conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    return {h: _unit(v) for h, v in stored_embeddings(conn, space_key, hashes).items()}


# -- sampling -----------------------------------------------------------------------------------
@dataclass
class PairSample:
    """Text pairs for distribution matching, with how each was found."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add(self, a: str, b: str, kind: str) -> None:
        ha, hb = content_hash(a), content_hash(b)
        key = (min(ha, hb), max(ha, hb))
        if ha == hb or key in self._seen:  # identical texts score 1 in every space: no information
            return
        self._seen.add(key)
        self.pairs.append((a, b))
        self.kinds.append(kind)

    def counts(self) -> dict[str, int]:
        return {"pairs": len(self.pairs), "neighbour_pairs": self.kinds.count("neighbour"),
                "random_pairs": self.kinds.count("random")}


def sample_pairs(
    ws: Workspace, source: SpaceRef, target: SpaceRef, config: SampleConfig, scorers: dict[str, SpaceScorer]
) -> PairSample:
    """Near-neighbour pairs (through each index's search) and random pairs of the source index's chunks."""
    assert source.index is not None
    rng = random.Random(config.seed)
    with read_tx(ws.engine) as conn:
        chunks = _index_chunks(conn, source.index.id)
    if len(chunks) < 2:
        raise NotFound(f"index {source.index.id} has {len(chunks)} chunk(s): no pairs to calibrate on",
                       hint="run `embedops sync` first, or calibrate with labelled pairs (--method labels)")
    anchors = rng.sample(chunks, min(config.anchors, len(chunks)))
    picks = [tuple(rng.sample(range(len(chunks)), 2)) for _ in range(config.random_pairs * 2)]
    with read_tx(ws.engine) as conn:
        texts = _chunk_texts(conn, {c for c in anchors} | {chunks[i] for p in picks for i in p})
    sample = PairSample()
    for space in (source, target):
        if space.index is not None and config.neighbours > 0:
            _add_neighbours(ws, sample, space, [texts[c] for c in anchors], config.neighbours, scorers[space.key])
    random_pairs = 0
    for i, j in picks:
        if random_pairs >= config.random_pairs:
            break
        before = len(sample.pairs)
        sample.add(texts[chunks[i]], texts[chunks[j]], "random")
        random_pairs += len(sample.pairs) - before
    return sample


def _index_chunks(conn: sa.Connection, index_id: str) -> list[int]:
    v = schema.vectors
    return list(conn.execute(sa.select(v.c.chunk_id).where(v.c.index_id == index_id).order_by(v.c.chunk_id)).scalars())


def _chunk_texts(conn: sa.Connection, ids: set[int]) -> dict[int, str]:
    c, wanted = schema.chunks, sorted(ids)
    out: dict[int, str] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        out.update(conn.execute(sa.select(c.c.id, c.c.text).where(c.c.id.in_(wanted[i : i + _IN_BATCH]))).all())
    return out


def _add_neighbours(
    ws: Workspace, sample: PairSample, space: SpaceRef, anchors: list[str], k: int, scorer: SpaceScorer
) -> None:
    assert space.index is not None
    vecs = scorer.vectors({content_hash(t): t for t in anchors})
    found: list[tuple[str, list[int]]] = []
    for text in anchors:
        hits = ws.store.search(space.index, vecs[content_hash(text)], k + 1)
        found.append((text, [h.seq for h in hits]))
    with read_tx(ws.engine) as conn:
        by_seq = _texts_by_seq(conn, {s for _, seqs in found for s in seqs})
    for text, seqs in found:
        for seq in seqs:
            if seq in by_seq:  # a vector deleted since the search is simply skipped
                sample.add(text, by_seq[seq], "neighbour")


def _texts_by_seq(conn: sa.Connection, seqs: set[int]) -> dict[int, str]:
    v, c, wanted = schema.vectors, schema.chunks, sorted(seqs)
    out: dict[int, str] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        q = sa.select(v.c.seq, c.c.text).join(c, c.c.id == v.c.chunk_id).where(v.c.seq.in_(wanted[i : i + _IN_BATCH]))
        out.update(conn.execute(q).all())
    return out


# -- proposals ---------------------------------------------------------------------------------------
@dataclass
class Proposal:
    """New-space values for one threshold, with the evidence and what each would change."""

    name: str
    old_value: float
    old_method: str
    existing: float | None  # a value the new space already has
    distribution: DistributionMatch | None
    labels: LabelMatch | None
    recommended: str | None
    report: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def value(self) -> float | None:
        chosen = {"distribution": self.distribution, "labels": self.labels}.get(self.recommended or "")
        return chosen.value if chosen is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "old_value": self.old_value, "old_method": self.old_method,
            "existing_value": self.existing, "recommended": self.recommended, "value": self.value,
            "distribution": self.distribution.to_dict() if self.distribution else None,
            "labels": self.labels.to_dict() if self.labels else None, "report": self.report, "notes": self.notes,
        }


@dataclass
class CalibrationResult:
    alias: str
    source: SpaceRef
    target: SpaceRef
    method: str
    objective: str
    sample: dict[str, Any]
    proposals: list[Proposal]
    applied: list[ThresholdValue]
    plan: bool
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias, "from": self.source.to_dict(), "to": self.target.to_dict(), "method": self.method,
            "objective": self.objective, "sample": self.sample, "proposals": [p.to_dict() for p in self.proposals],
            "applied": [v.to_dict(evidence=False) for v in self.applied], "plan": self.plan,
            "seconds": round(self.seconds, 3),
        }


def _labelled_scores(threshold: Any, scorers: tuple[SpaceScorer, SpaceScorer]) -> PairScores | None:
    if threshold.labels is None:
        return None
    pairs = [(a, b) for a, b, _ in threshold.labels.pairs]
    labels = np.array([y for _, _, y in threshold.labels.pairs], dtype=bool)
    return PairScores(scorers[0].score(pairs), scorers[1].score(pairs), pairs, labels)


def propose(
    current: ThresholdValue, existing: float | None, corpus: PairScores | None, labelled: PairScores | None, *,
    method: MethodChoice, objective: Objective, use: str | None, bootstrap: int, examples: int,
) -> Proposal:
    """Both methods (as asked) for one threshold, and the behaviour of each candidate in the new space."""
    old = current.value
    dist = match_distribution(corpus.old, corpus.new, old, bootstrap=bootstrap) if corpus is not None else None
    lab = None
    if labelled is not None and labelled.labels is not None and method in ("labels", "both"):
        lab = match_labels(labelled.old, labelled.new, labelled.labels, old, objective=objective, bootstrap=bootstrap)
    candidates = {"unchanged": old, **({"distribution": dist.value} if dist else {}), **({"labels": lab.value} if lab else {})}
    report = {
        label: {"value": value,
                "corpus": behaviour(corpus, old, value, examples=examples).to_dict() if corpus is not None else None,
                "labels": behaviour(labelled, old, value, examples=examples).to_dict() if labelled is not None else None}
        for label, value in candidates.items()
    }
    available = [m for m, r in (("labels", lab), ("distribution", dist)) if r is not None]
    recommended = use if use in available else (None if use else (available[0] if available else None))
    return Proposal(current.name, old, current.method, existing, dist, lab, recommended, report,
                    _notes(current.name, method, use, dist, lab, labelled is not None))


def _notes(name: str, method: str, use: str | None, dist: DistributionMatch | None, lab: LabelMatch | None,
           has_labels: bool) -> list[str]:
    notes = []
    if method in ("labels", "both") and not has_labels:
        notes.append(f"no labelled pairs: attach some with `embedops thresholds labels {name} FILE` for label matching")
    if dist is not None and dist.extrapolated:
        notes.append("the old value lies beyond every sampled pair's score; the proposal is extrapolated:"
                     " sample more pairs (--pairs)")
    if lab is not None and not lab.reachable:
        notes.append(f"no threshold in the new space reaches the old {lab.objective} ({lab.target:.3f}) on the"
                     f" labelled pairs; the proposal is the best one ({lab.achieved:.3f})")
    if use is not None and use not in ("labels" if lab else "", "distribution" if dist else ""):
        notes.append(f"no {use} proposal, nothing to apply")
    return notes


# -- the whole step ------------------------------------------------------------------------------------
def calibrate(
    ws: Workspace, to: str, *, names: Sequence[str] | None = None, method: str = "both",
    objective: str = "precision", apply: bool = False, use: str | None = None,
    sample: SampleConfig | None = None, alias: str | None = None, plan_only: bool = False,
    bootstrap: int = DEFAULT_BOOTSTRAP, examples: int = 5,
) -> CalibrationResult:
    """Propose values in space ``to`` for the thresholds bound to the alias's space; record them with ``apply``."""
    started = time.perf_counter()
    _check_choices(method, objective, use)
    chosen_method, chosen_objective = cast(MethodChoice, method), cast(Objective, objective)
    registry = ThresholdRegistry(ws.engine, alias or ws.settings.alias, ws.settings.embedder, ws.settings.embedders)
    source, target, bound = _scope(ws, registry, to, names)
    scorers = {source.key: SpaceScorer(ws, source), target.key: SpaceScorer(ws, target)}
    pair_scorers = (scorers[source.key], scorers[target.key])
    corpus: PairScores | None = None
    counts: dict[str, Any] = {"pairs": 0, "neighbour_pairs": 0, "random_pairs": 0}
    if method in ("distribution", "both") and bound:
        pairs = sample_pairs(ws, source, target, sample or SampleConfig(), scorers)
        corpus = PairScores(pair_scorers[0].score(pairs.pairs), pair_scorers[1].score(pairs.pairs), pairs.pairs)
        counts = pairs.counts()
    with read_tx(ws.engine) as conn:
        existing = {v.name: value_in(conn, v.name, target.key) for v in bound}
    proposals = []
    for current in bound:
        labelled = _labelled_scores(registry.threshold(current.name), pair_scorers)
        found = existing[current.name]
        proposals.append(propose(current, found.value if found else None, corpus, labelled, method=chosen_method,
                                 objective=chosen_objective, use=use, bootstrap=bootstrap, examples=examples))
    counts["re_embedded"] = {"from": pair_scorers[0].embedded, "to": pair_scorers[1].embedded}
    applied = _apply(ws, registry, source, target, proposals) if apply and not plan_only else []
    return CalibrationResult(registry.alias, source, target, method, objective, counts, proposals, applied,
                             plan_only or not apply, time.perf_counter() - started)


def _check_choices(method: str, objective: str, use: str | None) -> None:
    if method not in ("distribution", "labels", "both"):
        raise ConfigError(f"unknown --method {method!r}", hint="distribution, labels or both")
    if objective not in ("precision", "f1"):
        raise ConfigError(f"unknown --objective {objective!r}", hint="precision or f1")
    if use is not None and (use not in ("distribution", "labels") or (method != "both" and use != method)):
        raise ConfigError(f"--use {use} does not fit --method {method}",
                          hint="--use picks one of the computed proposals: distribution or labels")


def _scope(
    ws: Workspace, registry: ThresholdRegistry, to: str, names: Sequence[str] | None
) -> tuple[SpaceRef, SpaceRef, list[ThresholdValue]]:
    serving = ws.searcher.resolve(alias=registry.alias)
    source = SpaceRef(serving.space_key, serving.embedder, serving)
    with read_tx(ws.engine) as conn:
        target = resolve_space(conn, to, ws.settings.embedders)
        bound = current_values(conn, source.key)
    if target.key == source.key:
        raise ConfigError(f"{to!r} is the space alias {registry.alias!r} already serves ({source.key})",
                          hint="pass the new model's space: its shadow index id or embedder name")
    if names:
        for name in names:
            registry.threshold(name)  # NotFound for an unknown name
        missing = [n for n in names if n not in {v.name for v in bound}]
        if missing:
            raise NotFound(f"threshold(s) {', '.join(missing)} have no value in the space alias {registry.alias!r}"
                           " serves: nothing to calibrate from",
                           hint="set one first: `embedops thresholds set NAME VALUE --space ...`")
        bound = [v for v in bound if v.name in set(names)]
    return source, target, bound


def _apply(
    ws: Workspace, registry: ThresholdRegistry, source: SpaceRef, target: SpaceRef, proposals: list[Proposal]
) -> list[ThresholdValue]:
    unusable = [p.name for p in proposals if p.value is None]
    if unusable:
        raise ConfigError(f"nothing to apply for {', '.join(unusable)}: no proposal was computed",
                          hint="add labelled pairs, use --method distribution, or set a value by hand"
                          " with `embedops thresholds set`")
    applied = []
    with ws.engine.begin() as conn:
        for p in proposals:
            assert p.value is not None and p.recommended is not None
            chosen = p.labels if p.recommended == "labels" else p.distribution
            interval = chosen.interval.to_dict() if chosen is not None and chosen.interval else None
            applied.append(registry.record(
                conn, p.name, target.key, p.value, p.recommended, {"from_space": source.key, **p.to_dict()},
                f"calibrated from {p.old_value:g} in {source.key} by {p.recommended} matching",
                ledger_kind="thresholds.calibrate", from_space=source.key, from_value=p.old_value,
                to_index=target.index.id if target.index else None, interval=interval, notes=p.notes,
            ))
    return applied


__all__ = ["CalibrationResult", "PairSample", "Proposal", "SampleConfig", "SpaceScorer", "calibrate", "propose", "sample_pairs"]
