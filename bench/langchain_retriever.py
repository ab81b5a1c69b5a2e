"""SciFact (BEIR) through LangChain's retriever interface gives what `embedops eval run` gives.

One workspace (default ``minilm-l3`` / ``whole``: a document is one chunk),
synced from the BEIR folder and given the test split as an eval set. Then, on
that one index:

- ``embedops eval run scifact --json`` in a new process (the CLI as a user runs it);
- the same 300 queries through ``EmbedopsVectorStore.open(ws, source=None).as_retriever(
  search_kwargs={"k": 10})`` — LangChain's ``VectorStoreRetriever.invoke``, one query at
  a time — scored with the same metric code, and cross-checked with pytrec_eval when it
  is installed.

Pass: |nDCG@10(retriever) − nDCG@10(eval run)| ≤ 0.001. Also reported: how many
queries' top-10 lists differ (order included), and the retriever's per-query latency next
to ``Workspace.search(text, k=10)``'s on the same queries (chunks, no document collapse, no
LangChain), measured in the same process just before.

Run: ``.venv/bin/python bench/langchain_retriever.py --data ../shared/data/scifact``
(the first run embeds SciFact: a minute or two on 2 cores; later runs reuse the workspace).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.catalog.db import read_tx  # noqa: E402
from embedops.evaluate.metrics import evaluate  # noqa: E402
from embedops.evaluate.qrels import validate  # noqa: E402
from embedops.evaluate.runner import run_evalset  # noqa: E402
from embedops.evaluate.store import import_evalset, live_doc_ids, load_evalset  # noqa: E402
from embedops.integrations.langchain import EmbedopsVectorStore  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402

K = 10
TOLERANCE = 0.001


def workspace_for(work: Path, data: Path, embedder: str, chunker: str) -> Workspace:
    """The bench's workspace, synced and with the eval set imported (both no-ops when already done)."""
    root = work / f"{embedder}-{chunker}"
    ws = Workspace.open(root) if (root / "embedops.toml").exists() else Workspace.init(root, embedder=embedder, chunker=chunker)
    if "scifact" not in ws.settings.sources:
        ws.add_source("scifact", data, kind="beir")
    started = time.perf_counter()
    embedded = ws.sync().counts.embedded
    print(f"sync {embedder}/{chunker}: embedded {embedded} chunks in {time.perf_counter() - started:.0f}s", flush=True)
    import_evalset(ws, "scifact", data, split="test")
    return ws


def cli_eval(root: Path) -> dict[str, Any]:
    """`embedops eval run scifact --json` in a new process: its metrics and its per-query run."""
    cli = [sys.executable, "-m", "embedops.cli", "eval", "run", "scifact", "--k", str(K), "--json",
           "--workspace", str(root)]
    out = subprocess.run(cli, capture_output=True, text=True, check=True, cwd=REPO_ROOT).stdout
    return dict(json.loads(out))


def scored_queries(ws: Workspace) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The eval set's queries and judgments that can be scored, chosen as `eval run` chooses them."""
    with read_tx(ws.engine) as conn:
        data = load_evalset(conn, "scifact")
        known = live_doc_ids(conn, data.info.source_id)
    texts, qrels, _ = validate({q.id: q.text for q in data.queries.values()}, data.qrels, known)
    return texts, {q: dict(j) for q, j in qrels.items()}


def through_retriever(ws: Workspace, texts: dict[str, str]) -> tuple[dict[str, list[str]], list[float]]:
    """Each query through LangChain's retriever: the ranked document ids, and each call's seconds."""
    store = EmbedopsVectorStore.open(ws, source=None)  # read-only: the bench adds nothing to the workspace
    retriever = store.as_retriever(search_kwargs={"k": K})
    ranked: dict[str, list[str]] = {}
    seconds: list[float] = []
    for qid, text in texts.items():
        started = time.perf_counter()
        docs = retriever.invoke(text)
        seconds.append(time.perf_counter() - started)
        ranked[qid] = [d.id or "" for d in docs]
    return ranked, seconds


def direct_seconds(ws: Workspace, texts: dict[str, str]) -> list[float]:
    """The baseline: each query through ``Workspace.search`` (top 10 chunks), one at a time."""
    seconds: list[float] = []
    for text in texts.values():
        started = time.perf_counter()
        ws.search(text, k=K)
        seconds.append(time.perf_counter() - started)
    return seconds


def as_run(ranked: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """Ranked lists as a run whose scores keep the order (strictly falling)."""
    return {qid: {doc: float(len(ids) - i) for i, doc in enumerate(ids)} for qid, ids in ranked.items()}


def pytrec_ndcg(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> float | None:
    try:
        import pytrec_eval
    except ImportError:
        return None
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return statistics.fmean(per_query[q]["ndcg_cut_10"] if q in per_query else 0.0 for q in qrels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedops-bench-langchain")
    parser.add_argument("--embedder", default="minilm-l3")
    parser.add_argument("--chunker", default="whole")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with workspace_for(args.work, args.data.resolve(), args.embedder, args.chunker) as ws:
        cli = cli_eval(ws.root)
        texts, qrels = scored_queries(ws)
        baseline = direct_seconds(ws, texts)
        ranked, seconds = through_retriever(ws, texts)
        in_process = run_evalset(ws, "scifact", k=K).run  # the eval's own ranked lists, for a per-query diff
    eval_ranked = {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in in_process.items()}
    retriever_ndcg = evaluate(qrels, as_run(ranked), (K,)).means[f"ndcg@{K}"]
    eval_ndcg = float(cli["metrics"][f"ndcg@{K}"])
    results = {
        "workspace": str(args.work / f"{args.embedder}-{args.chunker}"), "embedder": args.embedder,
        "chunker": args.chunker, "queries": len(texts), "eval_run_ndcg@10": round(eval_ndcg, 4),
        "retriever_ndcg@10": round(retriever_ndcg, 4), "difference": round(abs(retriever_ndcg - eval_ndcg), 6),
        "retriever_ndcg@10_pytrec_eval": _rounded(pytrec_ndcg(qrels, as_run(ranked))),
        "queries_whose_top10_differ": sum(ranked[q] != eval_ranked.get(q, []) for q in texts),
        "retriever_ms_p50": _ms(seconds, 0.5), "retriever_ms_p95": _ms(seconds, 0.95),
        "workspace_search_ms_p50": _ms(baseline, 0.5), "workspace_search_ms_p95": _ms(baseline, 0.95),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    results["pass"] = results["difference"] <= TOLERANCE
    for key, value in results.items():
        print(f"{key}: {value}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["pass"] else 1


def _ms(seconds: list[float], q: float) -> float:
    return round(1000 * sorted(seconds)[int(q * (len(seconds) - 1))], 2)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


if __name__ == "__main__":
    raise SystemExit(main())
