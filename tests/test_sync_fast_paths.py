"""The sync's fast paths give the same answers as the plain ones they replace."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.embedding.registry import load_embedder
from embedops.sources.base import Document, Unchanged
from embedops.sync.fill import _chunks_without_vectors, _live_docs_without_chunks, measure_gap
from embedops.sync.plan import CatalogDoc, CatalogRows, plan_sync
from embedops.sync.run import _insert_returning_ids
from embedops.workspace import Workspace


def _count(conn: sa.Connection, q: sa.Select[tuple[int, str, str]] | sa.Select[tuple[int, str, str, str, int]]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())


def test_inserted_ids_are_the_ones_the_database_would_give(ws: Workspace) -> None:
    ws.sync()
    c = schema.chunks
    with ws.engine.begin() as conn:
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        doc_id = conn.execute(sa.select(c.c.document_id).limit(1)).scalar_one()
        rows = [{"document_id": doc_id, "chunker_key": conn.execute(sa.select(c.c.chunker_key).limit(1)).scalar_one(),
                 "ordinal": 1000 + i, "text": f"extra {i}", "start": 0, "end": 7, "content_hash": f"h{i}"}
                for i in range(3)]  # fmt: skip
        ids = _insert_returning_ids(conn, c, rows)
        assert ids == [top + 1, top + 2, top + 3]
        stored = dict(conn.execute(sa.select(c.c.id, c.c.text).where(c.c.id.in_(ids))).all())
        assert stored == {i: r["text"] for i, r in zip(ids, rows, strict=True)}
        # The next row the database numbers itself follows on.
        rows[0]["ordinal"] = 2000
        conn.execute(c.insert(), rows[:1])
        assert conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one() == top + 4
        conn.rollback()


def test_measure_gap_counts_what_the_fill_queries_find(ws: Workspace) -> None:
    ws.sync()
    d, c, v = schema.documents, schema.chunks, schema.vectors
    with ws.engine.connect() as conn:
        target = ws.kept_targets()[0]
        assert measure_gap(conn, target).total == 0
    with ws.engine.begin() as conn:  # a lagging index: vectors lost, one document never chunked
        lost = list(conn.execute(sa.select(v.c.chunk_id).order_by(v.c.chunk_id.desc()).limit(4)).scalars())
        conn.execute(sa.delete(v).where(v.c.chunk_id.in_(lost)))
        doc = conn.execute(sa.select(d.c.id).order_by(d.c.id).limit(1)).scalar_one()
        first_chunks = list(conn.execute(sa.select(c.c.id).where(c.c.document_id == doc)).scalars())
        conn.execute(sa.delete(v).where(v.c.chunk_id.in_(first_chunks)))
        conn.execute(sa.delete(c).where(c.c.document_id == doc))
    with ws.engine.connect() as conn:
        gap = measure_gap(conn, target)
        assert gap.unchunked_docs == _count(conn, _live_docs_without_chunks(target)) == 1
        assert gap.missing_vectors == _count(conn, _chunks_without_vectors(target)) == len(set(lost) - set(first_chunks))
    ws.sync()  # the served index is repaired by the next sync
    with ws.engine.connect() as conn:
        assert measure_gap(conn, target).total == 0


def test_edits_of_many_documents_update_every_row(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(12):
        (folder / f"d{i:02d}.txt").write_text(f"version one of document {i}")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", folder)
    ws.sync()
    time.sleep(0.01)  # a new mtime, so the signature changes too
    for i in range(12):
        (folder / f"d{i:02d}.txt").write_text(f"version two of document {i}")
    assert ws.sync().counts.updated == 12
    d = schema.documents
    with ws.engine.connect() as conn:
        texts = dict(conn.execute(sa.select(d.c.external_id, d.c.text)).all())
    assert texts == {f"d{i:02d}.txt": f"version two of document {i}" for i in range(12)}
    ws.close()


def test_cached_token_counts_equal_fresh_ones() -> None:
    embedder = load_embedder("minilm-l3")
    from tokenizers import Tokenizer

    fresh = Tokenizer.from_file(str(embedder.files.tokenizer))  # type: ignore[attr-defined]
    fresh.no_truncation()
    fresh.no_padding()
    texts = ["tokenization", "word", "word", "", "a much longer sentence " * 20, "naïve café", "tokenization"]
    for text in texts:
        assert embedder.count_tokens(text) == len(fresh.encode(text).ids)


def test_plan_over_loaded_rows_equals_plan_over_catalog_docs() -> None:
    rows = [("a", 1, Document("a", "alpha").content_hash, "s1"), ("b", 2, "old-hash", None), ("gone", 3, "h", None)]
    docs = {ext: CatalogDoc(i, h, s) for ext, i, h, s in rows}
    lazy = CatalogRows(rows)
    assert dict(lazy) == docs and "a" in lazy and "zz" not in lazy and lazy.signatures() == {"a": "s1", "b": None, "gone": None}
    scan = [Unchanged("a"), Document("b", "beta"), Document("new", "fresh")]
    assert plan_sync("s", scan, lazy) == plan_sync("s", scan, docs)
    assert plan_sync("s", scan, lazy).deleted == [(3, "gone")]
