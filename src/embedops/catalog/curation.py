"""The catalog's side of curation (schema versions 11 and 14): stored decisions, read and written by column name.

Sync writes a row per decided document in the transaction that writes the
document (:func:`write_decisions`); the curator reads them back through
:class:`StoredCurations` (its :class:`~embedops.curate.CurationState`); the
``quarantine`` commands and ``status`` read them with the queries below.

The curator compares documents of several sources (``[curate] scope =
"workspace"``), so it knows each by a key naming its source and external id
(:func:`doc_key`); a decision's ``canonical_id`` is such a key, stored as the
canonical document's external id and source (``canonical``, ``canonical_source``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final, Literal

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.curate.curator import Decision, StoredCuration
from embedops.sources.base import Document

KEPT: Final = "kept"
QUARANTINED: Final = "quarantined"
RELEASED: Final = "released"
Status = Literal["kept", "quarantined", "released"]
_IN_BATCH = 900  # SQLite's bound-parameter limit


def not_quarantined() -> sa.ColumnElement[bool]:
    """A condition on ``documents``: the document is not held back by curation (it may be chunked and embedded)."""
    d, cu = schema.documents, schema.curation
    return ~sa.select(cu.c.document_id).where(cu.c.document_id == d.c.id, cu.c.status == QUARANTINED).exists()


def doc_key(source_id: int, external_id: str) -> str:
    """The curator's id of a document: its source and external id, ordered by source id, then external id.

    >>> doc_key(3, "a.md"), split_key(doc_key(3, "a.md"))
    ('0000000003:a.md', (3, 'a.md'))
    """
    return f"{source_id:010d}:{external_id}"


def split_key(key: str) -> tuple[int, str]:
    """``(source_id, external_id)`` of a :func:`doc_key`."""
    source_id, _, external_id = key.partition(":")
    return int(source_id), external_id


def language_of() -> sa.ScalarSelect[Any]:
    """A scalar subquery on ``documents``: the document's language tag (NULL when never curated)."""
    d, cu = schema.documents, schema.curation
    return sa.select(cu.c.language).where(cu.c.document_id == d.c.id).scalar_subquery()


def stored_language(chunk_metadata: dict[str, Any], document_tag: str | None) -> str | None:
    """A chunk's stored language tag: its own ``lang`` (set at ingest), else its document's
    (:func:`language_of`); None when it was synced while curation was off (never tagged).

    >>> stored_language({"lang": "de"}, "en"), stored_language({}, "en"), stored_language({}, None)
    ('de', 'en', None)
    """
    own = chunk_metadata.get("lang")
    if isinstance(own, str) and own:
        return own
    return document_tag or None


class StoredCurations:
    """The stored decisions of some sources (``source_ids``; None: every source), read once: the curator's
    state, and each document's first-seen time and status, by :func:`doc_key`."""

    def __init__(self, conn: sa.Connection, source_ids: Sequence[int] | None) -> None:
        d, cu = schema.documents, schema.curation
        q = (sa.select(cu.c.source_id, d.c.external_id, cu.c.status, cu.c.first_seen, cu.c.content_hash,
                       cu.c.signature, cu.c.canonical, sa.func.coalesce(cu.c.canonical_source, cu.c.source_id))
             .join(d, d.c.id == cu.c.document_id).where(d.c.deleted_at.is_(None)))
        if source_ids is not None:
            q = q.where(cu.c.source_id.in_(list(source_ids)))
        self._rows = [(doc_key(r[0], r[1]), r) for r in conn.execute(q)]
        self.first_seen: dict[str, float] = {key: float(r.first_seen) for key, r in self._rows}
        self.status: dict[str, str] = {key: r.status for key, r in self._rows}

    def curated_documents(self) -> list[StoredCuration]:
        """Kept documents and duplicates; quality-quarantined and released ones are never compared with."""
        return [StoredCuration(key, float(r.first_seen), r.content_hash, r.signature,
                               doc_key(r[7], r.canonical) if r.canonical is not None else None)
                for key, r in self._rows if r.status == KEPT or (r.status == QUARANTINED and r.canonical is not None)]


@dataclass(frozen=True)
class StoredDocument:
    """A live document as the catalog holds it, to be decided again without reading the source."""

    row_id: int
    document: Document
    ingested_at: float


