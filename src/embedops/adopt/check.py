"""The pure part of adoption: reading a stored vector, and deciding from a re-embedded sample.

>>> as_vector("[3, 4]", 2).tolist()
[0.6, 0.8]
>>> as_vector([1, 2, 3], 2) is None
True
>>> check = decide({"a": 0.9999, "b": 0.9995}, split=1, unusable=0, threshold=0.999)
>>> check.passed, check.min_cosine
(True, 0.9995)
>>> decide({"a": 0.41}, split=0, unusable=0, threshold=0.999).passed
False
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MIN_COSINE = 0.999
DEFAULT_SAMPLE = 200
WORST_SHOWN = 5


def as_vector(value: Any, dims: int) -> np.ndarray | None:
    """``value`` (a pgvector array, a JSON list or its text, float32 bytes) as a unit float32 vector of ``dims``;
    None when it is not one (other length, not finite, all zeros)."""
    value = _plain(value)
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != 4 * dims:
                return None
            vec = np.frombuffer(raw, dtype=np.float32)
        elif isinstance(value, str):
            vec = np.asarray(json.loads(value), dtype=np.float32)
        elif value is None:
            return None
        else:
            vec = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError):
        return None
    if vec.shape != (dims,) or not np.all(np.isfinite(vec)):
        return None
    norm = float(np.linalg.norm(vec))
    return None if norm == 0.0 else (vec / norm).astype(np.float32)


def vector_problem(value: Any, dims: int) -> str | None:
    """Why a stored vector cannot be adopted, as a row's report says it (None when :func:`as_vector` takes it).

    >>> vector_problem(None, 3), vector_problem([1, 2], 3), vector_problem([0, 0, 0], 3)
    ('no vector (null)', 'a vector of 2 numbers where the embedder makes 3', 'a vector of zeros or of non-finite numbers')
    """
    if as_vector(value, dims) is not None:
        return None
    if _plain(value) is None:
        return "no vector (null)"
    found = dims_of(value)
    if found is not None and found != dims:
        return f"a vector of {found} numbers where the embedder makes {dims}"
    return "a vector of zeros or of non-finite numbers"


def dims_of(value: Any) -> int | None:
    """How many numbers a stored vector holds (for the refusal that names a wrong dimension)."""
    value = _plain(value)
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return len(bytes(value)) // 4
        if isinstance(value, str):
            return len(json.loads(value))
        return int(np.asarray(value).size)
    except (ValueError, TypeError):
        return None


def _plain(value: Any) -> Any:
    """A pgvector ``Vector`` (what psycopg loads a vector column as) as a numpy array; anything else as it is."""
    to_numpy = getattr(value, "to_numpy", None)
    return to_numpy() if callable(to_numpy) else value


@dataclass(frozen=True)
class SampleCheck:
    """What re-embedding a random sample found, and whether it allows adoption."""

    threshold: float
    compared: int  # sampled rows whose stored and fresh vectors were compared
    split: int  # sampled rows the index's chunker cuts into several chunks (not adoptable as one vector)
    unusable: int  # sampled rows skipped by the source or holding no usable vector
    min_cosine: float | None = None
    median_cosine: float | None = None
    worst: list[tuple[str, float]] = field(default_factory=list)  # the lowest (id, cosine) pairs

    @property
    def passed(self) -> bool:
        return self.compared > 0 and self.min_cosine is not None and self.min_cosine >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "compared": self.compared, "split": self.split,
                "unusable": self.unusable, "min_cosine": self.min_cosine, "median_cosine": self.median_cosine,
                "worst": [{"id": i, "cosine": c} for i, c in self.worst], "passed": self.passed}


def decide(cosines: Mapping[str, float], *, split: int, unusable: int, threshold: float) -> SampleCheck:
    """Adopt only when every compared vector matches its text re-embedded (cosine >= ``threshold``).

    One stale vector in the sample means a share of the table is stale (its text was edited after it was
    embedded) or was made by another model: adopting would serve wrong vectors, so the whole table is refused."""
    if not cosines:
        return SampleCheck(threshold, 0, split, unusable)
    values = sorted(cosines.values())
    worst = sorted(cosines.items(), key=lambda kv: kv[1])[:WORST_SHOWN]
    return SampleCheck(threshold, len(values), split, unusable, round(values[0], 6),
                       round(statistics.median(values), 6), [(i, round(c, 6)) for i, c in worst])
