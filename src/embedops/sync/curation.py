"""Curation in a sync: one :class:`~embedops.curate.Curator` per sync decides the changes of every source.

After the pure diffs (``sync/plan.py``) say what changed and what was deleted,
:func:`curate_plans` reads the stored decisions (schema 11) of the sources it
compares with and runs ``Curator.plan(changed, deleted, load)`` over all the
plans' changes together, then puts the outcome on each source's plan:

- a decision for every changed document, written with it in its batch: a kept
  document is chunked and embedded, a quarantined one gets no chunks (an update
  that becomes quarantined loses its vectors, as a deletion does);
- ``rechecked``: unchanged documents whose decision flips between keep and
  quarantine because of the changes (the duplicates of a deleted canonical
  document, a younger copy displaced by an older one), and live documents never
  checked (synced while curation was off): they go through the batches like
  updates, their vectors coming from the content-hash cache;
- ``relinked``: unchanged documents whose decision changes only in what it links
  to: a row to rewrite, nothing to chunk.

``[curate] scope`` says what a document is compared with: ``workspace`` (the
default) every source's kept documents, so a page copied into two sources is
embedded once; ``source`` its own source's only (one curator per source). In
the workspace scope a change in one source can flip a document of another (the
canonical copy deleted in A, its duplicate in B promoted): that source gets a
plan of its own, returned to be run with the others.

Nothing is written here; the curator is dropped after the sync, so a failed
batch never leaves an in-memory index ahead of the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.curation import (
    KEPT, QUARANTINED, StoredCurations, StoredDocument, doc_key, source_names, split_key, stored_by_key, unchecked_documents,
)
from embedops.catalog.db import read_tx
from embedops.curate.curator import CurationDocument, Curator
from embedops.curate.language import detect_languages
from embedops.curate.settings import NEAR_DUPLICATE, CurateSettings
from embedops.curate.signature import Signature, SignatureSpec
from embedops.errors import SignatureMismatch
from embedops.sources.base import Document
from embedops.sync.plan import SyncPlan
from embedops.sync.spool import Spool

SourcePlan = tuple[int, SyncPlan]  # a source's catalog id and its plan


def curation_document(key: str, doc: Document, first_seen: float,
                      text: Callable[[], str] | None = None) -> CurationDocument:
    """What the curator sees of a document (``key``: :func:`~embedops.catalog.curation.doc_key`); a ``lang``
    the source gives is taken as declared, like ``language``. ``text``: reads the text again when the curator
    asks for it (a plan's spooled document), so that ``doc`` need not be kept."""
    meta = doc.metadata
    declared = meta.get("language") or meta.get("lang")
    return CurationDocument(key, doc.text if text is None else text, first_seen,
                            {"language": declared} if isinstance(declared, str) and declared else {})


def _changed_documents(plans: Sequence[SourcePlan], first_seen: Mapping[str, float],
                       now: float) -> dict[str, CurationDocument]:
    """The plans' changed documents as the curator sees them. A plan that spooled documents gives each a reader
    of its text (one document at a time from the spool), so that the texts are not all held at once here."""
    out: dict[str, CurationDocument] = {}
    for sid, plan in plans:
        changed = plan.changed
        spilled = any(isinstance(held, Spool) and held.spilled for held in (plan.added, plan.updated))
        for i, (_, doc) in enumerate(changed):
            key = doc_key(sid, doc.external_id)
            # A plan held in memory keeps its texts anyway: the curator takes them as they are.
            reader = partial(_text_at, changed, i) if spilled else None
            out[key] = curation_document(key, doc, first_seen.get(key, now), reader)
    return out


def _text_at(changed: Sequence[tuple[int | None, Document]], i: int) -> str:
    return changed[i][1].text


def curate_plans(engine: sa.Engine, plans: Sequence[SourcePlan], settings: CurateSettings, *, now: float,
                 unchecked: bool = True) -> list[SourcePlan]:
    """Decide ``plans``' changes (and, with ``unchecked``, their sources' never-checked documents) in place.

    New documents are first seen ``now`` (one sync's newcomers tie, and ties go to the smallest source id,
    then the smallest external id). Returns the plans made for other sources whose documents' decisions
    changed because of these (workspace scope), to run after them."""
    if settings.scope == "source":
        return [extra for plan in plans for extra in _curate(engine, [plan], settings, now, unchecked, [plan[0]])]
    return _curate(engine, plans, settings, now, unchecked, None)


def _curate(engine: sa.Engine, plans: Sequence[SourcePlan], settings: CurateSettings, now: float, unchecked: bool,
            within: list[int] | None) -> list[SourcePlan]:
    """One curator over ``plans``, comparing with the stored decisions of the sources ``within`` (None: all)."""
    with read_tx(engine) as conn:
        never = [doc_key(sid, ext) for sid, _ in plans for ext in unchecked_documents(conn, sid)] if unchecked else []
        # A no-op sync reads no stored signature, except one: whether shingle_size or num_perm changed;
        # and one row: a duplicate whose canonical document is gone (a sync killed before re-electing).
        if not (any(p.changed or p.deleted for _, p in plans) or never or _signatures_changed(conn, within, settings)
                or _orphaned_duplicate(conn, within)):
            return []
        state = StoredCurations(conn, within)
        names = source_names(conn)
    loaded: dict[str, StoredDocument] = {}
    changed = _changed_documents(plans, state.first_seen, now)

    def load(keys: Sequence[str]) -> list[CurationDocument]:
        """Documents to decide again: a changed one as the source has it now, the others as stored."""
        with read_tx(engine) as conn:
            found = stored_by_key(conn, [k for k in keys if k not in changed])
        loaded.update(found)
        return [changed[k] for k in keys if k in changed] + [
            curation_document(k, s.document, state.first_seen.get(k, s.ingested_at)) for k, s in found.items()]

    todo = [*changed.values(), *load([key for key in never if key not in changed])]
    deleted = [doc_key(sid, ext) for sid, plan in plans for _, ext in plan.deleted]
    def label(key: str) -> str:  # as `quarantine show` names a document: source/external id
        source_id, external_id = split_key(key)
        return f"{names[source_id]}/{external_id}"

    outcome = Curator(settings, state, label).plan(todo, deleted, load)
    by_source = dict(plans)
    for plan in by_source.values():
        plan.decisions = {}
    extra: dict[int, SyncPlan] = {}
    for key, decision in outcome.decisions.items():
        sid, ext = split_key(key)
        plan = by_source.get(sid) or extra.setdefault(sid, SyncPlan(names[sid]))
        plan.decisions[ext] = decision
        if key in changed:
            continue
        stored = loaded[key]
        before = state.status.get(key)
        if before is None or (before == KEPT) != decision.kept:
            plan.rechecked.append((stored.row_id, stored.document))
        else:
            plan.relinked.append((stored.row_id, decision))
    return list(extra.items())


def _signatures_changed(conn: sa.Connection, within: list[int] | None, settings: CurateSettings) -> bool:
    """Whether the stored signatures (of the sources ``within``; None: all) were made with other shingling
    parameters, or are missing (near_duplicate was not among the rules): then the kept documents are
    re-checked (``Curator.stale``). At most two rows are read: a sync stores one spec."""
    if not settings.checks(NEAR_DUPLICATE):
        return False
    cu = schema.curation
    kept = sa.select(cu.c.signature).where(cu.c.status == KEPT)
    if within is not None:
        kept = kept.where(cu.c.source_id.in_(within))
    if conn.execute(kept.where(cu.c.signature.is_(None)).limit(1)).first() is not None:
        return True
    stored = conn.execute(kept.where(cu.c.signature.is_not(None)).limit(1)).scalar()
    if stored is None:
        return False
    try:
        Signature.from_bytes(stored, SignatureSpec(settings.shingle_size, settings.num_perm))
    except SignatureMismatch:
        return True
    return False


def _orphaned_duplicate(conn: sa.Connection, within: list[int] | None) -> bool:
    """Whether a stored duplicate (of the sources ``within``; None: all) links to a document that is no longer
    a live kept one: the sync that deleted or quarantined it was killed before its copies were re-checked (in
    another source, they run after it). ``Curator.stale`` re-checks such rows; this says a curator is needed."""
    cu, d = schema.curation, schema.documents
    other = cu.alias("canonical_curation")
    canonical_kept = sa.select(d.c.id).join(other, other.c.document_id == d.c.id).where(
        d.c.source_id == sa.func.coalesce(cu.c.canonical_source, cu.c.source_id), d.c.external_id == cu.c.canonical,
        d.c.deleted_at.is_(None), other.c.status == KEPT).exists()
    q = sa.select(cu.c.document_id).where(cu.c.status == QUARANTINED, cu.c.canonical.is_not(None), ~canonical_kept)
    if within is not None:
        q = q.where(cu.c.source_id.in_(within))
    return conn.execute(q.limit(1)).first() is not None


def chunk_tagger(settings: CurateSettings) -> Callable[[Sequence[str]], list[str]]:
    """Language tags for chunk texts, with the workspace's candidates (as ``Curator.languages``)."""
    def tag(texts: Sequence[str]) -> list[str]:
        return detect_languages(texts, settings.language_candidates, accuracy=settings.language_accuracy)
    return tag
