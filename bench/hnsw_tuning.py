"""HNSW parameters (M, ef_construction, ef_search) measured on vectors with real structure.

Three kinds of 384-d vectors, all L2-normalized:

* ``scifact``: the real chunk embeddings of SciFact (``minilm-l3``, 20,095 chunks);
* ``mixture``: a mixture of 64 (``--components``) low-rank Gaussians fitted to those real
  vectors (k-means clusters; each cluster keeps its mean, its top ``--rank`` principal
  directions with their variances, and an isotropic remainder): clusters of different
  sizes and spreads, low intrinsic dimension within a cluster, as real embeddings have;
* ``gaussian``: one Gaussian with the real vectors' mean and covariance, the hard case
  (no cluster structure, high intrinsic dimension) the old defaults were chosen on.

For each kind, size and (M, ef_construction): usearch's multi-threaded batch add from
vectors in memory (build seconds, CPU seconds), then recall@10 of held-out queries
(drawn from the same distribution, not in the index) at several ef_search values,
against exact search; and the ef_search the workspace would measure for that graph
(``vectors/calibrate.py``: 100 of its own vectors as probes, target 0.96) with the
held-out recall it gives.

Usage (from the repository root)::

    .venv/bin/python bench/hnsw_tuning.py --sizes 100000 --json /tmp/hnsw.json
    .venv/bin/python bench/hnsw_tuning.py --kinds mixture --sizes 1000000 --grid 16:64 --ef 128,256

The real vectors are embedded once (about 3 minutes on an idle 2-core machine) and cached
(``--vectors``, default in the temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, print_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"


def real_vectors(cache: Path, data: Path) -> np.ndarray:
    """SciFact's chunk embeddings (minilm-l3, structured chunker), from ``cache`` or embedded now."""
    if cache.exists():
        return np.load(cache)
    import sqlite3

    from embedops.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="embedops-hnsw-real-"))
    ws = Workspace.init(root, embedder="minilm-l3")
    ws.add_source("scifact", data, kind="beir")
    ws.sync()
    ws.close()
    con = sqlite3.connect(root / ".embedops" / "catalog.db")
    rows = con.execute("SELECT vector FROM embeddings ORDER BY content_hash").fetchall()
    vecs = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    np.save(cache, vecs)
    return vecs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class LowRankMixture:
    """k-means clusters of the real vectors, each a Gaussian: mean + top-``rank`` directions + isotropic rest."""

    def __init__(self, real: np.ndarray, components: int, rank: int, seed: int = 0) -> None:
        from sklearn.cluster import KMeans

        labels = KMeans(components, n_init=1, random_state=seed).fit_predict(real)
        self.weights, self.means, self.bases, self.scales, self.rest = [], [], [], [], []
        for k in range(components):
            members = real[labels == k]
            if len(members) < 2:
                continue
            centred = members - members.mean(axis=0)
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            var = s**2 / (len(members) - 1)
            r = min(rank, len(var))
            self.weights.append(len(members))
            self.means.append(members.mean(axis=0))
            self.bases.append(vt[:r])
            self.scales.append(np.sqrt(var[:r]))
            self.rest.append(np.sqrt(var[r:].sum() / real.shape[1]) if len(var) > r else 0.0)
        w = np.asarray(self.weights, dtype=np.float64)
        self.p = w / w.sum()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dims = self.means[0].shape[0]
        which = rng.choice(len(self.p), size=n, p=self.p)
        out = np.empty((n, dims), dtype=np.float32)
        for k in np.unique(which):
            idx = np.flatnonzero(which == k)
            z = rng.standard_normal((len(idx), len(self.scales[k]))) * self.scales[k]
            out[idx] = self.means[k] + z @ self.bases[k] + rng.standard_normal((len(idx), dims)) * self.rest[k]
        return _unit(out)