def stored_documents(conn: sa.Connection, source_id: int, external_ids: Sequence[str]) -> list[StoredDocument]:
    """The live documents of a source among ``external_ids`` (missing ids are left out)."""
    d = schema.documents
    out: list[StoredDocument] = []
    wanted = list(dict.fromkeys(external_ids))
    for i in range(0, len(wanted), _IN_BATCH):
        q = sa.select(d.c.id, d.c.external_id, d.c.text, d.c.metadata, d.c.source_updated_at, d.c.signature,
                      d.c.ingested_at).where(d.c.source_id == source_id, d.c.deleted_at.is_(None),
                                             d.c.external_id.in_(wanted[i : i + _IN_BATCH]))
        for r in conn.execute(q):
            when = datetime.fromtimestamp(r.source_updated_at, timezone.utc) if r.source_updated_at is not None else None
            doc = Document(r.external_id, r.text, dict(r.metadata or {}), when, r.signature)
            out.append(StoredDocument(int(r.id), doc, float(r.ingested_at)))
    return out


def stored_by_key(conn: sa.Connection, keys: Sequence[str]) -> dict[str, StoredDocument]:
    """The live documents among ``keys`` (:func:`doc_key`), of any source, by key (missing ones left out)."""
    by_source: dict[int, list[str]] = {}
    for key in keys:
        source_id, external_id = split_key(key)
        by_source.setdefault(source_id, []).append(external_id)
    return {doc_key(source_id, s.document.external_id): s
            for source_id, ids in by_source.items() for s in stored_documents(conn, source_id, ids)}


def source_names(conn: sa.Connection) -> dict[int, str]:
    """Every source's name by id."""
    return {int(i): str(n) for i, n in conn.execute(sa.select(schema.sources.c.id, schema.sources.c.name))}


def unchecked_documents(conn: sa.Connection, source_id: int) -> list[str]:
    """External ids of the source's live documents without a decision (synced while curation was off)."""
    d, cu = schema.documents, schema.curation
    has = sa.select(cu.c.document_id).where(cu.c.document_id == d.c.id).exists()
    q = sa.select(d.c.external_id).where(d.c.source_id == source_id, d.c.deleted_at.is_(None), ~has).order_by(d.c.id)
    return list(conn.execute(q).scalars())


def decision_row(document_id: int, source_id: int, decision: Decision, status: Status | None = None,
                 now: float | None = None) -> dict[str, Any]:
    """The row that stores ``decision`` (``status`` overrides the one the decision implies); its
    ``canonical_id`` is a :func:`doc_key`."""
    canonical = split_key(decision.canonical_id) if decision.canonical_id is not None else (None, None)
    return {
        "document_id": document_id, "source_id": source_id,
        "status": status or (KEPT if decision.kept else QUARANTINED),
        "first_seen": decision.first_seen, "content_hash": decision.content_hash, "signature": decision.signature,
        "canonical": canonical[1], "canonical_source": canonical[0], "similarity": decision.similarity,
        "reason": decision.reason,
        "findings": [{"reason": f.reason, "detail": f.detail, "value": f.value, "limit": f.limit}
                     for f in decision.findings],
        "language": decision.language, "decided_at": now if now is not None else time.time(),
    }


def write_decisions(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Replace the stored decisions of the rows' documents (one per document)."""
    if not rows:
        return
    forget(conn, [r["document_id"] for r in rows])
    conn.execute(sa.insert(schema.curation), list(rows))


def forget(conn: sa.Connection, document_ids: Iterable[int]) -> None:
    """Drop the decisions of these documents (deleted, or changed while curation is off)."""
    cu = schema.curation
    ids = list(document_ids)
    for i in range(0, len(ids), _IN_BATCH):
        conn.execute(sa.delete(cu).where(cu.c.document_id.in_(ids[i : i + _IN_BATCH])))


# -- reads for the commands ------------------------------------------------------------------
@dataclass(frozen=True)
class QuarantineEntry:
    """One quarantined (or released) document, with why."""

    source: str
    document: str
    status: str
    reason: str | None
    language: str
    canonical: str | None
    similarity: float | None
    first_seen: float
    decided_at: float
    findings: list[dict[str, Any]] = field(default_factory=list)
    # The source of the canonical document (a duplicate's may be another source's: ``[curate] scope``).
    canonical_source: str | None = None

    @property
    def canonical_path(self) -> str | None:
        """The canonical document as ``source/external id`` (None: not a duplicate)."""
        return None if self.canonical is None else f"{self.canonical_source}/{self.canonical}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "document": self.document, "status": self.status, "reason": self.reason,
                "language": self.language, "canonical": self.canonical, "canonical_source": self.canonical_source,
                "similarity": self.similarity,
                "first_seen": self.first_seen, "decided_at": self.decided_at, "findings": self.findings}


