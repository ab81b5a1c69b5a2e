"""SciFact (BEIR) retrieval quality through the whole embedops pipeline.

Documents are ``title + " " + text`` (the BEIR source builds them that way),
the eval set is the test split (300 queries). One workspace per
(embedder, chunker), reused between runs; each is evaluated in vector, BM25
and hybrid mode. Checks:

- minilm-l6 / whole / vector: nDCG@10 within ±0.01 of 0.645 (MTEB's figure for
  all-MiniLM-L6-v2; sentence-transformers alone gives 0.6451 here): the
  pipeline adds no error;
- hybrid beats the better of BM25 and vector with ``minilm-l6`` (the reference
  model) on each chunker; for ``minilm-l3`` it is reported, not required (when
  plain RRF does not win, a few weighted-RRF settings are tried and reported);
- an eval run of the 300 queries takes < 10 s once the index exists: the CLI
  end to end (``embedops eval run scifact --json`` in a new process: Python
  start, model load and fingerprint check included), median of 3 per mode.

Run: ``.venv/bin/python bench/scifact_quality.py [--data ../shared/data/scifact]``
(embedding SciFact takes minutes on 2 cores; later runs reuse the workspaces).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.evaluate.runner import run_evalset  # noqa: E402
from embedops.evaluate.store import import_evalset  # noqa: E402
from embedops.search.modes import HybridParams  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402

TARGET_NDCG = 0.645
TOLERANCE = 0.01
EVAL_MAX_SECONDS = 10.0
HYBRID_REQUIRED = ("minilm-l6",)  # embedders on which hybrid must beat both single modes
CONFIGS = (("minilm-l6", "whole"), ("minilm-l6", "structured"), ("minilm-l3", "whole"))
MODES = ("vector", "bm25", "hybrid")
# Tried only when plain RRF (k=60, equal weights) fails to beat both single modes.
HYBRID_GRID = tuple(
    HybridParams(rrf_k=rrf_k, vector_weight=1.0, bm25_weight=w) for rrf_k in (20, 60) for w in (0.5, 0.75, 1.5)
)


def workspace_for(work: Path, data: Path, embedder: str, chunker: str) -> Workspace:
    root = work / f"{embedder}-{chunker}"
    ws = Workspace.open(root) if (root / "embedops.toml").exists() else Workspace.init(root, embedder=embedder, chunker=chunker)
    if "scifact" not in ws.settings.sources:
        ws.add_source("scifact", data, kind="beir")
    started = time.perf_counter()
    result = ws.sync()
    print(f"  sync {embedder}/{chunker}: embedded {result.counts.embedded} chunks in {time.perf_counter() - started:.0f}s",
          flush=True)
    import_evalset(ws, "scifact", data, split="test")
    return ws


def evaluate(ws: Workspace, mode: str, hybrid: HybridParams | None = None) -> dict[str, Any]:
    run = run_evalset(ws, "scifact", mode=mode, k=10, **({"hybrid": hybrid} if hybrid else {}))
    m = run.metrics
    return {"ndcg@10": round(m["ndcg@10"], 4), "recall@10": round(m["recall@10"], 4), "mrr@10": round(m["mrr@10"], 4),
            "map": round(m["map"], 4), "queries": run.queries, "seconds": round(run.seconds, 2),
            "index": run.target.index.id}


def tune_hybrid(ws: Workspace, best_single: float) -> dict[str, Any]:
    """Weighted-RRF settings, reported whatever they give."""
    tried = []
    for params in HYBRID_GRID:
        r = evaluate(ws, "hybrid", params)
        tried.append({"rrf_k": params.rrf_k, "bm25_weight": params.bm25_weight, "ndcg@10": r["ndcg@10"]})
        print(f"    hybrid rrf_k={params.rrf_k} bm25_weight={params.bm25_weight}: nDCG@10 {r['ndcg@10']:.4f}", flush=True)
    best = max(tried, key=lambda t: t["ndcg@10"])
    return {"tried": tried, "best": best, "beats_single": best["ndcg@10"] > best_single}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedops-bench-scifact",
                        help="where the workspaces live (reused between runs)")
    parser.add_argument("--config", action="append", help="EMBEDDER/CHUNKER to run (repeatable; default: all)")
    parser.add_argument("--json-out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    configs = [tuple(c.split("/", 1)) for c in args.config] if args.config else list(CONFIGS)
    results: dict[str, Any] = {"data": str(args.data), "configs": {}}
    ok = True
    for embedder, chunker in configs:
        print(f"== {embedder} / {chunker}", flush=True)
        with workspace_for(args.work, args.data.resolve(), embedder, chunker) as ws:
            modes = {mode: evaluate(ws, mode) for mode in MODES}
            for mode, r in modes.items():
                print(f"  {mode:7s} nDCG@10 {r['ndcg@10']:.4f}  recall@10 {r['recall@10']:.4f}"
                      f"  ({r['queries']} queries, {r['seconds']:.2f}s)", flush=True)
            best_single = max(modes["vector"]["ndcg@10"], modes["bm25"]["ndcg@10"])
            entry: dict[str, Any] = {"modes": modes, "hybrid_beats_single": modes["hybrid"]["ndcg@10"] > best_single}
            if not entry["hybrid_beats_single"]:
                entry["hybrid_tuning"] = tune_hybrid(ws, best_single)
            if embedder in HYBRID_REQUIRED:
                ok &= entry["hybrid_beats_single"]
        results["configs"][f"{embedder}/{chunker}"] = entry
    reference = results["configs"].get("minilm-l6/whole")
    if reference:
        ndcg = reference["modes"]["vector"]["ndcg@10"]
        results["reference_check"] = {"ndcg@10": ndcg, "target": TARGET_NDCG, "pass": abs(ndcg - TARGET_NDCG) <= TOLERANCE}
        slowest = max(r["seconds"] for r in reference["modes"].values())
        results["eval_seconds"] = {mode: r["seconds"] for mode, r in reference["modes"].items()}
        ok &= results["reference_check"]["pass"]
        print(f"\nminilm-l6/whole vector nDCG@10 {ndcg:.4f} (target {TARGET_NDCG} ± {TOLERANCE}):"
              f" {'PASS' if results['reference_check']['pass'] else 'FAIL'}; slowest 300-query eval run in process"
              f" {slowest:.2f}s", flush=True)
        cli = {mode: cli_eval_seconds(args.work / "minilm-l6-whole", mode) for mode in MODES}
        results["cli_eval_seconds"] = cli
        slowest_cli = max(c["median_s"] for c in cli.values())
        ok &= slowest_cli < EVAL_MAX_SECONDS
        print("`embedops eval run scifact` end to end, median of 3: "
              + ", ".join(f"{m} {c['median_s']:.2f}s" for m, c in cli.items())
              + f" (target < {EVAL_MAX_SECONDS:.0f}s): {'PASS' if slowest_cli < EVAL_MAX_SECONDS else 'FAIL'}", flush=True)
    print_table(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


def cli_eval_seconds(root: Path, mode: str, repeat: int = 3) -> dict[str, Any]:
    """Wall time of ``embedops eval run scifact --mode MODE --json`` in a new process, ``repeat`` times."""
    cli = [sys.executable, "-m", "embedops.cli", "eval", "run", "scifact", "--mode", mode, "--json", "--workspace", str(root)]
    walls, inner = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
        walls.append(time.perf_counter() - started)
        inner.append(json.loads(out)["seconds"])
    return {"median_s": round(statistics.median(walls), 2), "runs_s": [round(w, 2) for w in walls],
            "in_command_s": [round(s, 2) for s in inner]}


def print_table(results: dict[str, Any]) -> None:
    print("\n| embedder / chunker | vector | BM25 | hybrid (RRF k=60) | hybrid > both |")
    print("|---|---|---|---|---|")
    for name, entry in results["configs"].items():
        m = entry["modes"]
        tuned = entry.get("hybrid_tuning")
        extra = f" (tuned best {tuned['best']['ndcg@10']:.4f})" if tuned else ""
        print(f"| {name} | {m['vector']['ndcg@10']:.4f} | {m['bm25']['ndcg@10']:.4f} | {m['hybrid']['ndcg@10']:.4f}{extra}"
              f" | {'yes' if entry['hybrid_beats_single'] else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
