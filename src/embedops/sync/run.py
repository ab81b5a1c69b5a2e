"""Executing a SyncPlan: batched, one transaction per batch, resumable.

Each batch commits its documents, chunks, embeddings, vector rows and ledger
row together, so a process killed at any point leaves the catalog at a batch
boundary; the next sync's diff sees the committed batches as unchanged and
does the rest (invariant 4). With curation on, each document's decision
(``plan.decisions``) is written in its batch too: a quarantined document gets
no chunks, so nothing of it is embedded. Embedding runs on an executor (``execute/``): in a
worker thread while the next batch is chunked (the default), or on a Ray actor
pool; either way this process commits every batch, in order.

A plan that carries its scan's fingerprint (sync/source_plan.py) has it recorded
by the transaction of its ``sync.source`` row, once every batch and deletion is
committed and nothing was skipped; each batch and deletion clears the source's
fingerprint in its own transaction, so a run that stops half-way leaves none that
could hide what it did not finish (catalog/scan_state.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import insert_rows
from embedops.catalog.curation import QUARANTINED, RELEASED, decision_row, forget, write_decisions
from embedops.catalog.ledger import write_ledger
from embedops.catalog.scan_state import forget_fingerprint, record_fingerprint
from embedops.chunking.base import Chunk, Chunker
from embedops.curate.curator import Decision
from embedops.curate.language import SAMPLE_CHARS
from embedops.embedding.base import Embedder
from embedops.embedding.spend import Guard, Job, Line, Spend, cache_saving, cost_of, count_tokens, record
from embedops.errors import BudgetExceeded, ProviderRefused, ProviderUnavailable
from embedops.execute.base import EmbedJob, Embedded, Executor, JobResult, Model
from embedops.execute.base import embed_texts as embed_texts  # re-exported: older imports of it from here
from embedops.execute.local import LocalExecutor
from embedops.sources.base import Document, Skipped
from embedops.sync.plan import SyncPlan
from embedops.vectors.base import IndexInfo, VectorRow, VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
# Language tags for chunk texts (Curator.languages), for chunks past the part of a document its own tag was measured on.
Tagger = Callable[[Sequence[str]], list[str]]


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
    # Curation: documents quarantined by this sync, and unchanged ones decided again because of its changes.
    quarantined: int = 0
    rechecked: int = 0

    def merge(self, other: SyncCounts) -> None:
        for name in ("added", "updated", "deleted", "unchanged", "embedded", "vectors_written", "quarantined",
                     "rechecked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.extend(other.skipped)


@dataclass
class _Prepared:
    """A batch chunked and ready to embed: chunks per chunker, texts to embed per space."""

    docs: list[tuple[int | None, Document]]
    chunks: dict[str, list[list[Chunk]]]  # chunker key → per-doc chunk lists
    to_embed: dict[str, dict[str, str]]  # space key → content hash → text
    skipped: list[Skipped] = field(default_factory=list)
    spend: dict[str, Spend] = field(default_factory=dict)  # space key → what embedding it cost, cache savings
    estimate: float = 0.0  # estimated cost of ``to_embed`` (a budget counts it while the batch is in flight)


def target_models(targets: Sequence[Target]) -> dict[str, Model]:
    """Each target's space and loaded embedder (with its price), for in-process execution."""
    return {t.index.space_key: Model.of(t.embedder, t.index.embedder, price=t.price) for t in targets}


def _metered(done: Embedded, target: Target, to_embed: Mapping[str, Mapping[str, str]]) -> Spend:
    """What a space's part of a batch cost: as the executor metered it, or (work done where it was not metered,
    a Ray worker) the texts it was given counted with the model's tokenizer, marked as estimated."""
    if done.spend is not None:
        return done.spend
    texts = [t for h, t in to_embed.get(target.index.space_key, {}).items() if h in done.vectors or h in done.failed]
    n = count_tokens(target.embedder, texts)
    return Spend(tokens=n, estimated_tokens=n, cost=cost_of(n, target.price))


