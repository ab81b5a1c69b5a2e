"""Search latency at 100k and 1M vectors: ``Workspace.search(vector=...)`` vs raw usearch.

The vectors are drawn from a Gaussian with the mean and covariance of real
embeddings (SciFact chunks embedded by ``minilm-l3``), then L2-normalized, so
their spread matches real vectors without copying them. For each size the
script

1. bulk-loads documents, chunks, embeddings and vector rows straight into a
   fresh workspace's catalog (``executemany`` in large transactions; a sync
   through an embedder would take hours at 1M),
2. lets the workspace build its ANN index from the catalog and persist it
   (index build time, RSS delta and peak, file size),
3. reopens the workspace as a restarted server would (its ANN is loaded from
   the file, never rebuilt; load time reported) after reading the catalog file
   once into the OS page cache (a serving process keeps it there; the raw
   index is in memory by construction),
4. times single queries from a query *vector* to results with text and lineage
   tags through ``Workspace.search(vector=...)``, against the same usearch
   graph restored from the same file and searched alone with the same
   parameters (the workspace's M, ef_construction and ef_search: by default the one the
   workspace picks for the index's size), alternating query by
   query; wall clock and the thread's CPU time (robust on a busy machine),
5. measures recall@10 of both against exact (brute-force) search,
6. opens the workspace in a new process to check that the persisted ANN is
   loaded, not rebuilt (first-query time, including the load).

Query embedding time (``minilm-l3``, one SciFact query at a time) is reported
separately: it is the same with or without the workspace.

Usage (from the repository root)::

    .venv/bin/python bench/search_latency.py                      # 100k and 1M
    .venv/bin/python bench/search_latency.py --sizes 20000        # smoke test
    .venv/bin/python bench/search_latency.py --json out.json      # also write JSON
    .venv/bin/python bench/search_latency.py --sizes 1000000 --workdir /tmp/b --keep   # keep the workspace,
    .venv/bin/python bench/search_latency.py --sizes 1000000 --workdir /tmp/b --reuse  # then measure it again

The SciFact folder defaults to ``../shared/data/scifact`` relative to the
repository root (``--data``); the embedding statistics are cached in the
temporary directory (``--stats-cache``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedops.vectors.ann import HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
EMBEDDER = "minilm-l3"
ALIAS = "prod"
CHUNKS_PER_DOC = 4  # SciFact averages ~4 structured chunks per abstract
LOAD_BATCH = 50_000
SYNC_BATCH = 256  # a real sync stamps embedded_at once per batch of this many chunks
GEN_BATCH = 100_000


# -- process memory -------------------------------------------------------------
def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_mib() -> float:
    return _status_kib("VmHWM") / 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs``); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def percentiles_us(samples_ns: Sequence[int], cpu_ns: Sequence[int] | None = None) -> dict[str, float]:
    """Wall-clock percentiles; with ``cpu_ns``, also the p50 of the thread's CPU time
    (the work itself, which other processes on a busy machine do not inflate)."""
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e3
    out = {
        "p50_us": round(float(np.percentile(arr, 50)), 1),
        "p90_us": round(float(np.percentile(arr, 90)), 1),
        "p99_us": round(float(np.percentile(arr, 99)), 1),
        "mean_us": round(float(arr.mean()), 1),
    }
    if cpu_ns is not None:
        out["cpu_p50_us"] = round(float(np.percentile(np.asarray(cpu_ns, dtype=np.float64) / 1e3, 50)), 1)
    return out


# -- real embedding statistics --------------------------------------------------
@dataclass
class Corpus:
    """SciFact chunk texts (for realistic row sizes) and their embedding statistics."""

    texts: list[str]
    titles: list[str]
    mean: np.ndarray
    cov: np.ndarray
    queries: list[str]


def scifact_chunks(data: Path) -> tuple[list[str], list[str], list[str]]:
    """Chunk texts, their document titles, and query texts, chunked as a workspace would."""
    from embedops.chunking.registry import make_chunker
    from embedops.embedding.registry import load_embedder
    from embedops.sources.base import Document
    from embedops.sources.beir import BeirSource

    embedder = load_embedder(EMBEDDER)
    chunker = make_chunker("structured", {}, count_tokens=embedder.count_tokens, tokenizer_name=embedder.tokenizer_name)
    texts: list[str] = []
    titles: list[str] = []
    for item in BeirSource("scifact", data).scan({}):
        if isinstance(item, Document):
            for chunk in chunker.chunk(item.text, item.metadata):
                texts.append(chunk.text)
                titles.append(str(item.metadata.get("title", "")))
    with (data / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = [json.loads(line)["text"] for line in fh if line.strip()]
    return texts, titles, queries


def load_corpus(data: Path, sample: int, cache: Path | None) -> Corpus:
    """Embed ``sample`` random SciFact chunks with minilm-l3 and take their mean and covariance."""
    texts, titles, queries = scifact_chunks(data)
    if cache is not None and cache.exists():
        stats = np.load(cache)
        if int(stats["sample"]) == sample and int(stats["chunks"]) == len(texts):
            print(f"embedding statistics: cached in {cache}", flush=True)
            return Corpus(texts, titles, stats["mean"], stats["cov"], queries)
    from embedops.embedding.registry import load_embedder

    picked = random.Random(0).sample(texts, min(sample, len(texts)))
    started = time.perf_counter()
    vectors = load_embedder(EMBEDDER).embed(picked).astype(np.float64)
    print(f"embedded {len(picked)} SciFact chunks with {EMBEDDER} in {time.perf_counter() - started:.1f} s", flush=True)
    mean, cov = vectors.mean(axis=0), np.cov(vectors, rowvar=False)
    if cache is not None:
        np.savez(cache, mean=mean, cov=cov, sample=sample, chunks=len(texts))
    return Corpus(texts, titles, mean, cov, queries)


def query_embedding_latency(queries: list[str], n: int) -> dict[str, float]:
    """Single-query minilm-l3 embedding time (what a text query adds on top of the vector search)."""
    from embedops.embedding.registry import load_embedder

    embedder = load_embedder(EMBEDDER)
    for text in queries[:10]:
        embedder.embed([text])
    samples = []
    for text in queries[:n]:
        started = time.perf_counter_ns()
        embedder.embed([text])
        samples.append(time.perf_counter_ns() - started)
    return {"queries": len(samples), **percentiles_us(samples)}


# -- synthetic vectors ------------------------------------------------------------
def gaussian_sampler(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """A factor A with A @ A.T == cov (eigendecomposition: the covariance is near-singular)."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    factor: np.ndarray = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))).astype(np.float32)
    return factor


