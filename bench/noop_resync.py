"""Benchmark: first sync, no-op re-sync and a 1% change, against LangChain's ``index()``.

A JSONL source of ``--docs`` generated documents (~100 words each) is synced
with the ``hashing`` embedder (numpy only, so the figures measure the pipeline,
not a model). Then:

* a no-op sync must embed 0 chunks and take at most 2.5 s;
* after editing 1% of the documents (the last sentence of every 100th), the
  sync must embed at most 1.05x the chunks whose content hash is new, in at
  most 10% of the first sync's time.

Each sync runs in a freshly opened Workspace, as a new ``embedops sync``
process would (its ANN file is read back from disk). When langchain-core is
installed, the same three steps run through ``langchain_core.indexing.index``
with an ``InMemoryRecordManager``, an ``InMemoryVectorStore`` and the same
embedder and chunker, and the ratios are printed side by side.

    .venv/bin/python bench/noop_resync.py              # 100,000 documents
    .venv/bin/python bench/noop_resync.py --docs 2000  # smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, SentenceMaker, fmt_s, load_average, log, timed  # noqa: E402

NOOP_MAX_S = 2.5
CHANGED_FRACTION = 0.01
EMBED_RATIO_MAX = 1.05
CHANGE_TIME_RATIO_MAX = 0.10
CATEGORIES = ("biology", "physics", "geology", "computing", "medicine")


# -- corpus ------------------------------------------------------------------------


def make_records(n_docs: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n_docs`` records of 60 to 140 words (100 on average), with a title and a category."""
    maker = SentenceMaker(seed=seed)
    records = []
    for i in range(n_docs):
        sentences = maker.document(maker.rng.randint(60, 140))
        records.append({
            "id": f"doc{i:07d}",
            "title": maker.sentence(4).rstrip("."),
            "text": " ".join(sentences),
            "category": CATEGORIES[i % len(CATEGORIES)],
        })
    return records


def edit_one_percent(records: list[dict[str, Any]], seed: int = 1) -> int:
    """Replace the last sentence of every 100th record (in place); returns how many changed."""
    maker = SentenceMaker(seed=seed)
    step = round(1 / CHANGED_FRACTION)
    changed = 0
    for record in records[7::step]:
        head, _, _ = record["text"].rstrip(".").rpartition(". ")
        record["text"] = (head + ". " if head else "") + maker.sentence(10)
        changed += 1
    return changed


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# -- embedops ----------------------------------------------------------------------


def run_embedops(root: Path, corpus: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    from embedops.workspace import Workspace

    ws = Workspace.init(root, embedder="hashing")
    ws.add_source("bench", corpus, kind="jsonl", title_field="title")
    ws.close()
    first = _timed_sync(root, "first sync")
    noop = _timed_sync(root, "no-op sync")
    before = _chunk_hashes(root)
    changed_docs = edit_one_percent(records)
    write_jsonl(corpus, records)
    change = _timed_sync(root, "1% change sync")
    new_hashes = _chunk_hashes(root) - before
    return {
        "first": first,
        "noop": noop,
        "change": change,
        "changed_docs": changed_docs,
        "new_chunk_hashes": len(new_hashes),
        "chunks": _count_chunks(root),
    }


def _timed_sync(root: Path, label: str) -> dict[str, Any]:
    from embedops.workspace import Workspace

    gc.collect()
    with timed() as t:
        with Workspace.open(root) as ws:
            result = ws.sync()
    c = result.counts
    log(f"embedops {label}: {fmt_s(t.seconds)} (cpu {fmt_s(t.cpu_seconds)}, load {load_average()})  "
        f"added={c.added} updated={c.updated} unchanged={c.unchanged} embedded={c.embedded}")
    return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "load_average_1m": load_average(), "added": c.added,
            "updated": c.updated, "deleted": c.deleted, "unchanged": c.unchanged, "embedded": c.embedded}


def _chunk_hashes(root: Path) -> set[str]:
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.workspace import Workspace

    c, d = schema.chunks, schema.documents
    with Workspace.open(root) as ws, ws.engine.connect() as conn:
        q = sa.select(c.c.content_hash).join(d, d.c.id == c.c.document_id).where(d.c.deleted_at.is_(None))
        return set(conn.execute(q).scalars())


def _count_chunks(root: Path) -> int:
    from embedops.workspace import Workspace

    with Workspace.open(root) as ws:
        return int(ws.status()["chunks"])


# -- LangChain ---------------------------------------------------------------------


