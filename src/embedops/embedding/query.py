"""The query path's embedder front: a small in-memory cache, and what queries cost and how long they took.

Queries are embedded with the index's own embedder (invariant 1) through
:class:`QueryEmbeddings`: a repeated query text in the same space is answered
from a bounded LRU cache, the rest are embedded in one call. It counts, per
space, embedding latency, errors, requests, tokens, cost and cache hits for
``/metrics``, and keeps the spend not yet written to the catalog until the
workspace flushes it (:meth:`drain`) as ``query`` spend rows with a ledger row.

>>> from embedops.embedding.hashing_embedder import HashingEmbedder
>>> q = QueryEmbeddings(capacity=2)
>>> e = HashingEmbedder()
>>> _ = q.embed(e.ref.key, "hashing", e, ["a b", "c"])
>>> _ = q.embed(e.ref.key, "hashing", e, ["a b"])
>>> stats = q.snapshot()[e.ref.key]
>>> stats.calls, stats.texts, stats.cache_hits
(1, 3, 1)
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from embedops.catalog.ledger import write_ledger
from embedops.embedding.base import Embedder
from embedops.embedding.spend import (
    Job,
    Line,
    Spend,
    cache_saving,
    embed_metered,
    record,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
QUERY_CACHE_SIZE = 1024
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class QueryStats:
    """One space's query embedding since the process started (counters only grow)."""

    embedder: str
    calls: int = 0  # embedding calls made (a batch of misses is one)
    texts: int = 0  # query texts asked for
    cache_hits: int = 0
    errors: int = 0
    spend: Spend = field(default_factory=Spend)
    latency: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))  # per bucket, +Inf last
    latency_sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.latency[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def copy(self) -> QueryStats:
        spend = Spend()
        spend.add(self.spend)
        return QueryStats(self.embedder, self.calls, self.texts, self.cache_hits, self.errors, spend,
                          list(self.latency), self.latency_sum)


class QueryEmbeddings:
    """Thread-safe; one per workspace. ``price_of(embedder name)``: USD per million tokens."""

    def __init__(self, capacity: int = QUERY_CACHE_SIZE, price_of: Callable[[str], float | None] | None = None) -> None:
        self.capacity = capacity
        self.price_of = price_of or (lambda name: 0.0)
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._stats: dict[str, QueryStats] = {}
        self._pending: dict[str, Spend] = {}  # spend not yet in the catalog, by space
        self._lock = threading.Lock()

    def embed(self, space: str, name: str, embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` in ``space`` (``embedder``, called ``name``), cached ones reused."""
        import numpy as np
        out: list[np.ndarray | None] = [None] * len(texts)
        with self._lock:
            stats = self._stats.setdefault(space, QueryStats(name))
            stats.texts += len(texts)
            for i, text in enumerate(texts):
                hit = self._cache.get((space, text))
                if hit is not None:
                    self._cache.move_to_end((space, text))
                    out[i] = hit
            hit_texts = [t for t, v in zip(texts, out, strict=True) if v is not None]
            stats.cache_hits += len(hit_texts)
        if hit_texts:  # what the cache saved: the tokens these queries would have cost
            saving = cache_saving(embedder, hit_texts, self.price_of(name))
            with self._lock:
                self._pending.setdefault(space, Spend()).add(saving)
        todo = list(dict.fromkeys(t for t, v in zip(texts, out, strict=True) if v is None))
        if todo:
            fresh = dict(zip(todo, self._embed(space, name, embedder, todo), strict=True))
            out = [v if v is not None else fresh[t] for t, v in zip(texts, out, strict=True)]
        return np.stack([np.asarray(v, dtype=np.float32) for v in out]) if out else \
            np.empty((0, embedder.ref.dims), dtype=np.float32)

    def _embed(self, space: str, name: str, embedder: Embedder, texts: list[str]) -> np.ndarray:
        import numpy as np
        spend = Spend()
        started = time.perf_counter()
        try:
            vectors = np.asarray(embed_metered(embedder, texts, self.price_of(name), spend, query=True), dtype=np.float32)
        except Exception:
            with self._lock:
                stats = self._stats[space]
                stats.errors += 1
                self._count(space, stats, spend, time.perf_counter() - started)
            raise
        with self._lock:
            self._count(space, self._stats[space], spend, time.perf_counter() - started)
            for text, vector in zip(texts, vectors, strict=True):
                self._cache[(space, text)] = vector
                self._cache.move_to_end((space, text))
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return vectors

    def _count(self, space: str, stats: QueryStats, spend: Spend, seconds: float) -> None:
        stats.calls += 1
        stats.observe(seconds)
        stats.spend.add(spend)
        self._pending.setdefault(space, Spend()).add(spend)

    def snapshot(self) -> dict[str, QueryStats]:
        with self._lock:
            return {space: stats.copy() for space, stats in self._stats.items()}

    def drain(self) -> dict[str, tuple[str, Spend]]:
        """The spend since the last drain, by space (with the embedder's name), cache savings included; then zero."""
        with self._lock:
            pending, self._pending = self._pending, {}
            return {space: (self._stats[space].embedder, spend) for space, spend in pending.items() if not spend.empty}

    def flush(self, engine: sa.Engine) -> int:
        """Write the spend since the last flush: one ``query.spend`` ledger row and its spend rows (``query`` job).

        A catalog that refuses the write (busy, read-only) keeps the spend for the next flush: a query never fails
        for it. Returns the rows written."""
        drained = self.drain()
        if not drained:
            return 0
        try:
            with engine.begin() as conn:
                ledger_id = write_ledger(conn, "query.spend", spaces={s: spend.to_dict() for s, (_, spend) in drained.items()})
                return record(conn, ledger_id, Job.new("query"),
                              [Line(space, name, spend) for space, (name, spend) in drained.items()])
        except sa.exc.SQLAlchemyError as exc:
            self.restore(drained)
            log.warning("could not record the query path's spend yet (%s); it is kept for the next flush", exc)
            return 0

    def restore(self, drained: dict[str, tuple[str, Spend]]) -> None:
        """Put back spend that could not be written (the catalog was busy): the next drain carries it."""
        with self._lock:
            for space, (_, spend) in drained.items():
                self._pending.setdefault(space, Spend()).add(spend)
