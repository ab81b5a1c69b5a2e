"""Bringing one index up to date from the catalog (no source read).

Used by sync to repair an index that lags the catalog, and by a migration's
backfill to fill a shadow index. Work is found by anti-joins, so it is
naturally resumable: whatever a killed run committed is not done again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.embedding.spend import Guard, Job, Line, Spend, cache_saving, record
from embedops.errors import InputsRejected
from embedops.sync.run import Target, _insert_returning_ids, embed_texts
from embedops.vectors.base import IndexInfo, VectorRow, VectorStore

Progress = Callable[[int], None]


@dataclass
class Gap:
    """What an index lacks: documents never chunked by its chunker, chunks without a vector."""

    unchunked_docs: int
    missing_vectors: int

    @property
    def total(self) -> int:
        return self.unchunked_docs + self.missing_vectors


def _unchunked(index: IndexInfo) -> tuple[sa.ColumnElement[bool], ...]:
    """Live documents that this index's chunker has not chunked."""
    d, c = schema.documents, schema.chunks
    has = sa.select(c.c.id).where(c.c.document_id == d.c.id, c.c.chunker_key == index.chunker_key).exists()
    return d.c.deleted_at.is_(None), ~has


def _unvectored(index: IndexInfo) -> tuple[sa.ColumnElement[bool], ...]:
    """Chunks (joined to their live documents) without a vector in this index."""
    d, c, v = schema.documents, schema.chunks, schema.vectors
    has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, v.c.index_id == index.id).exists()
    return d.c.deleted_at.is_(None), c.c.chunker_key == index.chunker_key, ~has


def _live_docs_without_chunks(target: Target) -> sa.Select[int, str, str]:
    d = schema.documents
    return sa.select(d.c.id, d.c.text, d.c.content_hash).where(*_unchunked(target.index)).order_by(d.c.id)


def _chunks_without_vectors(target: Target) -> sa.Select[int, str, str, str, int]:
    d, c = schema.documents, schema.chunks
    return (
        sa.select(c.c.id, c.c.content_hash, c.c.text, d.c.content_hash, d.c.id)
        .join(d, d.c.id == c.c.document_id)
        .where(*_unvectored(target.index))
        .order_by(c.c.id)
    )


def measure_gap(conn: sa.Connection, target: Target | IndexInfo) -> Gap:
    """What ``target`` (an index, with or without its chunker and embedder) lacks; reads counts only."""
    index = target.index if isinstance(target, Target) else target
    # Counts select no text and no order, so SQLite answers them from covering
    # indexes instead of reading every document's and chunk's text.
    d, c, v = schema.documents, schema.chunks, schema.vectors
    live_chunks = (
        sa.select(sa.func.count())
        .select_from(c.join(d, d.c.id == c.c.document_id))
        .where(d.c.deleted_at.is_(None), c.c.chunker_key == index.chunker_key)
    )
    vectors = sa.select(sa.func.count()).where(v.c.index_id == index.id)
    unchunked = sa.select(sa.func.count()).select_from(d).where(*_unchunked(index))
    n_chunks, n_vectors, n_unchunked = conn.execute(
        sa.select(live_chunks.scalar_subquery(), vectors.scalar_subquery(), unchunked.scalar_subquery())
    ).one()
    missing = n_chunks - n_vectors
    if missing < 0 or (missing == 0 and n_chunks and n_unchunked == 0):
        # counts agree (or vectors outnumber chunks, which the anti-join below settles)
        unvectored = sa.select(sa.func.count()).select_from(c.join(d, d.c.id == c.c.document_id)).where(*_unvectored(index))
        missing = conn.execute(unvectored).scalar_one()
    return Gap(int(n_unchunked), int(missing))


