"""The pure arithmetic of capacity analysis: fitted footprints, projections, the variants to try, the choice.

>>> f = Footprint.fit([(1_000, 600_000), (2_000, 1_100_000)])
>>> f.bytes_per_vector, f.overhead_bytes, f.at(10_000)
(500.0, 100000.0, 5100000.0)
>>> parse_sizes("1M, 250k,10M")
[250000, 1000000, 10000000]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from embedops.errors import ConfigError
from embedops.vectors.storage import StorageSpec

GB = 1e9  # prices are per decimal gigabyte-month, as cloud price lists quote them
DEFAULT_SIZES = (1_000_000, 10_000_000, 100_000_000)
DEFAULT_PRICE_GB_MONTH = 3.8
DEFAULT_MAX_LOSS = 0.01
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}


@dataclass(frozen=True)
class Footprint:
    """Bytes as a straight line in the number of vectors, fitted to two measured points."""

    bytes_per_vector: float
    overhead_bytes: float

    @classmethod
    def fit(cls, points: Sequence[tuple[int, int]]) -> Footprint:
        """The line through the first and last (vectors, bytes) points; one point: no overhead."""
        (n0, b0), (n1, b1) = points[0], points[-1]
        if n1 == n0:
            return cls(b1 / max(n1, 1), 0.0)
        slope = (b1 - b0) / (n1 - n0)
        return cls(round(slope, 3), round(max(0.0, b1 - slope * n1), 1))

    def at(self, vectors: int) -> float:
        return self.bytes_per_vector * vectors + self.overhead_bytes


@dataclass(frozen=True)
class Projected:
    """One variant at one corpus size."""

    vectors: int
    memory_bytes: float
    disk_bytes: float
    monthly_cost: float
    p50_ms: float | None = None  # a flat index scans every vector: its p50 grows with N (None: a graph)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def project(memory: Footprint, disk: Footprint, sizes: Sequence[int], price_gb_month: float,
            scan: tuple[float, int] | None = None) -> list[Projected]:
    """Memory, disk and the monthly cost of the memory at each size; ``scan`` = (p50 ms, vectors) of a flat
    index measured now, whose p50 grows in proportion to the vectors it scans."""
    return [Projected(n, round(memory.at(n)), round(disk.at(n)), round(memory.at(n) / GB * price_gb_month, 2),
                      round(scan[0] * n / max(1, scan[1]), 1) if scan else None)
            for n in sizes]


def parse_sizes(text: str) -> list[int]:
    """``"1M,10M,100M"`` → vector counts (suffixes k, M, B), sorted."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMbBgG]?)", part)
        if not m or float(m.group(1)) <= 0:
            raise ConfigError(f"invalid size {part!r} in --sizes", hint="vector counts such as 1M,10M,100M (k, M, B)")
        sizes.append(int(float(m.group(1)) * _SUFFIX[m.group(2).lower()]))
    if not sizes:
        raise ConfigError("--sizes is empty", hint="vector counts such as 1M,10M,100M")
    return sorted(set(sizes))


def default_variants(dims: int, precisions: Sequence[str], layouts: Sequence[str] = ("hnsw",)) -> list[StorageSpec]:
    """The variants tried when none are named: each precision with and without rescoring, flat quantized
    indexes, and reductions."""
    keys = ["f32", "f16", "i8", "i8+r4", "b1", "b1+r4", "b1+r10", "i8:flat+r4", "b1:flat+r10"]
    if dims >= 64:
        keys += [f"f32:d{dims // 2}", f"f32:d{dims // 4}", f"i8:d{dims // 2}+r4", f"f32:pca{dims // 4}"]
    specs = [StorageSpec.parse(k) for k in keys]
    return [s for s in specs if s.precision in precisions and s.layout in layouts]


def parse_variants(text: str, precisions: Sequence[str], layouts: Sequence[str] = ("hnsw", "flat")) -> list[StorageSpec]:
    """Variant keys separated by commas; float32 (the reference) is always measured first."""
    specs = [StorageSpec.parse(k.strip()) for k in text.split(",") if k.strip()]
    for spec in specs:
        if spec.precision not in precisions:
            raise ConfigError(f"this catalog's vector store holds no {spec.precision} vectors (variant {spec.key})",
                              hint=f"use precisions {', '.join(precisions)}")
        if spec.layout not in layouts:
            raise ConfigError(f"this catalog's vector store has no {spec.layout} layout (variant {spec.key})",
                              hint=f"use {', '.join(layouts)}")
    rest = [s for s in dict.fromkeys(specs) if not s.is_default]
    return [StorageSpec(), *rest]


@dataclass(frozen=True)
class Candidate:
    """What the choice needs of a measured variant."""

    storage: str
    relative_loss: float  # (reference − variant) / reference of the main metric; negative: better
    worst_loss: float  # the same at the low end of the interval of the difference
    memory_bytes: float  # at the largest projected size
    p50_ms: float  # projected at the largest size (flat), else measured now


def cheapest_within(candidates: Sequence[Candidate], max_loss: float, max_p50_ms: float | None = None) -> Candidate | None:
    """The candidate with the least memory whose measured loss is at most ``max_loss`` and, when given, whose p50
    is at most ``max_p50_ms`` (ties: smaller loss)."""
    within = [c for c in candidates if c.relative_loss <= max_loss + 1e-12
              and (max_p50_ms is None or c.p50_ms <= max_p50_ms)]
    return min(within, key=lambda c: (c.memory_bytes, c.relative_loss, c.storage)) if within else None
