"""First sync of 100k / 1M generated documents vs Chroma and LanceDB adding the same vectors.

One script, one machine, each system in its own child process (its own peak RSS):

1. ``--docs`` JSONL documents are generated (60-140 words, a title, a category; written
   as they are made, never held in memory) and 500 held-out query texts are embedded
   with the same ``hashing`` embedder (numpy only: the figures are the pipeline's and
   the ANN's, not a model's);
2. **embedops**: ``Workspace.sync()`` of a fresh workspace over the JSONL source: read,
   chunk, hash, embed, one transaction per batch, the HNSW graph built and saved. Wall
   time, CPU time, peak RSS, and the seconds spent inserting into the graph (most of them
   overlap the batches being written) and after the last batch; then the stored vectors
   and their keys are exported (not timed);
3. **Chroma** (``chromadb.PersistentClient``, its HNSW, cosine): ``collection.add`` of
   the same vectors with the same ids, in its maximum batch size;
4. **LanceDB**: a table of the same ids and vectors, then its ANN index
   (``IVF_HNSW_SQ``, cosine), both timed;
5. recall@10 of the 500 queries through each system's own search, against exact search
   over the same vectors.

Usage (from the repository root)::

    .venv/bin/python bench/first_sync.py --docs 100000
    .venv/bin/python bench/first_sync.py --docs 100000 --systems embedops,chroma --storage f32,i8+r4
    .venv/bin/python bench/first_sync.py --docs 1000000 --systems embedops,chroma
    .venv/bin/python bench/first_sync.py --docs 20000 --workdir /tmp/fs   # smoke test

Targets: embedops' first sync ≤ 1.0× Chroma's add time at equal or better recall@10;
1M documents in under 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Check, Report, SentenceMaker, load_average  # noqa: E402

CATEGORIES = ("biology", "physics", "geology", "computing", "medicine")
EMBEDDER = "hashing"
FIRST_SYNC_VS_CHROMA_MAX = 1.0
MILLION_SYNC_MAX_S = 15 * 60


# -- corpus and queries (parent) ----------------------------------------------------------
def write_corpus(path: Path, n_docs: int, seed: int = 0) -> None:
    maker = SentenceMaker(seed=seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_docs):
            record = {"id": f"doc{i:08d}", "title": maker.sentence(4).rstrip("."),
                      "text": " ".join(maker.document(maker.rng.randint(60, 140))),
                      "category": CATEGORIES[i % len(CATEGORIES)]}
            out.write(json.dumps(record) + "\n")


def write_queries(path: Path, n: int) -> None:
    from embedops.embedding.registry import load_embedder

    maker = SentenceMaker(seed=12345)  # texts that are not in the corpus
    texts = [" ".join(maker.document(maker.rng.randint(8, 30))) for _ in range(n)]
    np.save(path, load_embedder(EMBEDDER).embed(texts))


def exact_top10(keys: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_k = np.zeros((len(queries), 10), dtype=np.int64)
    for lo in range(0, len(vectors), 200_000):
        scores = queries @ vectors[lo : lo + 200_000].T
        merged_s = np.concatenate([best_s, scores], axis=1)
        merged_k = np.concatenate([best_k, np.broadcast_to(keys[lo : lo + 200_000], scores.shape)], axis=1)
        top = np.argpartition(-merged_s, 9, axis=1)[:, :10]
        best_s, best_k = np.take_along_axis(merged_s, top, 1), np.take_along_axis(merged_k, top, 1)
    return best_k


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


# -- children --------------------------------------------------------------------------------
def child_embedops(work: Path, storage: str | None = None) -> dict[str, Any]:
    from embedops.workspace import Workspace

    ws = Workspace.init(work / f"embedops-{storage or 'f32'}", embedder=EMBEDDER, storage=storage)
    ws.add_source("bench", work / "corpus.jsonl", kind="jsonl", title_field="title")
    wall, cpu = time.perf_counter(), time.process_time()
    result = ws.sync()
    seconds, cpu_seconds, ended = time.perf_counter() - wall, time.process_time() - cpu, time.time()
    peak_sync = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # before the export below
    info = result.indexes[0]
    tail = round(ended - ws.history(kind="sync.batch", limit=1)[0]["at"], 3)
    index = ws.searcher.resolve("prod")
    raw = ws.store.raw().driver_connection
    rows = raw.execute("SELECT v.seq, e.vector FROM vectors v JOIN embeddings e ON e.space_key = v.space_key"
                       " AND e.content_hash = v.content_hash WHERE v.index_id = ? ORDER BY v.seq", (index.id,))
    keys, vecs = [], []
    while batch := rows.fetchmany(50_000):
        keys.append(np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch)))
        vecs.append(np.frombuffer(b"".join(r[1] for r in batch), dtype=np.float32).reshape(len(batch), -1))
    np.save(work / "keys.npy", np.concatenate(keys))
    np.save(work / "vectors.npy", np.concatenate(vecs))
    queries = np.load(work / "queries.npy")
    found = [[h.seq for h in hits] for hits in ws.store.search_many(index, queries, 10)]
    ws.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "documents": result.counts.added, "storage": index.storage,
            "vectors": info["vectors"], "graph_insert_seconds": info["build_seconds"], "after_last_batch_s": tail,
            "peak_rss_sync_mb": peak_sync,
            "found": found}


def child_chroma(work: Path, storage: str | None = None) -> dict[str, Any]:
    import chromadb

    keys, vectors = np.load(work / "keys.npy"), np.load(work / "vectors.npy")
    client = chromadb.PersistentClient(path=str(work / "chroma"))
    collection = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    step = client.get_max_batch_size()
    ids = [str(k) for k in keys]
    wall, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(ids), step):
        collection.add(ids=ids[lo : lo + step], embeddings=vectors[lo : lo + step])
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    queries = np.load(work / "queries.npy")
    result = collection.query(query_embeddings=queries, n_results=10, include=[])
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "vectors": collection.count(),
            "found": [[int(i) for i in row] for row in result["ids"]]}


def child_lancedb(work: Path, storage: str | None = None) -> dict[str, Any]:
    import lancedb
    import pyarrow as pa

    keys, vectors = np.load(work / "keys.npy"), np.load(work / "vectors.npy")
    db = lancedb.connect(str(work / "lancedb"))
    flat = pa.array(vectors.reshape(-1), pa.float32())
    table_data = pa.table({"id": pa.array(keys, pa.int64()),
                           "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    wall, cpu = time.perf_counter(), time.process_time()
    table = db.create_table("bench", data=table_data)
    loaded = time.perf_counter() - wall
    table.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_SQ")
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    queries = np.load(work / "queries.npy")
    found = [[int(r["id"]) for r in table.search(q).metric("cosine").limit(10).select(["id"]).to_list()]
             for q in queries]
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "load_seconds": loaded, "vectors": table.count_rows(),
            "found": found}


CHILDREN = {"embedops": child_embedops, "chroma": child_chroma, "lancedb": child_lancedb}


def run_child(system: str, work: Path, storage: str | None = None) -> dict[str, Any]:
    """``system`` in its own process; its figures, with its peak RSS and the load average."""
    out = work / f"{system}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--child", system, "--workdir", str(work),
                             *(["--storage", storage] if storage else [])],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(Path(__file__).resolve().parent.parent / "src"), os.environ.get("PYTHONPATH", "")])})
    load_before = load_average()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{system} failed (status {status})")
    data: dict[str, Any] = json.loads(out.read_text())
    data["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    data["load_average"] = [load_before, load_average()]
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--systems", default="embedops,chroma,lancedb")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--child", choices=sorted(CHILDREN))
    p.add_argument("--json", type=Path)
    p.add_argument("--storage", default="f32",
                   help="embedops' index storage variants ([embedops] storage), comma-separated: one embedops run each"
                   " (the first is the one checked against the targets); e.g. f32,i8+r4")
    args = p.parse_args()
    if args.child:
        result = CHILDREN[args.child](args.workdir, args.storage)
        (args.workdir / f"{args.child}.json").write_text(json.dumps(result))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedops-first-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    write_corpus(work / "corpus.jsonl", args.docs)
    write_queries(work / "queries.npy", args.queries)
    systems = args.systems.split(",")
    results: dict[str, dict[str, Any]] = {}
    assert systems[0] == "embedops", "embedops runs first: the others add the vectors it stored"
    runs = [(f"embedops {storage}", system, storage) if system == "embedops" else (system, system, None)
            for system in systems for storage in (args.storage.split(",") if system == "embedops" else [None])]
    for name, system, storage in runs:
        results[name] = run_child(system, work, storage)
        print(f"{name}: {results[name]['seconds']:.1f} s, peak RSS {results[name]['peak_rss_mb']} MiB,"
              f" load {results[name]['load_average']}", flush=True)
    keys, vectors = np.load(work / "keys.npy"), np.load(work / "vectors.npy")
    truth = exact_top10(keys, vectors, np.load(work / "queries.npy"))
    for r in results.values():
        r["recall_at_10"] = recall(r.pop("found"), truth)
    report(args.docs, results, args.json)


def report(docs: int, results: dict[str, dict[str, Any]], json_path: Path | None) -> None:
    embedops = [name for name in results if name.startswith("embedops ")]
    rows = [[name, f"{r['vectors']:,}", f"{r['seconds']:.1f} s", f"{r['cpu_seconds']:.1f} s", f"{r['peak_rss_mb']:,} MiB",
             f"{r['recall_at_10']:.3f}", str(r["load_average"])] for name, r in results.items()]
    rep = Report("first_sync", {"docs": docs, **{k: {x: y for x, y in v.items()} for k, v in results.items()},
                                **{f"graph_insert_share {n}": round(results[n]["graph_insert_seconds"] / results[n]["seconds"], 3)
                                   for n in embedops}})
    for name in embedops:
        e = results[name]
        if "chroma" in results:
            c = results["chroma"]
            rep.checks.append(Check(f"{name}: first sync / Chroma add", e["seconds"] / c["seconds"], FIRST_SYNC_VS_CHROMA_MAX))
            rep.checks.append(Check(f"{name}: recall@10 - Chroma's", e["recall_at_10"] - c["recall_at_10"], 0.0,
                                    at_most=False))
        if docs >= 1_000_000:
            rep.checks.append(Check(f"{name}: 1M first sync", e["seconds"], MILLION_SYNC_MAX_S, " s"))
        share = e["graph_insert_seconds"] / e["seconds"]
        print(f"{name}: {e['documents']:,} documents, peak RSS {e.get('peak_rss_sync_mb')} MiB during the sync"
              f" (the table's figure includes exporting the vectors), graph inserts {e['graph_insert_seconds']:.1f} s"
              f" ({share:.0%} of the sync, overlapping the batches), {e['after_last_batch_s']:.1f} s after the last batch")
    rep.print(rows, ["system", "vectors", "wall (add/sync)", "CPU", "peak RSS", "recall@10", "load avg before/after"])
    if json_path:
        json_path.write_text(json.dumps(rep.figures, indent=1))


if __name__ == "__main__":
    main()