def fill_index(
    engine: sa.Engine,
    store: VectorStore,
    target: Target,
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
    ledger_kind: str = "index.fill",
    pause: Callable[[int], None] | None = None,
    job: Job | None = None,
    guard: Guard | None = None,
) -> dict[str, int]:
    """Chunk what is unchunked and embed what lacks a vector, one transaction per batch.

    Each batch's spend is recorded with its ledger row under ``job``; ``guard`` stops the fill (raising
    :class:`BudgetExceeded` after a ``{ledger_kind}_stopped`` ledger row) once the spend reaches its cap."""
    progress = progress or (lambda n: None)
    job = job or Job.new(ledger_kind.rsplit(".", 1)[-1])
    done = {"chunked_docs": 0, "embedded": 0, "vectors": 0}
    # Cursors (ids only grow) guarantee progress even for a document that yields no chunk.
    after_doc = 0
    while True:
        doc_q = _live_docs_without_chunks(target).where(schema.documents.c.id > after_doc).limit(batch_size)
        with engine.connect() as conn:
            docs = conn.execute(doc_q).all()
        if not docs:
            break
        _chunk_docs(engine, target, docs, ledger_kind)
        done["chunked_docs"] += len(docs)
        after_doc = int(docs[-1].id)
    after_chunk = 0
    while True:
        chunk_q = _chunks_without_vectors(target).where(schema.chunks.c.id > after_chunk).limit(batch_size)
        with engine.connect() as conn:
            rows = conn.execute(chunk_q).all()
            missing = store.missing_embeddings(conn, target.index.space_key, [r[1] for r in rows])
        if not rows:
            break
        texts = {r[1]: r[2] for r in rows if r[1] in missing}
        if texts and guard is not None and guard.reached():  # a batch of cached vectors costs nothing: it proceeds
            _stopped(engine, target, guard, ledger_kind, job, done)
        spend = cache_saving(target.embedder, list({r[1]: r[2] for r in rows if r[1] not in missing}.values()),
                             target.price)
        started = time.perf_counter()
        vectors, rejected = _embed_or_report(target, texts, spend)
        timing = {target.index.space_key: [sum(map(len, texts.values())), round(time.perf_counter() - started, 4)]}
        with engine.begin() as conn:
            store.put_embeddings(conn, target.index.space_key, vectors)
            # A concurrent sync may have replaced some of these chunks meanwhile: write only what still lacks a vector.
            still = _still_missing(conn, target, [r[0] for r in rows])
            vrows = [VectorRow(r[0], r[1], target.index.space_key, target.chunker.ref.key, r[3])
                     for r in rows if r[0] in still and r[1] not in rejected]
            written = store.write(conn, target.index, vrows)
            extra = {"rejected": [{"chunk": r[0], "reason": rejected[r[1]]} for r in rows if r[1] in rejected][:100]}
            ledger_id = write_ledger(conn, ledger_kind, index=target.index.id, vectors=written, embedded=len(vectors),
                                     embed=timing if texts else {}, job=job.id, **(extra if rejected else {}))
            record(conn, ledger_id, job, [Line(target.index.space_key, target.index.embedder, spend)])
        if guard is not None:
            guard.add(spend.cost)
        after_chunk = int(rows[-1][0])
        done["embedded"] += len(vectors)
        done["vectors"] += written
        progress(len(rows))
        if pause:
            pause(len({r[4] for r in rows}))  # throttles count documents
    return done


def _stopped(engine: sa.Engine, target: Target, guard: Guard, kind: str, job: Job, done: dict[str, int]) -> NoReturn:
    """The cap is reached: say so in the ledger (what was committed stays) and stop."""
    with engine.connect() as conn:
        left = measure_gap(conn, target.index).missing_vectors
    error = guard.stopped(f"{left} chunks of index {target.index.id} still lack a vector", index=target.index.id,
                          remaining_chunks=left)
    with engine.begin() as conn:
        write_ledger(conn, f"{kind}_stopped", index=target.index.id, reason="budget", error=error.message,
                     hint=error.hint, spent=error.details["spent"], cap=guard.cap, remaining_chunks=left,
                     embedded=done["embedded"], job=job.id)
    raise error


def _embed_or_report(target: Target, texts: dict[str, str], spend: Spend) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Vectors by content hash, and the hashes the provider refused with its reason.

    A refused chunk gets no vector (the gap stays, and the ledger row says why),
    while the rest of the batch is written."""
    if not texts:
        return {}, {}
    hashes = list(texts)
    try:
        vecs = embed_texts(target.embedder, [texts[h] for h in hashes], target.price, spend)
    except InputsRejected as exc:
        return {hashes[i]: v for i, v in exc.vectors.items()}, {hashes[i]: why for i, why in exc.rejected.items()}
    return dict(zip(hashes, vecs, strict=True)), {}


def _still_missing(conn: sa.Connection, target: Target, chunk_ids: list[int]) -> set[int]:
    c, v = schema.chunks, schema.vectors
    has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, v.c.index_id == target.index.id).exists()
    return set(conn.execute(sa.select(c.c.id).where(c.c.id.in_(chunk_ids), ~has)).scalars())


def _chunk_docs(engine: sa.Engine, target: Target, docs: Sequence[sa.Row[int, str, str]], kind: str) -> None:
    key = target.chunker.ref.key
    chunked = {doc_id: target.chunker.chunk(text) for doc_id, text, _ in docs}
    with engine.begin() as conn:
        # A concurrent sync may have chunked (or deleted) some of these documents meanwhile.
        todo = _live_docs_without_chunks(target).where(schema.documents.c.id.in_(list(chunked)))
        still = {r[0] for r in conn.execute(todo)}
        rows = [
            {"document_id": doc_id, "chunker_key": key, "ordinal": ch.ordinal, "text": ch.text,
             "start": ch.start, "end": ch.end, "content_hash": ch.content_hash}
            for doc_id, chunks in chunked.items() if doc_id in still
            for ch in chunks
        ]
        _insert_returning_ids(conn, schema.chunks, rows)
        write_ledger(conn, kind, index=target.index.id, chunked_documents=len(docs), chunks=len(rows))