class SyncRunner:
    def __init__(
        self,
        engine: sa.Engine,
        store: VectorStore,
        targets: Sequence[Target],
        *,
        batch_size: int = 256,
        progress: Progress | None = None,
        executor: Executor | None = None,
        models: Mapping[str, Model] | None = None,
        tagger: Tagger | None = None,
        job: Job | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.engine = engine
        self.tagger = tagger
        self.decisions: Mapping[str, Decision] = {}
        self.rechecked: set[str] = set()
        self.released: set[str] = set()
        self.store = store
        self.targets = list(targets)
        self.batch_size = batch_size
        self.progress = progress or (lambda n: None)
        self.chunkers = {t.chunker.ref.key: t.chunker for t in self.targets}
        self.executor: Executor = executor or LocalExecutor()
        self.models = dict(models) if models is not None else target_models(self.targets)
        self.by_space = {t.index.space_key: t for t in self.targets}
        self.job = job or Job.new("sync")
        self.guard = guard
        self._source: str | None = None
        self._stopped_at: int | None = None  # where a budget stopped handing out batches

    # -- entry point ---------------------------------------------------------
    def run(self, source_id: int, plan: SyncPlan) -> SyncCounts:
        started = time.perf_counter()  # the duration goes into the sync.source row (monitor metrics)
        chunked_before = self._chunked()
        counts = SyncCounts(unchanged=plan.unchanged, skipped=list(plan.skipped))
        self.decisions, self.rechecked = plan.decisions, {doc.external_id for _, doc in plan.rechecked}
        self.released = plan.released
        self._source = plan.source
        try:
            for prepared, embedded in self.executor.stream(self.models, self._jobs(plan.changed),
                                                           expected=-(-len(plan.changed) // self.batch_size)):
                counts.merge(self._commit(source_id, prepared, embedded))
            if self._stopped_at is not None and self.guard is not None:
                left = len(plan.changed) - self._stopped_at
                raise self.guard.stopped(f"{left} changed documents of source {self._source!r} are not synced yet",
                                         remaining_documents=left, source=self._source)
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
        counts.deleted = self._delete(source_id, plan.deleted, plan.source)
        counts.rechecked += len(plan.relinked)  # their rows are rewritten by _finish
        chunked = {key: dict(now - chunked_before[key]) for key, now in self._chunked().items()}
        self._finish(source_id, plan, counts, time.perf_counter() - started, chunked)
        return counts

    def _chunked(self) -> dict[str, Counter[str]]:
        """Documents by how each chunker chunked them, for chunkers that count (``code``, ``auto``)."""
        return {key: Counter(getattr(chunker, "counts", {})) for key, chunker in self.chunkers.items()
                if hasattr(chunker, "counts")}

    # -- stages ----------------------------------------------------------------
    def _prepare(self, docs: list[tuple[int | None, Document]]) -> _Prepared:
        prepared = _Prepared(docs=docs, chunks={}, to_embed={})
        held = [self._quarantined(doc) for _, doc in docs]  # quarantined: no chunks, so nothing is embedded
        for key, chunker in self.chunkers.items():
            prepared.chunks[key] = [[] if no else self._tagged(doc, chunker.chunk(doc.text, doc.metadata))
                                    for (_, doc), no in zip(docs, held, strict=True)]
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

    def _quarantined(self, doc: Document) -> bool:
        decision = self.decisions.get(doc.external_id)
        return decision is not None and not decision.kept

    def _tagged(self, doc: Document, chunks: list[Chunk]) -> list[Chunk]:
        """Chunks with their ``lang`` tag. The document's tag was measured on its first
        ``SAMPLE_CHARS`` characters: a chunk starting there inherits it, a later one is detected itself."""
        decision = self.decisions.get(doc.external_id)
        if decision is None or not chunks:
            return chunks
        later = [i for i, c in enumerate(chunks) if c.start >= SAMPLE_CHARS] if self.tagger is not None else []
        tags = [decision.language] * len(chunks)
        for i, tag in zip(later, self.tagger([chunks[i].text for i in later]) if self.tagger and later else [],
                          strict=True):
            tags[i] = tag
        return [dataclasses.replace(c, metadata={**c.metadata, "lang": tag}) for c, tag in zip(chunks, tags, strict=True)]

    def _jobs(self, changed: Sequence[tuple[int | None, Document]]) -> Iterator[tuple[_Prepared, EmbedJob]]:
        """Batches chunked and looked up, pulled by the executor as it has room for them.

        With a budget, a batch that costs something is not handed out once the spend committed plus the
        estimates of the batches in flight reach the cap: those still commit (what was paid for is kept)."""
        self._stopped_at = None
        for start in range(0, len(changed), self.batch_size):
            prepared = self._prepare(list(changed[start : start + self.batch_size]))
            if self.guard is not None and not self.guard.admit(id(prepared), prepared.estimate):
                self._stopped_at = start
                return
            yield prepared, prepared.to_embed

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

    def _commit(self, source_id: int, prepared: _Prepared, embedded: JobResult) -> SyncCounts:
        failed = {h: reason for done in embedded.values() for h, reason in done.failed.items()}
        if failed:  # a text the provider refused on its own: its documents wait, the others proceed
            self._drop_docs_with(prepared, failed)
        counts = SyncCounts(skipped=list(prepared.skipped))
        counts.embedded = sum(len(done.vectors) for done in embedded.values())
        # Recorded in the batch's ledger row: `migrate plan` estimates times from what jobs measured.
        timing = {space: done.timing() for space, done in embedded.items() if done.characters}  # batch calls only
        for space, done in embedded.items():
            prepared.spend.setdefault(space, Spend()).add(_metered(done, self.by_space[space], prepared.to_embed))
        with self.engine.begin() as conn:
            for space, done in embedded.items():
                self.store.put_embeddings(conn, space, done.vectors)
            doc_ids = _upsert_documents(conn, source_id, prepared.docs)
            old_chunks = [r for r in prepared.docs if r[0] is not None]
            if old_chunks:
                _delete_chunks(conn, self.store, [r[0] for r in old_chunks if r[0] is not None])
            counts.vectors_written = self._write_chunks(conn, doc_ids, prepared)
            counts.quarantined = self._write_decisions(conn, source_id, doc_ids, prepared.docs)
            counts.added = sum(1 for r in prepared.docs if r[0] is None)
            counts.rechecked = sum(1 for _, doc in prepared.docs if doc.external_id in self.rechecked)
            counts.updated = len(prepared.docs) - counts.added - counts.rechecked
            curated = {"quarantined": counts.quarantined, "rechecked": counts.rechecked} if self.decisions else {}
            ledger_id = write_ledger(
                conn,
                "sync.batch",
                source_id=source_id,
                documents=len(prepared.docs),
                added=counts.added,
                updated=counts.updated,
                embedded=counts.embedded,
                vectors=counts.vectors_written,
                embed=timing,
                job=self.job.id,
                **curated,
            )
            lines = [Line(space, self.by_space[space].index.embedder, spend, self._source)
                     for space, spend in prepared.spend.items()]
            record(conn, ledger_id, self.job, lines)
        if self.guard is not None:
            self.guard.paid(id(prepared), sum(spend.cost for spend in prepared.spend.values()))
        self.progress(len(prepared.docs) + len(prepared.skipped))
        return counts

    def _write_decisions(self, conn: sa.Connection, source_id: int, doc_ids: list[int],
                         docs: list[tuple[int | None, Document]]) -> int:
        """Store each document's decision with it; a document changed without one (curation off) loses the
        decision made on its old text. Returns the documents quarantined."""
        rows, undecided = [], []
        for doc_id, (_, doc) in zip(doc_ids, docs, strict=True):
            decision = self.decisions.get(doc.external_id)
            if decision is None:
                undecided.append(doc_id)
            elif doc.external_id in self.released:
                rows.append(row := decision_row(doc_id, source_id, decision, RELEASED))
                write_ledger(conn, "curate.release", source_id=source_id, document=doc.external_id,
                             reason=decision.reason, canonical=row["canonical"],
                             canonical_source_id=row["canonical_source"])
            else:
                rows.append(decision_row(doc_id, source_id, decision))
        forget(conn, undecided)
        write_decisions(conn, rows)
        return sum(1 for r in rows if r["status"] == QUARANTINED)

    def _write_chunks(self, conn: sa.Connection, doc_ids: list[int], prepared: _Prepared) -> int:
        written = 0
        versions = [doc.content_hash for _, doc in prepared.docs]
        for key, per_doc in prepared.chunks.items():
            rows = [
                {"document_id": doc_ids[i], "chunker_key": key, "ordinal": c.ordinal, "text": c.text,
                 "start": c.start, "end": c.end, "content_hash": c.content_hash, "metadata": dict(c.metadata)}
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

    def _delete(self, source_id: int, deleted: list[tuple[int, str]], source: str) -> int:
        if not deleted:
            return 0
        ids = [d[0] for d in deleted]
        with self.engine.begin() as conn:
            forget_fingerprint(conn, source_id)
            _delete_chunks(conn, self.store, ids)
            forget(conn, ids)
            d = schema.documents
            now = time.time()
            for i in range(0, len(ids), 900):
                result = conn.execute(sa.update(d).where(d.c.id.in_(ids[i : i + 900])).values(deleted_at=now))
                assert result.rowcount == len(ids[i : i + 900])
            write_ledger(conn, "sync.delete", source=source, documents=len(ids),
                         external_ids=[e for _, e in deleted[:100]])
        self.progress(len(ids))
        return len(ids)

    def _finish(
        self, source_id: int, plan: SyncPlan, counts: SyncCounts, seconds: float = 0.0,
        chunked: dict[str, dict[str, int]] | None = None,
    ) -> None:  # fmt: skip
        with self.engine.begin() as conn:
            d = schema.documents
            if plan.relinked:  # decisions that changed only in what they link to: no chunk moves
                write_decisions(conn, [decision_row(row_id, source_id, dec) for row_id, dec in plan.relinked])
            if plan.resigned:
                # One executemany: a source that starts signing its records re-signs every document once.
                stmt = sa.update(d).where(d.c.id == sa.bindparam("doc_id")).values(signature=sa.bindparam("new_signature"))
                result = conn.execute(stmt, [{"doc_id": i, "new_signature": sig} for i, sig in plan.resigned])
                if conn.dialect.supports_sane_multi_rowcount:
                    assert result.rowcount == len(plan.resigned), "re-signed document count mismatch"
            s = schema.sources
            conn.execute(sa.update(s).where(s.c.id == source_id).values(last_scan_at=time.time()))
            # The catalog now holds what the scan saw, unless a document was skipped (it keeps an older version).
            record_fingerprint(conn, source_id, None if counts.skipped else plan.fingerprint)
            write_ledger(
                conn,
                "sync.source",
                source=plan.source,
                added=counts.added,
                updated=counts.updated,
                deleted=counts.deleted,
                unchanged=counts.unchanged,
                embedded=counts.embedded,
                skipped=[s.to_dict() for s in counts.skipped[:200]],
                skipped_count=len(counts.skipped),
                seconds=round(seconds, 3),
                **({"quarantined": counts.quarantined, "by_reason": plan.quarantined(),
                    "rechecked": counts.rechecked} if plan.curated else {}),
                # e.g. {"auto@1#...": {"code": 40, "prose": 12, "fallback:unparsable": 1}}
                **({"chunked": chunked} if chunked else {}),
                **({"unchanged_by": plan.unchanged_by} if plan.unchanged_by else {}),
            )


def _insert_returning_ids(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``table`` (integer primary key ``id``); their new ids, in order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # SQLAlchemy runs RETURNING with sort_by_parameter_order as one INSERT per row on
        # SQLite. Writers hold the database from BEGIN IMMEDIATE, so the ids SQLite would
        # pick itself (max + 1, ...) can be given up front.
        assert conn.in_transaction(), "ids are only reserved inside the writer's transaction"
        first = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()) + 1
        ids = list(range(first, first + len(rows)))
        insert_rows(conn, table, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)])
        return ids
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    ids = [int(r[0]) for r in result]
    assert len(ids) == len(rows)
    return ids


def _upsert_documents(conn: sa.Connection, source_id: int, docs: list[tuple[int | None, Document]]) -> list[int]:
    """Update known rows, revive tombstoned ones, insert the rest; returns row ids in order."""
    d = schema.documents
    now = time.time()
    forget_fingerprint(conn, source_id)  # the source's documents change in this transaction
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
