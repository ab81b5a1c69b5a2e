"""Executing a SyncPlan: batched, one transaction per batch, resumable.

Each batch commits its documents, chunks, embeddings, vector rows and ledger
row together, so a process killed at any point leaves the catalog at a batch
boundary; the next sync's diff sees the committed batches as unchanged and
does the rest (invariant 4). Embedding runs in a worker thread while the next
batch is chunked, so the model is kept busy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.chunking.base import Chunk, Chunker
from embedops.embedding.base import Embedder
from embedops.embedding.spend import Guard, Job, Line, Spend, cache_saving, cost_of, count_tokens, embed_metered, record
from embedops.errors import (
    BudgetExceeded, EmbeddingError, InputsRejected, ProviderRefused, ProviderUnavailable, Transient,
)
from embedops.sources.base import Document, Skipped
from embedops.sync.plan import SyncPlan
from embedops.vectors.base import IndexInfo, VectorRow, VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
EMBED_RETRIES = 3


@dataclass(frozen=True)
class Target:
    """An index being kept current, with the chunker and embedder that fill it."""

    index: IndexInfo
    chunker: Chunker
    embedder: Embedder
    price: float | None = 0.0  # USD per million tokens (None: an HTTP embedder with no price configured)


@dataclass
class SyncCounts:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0
    vectors_written: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def merge(self, other: SyncCounts) -> None:
        for name in ("added", "updated", "deleted", "unchanged", "embedded", "vectors_written"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.extend(other.skipped)


@dataclass
class _Prepared:
    """A batch chunked and ready to embed: chunks per chunker, texts to embed per space."""

    docs: list[tuple[int | None, Document]]
    chunks: dict[str, list[list[Chunk]]]  # chunker key → per-doc chunk lists
    to_embed: dict[str, dict[str, str]]  # space key → content hash → text
    skipped: list[Skipped] = field(default_factory=list)
    timing: dict[str, list[float]] = field(default_factory=dict)  # space key → [characters, seconds] embedded
    spend: dict[str, Spend] = field(default_factory=dict)  # space key → what embedding it cost, cache savings
    estimate: float = 0.0  # estimated cost of ``to_embed`` (a budget counts it while the batch is in flight)


def embed_texts(embedder: Embedder, texts: Sequence[str], price: float | None = 0.0,
                spend: Spend | None = None) -> np.ndarray:
    """Embed with retries on transient provider errors; what every attempt cost is added to ``spend``."""
    into = spend if spend is not None else Spend()
    for attempt in range(EMBED_RETRIES):
        try:
            return embed_metered(embedder, texts, price, into)
        except Transient:
            if attempt == EMBED_RETRIES - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


class SyncRunner:
    def __init__(
        self,
        engine: sa.Engine,
        store: VectorStore,
        targets: Sequence[Target],
        *,
        batch_size: int = 256,
        progress: Progress | None = None,
        job: Job | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.targets = list(targets)
        self.batch_size = batch_size
        self.progress = progress or (lambda n: None)
        self.chunkers = {t.chunker.ref.key: t.chunker for t in self.targets}
        self.by_space = {t.index.space_key: t for t in self.targets}
        self.embedders = {space: t.embedder for space, t in self.by_space.items()}
        self.job = job or Job.new("sync")
        self.guard = guard
        self._source: str | None = None

    # -- entry point ---------------------------------------------------------
    def run(self, source_id: int, plan: SyncPlan) -> SyncCounts:
        started = time.perf_counter()  # the duration goes into the sync.source row (monitor metrics)
        counts = SyncCounts(unchanged=plan.unchanged, skipped=list(plan.skipped))
        self._source = plan.source
        try:
            self._run_batches(source_id, plan.changed, counts)
        except (ProviderUnavailable, ProviderRefused, BudgetExceeded) as exc:
            kind = "sync.budget_stopped" if isinstance(exc, BudgetExceeded) else "sync.provider_failed"
            with self.engine.begin() as conn:  # the batches before are committed; say why the rest is not
                write_ledger(conn, kind, source=plan.source, error=exc.message, hint=exc.hint, added=counts.added,
                             updated=counts.updated, embedded=counts.embedded, job=self.job.id,
                             **({k: exc.details[k] for k in ("spent", "cap", "remaining_documents")}
                                if isinstance(exc, BudgetExceeded) else {}))
            if isinstance(exc, BudgetExceeded):  # the caller reports what was synced before the stop
                exc.details.update(added=counts.added, updated=counts.updated, embedded=counts.embedded)
            raise
        counts.deleted = self._delete(plan.deleted, plan.source)
        self._finish(source_id, plan, counts, time.perf_counter() - started)
        return counts

    def _run_batches(self, source_id: int, changed: list[tuple[int | None, Document]], counts: SyncCounts) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool:
            pending: tuple[_Prepared, Future[dict[str, dict[str, np.ndarray]]]] | None = None
            stopped_at: int | None = None
            for start in range(0, len(changed), self.batch_size):
                prepared = self._prepare(changed[start : start + self.batch_size])
                # A batch with nothing to pay for (cached chunks, tombstones revived) always proceeds.
                if self.guard is not None and prepared.estimate > 0 and \
                        self.guard.reached(pending[0].estimate if pending else 0.0):
                    stopped_at = start  # the batch in flight still commits: what was paid for is kept
                    break
                future = pool.submit(self._embed, prepared)
                if pending is not None:
                    counts.merge(self._commit(source_id, *pending))
                pending = (prepared, future)
            if pending is not None:
                counts.merge(self._commit(source_id, *pending))
        if stopped_at is not None and self.guard is not None:
            left = len(changed) - stopped_at
            raise self.guard.stopped(f"{left} changed documents of source {self._source!r} are not synced yet",
                                     remaining_documents=left, source=self._source)

    # -- stages ----------------------------------------------------------------
    def _prepare(self, docs: list[tuple[int | None, Document]]) -> _Prepared:
        prepared = _Prepared(docs=docs, chunks={}, to_embed={})
        for key, chunker in self.chunkers.items():
            prepared.chunks[key] = [chunker.chunk(doc.text, doc.metadata) for _, doc in docs]
        with self.engine.connect() as conn:
            for target in self.targets:
                texts = {c.content_hash: c.text for per_doc in prepared.chunks[target.chunker.ref.key] for c in per_doc}
                missing = set(self.store.missing_embeddings(conn, target.index.space_key, list(texts)))
                bucket = prepared.to_embed.setdefault(target.index.space_key, {})
                bucket.update({h: texts[h] for h in missing})
                spend = prepared.spend.setdefault(target.index.space_key, Spend())
                spend.add(cache_saving(target.embedder, [t for h, t in texts.items() if h not in missing], target.price))
        if self.guard is not None:  # only a budget needs the estimate: it costs one tokenizer pass
            prepared.estimate = sum(cost_of(count_tokens(self.by_space[space].embedder, texts.values()),
                                            self.by_space[space].price) for space, texts in prepared.to_embed.items())
        return prepared

    def _embed(self, prepared: _Prepared) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for space, texts in prepared.to_embed.items():
            if not texts:
                out[space] = {}
                continue
            hashes = list(texts)
            started = time.perf_counter()
            target = self.by_space[space]
            try:
                vecs = embed_texts(target.embedder, [texts[h] for h in hashes], target.price,
                                   prepared.spend.setdefault(space, Spend()))
            except InputsRejected as exc:  # the provider named the inputs it refused; the rest are embedded
                out[space] = {hashes[i]: v for i, v in exc.vectors.items()}
                self._drop_docs_with(prepared, {hashes[i]: why for i, why in exc.rejected.items()})
                continue
            except (ProviderUnavailable, ProviderRefused):
                raise  # every other chunk would fail the same way: stop; committed batches stay (resumable)
            except EmbeddingError as exc:
                out[space] = self._embed_one_by_one(space, texts, prepared, exc)
                continue
            # Recorded in the batch's ledger row: `migrate plan` estimates times from what jobs measured.
            prepared.timing[space] = [sum(map(len, texts.values())), round(time.perf_counter() - started, 4)]
            out[space] = dict(zip(hashes, vecs, strict=True))
        return out

    def _embed_one_by_one(
        self, space: str, texts: dict[str, str], prepared: _Prepared, first: EmbeddingError
    ) -> dict[str, np.ndarray]:
        """Isolate the record(s) the provider rejects; the rest of the batch proceeds."""
        log.warning("embedding batch failed (%s); retrying one chunk at a time", first)
        result: dict[str, np.ndarray] = {}
        bad: dict[str, str] = {}
        target = self.by_space[space]
        for h, text in texts.items():
            try:
                result[h] = embed_texts(target.embedder, [text], target.price, prepared.spend.setdefault(space, Spend()))[0]
            except EmbeddingError as exc:
                bad[h] = str(exc).splitlines()[0]
        if bad:
            self._drop_docs_with(prepared, bad)
        return result

    def _drop_docs_with(self, prepared: _Prepared, bad: dict[str, str]) -> None:
        """Skip (and report) each document holding a chunk the provider refused; it keeps its previous version."""
        keep = []
        for i, (row_id, doc) in enumerate(prepared.docs):
            hit = next((c for per in prepared.chunks.values() for c in per[i] if c.content_hash in bad), None)
            if hit is not None:
                reason = f"the embedding provider rejected chunk {hit.ordinal}: {bad[hit.content_hash]}"
                prepared.skipped.append(Skipped(doc.external_id, reason))
            else:
                keep.append(i)
        prepared.docs = [prepared.docs[i] for i in keep]
        prepared.chunks = {k: [v[i] for i in keep] for k, v in prepared.chunks.items()}

    def _commit(self, source_id: int, prepared: _Prepared, future: Future[dict[str, dict[str, np.ndarray]]]) -> SyncCounts:
        vectors = future.result()
        counts = SyncCounts(skipped=list(prepared.skipped))
        counts.embedded = sum(len(v) for v in vectors.values())
        with self.engine.begin() as conn:
            for space, vecs in vectors.items():
                self.store.put_embeddings(conn, space, vecs)
            doc_ids = _upsert_documents(conn, source_id, prepared.docs)
            old_chunks = [r for r in prepared.docs if r[0] is not None]
            if old_chunks:
                _delete_chunks(conn, self.store, [r[0] for r in old_chunks if r[0] is not None])
            counts.vectors_written = self._write_chunks(conn, doc_ids, prepared)
            counts.added = sum(1 for r in prepared.docs if r[0] is None)
            counts.updated = len(prepared.docs) - counts.added
            ledger_id = write_ledger(
                conn,
                "sync.batch",
                source_id=source_id,
                documents=len(prepared.docs),
                added=counts.added,
                updated=counts.updated,
                embedded=counts.embedded,
                vectors=counts.vectors_written,
                embed=prepared.timing,
                job=self.job.id,
            )
            lines = [Line(space, self.by_space[space].index.embedder, spend, self._source)
                     for space, spend in prepared.spend.items()]
            record(conn, ledger_id, self.job, lines)
        if self.guard is not None:
            self.guard.add(sum(spend.cost for spend in prepared.spend.values()))
        self.progress(len(prepared.docs) + len(prepared.skipped))
        return counts

    def _write_chunks(self, conn: sa.Connection, doc_ids: list[int], prepared: _Prepared) -> int:
        written = 0
        versions = [doc.content_hash for _, doc in prepared.docs]
        for key, per_doc in prepared.chunks.items():
            rows = [
                {"document_id": doc_ids[i], "chunker_key": key, "ordinal": c.ordinal, "text": c.text,
                 "start": c.start, "end": c.end, "content_hash": c.content_hash}
                for i, chunks in enumerate(per_doc) for c in chunks
            ]
            ids = _insert_returning_ids(conn, schema.chunks, rows)
            owned = [(i, c.content_hash) for i, chunks in enumerate(per_doc) for c in chunks]
            for target in (t for t in self.targets if t.chunker.ref.key == key):
                vrows = [
                    VectorRow(cid, content_hash, target.index.space_key, key, versions[owner])
                    for cid, (owner, content_hash) in zip(ids, owned, strict=True)
                ]
                written += self.store.write(conn, target.index, vrows)
        return written

    def _delete(self, deleted: list[tuple[int, str]], source: str) -> int:
        if not deleted:
            return 0
        ids = [d[0] for d in deleted]
        with self.engine.begin() as conn:
            _delete_chunks(conn, self.store, ids)
            d = schema.documents
            now = time.time()
            for i in range(0, len(ids), 900):
                result = conn.execute(sa.update(d).where(d.c.id.in_(ids[i : i + 900])).values(deleted_at=now))
                assert result.rowcount == len(ids[i : i + 900])
            write_ledger(conn, "sync.delete", source=source, documents=len(ids),
                         external_ids=[e for _, e in deleted[:100]])
        self.progress(len(ids))
        return len(ids)

    def _finish(self, source_id: int, plan: SyncPlan, counts: SyncCounts, seconds: float = 0.0) -> None:
        with self.engine.begin() as conn:
            d = schema.documents
            if plan.resigned:
                # One executemany: a source that starts signing its records re-signs every document once.
                stmt = sa.update(d).where(d.c.id == sa.bindparam("doc_id")).values(signature=sa.bindparam("new_signature"))
                result = conn.execute(stmt, [{"doc_id": i, "new_signature": sig} for i, sig in plan.resigned])
                if conn.dialect.supports_sane_multi_rowcount:
                    assert result.rowcount == len(plan.resigned), "re-signed document count mismatch"
            s = schema.sources
            conn.execute(sa.update(s).where(s.c.id == source_id).values(last_scan_at=time.time()))
            write_ledger(
                conn,
                "sync.source",
                source=plan.source,
                added=counts.added,
                updated=counts.updated,
                deleted=counts.deleted,
                unchanged=counts.unchanged,
                embedded=counts.embedded,
                skipped=[{"id": s.external_id, "reason": s.reason} for s in counts.skipped[:200]],
                skipped_count=len(counts.skipped),
                seconds=round(seconds, 3),
            )


def _insert_returning_ids(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` (integer primary key ``id``); their new ids, in order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # SQLAlchemy runs RETURNING with sort_by_parameter_order as one INSERT per row on
        # SQLite. Writers hold the database from BEGIN IMMEDIATE, so the ids SQLite would
        # pick itself (max + 1, ...) can be given up front, in one executemany.
        assert conn.in_transaction(), "ids are only reserved inside the writer's transaction"
        first = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()) + 1
        ids = list(range(first, first + len(rows)))
        conn.execute(table.insert(), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
        return ids
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    ids = [int(r[0]) for r in result]
    assert len(ids) == len(rows)
    return ids


def _upsert_documents(conn: sa.Connection, source_id: int, docs: list[tuple[int | None, Document]]) -> list[int]:
    """Update known rows, revive tombstoned ones, insert the rest; returns row ids in order."""
    d = schema.documents
    now = time.time()
    new_ids = [doc.external_id for row_id, doc in docs if row_id is None]
    tombstoned: dict[str, int] = {}
    for i in range(0, len(new_ids), 900):
        q = sa.select(d.c.external_id, d.c.id).where(d.c.source_id == source_id, d.c.external_id.in_(new_ids[i : i + 900]))
        tombstoned.update(dict(conn.execute(q).all()))
    inserts, updates, ids = [], [], []
    for row_id, doc in docs:
        row_id = row_id if row_id is not None else tombstoned.get(doc.external_id)
        values = _doc_values(doc, now)
        if row_id is None:
            inserts.append({"source_id": source_id, "external_id": doc.external_id, **values})
        else:
            updates.append({"row_id": row_id, **{f"new_{k}": v for k, v in values.items()}})
        ids.append(row_id)
    _update_documents(conn, updates)
    fresh = iter(_insert_returning_ids(conn, d, inserts))
    return [row_id if row_id is not None else next(fresh) for row_id in ids]


def _update_documents(conn: sa.Connection, updates: list[dict[str, Any]]) -> None:
    """One executemany (a statement per row costs a compile and a cache key each)."""
    if not updates:
        return
    d = schema.documents
    fields = [k.removeprefix("new_") for k in updates[0] if k != "row_id"]
    stmt = sa.update(d).where(d.c.id == sa.bindparam("row_id")).values({f: sa.bindparam(f"new_{f}") for f in fields})
    result = conn.execute(stmt, updates)
    if conn.dialect.supports_sane_multi_rowcount:
        assert result.rowcount == len(updates), "document update count mismatch"


def _doc_values(doc: Document, now: float) -> dict[str, Any]:
    return {
        "content_hash": doc.content_hash,
        "text": doc.text,
        "signature": doc.signature,
        "metadata": dict(doc.metadata),
        "source_updated_at": doc.updated_at.timestamp() if doc.updated_at else None,
        "ingested_at": now,
        "deleted_at": None,
    }


def _delete_chunks(conn: sa.Connection, store: VectorStore, document_ids: Iterable[int]) -> None:
    c = schema.chunks
    doc_ids = list(document_ids)
    for i in range(0, len(doc_ids), 900):
        part = doc_ids[i : i + 900]
        chunk_ids = list(conn.execute(sa.select(c.c.id).where(c.c.document_id.in_(part))).scalars())
        store.delete_chunks(conn, chunk_ids)
        conn.execute(sa.delete(c).where(c.c.document_id.in_(part)))
