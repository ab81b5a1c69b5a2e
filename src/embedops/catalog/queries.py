"""Catalog reads that several parts share: indexes, aliases, change stamps, recorded throughput, documents.

They take a connection and return data; nothing here loads a model or knows a
workspace, so any layer may use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.curation import curation_counts, language_of, not_quarantined
from embedops.sources.base import Document
from embedops.vectors.base import IndexInfo

# Ledger kinds whose rows carry ``embed``: {space key: [characters, seconds]} per batch.
EMBEDDING_KINDS = ("sync.batch", "migrate.backfill", "index.fill")
THROUGHPUT_ROWS = 200
_IN_BATCH = 900  # SQLite's bound-parameter limit
# The filter key of a document's language tag (curation), also the chunk metadata key of a chunk's.
LANGUAGE_KEY = "lang"


def indexes(conn: sa.Connection, status: str | None = None) -> list[IndexInfo]:
    """Every index (or those with ``status``), oldest first."""
    i, sp = schema.indexes, schema.spaces
    q = sa.select(i.c.id, i.c.space_key, i.c.chunker_key, i.c.status, sp.c.dims, sp.c.embedder, i.c.storage).join(
        sp, sp.c.key == i.c.space_key
    )
    if status:
        q = q.where(i.c.status == status)
    return [IndexInfo(*r) for r in conn.execute(q.order_by(i.c.created_at))]


def alias_index(conn: sa.Connection, alias: str) -> str | None:
    """The id of the index ``alias`` points at, or None."""
    return conn.execute(sa.select(schema.aliases.c.index_id).where(schema.aliases.c.name == alias)).scalar()


def index_stamp(conn: sa.Connection, index_id: str) -> str:
    """A value that changes whenever a vector is added to or removed from the index.

    Vector seqs and deletion seqs are autoincremented and never reused, so the
    pair of their maxima moves on every write; both come from indexes, in O(log n).
    """
    v, vd = schema.vectors, schema.vector_deletions
    added = conn.execute(sa.select(sa.func.max(v.c.seq)).where(v.c.index_id == index_id)).scalar()
    removed = conn.execute(sa.select(sa.func.max(vd.c.seq)).where(vd.c.index_id == index_id)).scalar()
    return f"{added or 0}:{removed or 0}"


def live_chunks(conn: sa.Connection, chunker_key: str) -> int:
    """Chunks of live documents made by ``chunker_key``."""
    c, d = schema.chunks, schema.documents
    q = sa.select(sa.func.count()).select_from(c.join(d, d.c.id == c.c.document_id)).where(
        d.c.deleted_at.is_(None), c.c.chunker_key == chunker_key)
    return int(conn.execute(q).scalar_one())


def recorded_throughput(conn: sa.Connection, space_keys: Sequence[str]) -> tuple[float, int] | None:
    """Characters per second at which earlier jobs embedded into these spaces, and the batches measured.

    Read from the ledger rows of the last syncs, backfills and fills; None when no
    job has embedded into any of ``space_keys`` yet.
    """
    lg = schema.ledger
    rows = conn.execute(sa.select(lg.c.details).where(lg.c.kind.in_(EMBEDDING_KINDS))
                        .order_by(lg.c.id.desc()).limit(THROUGHPUT_ROWS * 5)).scalars().all()
    chars = seconds = 0.0
    batches = 0
    for details in rows:
        for space, (n, s) in (details.get("embed") or {}).items():
            if space in space_keys and s > 0:
                chars, seconds, batches = chars + n, seconds + s, batches + 1
        if batches >= THROUGHPUT_ROWS:
            break
    return (chars / seconds, batches) if seconds > 0 else None


def catalog_counts(conn: sa.Connection) -> dict[str, Any]:
    """What `embedops status` shows of the catalog: sources, documents, chunks, indexes, aliases, spaces."""
    s, d, c, v, sp = schema.sources, schema.documents, schema.chunks, schema.vectors, schema.spaces
    # Live: not deleted and not held back by curation; every document seen is live, quarantined or deleted.
    live = sa.and_(d.c.deleted_at.is_(None), not_quarantined())
    per_source: dict[int, int] = dict(conn.execute(sa.select(d.c.source_id, sa.func.count()).where(live).group_by(d.c.source_id)).all())
    sources = [
        {"name": r.name, "kind": r.kind, "path": r.config.get("path"), "documents": per_source.get(r.id, 0),
         "last_scan_at": r.last_scan_at}
        for r in conn.execute(sa.select(s).order_by(s.c.id))
    ]
    vec_counts: dict[str, int] = dict(conn.execute(sa.select(v.c.index_id, sa.func.count()).group_by(v.c.index_id)).all())
    index_rows = [
        {"id": ix.id, "space": ix.space_key, "chunker": ix.chunker_key, "embedder": ix.embedder,
         "status": ix.status, "dims": ix.dims, "storage": ix.storage, "stored_dims": ix.spec.stored_dims(ix.dims),
         "rescore": ix.spec.rescore, "vectors": vec_counts.get(ix.id, 0)}
        for ix in indexes(conn)
    ]
    spaces = [
        {"key": r.key, "embedder": r.embedder, "dims": r.dims, "fingerprint": r.fingerprint_digest}
        for r in conn.execute(sa.select(sp.c.key, sp.c.embedder, sp.c.dims, sp.c.fingerprint_digest))
    ]
    return {
        "sources": sources,
        "documents": conn.execute(sa.select(sa.func.count()).where(live)).scalar_one(),
        "deleted_documents": conn.execute(sa.select(sa.func.count()).where(d.c.deleted_at.is_not(None))).scalar_one(),
        "seen_documents": conn.execute(sa.select(sa.func.count()).select_from(d)).scalar_one(),
        **curation_counts(conn),
        "chunks": conn.execute(sa.select(sa.func.count()).select_from(c)).scalar_one(),
        "indexes": index_rows,
        "aliases": dict(conn.execute(sa.select(schema.aliases.c.name, schema.aliases.c.index_id)).all()),
        "spaces": spaces,
    }


def metadata_equals(metadata: Mapping[str, Any], *, chunks: bool = False) -> list[sa.ColumnElement[bool]]:
    """Conditions on ``documents.metadata``: each key's value equals the given one, compared as text.

    Text, because values arrive as text from the CLI and HTTP filters (``--where page=3``
    must match the number 3); search filters and document lookups share this one rule. ``lang``
    is the document's language tag from curation when it has one (``--where lang=de``).
    ``chunks`` (a query joined to ``chunks``): a key the chunk's own metadata has decides for that
    chunk (``--where kind=function``, ``--where language=python`` on code chunks); the document's
    metadata decides for the rest."""
    return [_equals(key, value, chunks) for key, value in metadata.items()]


def _equals(key: str, value: Any, chunks: bool = False) -> sa.ColumnElement[bool]:
    d = schema.documents
    tag: sa.ColumnElement[str] = d.c.metadata[key].as_string()
    if key == LANGUAGE_KEY:  # the curation tag (schema 11), else a ``lang`` the source gave
        tag = sa.func.coalesce(language_of(), tag)
    if chunks:
        tag = sa.func.coalesce(schema.chunks.c.metadata[key].as_string(), tag)
    same: sa.ColumnElement[bool] = tag == str(value)
    return same


def documents_by_id(conn: sa.Connection, source: str, external_ids: Sequence[str]) -> list[Document]:
    """The live documents of ``source`` among ``external_ids``, in the order asked; missing ids are left out."""
    d, s = schema.documents, schema.sources
    wanted = list(dict.fromkeys(external_ids))
    found: dict[str, Document] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        q = sa.select(d.c.external_id, d.c.text, d.c.metadata, d.c.source_updated_at).join(
            s, s.c.id == d.c.source_id).where(
            s.c.name == source, d.c.deleted_at.is_(None), d.c.external_id.in_(wanted[i : i + _IN_BATCH]))
        for ext, text, meta, updated in conn.execute(q):
            when = datetime.fromtimestamp(updated, timezone.utc) if updated is not None else None
            found[ext] = Document(ext, text, dict(meta or {}), when)
    return [found[ext] for ext in wanted if ext in found]


def document_ids(conn: sa.Connection, source: str, metadata: Mapping[str, Any] | None = None) -> list[str]:
    """External ids of ``source``'s live documents whose metadata has these values (:func:`metadata_equals`)."""
    d, s = schema.documents, schema.sources
    q = sa.select(d.c.external_id).join(s, s.c.id == d.c.source_id).where(
        s.c.name == source, d.c.deleted_at.is_(None), *metadata_equals(metadata or {}))
    return list(conn.execute(q.order_by(d.c.id)).scalars())
def source_exists(conn: sa.Connection, name: str) -> bool:
    """Whether the catalog has a source of this name (it may no longer be configured)."""
    s = schema.sources
    return conn.execute(sa.select(s.c.id).where(s.c.name == name)).first() is not None


def absent_metadata_keys(conn: sa.Connection, keys: list[str]) -> list[str]:
    """The keys (top-level metadata keys, checked by the caller's filter rules) no live document and no chunk
    of one has."""
    d, c = schema.documents, schema.chunks

    def has(key: str) -> sa.ColumnElement[bool]:
        value = d.c.metadata[key].as_string()
        return sa.func.coalesce(language_of(), value).is_not(None) if key == LANGUAGE_KEY else value.is_not(None)

    def in_chunks(key: str) -> bool:
        q = sa.select(c.c.id).join(d, d.c.id == c.c.document_id).where(
            d.c.deleted_at.is_(None), c.c.metadata[key].as_string().is_not(None)).limit(1)
        return conn.execute(q).first() is not None

    return [key for key in keys if conn.execute(
        sa.select(d.c.id).where(d.c.deleted_at.is_(None), has(key)).limit(1)).first() is None and not in_chunks(key)]