def run_langchain(corpus: Path, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The same three steps through ``langchain_core.indexing.index``; None without langchain-core."""
    try:
        from langchain_core.indexing import InMemoryRecordManager
        from langchain_core.vectorstores import InMemoryVectorStore
    except ImportError:
        log("langchain-core is not installed: skipping the LangChain comparison")
        return None
    from embedops.chunking.registry import make_chunker
    from embedops.embedding.registry import load_embedder

    embedder = load_embedder("hashing")
    chunker = make_chunker("structured", {}, count_tokens=embedder.count_tokens, tokenizer_name=embedder.tokenizer_name)
    embeddings = _langchain_embeddings(embedder)
    manager = InMemoryRecordManager("bench")
    manager.create_schema()
    store = InMemoryVectorStore(embeddings)
    write_jsonl(corpus, records)
    out = {"first": _timed_index(corpus, chunker, manager, store, embeddings, "first index")}
    out["noop"] = _timed_index(corpus, chunker, manager, store, embeddings, "no-op index")
    edit_one_percent(records)
    write_jsonl(corpus, records)
    out["change"] = _timed_index(corpus, chunker, manager, store, embeddings, "1% change index")
    return out


def _langchain_embeddings(embedder: Any) -> Any:
    from langchain_core.embeddings import Embeddings

    class HashingEmbeddings(Embeddings):
        """embedops' hashing embedder behind LangChain's interface, counting what it embeds."""

        def __init__(self) -> None:
            self.embedded = 0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            self.embedded += len(texts)
            return embedder.embed(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed([text])[0].tolist()

    return HashingEmbeddings()


def _timed_index(corpus: Path, chunker: Any, manager: Any, store: Any, embeddings: Any, label: str) -> dict[str, Any]:
    """Load, chunk and ``index()`` the whole file: what a LangChain pipeline does on every run."""
    from langchain_core.indexing import index

    gc.collect()
    embeddings.embedded = 0
    with timed() as t:
        # "full": the loader yields every record each run, as our file source does; the stale
        # records are removed once at the end ("incremental" rescans the record manager per batch).
        result = index(_langchain_docs(corpus, chunker), manager, store, cleanup="full", key_encoder="blake2b")
    log(f"langchain {label}: {fmt_s(t.seconds)} (cpu {fmt_s(t.cpu_seconds)})  {dict(result)}  embedded={embeddings.embedded}")
    return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "embedded": embeddings.embedded, **dict(result)}


def _langchain_docs(corpus: Path, chunker: Any) -> Iterator[Any]:
    from langchain_core.documents import Document

    with corpus.open("rb") as handle:
        for line in handle:
            obj = json.loads(line)
            text = obj["title"] + " " + obj["text"]
            meta = {"source": obj["id"], "title": obj["title"], "category": obj["category"]}
            for chunk in chunker.chunk(text):
                yield Document(page_content=chunk.text, metadata=meta)


# -- report ------------------------------------------------------------------------


def build_report(n_docs: int, ours: dict[str, Any], theirs: dict[str, Any] | None) -> tuple[Report, list[list[str]]]:
    first, noop, change = ours["first"]["seconds"], ours["noop"]["seconds"], ours["change"]["seconds"]
    new_chunks = ours["new_chunk_hashes"]
    embed_ratio = ours["change"]["embedded"] / max(new_chunks, 1)
    report = Report("noop_resync", figures={"docs": n_docs, "embedops": ours, "langchain": theirs})
    report.checks = [
        Check("no-op sync seconds", noop, NOOP_MAX_S, " s"),
        Check("no-op sync embedded chunks", ours["noop"]["embedded"], 0),
        Check("1% change: embedded / new chunks", embed_ratio, EMBED_RATIO_MAX),
        Check("1% change: time / first sync", change / first, CHANGE_TIME_RATIO_MAX),
    ]
    rows = [
        [label, _wall_cpu(ours[step]), str(ours[step]["embedded"]), "", ""]
        for label, step in (("first sync", "first"), ("no-op sync", "noop"), ("1% change sync", "change"))
    ]
    if theirs:
        for row, step in zip(rows, ("first", "noop", "change"), strict=True):
            lc = theirs[step]
            row[3] = f"{_wall_cpu(lc)} / {lc['embedded']}"
            row[4] = f"{lc['seconds'] / max(ours[step]['seconds'], 1e-9):.1f}x"
        report.figures["langchain_over_embedops"] = {
            s: round(theirs[s]["seconds"] / max(ours[s]["seconds"], 1e-9), 2) for s in ("first", "noop", "change")
        }
    rows.append(["changed documents", str(ours["changed_docs"]), "", "", ""])
    rows.append(["new chunk hashes", str(new_chunks), f"of {ours['chunks']} chunks", "", ""])
    return report, rows


def _wall_cpu(step: dict[str, Any]) -> str:
    return f"{fmt_s(step['seconds'])} (cpu {step['cpu_seconds']:.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000, help="documents to generate (default 100000)")
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain comparison")
    args = parser.parse_args(argv)

    log(f"generating {args.docs} documents ...")
    records = make_records(args.docs)
    with tempfile.TemporaryDirectory(prefix="embedops-bench-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        write_jsonl(corpus, records)
        original = [dict(r) for r in records]
        ours = run_embedops(Path(tmp) / "ws", corpus, records)
        theirs = None if args.no_langchain else run_langchain(Path(tmp) / "lc.jsonl", original)
    report, rows = build_report(args.docs, ours, theirs)
    print(f"noop_resync: {args.docs} documents, {ours['chunks']} chunks, hashing embedder")
    report.print(rows, ["step", "embedops wall (cpu) time", "embedded", "LangChain index() wall (cpu) / embedded",
                        "LangChain / embedops (wall)"])
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
