"""Benchmark: SciFact synced through an OpenAI-compatible server vs the same model in process.

Three fresh workspaces embed the SciFact corpus (BEIR, ``structured`` chunker)
with all-MiniLM-L6-v2:

1. ``minilm-l6`` in process (sentence-transformers);
2. ``[embedders.inf]``: the same model served by infinity (``infinity_emb v2``,
   from ``.venv-infinity``) on loopback, reached through ``FaultProxy`` with no
   fault (it only counts what the server's ``usage`` said);
3. the same, with faults: 20% 429 (``Retry-After: 1``), 5% 500, 2% answers
   slower than the timeout, 1% dropped connections.

Checks: the HTTP sync's wall time <= 1.3x the in-process one; nDCG@10 (the
test split's 300 queries, ``eval import`` + ``eval run``) within 0.005; the
embedder's requests equal the server's own count of answered requests (its
Prometheus metrics) and its tokens equal the sum of the server's ``usage``;
the faulty sync completes with 0 missing and 0 duplicate vectors, its retries
equal the faults injected; its time overhead is reported.

    .venv/bin/python bench/http_embedder.py --data ../shared/data/scifact
    .venv/bin/python bench/http_embedder.py --data DIR --limit 300   # smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, fmt_s, load_average, log, timed  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "src"))

RATIO_MAX = 1.3
NDCG_TOLERANCE = 0.005
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
FAULTS = {"rate_429": 0.20, "retry_after": "1", "rate_500": 0.05, "rate_slow": 0.02, "rate_drop": 0.01, "seed": 1}
CLIENT = {"max_batch_size": 64, "max_concurrency": 2, "timeout": 60.0, "max_retries": 10}


def subset(data: Path, limit: int | None, work: Path) -> Path:
    """``data`` itself, or a BEIR folder (in ``work``) with its first ``limit`` documents."""
    if limit is None:
        return data
    out = work / "data"
    (out / "qrels").mkdir(parents=True)
    with (data / "corpus.jsonl").open("rb") as src, (out / "corpus.jsonl").open("wb") as dst:
        ids = set()
        for _, line in zip(range(limit), src):
            dst.write(line)
            ids.add(json.loads(line)["_id"])
    shutil.copy(data / "queries.jsonl", out / "queries.jsonl")
    lines = (data / "qrels" / "test.tsv").read_text().splitlines()
    kept = [lines[0]] + [row for row in lines[1:] if row.split("\t")[1] in ids]
    (out / "qrels" / "test.tsv").write_text("\n".join(kept) + "\n")
    return out


def workspace(root: Path, data: Path, embedder: str, section: dict[str, Any] | None = None) -> Any:
    import tomli_w

    from embedops.workspace import Workspace

    root.mkdir(parents=True)
    if section is not None:
        (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"inf": section}}))
    ws = Workspace.init(root, embedder=embedder)
    ws.add_source("scifact", data, kind="beir")
    return ws


def sync_and_evaluate(ws: Any, data: Path, label: str, *, on_sync: Any = None) -> dict[str, Any]:
    """Sync (timed, after the model is loaded and its first index exists), then eval import + run."""
    from embedops.evaluate.runner import run_evalset
    from embedops.evaluate.store import import_evalset

    ws.embedder(ws.settings.embedder).embed(["warm-up: the model is loaded and has run once"])
    before = on_sync() if on_sync else None
    with timed() as t:
        result = ws.sync()
    after = on_sync() if on_sync else None
    log(f"  {label}: synced {result.counts.added} documents, embedded {result.counts.embedded} chunks in"
        f" {fmt_s(t.seconds)} (load {load_average()})")
    import_evalset(ws, "scifact", data, split="test")
    run = run_evalset(ws, "scifact", k=10)
    return {"seconds": round(t.seconds, 2), "cpu_seconds": round(t.cpu_seconds, 2), "documents": result.counts.added,
            "embedded": result.counts.embedded, "skipped": len(result.counts.skipped),
            "ndcg@10": round(run.metrics["ndcg@10"], 4), "before": before, "after": after}


def vector_integrity(ws: Any) -> dict[str, int]:
    """Live chunks without a vector, and chunks with more than one, in the served index."""
    import sqlalchemy as sa

    from embedops.catalog import schema

    c, d, v = schema.chunks, schema.documents, schema.vectors
    with ws.engine.connect() as conn:
        [index] = ws.indexes(conn, "active")
        live = set(conn.execute(sa.select(c.c.id).join(d, d.c.id == c.c.document_id)
                                .where(d.c.deleted_at.is_(None), c.c.chunker_key == index.chunker_key)).scalars())
        rows = conn.execute(sa.select(v.c.chunk_id).where(v.c.index_id == index.id)).scalars().all()
    return {"live_chunks": len(live), "vectors": len(rows), "missing": len(live - set(rows)),
            "duplicates": len(rows) - len(set(rows)), "stray": len(set(rows) - live)}


def http_run(ws: Any, data: Path, label: str, proxy: Any, server: Any) -> dict[str, Any]:
    embedder = ws.embedder("inf")

    def snapshot() -> dict[str, Any]:
        return {"usage": embedder.usage, "served": server.embeddings_served(),
                "proxy": (proxy.stats.requests, proxy.stats.delivered_tokens, sum(proxy.stats.injected.values())),
                "injected": dict(proxy.stats.injected)}

    faults = dict(proxy.faults.__dict__)
    out = sync_and_evaluate(ws, data, label, on_sync=snapshot)
    before, after = out.pop("before"), out.pop("after")
    spent = after["usage"] - before["usage"]
    out.update({
        "requests": spent.requests, "failed_requests": spent.failed_requests, "retries": spent.retries,
        "retry_causes": spent.retry_causes, "tokens": spent.tokens, "estimated_tokens": spent.estimated_tokens,
        "server_answered": after["served"] - before["served"],
        "proxy_requests": after["proxy"][0] - before["proxy"][0],
        "server_usage_tokens": after["proxy"][1] - before["proxy"][1],
        "injected": {k: n - before["injected"].get(k, 0) for k, n in after["injected"].items()
                     if n != before["injected"].get(k, 0)},
        "integrity": vector_integrity(ws), "faults": faults,
    })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, help="only the first N documents (smoke test)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    from tests.http_doubles import SERVED_MODEL, FaultProxy, InfinityServer

    work = Path(tempfile.mkdtemp(prefix="embedops-bench-http-"))
    data = subset(args.data.resolve(), args.limit, work)
    server = InfinityServer(work / "infinity.log", warmup=True)
    log(f"infinity ready in {fmt_s(server.startup_seconds)} on {server.url}")
    proxy = FaultProxy(server.url)
    section = {"kind": "openai", "model": SERVED_MODEL, "base_url": proxy.url, "tokenizer": "bert-base-uncased",
               "dimensions": 384, **CLIENT}
    try:
        local = sync_and_evaluate(workspace(work / "local", data, "minilm-l6"), data, "minilm-l6 in process")
        clean = http_run(workspace(work / "http", data, "inf", section), data, "infinity over HTTP", proxy, server)
        proxy.set(**FAULTS, slow_seconds=CLIENT["timeout"] + 2.0)
        faulty = http_run(workspace(work / "faulty", data, "inf", section), data, "infinity + faults", proxy, server)
    finally:
        proxy.stop()
        server.stop()
    report = build_report(local, clean, faulty, server.startup_seconds, args.limit)
    if args.json_out:
        args.json_out.write_text(json.dumps(report.figures, indent=2, default=str) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if report.ok else 1


def build_report(local: dict[str, Any], clean: dict[str, Any], faulty: dict[str, Any], startup: float,
                 limit: int | None) -> Report:
    report = Report("http_embedder", figures={"limit": limit, "infinity_startup_s": round(startup, 2),
                                               "in_process": local, "http": clean, "http_faults": faulty,
                                               "client": CLIENT})
    ratio = clean["seconds"] / local["seconds"]
    report.checks = [
        Check("HTTP / in-process sync time", ratio, RATIO_MAX, "x"),
        Check("|nDCG@10 HTTP - in process|", abs(clean["ndcg@10"] - local["ndcg@10"]), NDCG_TOLERANCE),
        Check("requests - server's answered", abs(clean["requests"] - clean["server_answered"]), 0),
        Check("tokens - server's usage sum", abs(clean["tokens"] - clean["server_usage_tokens"]), 0),
        Check("faults: missing + duplicate vectors", faulty["integrity"]["missing"] + faulty["integrity"]["duplicates"], 0),
        Check("faults: retries - faults injected", abs(faulty["retries"] - sum(faulty["injected"].values())), 0),
        Check("faults: requests - proxy's received", abs(faulty["requests"] - faulty["proxy_requests"]), 0),
        Check("faults: answered - server's answered",
              abs(faulty["requests"] - faulty["failed_requests"] - faulty["server_answered"]), 0),
        Check("faults: tokens - server's usage sum", abs(faulty["tokens"] - faulty["server_usage_tokens"]), 0),
        Check("|nDCG@10 faults - in process|", abs(faulty["ndcg@10"] - local["ndcg@10"]), NDCG_TOLERANCE),
    ]
    report.figures["ratio"] = round(ratio, 3)
    report.figures["fault_overhead"] = round(faulty["seconds"] / clean["seconds"], 3)
    rows = [[name, fmt_s(r["seconds"]), str(r["embedded"]), f"{r['ndcg@10']:.4f}", str(r.get("requests", "-")),
             str(r.get("tokens", "-")), str(r.get("retries", "-"))]
            for name, r in (("minilm-l6 in process", local), ("infinity over HTTP", clean), ("infinity + faults", faulty))]
    report.print(rows, ["run", "sync", "chunks", "nDCG@10", "requests", "tokens", "retries"])
    return report


if __name__ == "__main__":
    sys.exit(main())
