"""ef_search from measured recall: a graph's recall on its own vectors, measured while it is built.

Real embeddings (clustered, low intrinsic dimension) reach recall@10 0.99 at an
ef_search that leaves vectors without structure far below 0.95 (docs/scale.md).
So a graph of ``CALIBRATE_MIN`` vectors or more is not given a fixed default: while
it is built, ``PROBES`` of its vectors serve as queries, their exact neighbours are
found on the same pass over the vectors (one matrix product per block), and the
smallest ef_search in ``EF_STEPS`` that reaches ``TARGET_RECALL`` is kept with the
graph. Below ``CALIBRATE_MIN`` vectors the size-based default costs little.

For a storage variant (vectors/storage.py) the exact neighbours are those of the
vectors as the graph holds them (reduced, encoded, compared by the graph's own
metric), not of the full-precision ones: ef_search can only bring the graph
closer to exact search over what it stores; the loss of precision is what
rescoring (``+rN``) is for, and no ef_search recovers it (a binary graph never
reaches 0.96 of the float neighbours, and would be searched at the largest ef).
Ties count: a neighbour as close as the tenth exact one is a hit (binary
distances are integers, and many neighbours share one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


CALIBRATE_MIN = 50_000
PROBES = 100
TARGET_RECALL = 0.96  # 0.95 plus the sampling error of 100 probes x 10 neighbours
EF_STEPS = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
_K = 10
_TIE = 1e-5  # similarities this close to the tenth exact neighbour's are ties (float rounding)


class RecallProbe:
    """Probe queries taken from the first block of a build, with their exact top-10 kept up to date."""

    def __init__(self, probes: int = PROBES, encode: Callable[[np.ndarray], np.ndarray] | None = None,
                 scores: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.probes = probes
        self.encode = encode  # float vectors → what the graph stores (a quantized storage variant); None: as they are
        self.scores = scores  # the graph's distances → the similarity ``see`` computes; None: 1 - cosine distance
        self.keys: np.ndarray | None = None
        self.queries: np.ndarray | None = None
        self._best_s: np.ndarray | None = None
        self._best_k: np.ndarray | None = None
        self.seen = 0  # vectors seen so far

    def see(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        """One block of the graph's vectors (keys, unit vectors as the graph compares them: ``Codec.prepare``),
        in any order."""
        import numpy as np
        if self.queries is None:
            take = np.linspace(0, len(keys) - 1, min(self.probes, len(keys))).astype(np.int64)
            self.keys, self.queries = keys[take].copy(), np.ascontiguousarray(vecs[take], dtype=np.float32)
            self._best_s = np.full((len(take), _K), -np.inf, dtype=np.float32)
            self._best_k = np.zeros((len(take), _K), dtype=np.uint64)
        assert self._best_s is not None and self._best_k is not None and self.keys is not None
        scores = self.queries @ vecs.T
        scores[self.keys[:, None] == keys[None, :]] = -np.inf  # a probe is not its own neighbour
        merged_s = np.concatenate([self._best_s, scores], axis=1)
        merged_k = np.concatenate([self._best_k, np.broadcast_to(keys, scores.shape)], axis=1)
        top = np.argpartition(-merged_s, _K - 1, axis=1)[:, :_K]
        self._best_s, self._best_k = np.take_along_axis(merged_s, top, 1), np.take_along_axis(merged_k, top, 1)
        self.seen += len(keys)

    def recall(self, hnsw: Any, ef: int) -> float:
        """recall@10 of ``hnsw`` at ``ef`` on the probes (their own key left out of the results)."""
        import numpy as np
        assert self.queries is not None and self.keys is not None and self._best_k is not None
        assert self._best_s is not None
        hnsw.expansion_search = ef
        queries = self.encode(self.queries) if self.encode is not None else self.queries
        from embedops.vectors.ann import GIL_HANDOFF

        with GIL_HANDOFF:
            found = hnsw.search(queries, _K + 1, threads=0)
        keys, dists, counts = np.asarray(found.keys), np.asarray(found.distances), np.asarray(found.counts)
        hits = 0
        for i in range(len(self.queries)):
            mine = keys[i, : counts[i]] != self.keys[i]
            got, dist = keys[i, : counts[i]][mine][:_K], dists[i, : counts[i]][mine][:_K]
            sims = self.scores(dist) if self.scores is not None else 1.0 - dist
            tie = sims >= self._best_s[i].min() - _TIE
            hits += int(np.count_nonzero(np.isin(got, self._best_k[i]) | tie))
        return hits / (_K * len(self.queries))

    def ef_for(self, hnsw: Any, target: float = TARGET_RECALL) -> int:
        """The smallest ef_search in EF_STEPS at which the graph reaches ``target`` on the probes (the largest
        when none does).

        Real embeddings pass at the first step, which is tried first; past it the steps are bisected (recall
        grows with ef_search), so data without structure costs 4 measurements instead of up to 13, at the
        large ef_search values where a measurement is most expensive."""
        if self.recall(hnsw, EF_STEPS[0]) >= target:
            return EF_STEPS[0]
        lo, hi = 1, len(EF_STEPS) - 1  # the answer's index is in [lo, hi]; hi may fail (then it is the largest)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.recall(hnsw, EF_STEPS[mid]) >= target:
                hi = mid
            else:
                lo = mid + 1
        return EF_STEPS[lo]
