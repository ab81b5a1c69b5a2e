"""XQuAD cross-lingual retrieval: how English-only models fare on other languages.

XQuAD has the same 240 paragraphs and 1,190 questions in en, de, es and zh,
with shared ids, so any query language can run against any corpus language.
For each packaged model (minilm-l3, minilm-l6) this measures nDCG@10 of
de/es/zh questions against the English corpus (cross-lingual) and against
their own language's corpus (monolingual), next to English on English; BM25
is the reference. A last run mixes the four languages' questions in one eval
set against the English corpus and segments it by detected language: the
mean hides what the per-language segments show.

Run: ``.venv/bin/python bench/xquad_crosslingual.py [--data ../shared/data/xquad]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.evaluate.runner import run_evalset  # noqa: E402
from embedops.evaluate.store import import_evalset  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402

LANGUAGES = ("en", "de", "es", "zh")
EMBEDDERS = ("minilm-l3", "minilm-l6")


def workspace(work: Path, data: Path, embedder: str, corpus: str) -> Workspace:
    root = work / f"{embedder}-{corpus}"
    ws = Workspace.open(root) if (root / "embedops.toml").exists() else Workspace.init(root, embedder=embedder, chunker="whole")
    if "xquad" not in ws.settings.sources:
        ws.add_source("xquad", data / corpus, kind="beir")
    ws.sync()
    return ws


def ndcg(ws: Workspace, evalset: str, mode: str) -> float:
    return round(run_evalset(ws, evalset, mode=mode, k=10).metrics["ndcg@10"], 4)


def mixed_evalset(data: Path, out: Path) -> Path:
    """All four languages' questions in one JSONL eval set (ids prefixed, no declared language)."""
    qrels: dict[str, list[str]] = {}
    for line in (data / "en" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, doc, _ = line.split("\t")
        qrels.setdefault(qid, []).append(doc)
    with out.open("w", encoding="utf-8") as f:
        for lang in LANGUAGES:
            for line in (data / lang / "queries.jsonl").read_text(encoding="utf-8").splitlines():
                q = json.loads(line)
                f.write(json.dumps({"id": f"{lang}:{q['_id']}", "query": q["text"], "relevant_ids": qrels[q["_id"]],
                                    "asked_in": lang}, ensure_ascii=False) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "xquad")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedops-bench-xquad")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"ndcg@10": {}, "mixed": {}}
    for embedder in EMBEDDERS:
        for corpus in LANGUAGES:
            with workspace(args.work, data, embedder, corpus) as ws:
                query_langs = LANGUAGES if corpus == "en" else (corpus,)
                for lang in query_langs:
                    import_evalset(ws, f"q-{lang}", data / lang)
                    results["ndcg@10"][f"{embedder}|{lang}|{corpus}"] = ndcg(ws, f"q-{lang}", "vector")
                    if embedder == EMBEDDERS[-1]:
                        results["ndcg@10"][f"bm25|{lang}|{corpus}"] = ndcg(ws, f"q-{lang}", "bm25")
                        results["ndcg@10"][f"hybrid-{embedder}|{lang}|{corpus}"] = ndcg(ws, f"q-{lang}", "hybrid")
                print(f"  {embedder} corpus {corpus}: done", flush=True)
        with workspace(args.work, data, embedder, "en") as ws:
            import_evalset(ws, "mixed", mixed_evalset(data, args.work / "mixed.jsonl"))
            run = run_evalset(ws, "mixed", k=10, segment_by="language")
            results["mixed"][embedder] = {
                "mean": round(run.metrics["ndcg@10"], 4), "worst": run.worst_segment,
                "segments": {k: {"n": int(v["n"]), "ndcg@10": round(v["ndcg@10"], 4)} for k, v in run.segments.items()},
                "by_declared": _declared_accuracy(run.labels),
            }
    print_tables(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _declared_accuracy(labels: dict[str, str]) -> float:
    """Share of the mixed set's queries whose detected language is the one they were asked in."""
    return round(sum(1 for qid, lang in labels.items() if qid.split(":", 1)[0] == lang) / max(len(labels), 1), 4)


def print_tables(results: dict[str, Any]) -> None:
    r = results["ndcg@10"]
    models = [*EMBEDDERS, "bm25", f"hybrid-{EMBEDDERS[-1]}"]
    print("\nnDCG@10 on XQuAD (1,190 questions, 240 paragraphs per language)\n")
    print("| query language | " + " | ".join(f"{m}: en corpus | {m}: own corpus" for m in models) + " |")
    print("|---|" + "---|---|" * len(models))
    for lang in LANGUAGES:
        cells = []
        for m in models:
            cells.append(f"{r[f'{m}|{lang}|en']:.3f}")
            cells.append(f"{r[f'{m}|{lang}|{lang}']:.3f}" if lang != "en" else "(same)")
        print(f"| {lang} | " + " | ".join(cells) + " |")
    print("\nMixed set (all four languages' questions against the English corpus), segmented by detected language:\n")
    for embedder, mixed in results["mixed"].items():
        segs = ", ".join(f"{k} {v['ndcg@10']:.3f} (n={v['n']})" for k, v in mixed["segments"].items() if v["n"] >= 20)
        print(f"- {embedder}: mean {mixed['mean']:.3f}; worst segment {mixed['worst']}; {segs};"
              f" detection agrees with the asked language for {mixed['by_declared']:.1%}")


if __name__ == "__main__":
    sys.exit(main())