def _entries_query() -> sa.Select[Any]:
    d, cu, s = schema.documents, schema.curation, schema.sources
    cs = s.alias("canonical_sources")
    return (sa.select(s.c.name, d.c.external_id, cu.c.status, cu.c.reason, cu.c.language, cu.c.canonical,
                      cu.c.similarity, cu.c.first_seen, cu.c.decided_at, cu.c.findings,
                      cs.c.name.label("canonical_source"))
            .join(d, d.c.id == cu.c.document_id).join(s, s.c.id == cu.c.source_id)
            .outerjoin(cs, cs.c.id == sa.func.coalesce(cu.c.canonical_source, cu.c.source_id))
            .where(d.c.deleted_at.is_(None)))


def _entry(r: sa.Row[Any]) -> QuarantineEntry:
    return QuarantineEntry(r.name, r.external_id, r.status, r.reason, r.language, r.canonical, r.similarity,
                           float(r.first_seen), float(r.decided_at), list(r.findings or []),
                           r.canonical_source if r.canonical is not None else None)


def quarantined(conn: sa.Connection, *, reason: str | None = None, source: str | None = None,
                released: bool = False) -> list[QuarantineEntry]:
    """Quarantined live documents (with ``released``: released ones too), oldest decision first."""
    cu, s = schema.curation, schema.sources
    q = _entries_query().where(cu.c.status.in_([QUARANTINED, RELEASED] if released else [QUARANTINED]))
    if reason is not None:
        q = q.where(cu.c.reason == reason)
    if source is not None:
        q = q.where(s.c.name == source)
    return [_entry(r) for r in conn.execute(q.order_by(cu.c.decided_at, cu.c.document_id))]


def entries_for(conn: sa.Connection, external_id: str, source: str | None = None) -> list[QuarantineEntry]:
    """The stored decisions of live documents with this external id (one per source holding it)."""
    d, s = schema.documents, schema.sources
    q = _entries_query().where(d.c.external_id == external_id)
    if source is not None:
        q = q.where(s.c.name == source)
    return [_entry(r) for r in conn.execute(q.order_by(s.c.name))]


def curation_counts(conn: sa.Connection) -> dict[str, Any]:
    """Live documents by language tag, quarantined documents by reason, released and unchecked counts."""
    d, cu = schema.documents, schema.curation
    live = d.c.deleted_at.is_(None)
    joined = cu.join(d, d.c.id == cu.c.document_id)
    by_language: dict[Any, Any] = dict(conn.execute(sa.select(cu.c.language, sa.func.count()).select_from(joined)
                                    .where(live, cu.c.status != QUARANTINED).group_by(cu.c.language)).all())
    by_reason: dict[Any, Any] = dict(conn.execute(sa.select(cu.c.reason, sa.func.count()).select_from(joined)
                                  .where(live, cu.c.status == QUARANTINED).group_by(cu.c.reason)).all())
    released = conn.execute(sa.select(sa.func.count()).select_from(joined)
                            .where(live, cu.c.status == RELEASED)).scalar_one()
    has = sa.select(cu.c.document_id).where(cu.c.document_id == d.c.id).exists()
    unchecked = conn.execute(sa.select(sa.func.count()).select_from(d).where(live, ~has)).scalar_one()
    return {"documents_by_language": {str(k): int(v) for k, v in sorted(by_language.items())},
            "quarantined_by_reason": {str(k): int(v) for k, v in sorted(by_reason.items())},
            "quarantined_documents": int(sum(by_reason.values())),
            "released_documents": int(released), "unchecked_documents": int(unchecked)}
