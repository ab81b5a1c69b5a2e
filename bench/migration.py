"""Benchmark: a live model migration on SciFact, ``minilm-l3`` → ``minilm-l6``, under search load.

Steps, in one process (plus one search-load worker):

1. sync the SciFact corpus (BEIR folder) with ``minilm-l3`` into a fresh temporary
   workspace (structured chunker, its defaults), import the SciFact test split as
   an eval set bound to the alias, and ``migrator(ws).start("minilm-l6")``;
2. start a search loop (a separate process by default, as a server beside an
   ``embedops migrate backfill`` would be; ``--load thread`` for the same process)
   that sends SciFact test queries to the alias at a fixed rate (``--qps``, 25)
   and records every query's latency, result spaces and exception;
3. **idle**: the loop alone for ``--idle-seconds``: idle p50/p99;
4. **backfill under load**: the first ``--loaded-fraction`` of the chunks is
   backfilled while the loop runs; the backfill is interrupted after that many
   chunks (as Ctrl-C would) and resumed in step 5: p50/p99 and failures during
   backfill;
5. **raw encode vs backfill**, search loop paused, on the remaining chunks,
   interleaved in segments of ``--segment-batches`` batches so that both see the
   same background load: the bare model (``load_embedder("minilm-l6").embed``)
   embeds the exact texts the next batches of the backfill will embed, in the
   same batches (``--batch`` chunks, deduplicated as the backfill does); then
   ``Migrator.backfill`` runs those batches (whole calls timed; the last one runs
   to the end and flushes the ANN). Ratio of the summed times >= 0.9;
6. **cutover under load**: cutover → rollback → ... → cutover (``--swaps``
   rollbacks) while the loop runs: failed queries, result lists mixing spaces,
   and the swap transaction's ``seconds`` (< 0.1 s) beside each whole call
   (which includes the gate);
7. the gate's numbers (overlap@10, rank correlation) from the first cutover, and
   nDCG@10 old vs new on the SciFact test queries (``embedops.evaluate``), then
   ``finalize``.

The search worker loads the embedders of every active index before it starts
(a server preloads the model it may be switched to; otherwise the first query
after cutover pays the model load).

    .venv/bin/python bench/migration.py                # full SciFact (5,183 documents), ~10-15 min
    .venv/bin/python bench/migration.py --docs 500     # smoke test, ~2 min
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, Timer, fmt_s, log, timed  # noqa: E402

FROM_MODEL = "minilm-l3"
TO_MODEL = "minilm-l6"
SOURCE = "scifact"
EVALSET = "scifact"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
RATIO_MIN = 0.9
QPS_MIN = 20.0
SWAP_MAX_S = 0.1
K = 10


# -- data --------------------------------------------------------------------------


def prepare_corpus(data: Path, n_docs: int | None, tmp: Path) -> Path:
    """The BEIR folder itself, or a copy of its first ``n_docs`` documents (plus queries and qrels)."""
    if not n_docs:
        return data
    sub = tmp / "scifact-subset"
    (sub / "qrels").mkdir(parents=True)
    with (data / "corpus.jsonl").open(encoding="utf-8") as src, (sub / "corpus.jsonl").open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= n_docs:
                break
            dst.write(line)
    (sub / "queries.jsonl").write_bytes((data / "queries.jsonl").read_bytes())
    for qrels in (data / "qrels").glob("*.tsv"):
        (sub / "qrels" / qrels.name).write_bytes(qrels.read_bytes())
    return sub


def load_queries(data: Path) -> list[str]:
    """Texts of the test-split queries (every query when there is no test qrels file)."""
    qrels = data / "qrels" / "test.tsv"
    wanted = None
    if qrels.is_file():
        lines = qrels.read_text(encoding="utf-8").splitlines()
        wanted = {ln.split("\t")[0] for ln in lines[1:] if ln.strip()}
    texts = []
    with (data / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            obj = json.loads(line)
            if wanted is None or str(obj["_id"]) in wanted:
                texts.append(obj["text"])
    return texts


# -- the search load ---------------------------------------------------------------

# One record per query: [due, started, latency_s, n_results, spaces, error]
QueryRecord = list[Any]


def search_loop(target: Any, queries: list[str], rate: float, go: Any, stop: Any, ready: Any, out: str) -> None:
    """Send ``queries`` (cycled) to the alias at ``rate`` per second while ``go`` is set; dump records to ``out``.

    ``target`` is a workspace root (process mode: opened here) or a Workspace (thread mode).
    Open loop: queries are due at fixed times; a late one is sent at once, never skipped.
    """
    from embedops.workspace import Workspace

    ws = Workspace.open(target) if isinstance(target, str) else target
    _preload(ws)
    ready.set()
    records: list[QueryRecord] = []
    i = 0
    while not stop.is_set():
        if not go.wait(0.05):
            continue
        t0, n = time.monotonic(), 0
        while go.is_set() and not stop.is_set():
            due = t0 + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                if not go.is_set():
                    break
            records.append(_one_query(ws, queries[i % len(queries)], due))
            i, n = i + 1, n + 1
    Path(out).write_text(json.dumps(records), encoding="utf-8")


def _preload(ws: Any) -> None:
    for ix in ws.status()["indexes"]:
        if ix["status"] == "active":
            ws.embedder(ix["embedder"]).embed(["warm up"])
    ws.search("warm up", k=K)


def _one_query(ws: Any, text: str, due: float) -> QueryRecord:
    started = time.monotonic()
    try:
        results = ws.search(text, k=K)
        spaces, error, n = sorted({r.tags["space"] for r in results}), None, len(results)
    except Exception as exc:  # noqa: BLE001 - a failed query is the finding, recorded with its cause
        spaces, error, n = [], f"{type(exc).__name__}: {exc}", 0
    return [due, started, time.monotonic() - started, n, spaces, error]


@dataclass
class Window:
    name: str
    start: float
    end: float = 0.0


@dataclass
class Load:
    """A search loop in a worker (process or thread), switched on for named windows."""

    mode: str
    target: Any
    queries: list[str]
    rate: float
    out: Path
    windows: list[Window] = field(default_factory=list)

    def __post_init__(self) -> None:
        process = self.mode == "process"
        # spawn: forking after torch/onnxruntime started their threads can deadlock the child
        kit: Any = mp.get_context("spawn") if process else threading
        self.go, self.stop, self.ready = kit.Event(), kit.Event(), kit.Event()
        target = str(self.target) if process else self.target
        args = (target, self.queries, self.rate, self.go, self.stop, self.ready, str(self.out))
        self.worker: Any = (kit.Process if process else kit.Thread)(target=search_loop, args=args, daemon=True)

    def start(self) -> None:
        self.worker.start()
        if not self.ready.wait(600):
            raise RuntimeError("the search worker did not start within 600 s")

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        w = Window(name, time.monotonic())
        self.go.set()
        try:
            yield w
        finally:
            self.go.clear()
            w.end = time.monotonic()
            self.windows.append(w)
            time.sleep(0.3)  # let an in-flight query finish before the next phase

    def finish(self) -> list[QueryRecord]:
        self.stop.set()
        self.worker.join(120)
        return list(json.loads(self.out.read_text(encoding="utf-8")))


def window_stats(window: Window, records: Sequence[QueryRecord]) -> dict[str, Any]:
    import numpy as np

    mine = [r for r in records if window.start <= r[0] <= window.end]
    ok = [r for r in mine if r[5] is None]
    lat = np.array([r[2] for r in ok]) * 1000 if ok else np.zeros(1)
    lag = max((r[1] - r[0] for r in mine), default=0.0)
    seconds = window.end - window.start
    return {
        "seconds": round(seconds, 2), "queries": len(mine), "qps": round(len(mine) / max(seconds, 1e-9), 2),
        "failed": len(mine) - len(ok), "errors": sorted({r[5] for r in mine if r[5]})[:5],
        "mixed": sum(1 for r in ok if len(r[4]) > 1), "empty": sum(1 for r in ok if r[3] == 0),
        "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2), "max_lag_ms": round(lag * 1000, 2), "served_by": _by_model(ok),
        "first_after_switch_ms": _first_after_switch(ok),
    }


def _first_after_switch(records: Sequence[QueryRecord]) -> list[float]:
    """Latency of each query served by another space than the query before it (the first after a swap)."""
    out = []
    for before, r in zip(records, records[1:]):
        if r[4] != before[4]:
            out.append(round(r[2] * 1000, 2))
    return out


def _by_model(records: Sequence[QueryRecord]) -> dict[str, dict[str, Any]]:
    """Queries and latency per serving model (a space key's model part), e.g. after a cutover."""
    import numpy as np

    groups: dict[str, list[float]] = {}
    for r in records:
        for space in r[4]:
            model = space.split(":", 1)[-1].split("@", 1)[0]
            groups.setdefault(model, []).append(r[2] * 1000)
    return {m: {"queries": len(v), "p50_ms": round(float(np.percentile(v, 50)), 2),
                "p99_ms": round(float(np.percentile(v, 99)), 2)} for m, v in sorted(groups.items())}


# -- the migration steps -----------------------------------------------------------


class _Enough(Exception):
    """Raised from the progress callback to interrupt a backfill after a batch committed (like Ctrl-C)."""


def backfill_part(migrator: Any, batch: int, chunks: int) -> dict[str, Any]:
    """Backfill until at least ``chunks`` chunks have a vector, then interrupt."""
    done = [0]

    def factory(label: str, total: int) -> Any:
        def bar(n: int) -> None:
            done[0] += n
            if done[0] >= chunks:
                raise _Enough

        return bar

    with timed() as t:
        try:
            migrator.backfill(batch=batch, progress=factory)
        except _Enough:
            pass
    return {"seconds": t.seconds, "chunks": done[0]}


@dataclass
class FillBatch:
    """One batch as ``fill_index`` will take it: its chunk count and the texts it will embed."""

    chunks: int
    texts: dict[str, str]  # content hash → text


def pending_batches(ws: Any, target: Any, batch: int) -> list[FillBatch]:
    """The batches the next backfill will run, exactly as ``fill_index`` picks them.

    Chunks lacking a vector in the shadow index, by id, ``batch`` per batch; in each
    batch the distinct content hashes with no stored embedding in the new space yet.
    """
    import sqlalchemy as sa

    from embedops.catalog import schema

    c, d, v, e = schema.chunks, schema.documents, schema.vectors, schema.embeddings
    has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, v.c.index_id == target.index.id).exists()
    q = (sa.select(c.c.content_hash, c.c.text).join(d, d.c.id == c.c.document_id)
         .where(d.c.deleted_at.is_(None), c.c.chunker_key == target.chunker.ref.key, ~has).order_by(c.c.id))
    with ws.engine.connect() as conn:
        rows = conn.execute(q).all()
        stored = set(conn.execute(sa.select(e.c.content_hash).where(e.c.space_key == target.index.space_key)).scalars())
    out = []
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        texts = {h: t for h, t in part if h not in stored}
        stored.update(texts)
        out.append(FillBatch(len(part), texts))
    return out


