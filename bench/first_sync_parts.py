"""The parts of a first sync measured alone: the figures behind docs/scale.md#first-sync-throughput.

Three parts, each comparing the way embedops does it now with the way before (or with its
alternatives), side by side in this process:

- ``fts``: chunk rows written into a catalog's ``chunks`` table (its FTS5 insert trigger in
  place), in transactions of ``--batch`` rows: one ``executemany`` (a statement, hence a savepoint
  and an FTS5 segment, per row) against ``catalog.db.insert_rows`` (multi-row VALUES statements);
  CPU seconds, and the ratio.
- ``graph``: a usearch HNSW graph (the store's parameters for its size, two threads) built from
  ``--graph-n`` ``hashing`` vectors of generated texts, for each precision (``f32``, ``f16``,
  ``i8``, encoded as the storage variants encode them); CPU seconds, and the ratio to ``f32``.
- ``curation``: what a curator holds per document after deciding ``--curation-docs`` generated
  documents (tracemalloc, after a warm-up so that imports are not counted): its duplicate index
  and its decisions.

Usage (from the repository root)::

    PYTHONPATH=src .venv/bin/python bench/first_sync_parts.py
    PYTHONPATH=src .venv/bin/python bench/first_sync_parts.py --parts graph --graph-n 135000
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SentenceMaker, load_average  # noqa: E402


def texts(n: int, words: tuple[int, int], seed: int = 0) -> list[str]:
    maker = SentenceMaker(seed=seed)
    return [" ".join(maker.document(maker.rng.randint(*words))) for _ in range(n)]


def part_fts(rows: int, batch: int) -> None:
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.catalog.db import insert_rows
    from embedops.catalog.fts import create_fts

    chunk_texts = texts(rows, (60, 140))
    seconds = {}
    for mode in ("executemany", "insert_rows"):
        with tempfile.TemporaryDirectory() as tmp:
            engine = sa.create_engine(f"sqlite:///{tmp}/catalog.db")  # no foreign keys: chunks without documents
            schema.metadata.create_all(engine)
            with engine.begin() as conn:
                create_fts(conn)
            cpu = time.process_time()
            for lo in range(0, rows, batch):
                part = [{"id": lo + i + 1, "document_id": lo + i + 1, "chunker_key": "bench", "ordinal": 0, "text": text,
                         "start": 0, "end": len(text), "content_hash": f"{lo + i:064x}", "metadata": {}}
                        for i, text in enumerate(chunk_texts[lo : lo + batch])]
                with engine.begin() as conn:
                    if mode == "executemany":
                        conn.execute(schema.chunks.insert(), part)
                    else:
                        insert_rows(conn, schema.chunks, part)
            seconds[mode] = time.process_time() - cpu
            with engine.connect() as conn:
                indexed = conn.exec_driver_sql("SELECT count(*) FROM chunks_fts_docsize").scalar_one()
            assert indexed == rows, f"{mode}: {indexed} rows in the full-text index, {rows} written"
            engine.dispose()
        print(f"fts: {rows:,} chunk rows, batches of {batch}, {mode}: {seconds[mode]:.2f} CPU-s", flush=True)
    print(f"fts: executemany / insert_rows = {seconds['executemany'] / seconds['insert_rows']:.2f}x", flush=True)


def part_graph(n: int) -> None:
    import numpy as np

    from embedops.embedding.registry import load_embedder
    from embedops.vectors.ann import hnsw_params, usearch_index
    from embedops.vectors.storage import Codec, StorageSpec

    vectors = load_embedder("hashing").embed(texts(n, (40, 110), seed=1))
    keys = np.arange(n, dtype=np.uint64)
    connectivity, expansion_add = hnsw_params(n)
    Index = usearch_index()
    seconds = {}
    for precision in ("f32", "f16", "i8"):
        codec = Codec(StorageSpec(precision=precision), vectors.shape[1])  # type: ignore[arg-type]
        encoded = codec.ann_vectors(vectors)
        graph = Index(ndim=codec.ndim, metric=codec.usearch_metric, dtype=codec.usearch_dtype,
                      connectivity=connectivity, expansion_add=expansion_add)
        wall, cpu = time.perf_counter(), time.process_time()
        for lo in range(0, n, 20_000):  # the store's blocks
            graph.add(keys[lo : lo + 20_000], encoded[lo : lo + 20_000], threads=0)
        seconds[precision] = time.process_time() - cpu
        print(f"graph: {n:,} hashing vectors, M={connectivity}, ef_construction={expansion_add}, {precision}:"
              f" {seconds[precision]:.1f} CPU-s, {time.perf_counter() - wall:.1f} s wall", flush=True)
    print("graph: CPU relative to f32: " + ", ".join(f"{p} {seconds[p] / seconds['f32']:.2f}" for p in seconds), flush=True)


def part_curation(n: int) -> None:
    from embedops.curate.curator import CurationDocument, Curator
    from embedops.curate.settings import CurateSettings

    class Empty:
        def curated_documents(self) -> list[object]:
            return []

    docs = texts(n + 50, (60, 140), seed=2)
    settings = CurateSettings(enabled=True)
    Curator(settings, Empty()).plan([CurationDocument(f"w{i}", t) for i, t in enumerate(docs[:50])], [], lambda keys: [])
    curator = Curator(settings, Empty())
    _ = curator.index
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    todo = [CurationDocument(f"1:doc{i:08d}", text, 0.0, {"language": "en"}) for i, text in enumerate(docs[50:])]
    plan = curator.plan(todo, [], lambda keys: [])
    del todo, docs
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"curation: {n:,} documents ({len(plan.kept):,} kept): {held / n:,.0f} bytes held per document"
          f" (duplicate index and decisions), {time.perf_counter() - started:.1f} s under tracemalloc", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="fts,graph,curation")
    p.add_argument("--fts-rows", type=int, default=30_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--graph-n", type=int, default=50_000)
    p.add_argument("--curation-docs", type=int, default=5_000)
    args = p.parse_args()
    print(f"load average {load_average()}", flush=True)
    parts = args.parts.split(",")
    if "fts" in parts:
        part_fts(args.fts_rows, args.batch)
    if "graph" in parts:
        part_graph(args.graph_n)
    if "curation" in parts:
        part_curation(args.curation_docs)
    print(f"load average {load_average()}", flush=True)


if __name__ == "__main__":
    main()
