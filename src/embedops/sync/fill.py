"""Bringing one index up to date from the catalog (no source read).

Used by sync to repair an index that lags the catalog, and by a migration's
backfill to fill a shadow index. Work is found by anti-joins, so it is
naturally resumable: whatever a killed run committed is not done again.
Embedding runs on the executor given (``execute/``); reading the work and
committing it stay here, one transaction per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.curation import language_of, not_quarantined
from embedops.catalog.ledger import write_ledger
from embedops.embedding.spend import Guard, Job, Line, Spend, cache_saving, cost_of, count_tokens, record
from embedops.execute.base import EmbedJob, Embedded, Executor, Model
from embedops.execute.local import LocalExecutor
from embedops.sync.run import Target, _insert_returning_ids, _metered, target_models
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
    """Live documents that this index's chunker has not chunked (a quarantined one is not to be chunked)."""
    d, c = schema.documents, schema.chunks
    has = sa.select(c.c.id).where(c.c.document_id == d.c.id, c.c.chunker_key == index.chunker_key).exists()
    return d.c.deleted_at.is_(None), ~has, not_quarantined()


def _unvectored(index: IndexInfo) -> tuple[sa.ColumnElement[bool], ...]:
    """Chunks (joined to their live documents) without a vector in this index."""
    d, c, v = schema.documents, schema.chunks, schema.vectors
    has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, v.c.index_id == index.id).exists()
    return d.c.deleted_at.is_(None), c.c.chunker_key == index.chunker_key, ~has


def _live_docs_without_chunks(target: Target) -> sa.Select[int, str, dict[str, Any], str | None]:
    d = schema.documents
    # The metadata goes to the chunker: the code chunker reads a document's language from its path.
    # The language tag (curation) goes on the chunks as ``lang``.
    return sa.select(d.c.id, d.c.text, d.c.metadata, language_of()).where(*_unchunked(target.index)).order_by(d.c.id)


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
    executor: Executor | None = None,
    models: Mapping[str, Model] | None = None,
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
    with engine.connect() as conn:
        expected = -(-measure_gap(conn, target).missing_vectors // batch_size)
    executor = executor or LocalExecutor()
    models = models if models is not None else target_models([target])
    space = target.index.space_key
    stopped: list[bool] = []

    def batches() -> Iterator[tuple[_Rows, EmbedJob]]:
        for rows, work in _unvectored_batches(engine, store, target, batch_size):
            if guard is not None and not guard.admit(
                    id(rows), cost_of(count_tokens(target.embedder, work[space].values()), target.price)):
                stopped.append(True)
                return
            yield rows, work

    for rows, embedded in executor.stream(models, batches(), expected=expected):
        part = embedded.get(space, Embedded())
        spend = _metered(part, target, {space: {r[1]: r[2] for r in rows}})
        spend.add(cache_saving(target.embedder, list({r[1]: r[2] for r in rows if r[1] not in part.vectors
                                                      and r[1] not in part.failed}.values()), target.price))
        done["vectors"] += _commit_vectors(engine, store, target, rows, part, ledger_kind, job, spend)
        done["embedded"] += len(part.vectors)
        if guard is not None:
            guard.paid(id(rows), spend.cost)
        progress(len(rows))
        if pause:
            pause(len({r[4] for r in rows}))  # throttles count documents
    if stopped and guard is not None:
        _stopped(engine, target, guard, ledger_kind, job, done)
    return done


_Rows = Sequence[sa.Row[int, str, str, str, int]]


def _unvectored_batches(engine: sa.Engine, store: VectorStore, target: Target, batch_size: int) -> Iterator[tuple[_Rows, EmbedJob]]:
    """Chunks lacking a vector, a batch at a time, each with the texts its space has no vector for yet."""
    after_chunk = 0
    space = target.index.space_key
    while True:
        chunk_q = _chunks_without_vectors(target).where(schema.chunks.c.id > after_chunk).limit(batch_size)
        with engine.connect() as conn:
            rows = conn.execute(chunk_q).all()
            missing = store.missing_embeddings(conn, space, [r[1] for r in rows])
        if not rows:
            return
        yield rows, {space: {r[1]: r[2] for r in rows if r[1] in missing}}
        after_chunk = int(rows[-1][0])


def _commit_vectors(engine: sa.Engine, store: VectorStore, target: Target, rows: _Rows, done: Embedded,
                    kind: str, job: Job, spend: Spend) -> int:
    """Store one batch's new embeddings and vector rows with its ledger row; the vectors written.

    A chunk the provider refused gets no vector: the gap stays (the gate sees it), the
    ledger row says why, and the rest of the batch is written."""
    rejected = done.failed
    space = target.index.space_key
    with engine.begin() as conn:
        store.put_embeddings(conn, space, done.vectors)
        # A concurrent sync may have replaced some of these chunks meanwhile: write only what still lacks a vector.
        still = _still_missing(conn, target, [r[0] for r in rows])
        vrows = [VectorRow(r[0], r[1], space, target.chunker.ref.key, r[3])
                 for r in rows if r[0] in still and r[1] not in rejected]
        written = store.write(conn, target.index, vrows)
        extra = {"rejected": [{"chunk": r[0], "reason": rejected[r[1]]} for r in rows if r[1] in rejected][:100]}
        ledger_id = write_ledger(conn, kind, index=target.index.id, vectors=written, embedded=len(done.vectors),
                                 embed={space: done.timing()} if done.characters else {}, job=job.id,
                                 **(extra if rejected else {}))
        record(conn, ledger_id, job, [Line(space, target.index.embedder, spend)])
    return written


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


def _still_missing(conn: sa.Connection, target: Target, chunk_ids: list[int]) -> set[int]:
    c, v = schema.chunks, schema.vectors
    has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, v.c.index_id == target.index.id).exists()
    return set(conn.execute(sa.select(c.c.id).where(c.c.id.in_(chunk_ids), ~has)).scalars())


def _chunk_docs(engine: sa.Engine, target: Target, docs: Sequence[sa.Row[int, str, dict[str, Any], str | None]],
                kind: str) -> None:
    key = target.chunker.ref.key
    chunked = {doc_id: target.chunker.chunk(text, metadata) for doc_id, text, metadata, _ in docs}
    tags = {doc_id: {"lang": lang} for doc_id, _, _, lang in docs if lang is not None}
    with engine.begin() as conn:
        # A concurrent sync may have chunked (or deleted) some of these documents meanwhile.
        todo = _live_docs_without_chunks(target).where(schema.documents.c.id.in_(list(chunked)))
        still = {r[0] for r in conn.execute(todo)}
        rows = [
            {"document_id": doc_id, "chunker_key": key, "ordinal": ch.ordinal, "text": ch.text,
             "start": ch.start, "end": ch.end, "content_hash": ch.content_hash,
             "metadata": {**ch.metadata, **tags.get(doc_id, {})}}
            for doc_id, chunks in chunked.items() if doc_id in still
            for ch in chunks
        ]
        _insert_returning_ids(conn, schema.chunks, rows)
        write_ledger(conn, kind, index=target.index.id, chunked_documents=len(docs), chunks=len(rows))
