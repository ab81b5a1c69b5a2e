"""Benchmark: what a sync costs on top of the model's own encoding time.

The SciFact corpus (a BEIR folder) is synced into a fresh workspace with
``minilm-l3`` (ONNX Runtime). Then, in the same process, the distinct chunk
texts that sync stored are encoded again by the same embedder object, the
way a hand-written script would: one ``embedder.embed(texts)`` call (which
sorts by length and runs batches of ``embedding.onnx.BATCH_SIZE``), nothing
else. The sync embeds each distinct chunk hash once, so both encode exactly
the same texts. Target: end-to-end sync time <= 1.15x the raw encode time.

The model is loaded and warmed up before either is timed (loading is the same
one-off cost for both and is reported on its own).

    .venv/bin/python bench/sync_overhead.py                       # ../shared/data/scifact
    .venv/bin/python bench/sync_overhead.py --data DIR --limit 500  # smoke test on 500 documents
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, Check, Report, Timer, fmt_s, load_average, log, timed  # noqa: E402

RATIO_MAX = 1.15
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "scifact"
EMBEDDER = "minilm-l3"


def corpus_path(data: Path, limit: int | None, tmp: Path) -> Path:
    """The BEIR corpus file, or a copy of its first ``limit`` lines."""
    from embedops.sources.beir import BeirSource

    full = BeirSource("bench", data)._records_path()
    if limit is None:
        return full
    head = tmp / "corpus.jsonl"
    with full.open("rb") as src, head.open("wb") as dst:
        for _, line in zip(range(limit), src):
            dst.write(line)
    return head


def load_model() -> tuple[Any, float]:
    from embedops.embedding.registry import load_embedder

    with timed() as t:
        embedder = load_embedder(EMBEDDER)
        embedder.embed(["warm-up: the first run of an ONNX session allocates its buffers"] * 8)
    return embedder, t.seconds


class ModelClock:
    """Times every ``embed`` call the sync makes: how long the model was busy, and when."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.calls: list[tuple[float, float]] = []

    def __enter__(self) -> ModelClock:
        inner = self.embedder.embed

        def embed(texts: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(texts)
            finally:
                self.calls.append((start, time.perf_counter()))

        self.embedder.embed = embed  # an instance attribute: the class's method is untouched
        return self

    def __exit__(self, *exc: object) -> None:
        del self.embedder.embed

    def summary(self, started: float, ended: float) -> dict[str, float]:
        busy = sum(end - start for start, end in self.calls)
        return {"model_busy_s": round(busy, 3), "model_idle_s": round(ended - started - busy, 3),
                "before_first_embed_s": round(self.calls[0][0] - started, 3) if self.calls else 0.0,
                "after_last_embed_s": round(ended - self.calls[-1][1], 3) if self.calls else 0.0}


def run_sync(root: Path, corpus: Path, embedder: Any) -> tuple[Any, Timer, dict[str, float]]:
    from embedops.workspace import Workspace

    ws = Workspace.init(root, embedder=EMBEDDER)
    ws.add_source("scifact", corpus, kind="beir")
    gc.collect()
    with ModelClock(embedder) as clock, timed() as t:
        started = time.perf_counter()
        result = ws.sync()
    ws.close()
    phases = clock.summary(started, started + t.seconds)
    log(f"sync: {fmt_s(t.seconds)} (cpu {fmt_s(t.cpu_seconds)}, load {load_average()})  "
        f"{result.counts.added} documents, {result.counts.embedded} chunks embedded; {phases}")
    return result, t, phases


def stored_chunk_texts(root: Path) -> list[str]:
    """Each distinct live chunk text once, in chunk order: what the sync had to embed."""
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.workspace import Workspace

    c, d = schema.chunks, schema.documents
    q = (sa.select(c.c.content_hash, c.c.text).join(d, d.c.id == c.c.document_id)
         .where(d.c.deleted_at.is_(None)).order_by(c.c.id))  # fmt: skip
    with Workspace.open(root) as ws, ws.engine.connect() as conn:
        return list(dict(conn.execute(q).all()).values())


def raw_encode(embedder: Any, texts: list[str]) -> Timer:
    gc.collect()
    with timed() as t:
        vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), embedder.ref.dims)
    log(f"raw encode: {fmt_s(t.seconds)} (cpu {fmt_s(t.cpu_seconds)}, load {load_average()})  {len(texts)} texts")
    return t


def model_tokens(embedder: Any, texts: list[str]) -> int:
    """Tokens the model sees: special tokens included, truncated at its window."""
    window = embedder.ref.max_tokens or 10**9
    return sum(min(embedder.count_tokens(t), window) for t in texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"BEIR dataset folder (default {DEFAULT_DATA})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N documents (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the medians are compared")
    args = parser.parse_args(argv)

    embedder, load_s = load_model()
    log(f"{EMBEDDER} loaded and warmed up in {fmt_s(load_s)}")
    syncs: list[Timer] = []
    raws: list[Timer] = []
    with tempfile.TemporaryDirectory(prefix="embedops-bench-") as tmp:
        corpus = corpus_path(args.data, args.limit, Path(tmp))
        for i in range(args.repeat):
            root = Path(tmp) / f"ws{i}"
            result, timer, phases = run_sync(root, corpus, embedder)
            syncs.append(timer)
            texts = stored_chunk_texts(root)
            raws.append(raw_encode(embedder, texts))
    tokens = model_tokens(embedder, texts)
    sync_s, raw_s = _median([t.seconds for t in syncs]), _median([t.seconds for t in raws])
    sync_cpu, raw_cpu = _median([t.cpu_seconds for t in syncs]), _median([t.cpu_seconds for t in raws])
    ratio = sync_s / raw_s
    report = Report("sync_overhead", figures={
        "embedder": EMBEDDER, "documents": result.counts.added, "chunks_embedded": result.counts.embedded,
        "distinct_chunk_texts": len(texts), "model_tokens": tokens, "model_load_s": round(load_s, 3),
        "sync_s": [round(t.seconds, 3) for t in syncs], "raw_encode_s": [round(t.seconds, 3) for t in raws],
        "sync_cpu_s": [round(t.cpu_seconds, 3) for t in syncs], "raw_cpu_s": [round(t.cpu_seconds, 3) for t in raws],
        "sync_tokens_per_s": round(tokens / sync_s), "raw_tokens_per_s": round(tokens / raw_s),
        "ratio": round(ratio, 4), "cpu_ratio": round(sync_cpu / raw_cpu, 4), "last_sync_phases": phases,
    })
    report.checks = [
        Check("chunks embedded == distinct chunk texts", abs(result.counts.embedded - len(texts)), 0),
        Check("sync time / raw encode time", ratio, RATIO_MAX),
    ]
    rows = [
        ["raw encode (embedder.embed)", fmt_s(raw_s), fmt_s(raw_cpu), f"{tokens / raw_s:,.0f}", "1.00x"],
        ["embedops sync (end to end)", fmt_s(sync_s), fmt_s(sync_cpu), f"{tokens / sync_s:,.0f}", f"{ratio:.2f}x"],
    ]
    print(f"sync_overhead: {result.counts.added} documents, {len(texts)} distinct chunks, {tokens:,} model tokens, {EMBEDDER}")
    report.print(rows, ["what", "wall time", "cpu time", "tokens/s", "vs raw (wall)"])
    return 0 if report.ok else 1


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


if __name__ == "__main__":
    raise SystemExit(main())