def stored_hashes(ws: Any, space_key: str) -> set[str]:
    import sqlalchemy as sa

    from embedops.catalog import schema

    e = schema.embeddings
    with ws.engine.connect() as conn:
        return set(conn.execute(sa.select(e.c.content_hash).where(e.c.space_key == space_key)).scalars())


def count_tokens(embedder: Any, texts: Sequence[str]) -> int:
    limit = embedder.ref.max_tokens or 10**9
    return sum(min(embedder.count_tokens(t), limit) for t in texts)


def raw_encode(batches: Sequence[FillBatch]) -> float:
    """Seconds to embed the batches' texts with the bare model, nothing else."""
    from embedops.embedding.registry import load_embedder

    embedder = load_embedder(TO_MODEL)
    with timed() as t:
        for b in batches:
            if b.texts:
                embedder.embed(list(b.texts.values()))
    return t.seconds


@contextmanager
def embed_timer(embedder: Any) -> Iterator[Timer]:
    """Seconds spent inside ``embedder.embed`` during the block (the rest is the backfill's own work)."""
    spent = Timer()
    original = embedder.embed

    def embed(texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        try:
            return original(texts)
        finally:
            spent.seconds += time.perf_counter() - started

    embedder.embed = embed  # an instance attribute shadows the method for this block only
    try:
        yield spent
    finally:
        del embedder.embed


def swap_cycles(migrator: Any, load: Load, rollbacks: int, settle: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """cutover → rollback → ... → cutover under the search load; each step's swap and call time."""
    steps: list[dict[str, Any]] = []
    gate: dict[str, Any] = {}
    with load.window("cutover"):
        time.sleep(settle)
        for i in range(rollbacks + 1):
            with timed() as t:
                result = migrator.cutover()
            gate = gate or result.gate.to_dict()
            steps.append({"op": "cutover", "swap_s": result.seconds, "call_s": round(t.seconds, 4)})
            log(f"cutover {i + 1}: swap {result.seconds * 1000:.1f} ms, call {fmt_s(t.seconds)} (gate included)")
            time.sleep(settle)
            if i == rollbacks:
                break
            with timed() as t:
                result = migrator.rollback()
            steps.append({"op": "rollback", "swap_s": result.seconds, "call_s": round(t.seconds, 4)})
            log(f"rollback {i + 1}: swap {result.seconds * 1000:.1f} ms, call {fmt_s(t.seconds)}")
            time.sleep(settle)
    return steps, gate


# -- quality -----------------------------------------------------------------------


def import_eval(ws: Any, data: Path) -> dict[str, Any] | None:
    if not (data / "qrels" / "test.tsv").is_file():
        return None
    from embedops.evaluate.store import import_evalset

    result = import_evalset(ws, EVALSET, data, split="test", source=SOURCE, alias=ws.settings.alias)
    return dict(result.check)


def ndcg_old_vs_new(ws: Any, old: str, new: str) -> dict[str, Any]:
    """nDCG@10 of both indexes on the imported eval set, through ``embedops.evaluate``'s paired comparison."""
    from embedops.evaluate.runner import compare_evalset

    cmp = compare_evalset(ws, EVALSET, old, new, k=K, segment_by=None)
    c = cmp.comparison
    metric = f"ndcg@{K}"
    return {
        "queries": cmp.run_a.queries, f"{metric}_old": round(cmp.run_a.metrics[metric], 4),
        f"{metric}_new": round(cmp.run_b.metrics[metric], 4), "delta": round(c.delta, 4),
        "ci95": [round(c.ci_low, 4), round(c.ci_high, 4)], "p_value": round(c.p_value, 4),
        "recall@10_old": round(cmp.run_a.metrics.get(f"recall@{K}", float("nan")), 4),
        "recall@10_new": round(cmp.run_b.metrics.get(f"recall@{K}", float("nan")), 4),
    }


def gate_figures(gate: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"passed": gate.get("passed")}
    for check in gate.get("checks", []):
        out[check["name"]] = check["value"]
    return out


# -- the run -----------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from embedops.compose import migrator as open_migrator
    from embedops.workspace import Workspace

    data = prepare_corpus(args.data, args.docs, tmp)
    ws = Workspace.init(tmp / "ws", embedder=FROM_MODEL)
    ws.add_source(SOURCE, data, kind="beir")
    with timed() as t:
        synced = ws.sync()
    status = ws.status()
    log(f"sync {FROM_MODEL}: {fmt_s(t.seconds)}, {status['documents']} documents, {status['chunks']} chunks")
    figures: dict[str, Any] = {"docs": status["documents"], "chunks": status["chunks"],
                               "sync_seconds": round(t.seconds, 2), "sync_embedded": synced.counts.embedded}
    figures["evalset"] = import_eval(ws, data)
    migrator = open_migrator(ws)
    started = migrator.start(TO_MODEL)
    plan = started.plan.to_dict()
    figures["plan"] = {k: plan.get(k) for k in ("chunks_to_embed", "tokens_to_embed", "estimated_seconds", "rechunk")}
    old, new = plan["from_index"], started.shadow_index
    target = ws.target(migrator.index(new))
    figures.update(old_index=old, new_index=new)

    load = Load(args.load, tmp / "ws" if args.load == "process" else ws, load_queries(data), args.qps, tmp / "load.json")
    load.start()
    log(f"search load: {args.load}, {args.qps} qps, {len(load.queries)} SciFact test queries")
    with load.window("idle"):
        time.sleep(args.idle_seconds)
    loaded_chunks = max(args.batch, round(status["chunks"] * args.loaded_fraction))
    with load.window("backfill"):
        part = backfill_part(migrator, args.batch, loaded_chunks)
    log(f"backfill under load: {part['chunks']} chunks in {fmt_s(part['seconds'])}")
    figures["backfill_loaded"] = {"chunks": part["chunks"], "seconds": round(part["seconds"], 2),
                                  "chunks_per_s": round(part["chunks"] / part["seconds"], 1)}

    figures["throughput"] = measure_throughput(ws, migrator, target, args.batch, args.segment_batches)
    steps, gate = swap_cycles(migrator, load, args.swaps, args.settle)
    records = load.finish()
    figures["swaps"] = steps
    figures["windows"] = {w.name: window_stats(w, records) for w in load.windows}
    figures["gate"] = gate_figures(gate)
    figures["quality"] = ndcg_old_vs_new(ws, old, new) if figures["evalset"] else None
    final = migrator.finalize()
    figures["finalize"] = {k: final.to_dict()[k] for k in ("dropped_index", "vectors_deleted", "chunks_deleted")}
    ws.close()
    return figures


def measure_throughput(ws: Any, migrator: Any, target: Any, batch: int, segment: int) -> dict[str, Any]:
    """Raw encode vs backfill of the remaining chunks, no search load, interleaved in segments.

    For each segment of ``segment`` batches: the bare model embeds the segment's
    texts, then ``Migrator.backfill`` runs those same batches (interrupted after
    them, as Ctrl-C would; the last call runs to the end and flushes the ANN).
    Interleaving exposes both to the same background load; every backfill call's
    own overhead (gap count, resume) is in its time.
    """
    plan = pending_batches(ws, target, batch)
    texts = [t for b in plan for t in b.texts.values()]
    if not texts:
        raise SystemExit("nothing left to backfill without load: pass more --docs or a smaller --loaded-fraction")
    tokens = count_tokens(target.embedder, texts)
    before = stored_hashes(ws, target.index.space_key)
    step = segment or len(plan)
    raw_s = fill_s = in_backfill = 0.0
    segments: list[dict[str, Any]] = []
    filled: Any = None
    for i in range(0, len(plan), step):
        part = plan[i : i + step]
        raw = raw_encode(part)
        with timed() as t, embed_timer(target.embedder) as spent:
            if i + step >= len(plan):
                filled = migrator.backfill(batch=batch)
            else:
                backfill_part(migrator, batch, sum(b.chunks for b in part))
        raw_s, fill_s, in_backfill = raw_s + raw, fill_s + t.seconds, in_backfill + spent.seconds
        segments.append({"texts": sum(len(b.texts) for b in part), "raw_s": round(raw, 2),
                         "backfill_s": round(t.seconds, 2), "ratio": round(raw / t.seconds, 3)})
        log(f"segment {len(segments)}: {segments[-1]}")
    assert filled is not None and filled.remaining == 0, filled
    embedded = stored_hashes(ws, target.index.space_key) - before
    return {
        "texts": len(texts), "tokens": tokens, "same_texts": embedded == {h for b in plan for h in b.texts},
        "batch": batch, "segments": segments,
        "raw_seconds": round(raw_s, 2), "raw_texts_per_s": round(len(texts) / raw_s, 1),
        "raw_tokens_per_s": round(tokens / raw_s, 1),
        "backfill_seconds": round(fill_s, 2),
        "backfill_embed_seconds": round(in_backfill, 2), "backfill_other_seconds": round(fill_s - in_backfill, 2),
        "backfill_chunks_per_s": round(sum(b.chunks for b in plan) / fill_s, 1),
        "backfill_texts_per_s": round(len(texts) / fill_s, 1),
        "backfill_tokens_per_s": round(tokens / fill_s, 1),
        "ratio": round(raw_s / fill_s, 4),
    }


# -- report ------------------------------------------------------------------------


def build_report(f: dict[str, Any], args: argparse.Namespace) -> tuple[Report, list[list[str]]]:
    tp, w = f["throughput"], f["windows"]
    idle, bf, cut = w["idle"], w["backfill"], w["cutover"]
    swaps = [s["swap_s"] for s in f["swaps"]]
    cut_s = [s["swap_s"] for s in f["swaps"] if s["op"] == "cutover"]
    back_s = [s["swap_s"] for s in f["swaps"] if s["op"] == "rollback"]
    report = Report("migration", figures={**f, "load_mode": args.load, "qps_target": args.qps})
    report.checks = [
        Check("backfill / raw encode throughput", tp["ratio"], RATIO_MIN, at_most=False),
        Check("queries/s during backfill", bf["qps"], QPS_MIN, at_most=False),
        Check("failed queries during backfill", bf["failed"], 0),
        Check("queries/s during cutover", cut["qps"], QPS_MIN, at_most=False),
        Check("failed queries during cutover", cut["failed"], 0),
        Check("mixed result lists (all windows)", sum(x["mixed"] for x in w.values()), 0),
        Check("max cutover swap", max(cut_s), SWAP_MAX_S, " s"),
        Check("max rollback swap", max(back_s) if back_s else 0.0, SWAP_MAX_S, " s"),
    ]
    rows = [
        ["corpus", f"{f['docs']} docs, {f['chunks']} chunks", f"sync {FROM_MODEL}: {fmt_s(f['sync_seconds'])}"],
        ["raw encode (no load)", f"{tp['raw_texts_per_s']} chunks/s, {tp['raw_tokens_per_s']} tok/s",
         f"{tp['texts']} texts, {tp['tokens']} tokens, {fmt_s(tp['raw_seconds'])}"],
        ["backfill (no load)", f"{tp['backfill_texts_per_s']} chunks/s, {tp['backfill_tokens_per_s']} tok/s",
         f"ratio {tp['ratio']:.3f}, {fmt_s(tp['backfill_seconds'])} ({fmt_s(tp['backfill_embed_seconds'])} in embed),"
         f" same texts: {tp['same_texts']}"],
        ["backfill (under load)", f"{f['backfill_loaded']['chunks_per_s']} chunks/s",
         f"{f['backfill_loaded']['chunks']} chunks, {fmt_s(f['backfill_loaded']['seconds'])}"],
    ]
    for name, s in (("idle", idle), ("during backfill", bf), ("during cutovers", cut)):
        rows.append([f"search {name}", f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms",
                     f"{s['queries']} q at {s['qps']} q/s, failed {s['failed']}, mixed {s['mixed']}"])
    rows.append(["  first query after each swap", ", ".join(f"{x} ms" for x in cut["first_after_switch_ms"]), ""])
    for model, m in cut["served_by"].items():
        rows.append([f"  cutover window, {model}", f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms", f"{m['queries']} q"])
    rows.append(["swap (cutover/rollback)", f"max {max(swaps) * 1000:.1f} ms, mean {1000 * sum(swaps) / len(swaps):.1f} ms",
                 f"{len(cut_s)} cutovers, {len(back_s)} rollbacks; whole calls {', '.join(fmt_s(s['call_s']) for s in f['swaps'])}"])
    g = f["gate"]
    rows.append(["gate", f"overlap@10 {g.get('overlap@10')}, rank corr {g.get('rank_correlation')}", f"passed {g['passed']}"])
    if f["quality"]:
        q = f["quality"]
        rows.append(["nDCG@10 old → new", f"{q['ndcg@10_old']} → {q['ndcg@10_new']} (Δ {q['delta']:+.4f})",
                     f"95% CI {q['ci95']}, p={q['p_value']}, {q['queries']} queries"])
    return report, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR SciFact folder (default ../shared/data/scifact)")
    parser.add_argument("--docs", type=int, default=None, help="use only the first N documents (smoke tests)")
    parser.add_argument("--qps", type=float, default=25.0, help="search load rate (default 25)")
    parser.add_argument("--load", choices=("process", "thread"), default="process", help="where the search loop runs")
    parser.add_argument("--batch", type=int, default=256, help="backfill and raw-encode batch size (default 256)")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="idle latency window (default 20)")
    parser.add_argument("--loaded-fraction", type=float, default=0.25, help="share of chunks backfilled under load")
    parser.add_argument("--segment-batches", type=int, default=8,
                        help="interleave raw encode and backfill every N batches (0: one of each; default 8)")
    parser.add_argument("--swaps", type=int, default=3, help="rollbacks between cutovers (default 3)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load between swaps (default 3)")
    args = parser.parse_args(argv)
    if not (args.data / "corpus.jsonl").is_file():
        parser.error(f"{args.data} holds no corpus.jsonl: pass --data BEIR_FOLDER")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="embedops-bench-migration-") as tmp:
        figures = run(args, Path(tmp))
    # Other work on the machine skews every figure here: say how busy it was.
    figures["loadavg"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    report, rows = build_report(figures, args)
    print(f"migration: SciFact {FROM_MODEL} → {TO_MODEL}, search load {args.qps:g} q/s ({args.load}),"
          f" load average before/after {figures['loadavg']['before'][0]}/{figures['loadavg']['after'][0]}")
    report.print(rows, ["measurement", "figures", "detail"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
