"""Benchmark: adopting ``--rows`` vectors from a pgvector table (embedded PostgreSQL 18), and a refusal.

Another pipeline's table ``docs_embeddings(doc_id, content, embedding vector(384))``
is made with the `hashing` embedder (standing for the model that made it).
`embedops adopt` (200 sampled rows re-embedded, cosine >= 0.999) takes it over
into a fresh workspace (SQLite catalog, chunker `whole`): the figures are the
whole command's time and vectors per second, split into the sample check, the
storing of the vectors and the first sync, which must embed nothing.

Then a table embedded by another model of the same dimension
(`hashing:seed=7`) must be refused, with the measured similarity.

    .venv/bin/python bench/adopt_vectors.py                  # 100,000 vectors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, SentenceMaker, embedded_postgres_server, fmt_s, load_average, log  # noqa: E402

REFUSAL_ROWS = 2_000


def make_table(url: str, table: str, model: str, rows: int) -> float:
    """Fill ``table`` with ``rows`` texts and their vectors by ``model`` (COPY, binary vectors); seconds taken."""
    import numpy as np
    import psycopg
    from pgvector.psycopg import register_vector

    from embedops.embedding.registry import load_embedder

    maker, embedder = SentenceMaker(seed=5), load_embedder(model)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(f"CREATE TABLE {table} (doc_id int PRIMARY KEY, content text NOT NULL, embedding vector(384))")
        for start in range(0, rows, 5_000):
            texts = [" ".join(maker.document(maker.rng.randint(20, 50))) for _ in range(start, min(rows, start + 5_000))]
            vecs = embedder.embed(texts).astype(np.float32)
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "vector"])
                for i, (text, vec) in enumerate(zip(texts, vecs, strict=True)):
                    copy.write_row((start + i, text, vec))
            log(f"  {table}: {min(rows, start + 5_000):,} rows")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    with embedded_postgres_server("embedops-bench-adopt-") as (server, tmp):
        return bench(server, tmp, args.rows)


def bench(server: Any, tmp: Path, rows: int) -> int:
    import os

    import psycopg

    from embedops.adopt import AdoptInput, adopt
    from embedops.errors import AdoptRefused
    from embedops.workspace import Workspace

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE legacy")
    url = str(server.get_uri("legacy"))
    os.environ["LEGACY_DB_URL"] = url
    log(f"making {rows:,} vectors with hashing, {REFUSAL_ROWS:,} with hashing:seed=7 ...")
    made_s = make_table(url, "docs_embeddings", "hashing", rows)
    make_table(url, "other_model", "hashing:seed=7", REFUSAL_ROWS)

    def given(table: str) -> AdoptInput:
        return AdoptInput("sql", "embedding", {"url_env": "LEGACY_DB_URL", "table": table, "id_column": "doc_id",
                                               "text": "content"})

    ws = Workspace.init(tmp / "ws", embedder="hashing", chunker="whole")
    log("adopting ...")
    result = adopt(ws, "legacy", given("docs_embeddings"), embedder="hashing")
    assert result.sync is not None
    sync_s = float(result.sync["seconds"])
    log("adopting the other model's table (must be refused) ...")
    started = time.perf_counter()
    refused: AdoptRefused | None = None
    try:
        adopt(ws, "other", given("other_model"), embedder="hashing")
    except AdoptRefused as exc:
        refused = exc
    refusal_s = time.perf_counter() - started
    ws.close()
    check = result.check
    figures = {"rows": rows, "table_made_s": round(made_s, 1), "adopt_s": round(result.seconds, 2),
               "sync_s": round(sync_s, 2), "adopted": result.adopted, "sync_embedded": result.sync["embedded"],
               "sample": check.to_dict(), "refusal": refused.details.get("check") if refused else None,
               "refusal_s": round(refusal_s, 2)}
    report = Report("adopt_vectors", figures=figures)
    report.checks = [
        Check("adopted vectors", result.adopted, rows, at_most=False),
        Check("chunks embedded by the first sync", result.sync["embedded"], 0),
        Check("other model refused (1 = yes)", float(refused is not None), 1, at_most=False),
    ]
    other = refused.details["check"] if refused else {}
    table = [
        ["adopt (whole command)", fmt_s(result.seconds), f"{rows / result.seconds:,.0f} vectors/s"],
        ["  of which the first sync", fmt_s(sync_s), f"embedded {result.sync['embedded']}"],
        ["  sample check", f"{check.compared} rows", f"cosine min {check.min_cosine}, median {check.median_cosine}"],
        ["other model", fmt_s(refusal_s), f"refused: cosine min {other.get('min_cosine')},"
                                          f" median {other.get('median_cosine')}"],
    ]
    print(f"adopt_vectors: {rows:,} pgvector rows (384-d) into a SQLite catalog, chunker whole;"
          f" load average {load_average()}")
    report.print(table, ["step", "time", "figures"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