def gaussian(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    chol = np.linalg.cholesky(cov + 1e-6 * np.eye(len(cov)))
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        out[lo : lo + m] = mean + rng.standard_normal((m, len(mean))) @ chol.T
    return _unit(out)


def dataset(kind: str, n: int, q: int, real: np.ndarray, mixture: LowRankMixture | None,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(indexed vectors, held-out queries)."""
    if kind == "scifact":
        order = rng.permutation(len(real))
        return real[order[q:]], real[order[:q]]
    if kind == "mixture":
        assert mixture is not None
        both = mixture.sample(n + q, rng)
    else:
        both = gaussian(real, n + q, rng)
    return both[q:], both[:q]


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), 100):
        scores = queries[lo : lo + 100] @ base.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[lo : lo + 100] = top
    return out


def measure(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, m: int, efc: int,
            efs: list[int]) -> dict[str, object]:
    from embedops.vectors.ann import usearch_index

    Index = usearch_index()
    index = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=m, expansion_add=efc)
    keys = np.arange(len(base), dtype=np.uint64)
    wall, cpu = time.perf_counter(), time.process_time()
    index.add(keys, base, threads=0)
    build, build_cpu = time.perf_counter() - wall, time.process_time() - cpu
    from embedops.vectors.calibrate import RecallProbe

    probe = RecallProbe()  # what the workspace does when it builds a graph of 50k vectors or more
    for lo in range(0, len(base), 20_000):
        probe.see(keys[lo : lo + 20_000], base[lo : lo + 20_000])
    calibrated = probe.ef_for(index)
    recalls = {}
    for ef in sorted({*efs, calibrated}):
        index.expansion_search = ef
        found = index.search(queries, 10, threads=0)
        hits = sum(len(set(np.asarray(found.keys[i][: found.counts[i]]).tolist()) & set(truth[i].tolist()))
                   for i in range(len(queries)))
        recalls[ef] = hits / (10 * len(queries))
    return {"M": m, "ef_construction": efc, "build_s": round(build, 1), "build_cpu_s": round(build_cpu, 1),
            "memory_mb": round(index.memory_usage / 2**20), "recall": recalls, "calibrated_ef": calibrated,
            "recall_at_calibrated": recalls[calibrated]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default="scifact,mixture,gaussian")
    p.add_argument("--sizes", default="100000", help="vectors per synthetic kind (scifact is its own size)")
    p.add_argument("--grid", default="8:64,12:64,16:64,16:128,32:128", help="M:ef_construction pairs")
    p.add_argument("--ef", default="32,64,128,256,512", help="ef_search values")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--vectors", type=Path, default=Path(tempfile.gettempdir()) / "embedops-scifact-l3-chunks.npy")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    real = _unit(real_vectors(args.vectors, args.data))
    rng = np.random.default_rng(0)
    kinds = args.kinds.split(",")
    mixture = LowRankMixture(real, args.components, args.rank) if "mixture" in kinds else None
    efs = [int(x) for x in args.ef.split(",")]
    grid = [tuple(int(v) for v in pair.split(":")) for pair in args.grid.split(",")]
    results, rows = [], []
    for kind in kinds:
        for n in ([len(real) - args.queries] if kind == "scifact" else [int(s) for s in args.sizes.split(",")]):
            base, queries = dataset(kind, n, args.queries, real, mixture, rng)
            truth = exact_top(base, queries, 10)
            for m, efc in grid:
                r = {"kind": kind, "vectors": len(base), "load_average": load_average(),
                     **measure(base, queries, truth, m, efc, efs)}
                results.append(r)
                rows.append([kind, f"{len(base):,}", str(m), str(efc), f"{r['build_s']} s ({r['build_cpu_s']} CPU)",
                             str(r["memory_mb"]), *(f"{r['recall'][e]:.3f}" for e in efs),  # type: ignore[index]
                             f"{r['calibrated_ef']} ({r['recall_at_calibrated']:.3f})", str(r["load_average"])])
                print(json.dumps(r), flush=True)
    print()
    print_table(["kind", "vectors", "M", "ef_c", "build", "MiB", *(f"R@10 ef={e}" for e in efs),
                 "measured ef (held-out R@10)", "load"], rows)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