def gaussian_vectors(mean: np.ndarray, factor: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n unit vectors: Gaussian draws with the real mean and covariance, L2-normalized."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(mean)), dtype=np.float32)
    mu = mean.astype(np.float32)
    for lo in range(0, n, GEN_BATCH):
        hi = min(n, lo + GEN_BATCH)
        block = rng.standard_normal((hi - lo, len(mean)), dtype=np.float32) @ factor.T + mu
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[lo:hi] = block
    return out


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of the exact top-k by cosine (vectors are unit length)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), 64):
        scores = queries[lo : lo + 64] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[lo : lo + 64] = np.take_along_axis(top, order, axis=1)
    return out


# -- bulk loading the catalog -------------------------------------------------------
_DOC_SQL = (
    "INSERT INTO documents (id, source_id, external_id, content_hash, text, signature, metadata,"
    " source_updated_at, ingested_at, deleted_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)"
)
_CHUNK_SQL = (
    'INSERT INTO chunks (id, document_id, chunker_key, ordinal, text, start, "end", content_hash)'
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_EMB_SQL = "INSERT INTO embeddings (space_key, content_hash, vector, embedded_at) VALUES (?, ?, ?, ?)"
_VEC_SQL = (
    "INSERT INTO vectors (seq, index_id, chunk_id, content_hash, space_key, chunker_key, source_version, embedded_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _batch_rows(
    lo: int, hi: int, vectors: np.ndarray, corpus: Corpus, index: Any, source_id: int, now: float
) -> tuple[list[tuple[Any, ...]], ...]:
    """Catalog rows for chunks lo..hi-1: chunk i has id i+1, vector seq i+1, document i // CHUNKS_PER_DOC + 1."""
    docs, chunks, embs, vecs = [], [], [], []
    for first in range(lo, hi, CHUNKS_PER_DOC):
        ids = range(first, min(hi, first + CHUNKS_PER_DOC))
        parts = [corpus.texts[i % len(corpus.texts)] for i in ids]
        doc_id = first // CHUNKS_PER_DOC + 1
        doc_text = "\n\n".join(parts)
        doc_hash = _digest(f"{doc_id}:{doc_text}")
        updated = now - (doc_id % 86_400) * 60.0
        title = corpus.titles[first % len(corpus.titles)]
        docs.append((doc_id, source_id, f"syn-{doc_id}", doc_hash, doc_text, json.dumps({"title": title}), updated, now))
        offset = 0
        for ordinal, (i, text) in enumerate(zip(ids, parts, strict=True)):
            chash = f"{i:032x}"  # unique per chunk: every synthetic vector is distinct
            embedded = now + i // SYNC_BATCH * 0.5
            chunks.append((i + 1, doc_id, index.chunker_key, ordinal, text, offset, offset + len(text), chash))
            embs.append((index.space_key, chash, vectors[i].tobytes(), embedded))
            vecs.append((i + 1, index.id, i + 1, chash, index.space_key, index.chunker_key, doc_hash, embedded))
            offset += len(text) + 2
    return docs, chunks, embs, vecs


def bulk_load(ws: Any, index: Any, vectors: np.ndarray, corpus: Corpus) -> float:
    """Write documents, chunks, embeddings and vector rows for ``vectors``; returns seconds.

    Row ids are assigned explicitly (chunk i ↔ vector row i ↔ ``vectors[i]``) so
    recall can be scored from ``SearchResult.chunk_id``. One ledger row records
    the load, in the first batch's transaction.
    """
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.catalog.ledger import write_ledger

    started = time.perf_counter()
    now = time.time()
    with ws.engine.begin() as conn:
        result = conn.execute(sa.insert(schema.sources).values(
            name="bench-synthetic", kind="jsonl", config={"path": "(generated by bench/search_latency.py)"}, created_at=now))
        source_id = int(result.inserted_primary_key[0])
        write_ledger(conn, "bench.bulk_load", index=index.id, vectors=len(vectors))
    for lo in range(0, len(vectors), LOAD_BATCH):
        rows = _batch_rows(lo, min(len(vectors), lo + LOAD_BATCH), vectors, corpus, index, source_id, now)
        with ws.engine.begin() as conn:
            for sql, batch in zip((_DOC_SQL, _CHUNK_SQL, _EMB_SQL, _VEC_SQL), rows, strict=True):
                conn.exec_driver_sql(sql, batch)
    return time.perf_counter() - started


def make_workspace(root: Path, vectors: np.ndarray, corpus: Corpus) -> tuple[Any, Any, float]:
    """A fresh minilm-l3 workspace whose ``prod`` alias serves an index holding ``vectors``."""
    from embedops.workspace import Workspace

    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.init(root, embedder=EMBEDDER)
    embedder, chunker = ws.configured_target()
    with ws.engine.begin() as conn:
        index = ws.create_index(conn, EMBEDDER, embedder, chunker)
        ws.set_alias(conn, ALIAS, index.id)
    return ws, index, bulk_load(ws, index, vectors, corpus)


# -- measurements -------------------------------------------------------------------
@dataclass
class SizeReport:
    vectors: int
    dims: int
    load_s: float = 0.0
    db_mib: float = 0.0
    build: dict[str, Any] = field(default_factory=dict)
    workspace: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    ratio_p50: float = 0.0
    ratio_p99: float = 0.0
    ef_sweep: list[dict[str, Any]] = field(default_factory=list)
    reload: dict[str, Any] = field(default_factory=dict)
    stamp_ms: float = 0.0
    ratio_cpu_p50: float = 0.0
    load_average: list[float] = field(default_factory=list)
    reused: bool = False
    warm_s: float = 0.0
    ann_load_s: float = 0.0
    ef_search: int | None = None


def build_ann(ws: Any, index: Any) -> dict[str, Any]:
    """Let the workspace build its ANN from the catalog, then persist it; time and memory."""
    gc.collect()
    rss0 = rss_mib()
    peak_ok = reset_peak()
    cpu, started = time.process_time(), time.perf_counter()
    ann = ws.store.refresh(index)
    built, built_cpu = time.perf_counter() - started, time.process_time() - cpu
    rss1 = rss_mib()
    peak = peak_mib()
    started = time.perf_counter()
    info = ws.store.flush(index)
    saved = time.perf_counter() - started
    files = [ann.path, ann.meta_path]
    return {
        "build_s": round(built, 2),
        "build_cpu_s": round(built_cpu, 2),  # all threads; what the build costs whatever else runs
        "save_s": round(saved, 2),
        "mode": info["mode"],
        "rebuilds": info["rebuilds"],
        "rss_delta_mib": round(rss1 - rss0, 1),
        "peak_delta_mib": round(peak - rss0, 1) if peak_ok else None,
        "file_mib": round(sum(p.stat().st_size for p in files if p.exists()) / 2**20, 1),
    }


def raw_index(path: Path, ef_search: int) -> Any:
    """The workspace's own usearch graph, restored and searched with nothing around it."""
    from usearch.index import Index

    raw: Any = Index.restore(str(path))  # Any: usearch's property setters are invisible to mypy
    assert raw is not None, f"cannot restore {path}"
    raw.expansion_search = ef_search
    return raw


def recall(found: Sequence[Sequence[int]], truth: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / (k * len(truth)), 4)


def _timed(call: Any, wall: list[int], cpu: list[int]) -> Any:
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    out = call()
    wall.append(time.perf_counter_ns() - wall0)
    cpu.append(time.thread_time_ns() - cpu0)
    return out


def compare(ws: Any, raw: Any, queries: np.ndarray, truth: np.ndarray, k: int, warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Alternate query by query between the workspace and raw usearch; latency and recall of each.

    Which side goes first is drawn per query: on a busy machine the second call
    of a pair tends to run late in its time slice, and a fixed order would bias it.
    """
    for q in queries[:warmup]:
        ws.search(vector=q, k=k)
        raw.search(q, k)
    coin = random.Random(1)
    ws_ns: list[int] = []
    raw_ns: list[int] = []
    ws_cpu: list[int] = []
    raw_cpu: list[int] = []
    ws_found: list[list[int]] = []
    raw_found: list[list[int]] = []
    for q in queries:
        if coin.random() < 0.5:
            results = _timed(lambda: ws.search(vector=q, k=k), ws_ns, ws_cpu)
            matches = _timed(lambda: raw.search(q, k), raw_ns, raw_cpu)
        else:
            matches = _timed(lambda: raw.search(q, k), raw_ns, raw_cpu)
            results = _timed(lambda: ws.search(vector=q, k=k), ws_ns, ws_cpu)
        assert results and results[0].text and results[0].tags["space"], "results must carry text and tags"
        ws_found.append([r.chunk_id - 1 for r in results])
        raw_found.append([int(key) - 1 for key in matches.keys])
    ws_stats = {"queries": len(queries), **percentiles_us(ws_ns, ws_cpu), "recall_at_k": recall(ws_found, truth, k)}
    raw_stats = {"queries": len(queries), **percentiles_us(raw_ns, raw_cpu), "recall_at_k": recall(raw_found, truth, k)}
    return ws_stats, raw_stats


def ef_sweep(raw: Any, queries: np.ndarray, truth: np.ndarray, k: int, efs: Sequence[int]) -> list[dict[str, Any]]:
    """Recall and latency of the raw graph at other ef_search values (what ≥ 0.95 recall costs)."""
    out = []
    for ef in efs:
        raw.expansion_search = ef
        samples, found = [], []
        for q in queries:
            started = time.perf_counter_ns()
            matches = raw.search(q, k)
            samples.append(time.perf_counter_ns() - started)
            found.append([int(key) - 1 for key in matches.keys])
        out.append({"ef_search": ef, **percentiles_us(samples), "recall_at_k": recall(found, truth, k)})
    return out


def stamp_cost(ws: Any, index: Any, repeat: int = 20) -> float:
    """Milliseconds of the catalog check an ANN refresh runs after a commit (COUNT and MAX seqs)."""
    ann = ws.store.ann(index)
    raw = ws.store.raw().driver_connection
    started = time.perf_counter()
    for _ in range(repeat):
        ann.stamp(raw)
    return round((time.perf_counter() - started) / repeat * 1e3, 3)


_RELOAD_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from embedops.workspace import Workspace
import numpy as np
ws = Workspace.open(sys.argv[1])
opened = time.perf_counter() - t0
q = np.load(sys.argv[2])
t1 = time.perf_counter()
first = ws.search(vector=q[0], k=10)
first_s = time.perf_counter() - t1
index = ws.searcher.resolve("prod")
ann = ws.store.ann(index)
lat = []
for v in q[1:]:
    s = time.perf_counter_ns(); ws.search(vector=v, k=10); lat.append(time.perf_counter_ns() - s)
print(json.dumps({"open_s": opened, "first_query_s": first_s, "mode": ann.mode, "rebuilds": ann.rebuilds,
                  "vectors": len(ann), "ef_search": ann._hnsw.expansion_search if ann.mode == "hnsw" else None, "p50_us": float(np.percentile(lat, 50)) / 1e3}))
"""


def reload_check(root: Path, queries: np.ndarray, workdir: Path) -> dict[str, Any]:
    """Open the workspace in a fresh process: the ANN must be loaded from its file, not rebuilt."""
    qfile = workdir / "reload-queries.npy"
    np.save(qfile, queries[:101])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", _RELOAD_CHILD, str(root), str(qfile)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reload check failed:\n{done.stderr}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: round(val, 4) if isinstance(val, float) else val for key, val in out.items()}


def warm_page_cache(root: Path) -> float:
    """Read the catalog file once, as a server that has been answering queries holds it in the OS
    page cache; raw usearch is in memory by construction. Returns seconds."""
    started = time.perf_counter()
    for path in (root / ".embedops").glob("catalog.db*"):
        with path.open("rb", buffering=0) as fh:
            while fh.read(64 * 2**20):
                pass
    return round(time.perf_counter() - started, 1)


def build_workspace(n: int, root: Path, vectors: np.ndarray, corpus: Corpus, report: SizeReport) -> None:
    """Bulk-load the catalog, then let the workspace build and persist its ANN."""
    ws, index, load_s = make_workspace(root, vectors, corpus)
    report.load_s = round(load_s, 1)
    print(f"[{n}] bulk load {report.load_s} s", flush=True)
    report.build = build_ann(ws, index)
    print(f"[{n}] ANN build {report.build}", flush=True)
    ws.close()


def open_workspace(n: int, root: Path, report: SizeReport) -> tuple[Any, Any]:
    """Reopen the workspace as a restarted server would: the first search loads the ANN file."""
    from embedops.workspace import Workspace

    report.warm_s = warm_page_cache(root)
    ws = Workspace.open(root)
    index = ws.searcher.resolve(ALIAS)
    started = time.perf_counter()
    ann = ws.store.refresh(index)
    report.ann_load_s = round(time.perf_counter() - started, 2)
    assert ann.mode == "hnsw" and ann.rebuilds == 0, f"the ANN of {root} was rebuilt, not loaded"
    print(f"[{n}] catalog read into page cache in {report.warm_s} s; ANN loaded in {report.ann_load_s} s", flush=True)
    return ws, index


def run_size(n: int, corpus: Corpus, args: argparse.Namespace, workdir: Path) -> SizeReport:
    factor = gaussian_sampler(corpus.mean, corpus.cov)
    vectors = gaussian_vectors(corpus.mean, factor, n, seed=args.seed)
    queries = gaussian_vectors(corpus.mean, factor, args.queries, seed=args.seed + 1)
    report = SizeReport(vectors=n, dims=vectors.shape[1])
    root = workdir / f"ws-{n}"
    if args.reuse and (root / ".embedops" / "ann").is_dir():
        report.reused = True
        print(f"[{n}] reusing {root} (no bulk load, no ANN build)", flush=True)
    else:
        build_workspace(n, root, vectors, corpus, report)
    report.db_mib = round(sum(p.stat().st_size for p in (root / ".embedops").glob("catalog.db*")) / 2**20, 1)
    truth = exact_top_k(vectors, queries, args.k)
    del vectors
    gc.collect()
    ws, index = open_workspace(n, root, report)
    ann = ws.store.ann(index)
    ann.set_expansion_search(args.ef_search)  # None: the workspace's default for this size
    report.ef_search = ann.ef_search
    raw = raw_index(ann.path, report.ef_search)  # the same ef on both sides
    print(f"[{n}] ef_search {report.ef_search}", flush=True)
    report.workspace, report.raw = compare(ws, raw, queries, truth, args.k, args.warmup)
    report.ratio_p50 = round(report.workspace["p50_us"] / report.raw["p50_us"], 3)
    report.ratio_p99 = round(report.workspace["p99_us"] / report.raw["p99_us"], 3)
    report.ratio_cpu_p50 = round(report.workspace["cpu_p50_us"] / report.raw["cpu_p50_us"], 3)
    report.load_average = [round(x, 2) for x in os.getloadavg()]
    print(f"[{n}] workspace {report.workspace}\n[{n}] raw usearch {report.raw}\n[{n}] p50 ratio {report.ratio_p50}"
          f" (CPU {report.ratio_cpu_p50}), load average {report.load_average}", flush=True)
    report.stamp_ms = stamp_cost(ws, index)
    if args.ef_sweep:
        report.ef_sweep = ef_sweep(raw, queries[: args.sweep_queries], truth[: args.sweep_queries], args.k, args.ef_sweep)
        print(f"[{n}] ef sweep {report.ef_sweep}", flush=True)
    del raw
    ws.close()
    gc.collect()
    report.reload = reload_check(root, queries, workdir)
    print(f"[{n}] reload {report.reload}", flush=True)
    if not args.keep:
        shutil.rmtree(root)
    return report


# -- output ---------------------------------------------------------------------------
def _build_cells(r: SizeReport) -> str:
    if not r.build:
        return "(reused) | | "
    b = r.build
    return f"{b['build_s']:.0f} ({b['build_cpu_s']:.0f} CPU) | {b['rss_delta_mib']:.0f} / {b['peak_delta_mib']} | {b['file_mib']:.0f}"


def markdown(reports: list[SizeReport], query_embed: dict[str, float], args: argparse.Namespace) -> str:
    lines = [
        f"k={args.k}, {args.queries} queries per size, M={HNSW_CONNECTIVITY}, ef_construction={HNSW_EXPANSION_ADD},"
        f" ef_search={args.ef_search or 'the default for each size'};"
        f" query embedding ({EMBEDDER}, one query): p50 {query_embed['p50_us'] / 1e3:.2f} ms,"
        f" p99 {query_embed['p99_us'] / 1e3:.2f} ms",
        "",
        "| vectors | ef_search | workspace p50 / p99 (µs) | raw usearch p50 / p99 (µs) | p50 ratio wall (CPU) | recall@10 ws / raw"
        " | ANN build s | RSS Δ / peak Δ MiB | ANN file MiB | ANN load s (new process: first query s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        lines.append(
            f"| {r.vectors:,} | {r.ef_search} | {r.workspace['p50_us']:.0f} / {r.workspace['p99_us']:.0f}"
            f" | {r.raw['p50_us']:.0f} / {r.raw['p99_us']:.0f} | {r.ratio_p50:.2f} ({r.ratio_cpu_p50:.2f})"
            f" | {r.workspace['recall_at_k']:.3f} / {r.raw['recall_at_k']:.3f} | {_build_cells(r)}"
            f" | {r.ann_load_s:.2f} ({r.reload['first_query_s']:.2f}, rebuilds: {r.reload['rebuilds']}) |"
        )
    lines.append("")
    for r in reports:
        latency = "pass" if r.ratio_p50 <= 1.5 else "FAIL"
        recalled = "pass" if r.workspace["recall_at_k"] >= 0.95 else "FAIL"
        lines.append(f"{r.vectors:,} vectors: p50 {r.ratio_p50:.2f}x raw usearch (target <= 1.5: {latency}),"
                     f" recall@10 {r.workspace['recall_at_k']:.3f} (target >= 0.95: {recalled})")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts (default 100000,1000000)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder (corpus.jsonl, queries.jsonl)")
    p.add_argument("--stats-sample", type=int, default=3000, help="SciFact chunks embedded for the mean/covariance")
    p.add_argument("--stats-cache", type=Path, default=Path(tempfile.gettempdir()) / "embedops-bench-scifact-stats.npz")
    p.add_argument("--queries", type=int, default=1000, help="query vectors per size")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ef-search", type=int, default=None,
                   help="HNSW ef_search, for the workspace and raw usearch alike (default: the workspace's"
                        " default for the index's size)")
    p.add_argument("--ef-sweep", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                   help="also measure the raw graph at these ef_search values, e.g. 256,512")
    p.add_argument("--sweep-queries", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="where the workspaces go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the workspaces")
    p.add_argument("--reuse", action="store_true",
                   help="measure a workspace kept by an earlier --keep run in --workdir (same --seed): no load, no build")
    p.add_argument("--json", type=Path, default=None, help="write all figures as JSON here")
    return p.parse_args(argv)


@dataclass
class Run:
    query_embedding: dict[str, float]
    sizes: list[SizeReport]
    machine: dict[str, Any]


def machine() -> dict[str, Any]:
    import usearch

    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "usearch": usearch.__version__,
            "numpy": np.__version__}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    corpus = load_corpus(args.data, args.stats_sample, args.stats_cache)
    query_embed = query_embedding_latency(corpus.queries, 300)
    print(f"query embedding ({EMBEDDER}): {query_embed}", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="embedops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    reports = [run_size(n, corpus, args, workdir) for n in sizes]
    print()
    print(markdown(reports, query_embed, args))
    if args.json:
        run = Run(query_embed, reports, machine())
        args.json.write_text(json.dumps(asdict(run), indent=2))
    if args.workdir is None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
