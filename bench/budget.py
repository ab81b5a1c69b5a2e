"""Benchmark: a budget stops a sync through a real provider, the sync resumes, and the spend matches the server.

A fresh workspace syncs SciFact (BEIR, first ``--limit`` documents) through
``[embedders.inf]``: all-MiniLM-L6-v2 served by infinity (``.venv-infinity``)
on loopback, behind ``FaultProxy`` with no fault (it only counts the requests
answered and sums the ``usage`` of every answer), priced at 0.02 USD per
million tokens so that costs are not zero.

1. ``sync --plan`` gives the estimate; ``sync --max-cost`` half of it must stop
   (``BudgetExceeded``, exit 4 on the CLI) having spent at most the cap plus one
   batch, with a ``sync.budget_stopped`` ledger row;
2. ``sync`` with the cap raised resumes and completes;
3. checks: 0 missing and 0 duplicate vectors; no chunk text sent to the server
   twice (sentinels aside); the two syncs embedded exactly the distinct chunks;
   ``embedops spend`` (``commands.spend``) totals equal the server's answered
   requests and the sum of its ``usage`` tokens exactly.

    .venv/bin/python bench/budget.py --data ../shared/data/scifact              # 1,000 documents
    .venv/bin/python bench/budget.py --data DIR --limit 200                      # smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, fmt_s, log
from http_embedder import DEFAULT_DATA, subset, vector_integrity

sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "src"))

PRICE = 0.02  # USD per million tokens
BATCH_DOCUMENTS = 100  # [embedops] batch_size: documents per committed batch
CLIENT = {"max_batch_size": 64, "max_concurrency": 2, "timeout": 60.0, "max_retries": 10}


def workspace(root: Path, data: Path, section: dict[str, Any]) -> Any:
    import tomli_w

    from embedops.workspace import Workspace

    root.mkdir(parents=True)
    (root / "embedops.toml").write_text(tomli_w.dumps({"embedders": {"inf": section}}))
    ws = Workspace.init(root, embedder="inf")
    ws.settings.batch_size = BATCH_DOCUMENTS
    ws.settings.save()
    ws.add_source("scifact", data, kind="beir")
    return ws


def job_batches(ws: Any, job: str) -> list[float]:
    """Cost of each committed batch of ``job`` (its spend rows, one per sync.batch ledger row)."""
    import sqlalchemy as sa

    from embedops.catalog import schema

    s = schema.spend
    with ws.engine.connect() as conn:
        return [float(c) for c in conn.execute(sa.select(sa.func.sum(s.c.cost)).where(s.c.job == job)
                                               .group_by(s.c.ledger_id)).scalars()]


def run(ws: Any, proxy: Any, server: Any) -> dict[str, Any]:
    from embedops import commands
    from embedops.embedding.fingerprint import SENTINELS
    from embedops.errors import BudgetExceeded

    served_before = server.embeddings_served()
    plan = ws.sync(plan_only=True)
    cap = plan.estimated_cost / 2
    started = time.perf_counter()
    try:
        ws.sync(max_cost=cap)
        raise AssertionError("the sync was not stopped by its cap")
    except BudgetExceeded as exc:
        stop = exc.details
    first_seconds = time.perf_counter() - started
    first = stop["result"]
    batches = job_batches(ws, first["job"])
    started = time.perf_counter()
    second = ws.sync(max_cost=plan.estimated_cost * 2).to_dict()
    second_seconds = time.perf_counter() - started
    report = {by: commands.spend(ws.root, by=by).to_dict() for by in ("job", "kind")}
    sent = [t for body in proxy.stats.bodies for t in body["input"] if t not in SENTINELS]
    ledger = [r for r in ws.history(kind="sync.budget_stopped")]
    return {
        "documents": ws.status()["documents"], "chunks_to_embed": plan.chunks_to_embed,
        "estimated_tokens": plan.estimated_tokens, "estimated_cost": plan.estimated_cost, "cap": cap,
        "stopped": {"spent": stop["spent"], "added": first["added"], "embedded": first["embedded"],
                    "remaining_documents": stop["remaining_documents"], "batches": len(batches),
                    "largest_batch_cost": max(batches), "seconds": round(first_seconds, 2),
                    "ledger": ledger[0]["details"] if ledger else None},
        "resumed": {"added": second["added"], "embedded": second["embedded"], "spend": second["spend"],
                    "seconds": round(second_seconds, 2)},
        "spend_by_job": report["job"]["rows"], "spend_by_kind": report["kind"]["rows"],
        "spend_total": report["job"]["total"],
        "server": {"answered": server.embeddings_served() - served_before, "proxy_answered": proxy.stats.delivered_ok,
                   "usage_tokens": proxy.stats.delivered_tokens},
        "texts_sent": len(sent), "distinct_texts_sent": len(set(sent)),
        "integrity": vector_integrity(ws),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=1000, help="the first N documents (default 1000)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    from tests.http_doubles import SERVED_MODEL, FaultProxy, InfinityServer

    work = Path(tempfile.mkdtemp(prefix="embedops-bench-budget-"))
    data = subset(args.data.resolve(), args.limit, work)
    server = InfinityServer(work / "infinity.log", warmup=True)
    log(f"infinity ready in {fmt_s(server.startup_seconds)} on {server.url}")
    proxy = FaultProxy(server.url)
    section = {"kind": "openai", "model": SERVED_MODEL, "base_url": proxy.url, "tokenizer": "bert-base-uncased",
               "dimensions": 384, "price_per_million_tokens": PRICE, **CLIENT}
    try:
        ws = workspace(work / "ws", data, section)
        try:
            figures = run(ws, proxy, server)
        finally:
            ws.close()
    finally:
        proxy.stop()
        server.stop()
    report = build_report(figures, args.limit)
    if args.json_out:
        args.json_out.write_text(json.dumps(report.figures, indent=2, default=str) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if report.ok else 1


def build_report(f: dict[str, Any], limit: int | None) -> Report:
    report = Report("budget", figures={"limit": limit, "price_per_million_tokens": PRICE,
                                        "batch_documents": BATCH_DOCUMENTS, "client": CLIENT, **f})
    stopped, total, server = f["stopped"], f["spend_total"], f["server"]
    integrity = f["integrity"]
    report.checks = [
        Check("spent at the stop - (cap + largest batch)", stopped["spent"] - (f["cap"] + stopped["largest_batch_cost"]),
              0.0, " $"),
        Check("documents left at the stop", stopped["remaining_documents"], 1, at_most=False),
        Check("resumed: documents added in both syncs - corpus", abs(stopped["added"] + f["resumed"]["added"]
                                                                      - f["documents"]), 0),
        Check("chunks embedded in both syncs - chunks to embed",
              abs(stopped["embedded"] + f["resumed"]["embedded"] - f["chunks_to_embed"]), 0),
        Check("chunk texts sent twice", f["texts_sent"] - f["distinct_texts_sent"], 0),
        Check("missing + duplicate vectors", integrity["missing"] + integrity["duplicates"], 0),
        Check("spend requests - server's answered", abs(total["requests"] - server["answered"]), 0),
        Check("spend requests - proxy's answered", abs(total["requests"] - server["proxy_answered"]), 0),
        Check("spend tokens - server's usage sum", abs(total["tokens"] - server["usage_tokens"]), 0),
        Check("tokens estimated (not reported)", total["estimated_tokens"], 0),
    ]
    rows = [[r["job"], r["kind"], str(r["requests"]), str(r["tokens"]), f"{r['cost']:.8f}", str(r["cache_hits"])]
            for r in f["spend_by_job"]]
    rows.append(["total", "", str(total["requests"]), str(total["tokens"]), f"{total['cost']:.8f}",
                 str(total["cache_hits"])])
    report.print(rows, ["job", "kind", "requests", "tokens", "cost $", "cache hits"])
    return report


if __name__ == "__main__":
    sys.exit(main())
