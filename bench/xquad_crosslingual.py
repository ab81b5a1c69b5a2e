"""XQuAD cross-lingual retrieval: English-only models against multilingual ones, and a gated migration.

XQuAD has the same 240 paragraphs and 1,190 questions in en, de, es and zh,
with shared ids, so any query language can run against any corpus language.

``--part models`` (default, with ``migration``): for ``minilm-l6``,
``e5-small-multilingual`` and ``use-multilingual``, nDCG@10 and hit@5 of the
en, de, es and zh questions against the English corpus (queries embedded with
each model's query side).

``--part migration``: a mixed corpus of the four languages' paragraphs, each
document tagged with its ``language`` in metadata, and one eval set of every
language's questions (each judged against its own language's paragraph, query
metadata ``language``), bound to the alias; ``embedops check --only languages``
on the ``minilm-l6`` index, then ``migrate start --to e5-small-multilingual``,
backfill, and the gate's per-language comparison; cut over when it passes.

``--part legacy``: the earlier tables (minilm-l3/minilm-l6, own-language
corpora, BM25, hybrid, the mixed set segmented by detected language).

``--queries N`` keeps N questions per language (the same ids in every language,
seeded); ``--paragraphs N`` keeps N paragraphs per language in the migration's
corpus (and their questions). Throughput measured on the shared 2-core machine (load
average ~10), XQuAD paragraphs (~155 e5 tokens) / questions per second: e5 0.8 / 10,
minilm-l6 2.6 / 15, USE 7 / 120; hence the flags. The full run (no flags) took 33 min
wall, 18 min of CPU there; docs/benchmarks.md gives its figures.

Run: ``.venv/bin/python bench/xquad_crosslingual.py [--data ../shared/data/xquad] [--part models --part migration]``
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from embedops.compose import migrator
from embedops.evaluate.runner import run_evalset
from embedops.evaluate.store import import_evalset
from embedops.monitor.checks import run_checks
from embedops.workspace import Workspace

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


MODELS = ("minilm-l6", "e5-small-multilingual", "use-multilingual")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "xquad")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedops-bench-xquad")
    parser.add_argument("--part", action="append", choices=("models", "migration", "legacy"))
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated embedder names (--part models)")
    parser.add_argument("--queries", type=int, default=None, help="questions per language (default: all 1,190)")
    parser.add_argument("--paragraphs", type=int, default=None, help="paragraphs per language in the migration corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for part in args.part or ["models", "migration"]:
        started = time.perf_counter()
        if part == "models":
            results["models"] = models_part(args, data)
        elif part == "migration":
            results["migration"] = migration_part(args, data)
        else:
            results["legacy"] = legacy(args, data)
        print(f"  part {part}: {time.perf_counter() - started:.0f} s", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


# -- shared inputs ---------------------------------------------------------------------------------
def qrels_of(data: Path) -> dict[str, str]:
    """question id -> paragraph id (one paragraph per question, the same in every language)."""
    rows = (line.split("\t") for line in (data / "en" / "qrels" / "test.tsv").read_text().splitlines()[1:])
    return {qid: doc for qid, doc, _ in rows}


def questions(data: Path, lang: str) -> dict[str, str]:
    lines = (data / lang / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return {q["_id"]: q["text"] for q in map(json.loads, lines)}


def kept_ids(ids: list[str], n: int | None, seed: int) -> list[str]:
    """``n`` of ``ids`` (all when ``n`` is None), seeded: the same subset for every language and model."""
    if n is None or n >= len(ids):
        return sorted(ids)
    return sorted(random.Random(seed).sample(sorted(ids), n))


def hit_at(run: dict[str, dict[str, float]], relevant: dict[str, str], k: int) -> float:
    """Share of questions whose paragraph is among the first ``k`` documents retrieved."""
    hits = [relevant[q] in sorted(docs, key=lambda d: -docs[d])[:k] for q, docs in run.items()]
    return sum(hits) / max(len(hits), 1)


# -- part "models": each model, each question language, the English corpus --------------------------
def models_part(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    relevant = qrels_of(data)
    ids = kept_ids(list(relevant), args.queries, args.seed)
    out: dict[str, Any] = {"queries_per_language": len(ids), "results": {}}
    for model in args.models.split(","):
        with workspace(args.work, data, model, "en") as ws:
            for lang in LANGUAGES:
                asked = questions(data, lang)
                path = args.work / f"q-{lang}-{len(ids)}.jsonl"
                path.write_text("".join(json.dumps({"id": q, "query": asked[q], "relevant_ids": [relevant[q]]},
                                                   ensure_ascii=False) + "\n" for q in ids), encoding="utf-8")
                name = f"q-{lang}-{len(ids)}"
                import_evalset(ws, name, path)
                started = time.perf_counter()
                run = run_evalset(ws, name, k=10)
                out["results"][f"{model}|{lang}"] = {
                    "ndcg@10": round(run.metrics["ndcg@10"], 4), "hit@5": round(hit_at(run.run, relevant, 5), 4),
                    "seconds": round(time.perf_counter() - started, 1)}
                print(f"  {model} {lang}: {out['results'][f'{model}|{lang}']}", flush=True)
    print_models(out, args.models.split(","))
    return out


def print_models(out: dict[str, Any], models: list[str]) -> None:
    r = out["results"]
    print(f"\nXQuAD, {out['queries_per_language']:,} questions per language against the English corpus"
          " (240 paragraphs): nDCG@10 / hit@5\n")
    print("| questions | " + " | ".join(f"`{m}`" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    for lang in LANGUAGES:
        print(f"| {lang} | " + " | ".join(f"{r[f'{m}|{lang}']['ndcg@10']:.3f} / {r[f'{m}|{lang}']['hit@5']:.3f}"
                                          for m in models) + " |")


# -- part "migration": minilm-l6 -> e5-small-multilingual on a mixed-language corpus -----------------
def mixed_corpus(args: argparse.Namespace, data: Path) -> tuple[Path, Path, int, int]:
    """The four languages' paragraphs (tagged) and their questions (tagged, judged in their own language)."""
    relevant = qrels_of(data)
    paragraphs = kept_ids(sorted(set(relevant.values())), args.paragraphs, args.seed)
    keep = set(paragraphs)
    ids = kept_ids([q for q, p in relevant.items() if p in keep], args.queries, args.seed)
    corpus, evalset = args.work / f"mixed-corpus-{len(paragraphs)}.jsonl", args.work / f"mixed-questions-{len(ids)}.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for lang in LANGUAGES:
            for line in (data / lang / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
                doc = json.loads(line)
                if doc["_id"] in keep:
                    f.write(json.dumps({"id": f"{lang}:{doc['_id']}", "text": doc["text"], "language": lang},
                                       ensure_ascii=False) + "\n")
    with evalset.open("w", encoding="utf-8") as f:
        for lang in LANGUAGES:
            asked = questions(data, lang)
            for q in ids:
                f.write(json.dumps({"id": f"{lang}:{q}", "query": asked[q], "relevant_ids": [f"{lang}:{relevant[q]}"],
                                    "language": lang}, ensure_ascii=False) + "\n")
    return corpus, evalset, len(paragraphs), len(ids)


def migration_part(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    corpus, evalset, n_paragraphs, n_questions = mixed_corpus(args, data)
    root = args.work / f"migration-{n_paragraphs}-{n_questions}"
    if root.exists():
        shutil.rmtree(root)
    out: dict[str, Any] = {"paragraphs_per_language": n_paragraphs, "questions_per_language": n_questions}
    with Workspace.init(root, embedder="minilm-l6", chunker="whole") as ws:
        ws.add_source("xquad", corpus, kind="jsonl")
        out["sync_s"] = timed(ws.sync)[1]
        import_evalset(ws, "mixed", evalset, alias="prod")
        check = run_checks(ws, ["languages"]).results[0]
        out["check_before"] = {"status": check.status, "summary": check.summary, "seconds": check.seconds}
        print(f"  check before: {check.status}: {check.summary} ({check.seconds} s)", flush=True)
        m = migrator(ws)
        m.start("e5-small-multilingual")
        out["backfill_s"] = timed(m.backfill)[1]
        report, out["gate_s"] = timed(m.gate)
        out["gate"] = {"passed": report.gate.passed, "checks": [c.to_dict() for c in report.gate.checks]}
        if report.gate.passed:
            m.cutover()
            m.finalize()
            check = run_checks(ws, ["languages"]).results[0]
            out["check_after"] = {"status": check.status, "summary": check.summary}
    print_migration(out)
    return out


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, round(time.perf_counter() - started, 1)


def print_migration(out: dict[str, Any]) -> None:
    print(f"\nminilm-l6 -> e5-small-multilingual, {out['paragraphs_per_language']} paragraphs x 4 languages,"
          f" {out['questions_per_language']} questions per language; sync {out['sync_s']} s, backfill"
          f" {out['backfill_s']} s, gate {out['gate_s']} s; gate passed: {out['gate']['passed']}\n")
    for c in out["gate"]["checks"]:
        print(f"- {c['name']}: {'pass' if c['passed'] else 'FAIL'}{'' if c['gating'] else ' (not gating)'}: {c['detail']}")
    for key in ("check_before", "check_after"):
        if key in out:
            print(f"- check languages ({key.split('_')[1]} the migration): {out[key]['status']}: {out[key]['summary']}")


# -- part "legacy": the earlier tables --------------------------------------------------------------
def legacy(args: argparse.Namespace, data: Path) -> dict[str, Any]:
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
    return results


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
