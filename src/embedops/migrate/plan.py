"""What a migration will cost, computed from facts without side effects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# A vector row's bytes beyond the float32 payload: tags, keys and index entries (measured on SQLite).
ROW_OVERHEAD_BYTES = 160


@dataclass(frozen=True)
class PlanFacts:
    """What the catalog and a quick measurement tell about the move."""

    alias: str
    from_index: str
    from_embedder: str
    from_space: str
    from_chunker: str
    from_dims: int
    from_vectors: int
    to_embedder: str
    to_space: str
    to_chunker: str
    to_dims: int
    documents: int
    chunks_total: int
    chunks_to_embed: int
    tokens_to_embed: int
    tokens_per_second: float | None  # None: no recorded throughput and no --probe
    throughput_source: str
    chunks_counted: str = "exact"  # or "sampled N documents" (a new chunker is run on a sample)
    seconds_to_embed: float | None = None  # None: no recorded throughput and no --probe
    price_per_1k_tokens: float | None = None
    # Where the price comes from: "embedops.toml [embedders.NAME]", "embedops.toml [budget.prices]", a dated
    # "default list price (YYYY-MM)" (embedding/spend.py LIST_PRICES), "in-process model" or "unknown".
    price_source: str | None = None
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    eval_sets: list[dict[str, Any]] = field(default_factory=list)
    from_storage: str = "f32"  # storage variants (vectors/storage.py): part of an index's identity
    to_storage: str = "f32"
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MigrationPlan:
    facts: PlanFacts
    rechunk: bool
    estimated_seconds: float | None
    estimated_cost: float | None
    storage_bytes_before: int
    storage_bytes_after: int
    storage_bytes_after_finalize: int
    gate: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self.facts)
        out.update({k: v for k, v in asdict(self).items() if k != "facts"})
        out["chunks_to_embed"] = self.facts.chunks_to_embed
        out["thresholds"] = self.facts.thresholds
        return out

    @property
    def storage_only(self) -> bool:
        """Same space and chunker, another storage variant: built from stored vectors, no model call."""
        f = self.facts
        return f.from_space == f.to_space and f.from_chunker == f.to_chunker and f.from_storage != f.to_storage


def vector_bytes(count: int, dims: int) -> int:
    return count * (dims * 4 + ROW_OVERHEAD_BYTES)


def make_plan(facts: PlanFacts, gate: dict[str, Any]) -> MigrationPlan:
    seconds = facts.seconds_to_embed if facts.chunks_to_embed else 0.0
    cost = None
    if facts.price_per_1k_tokens is not None:
        cost = round(facts.tokens_to_embed / 1000 * facts.price_per_1k_tokens, 8)
    before = vector_bytes(facts.from_vectors, facts.from_dims)
    new = vector_bytes(facts.chunks_total, facts.to_dims)
    return MigrationPlan(
        facts=facts,
        rechunk=facts.from_chunker != facts.to_chunker,
        estimated_seconds=None if seconds is None else round(seconds, 1),
        estimated_cost=cost,
        storage_bytes_before=before,
        storage_bytes_after=before + new,
        storage_bytes_after_finalize=new,
        gate=gate,
    )
