"""Curation in a sync: one :class:`~embedops.curate.Curator` per source per sync decides its changes.

After the pure diff (``sync/plan.py``) says what changed and what was deleted,
:func:`curate_plan` reads the source's stored decisions (schema 11), runs
``Curator.plan(changed, deleted, load)`` and puts the outcome on the plan:

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

Nothing is written here; the curator is dropped after the sync, so a failed
batch never leaves an in-memory index ahead of the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.curation import KEPT, SourceCuration, StoredDocument, stored_documents, unchecked_documents
from embedops.catalog.db import read_tx
from embedops.curate.curator import CurationDocument, Curator
from embedops.curate.language import detect_languages
from embedops.curate.settings import NEAR_DUPLICATE, CurateSettings
from embedops.curate.signature import Signature, SignatureSpec
from embedops.errors import SignatureMismatch
from embedops.sources.base import Document
from embedops.sync.plan import SyncPlan


def curation_document(doc: Document, first_seen: float) -> CurationDocument:
    """What the curator sees of a document; a ``lang`` the source gives is taken as declared, like ``language``."""
    meta = doc.metadata
    declared = meta.get("language") or meta.get("lang")
    return CurationDocument(doc.external_id, doc.text, first_seen,
                            {"language": declared} if isinstance(declared, str) and declared else {})


def curate_plan(engine: sa.Engine, source_id: int, plan: SyncPlan, settings: CurateSettings, *, now: float,
                unchecked: bool = True) -> SyncPlan:
    """Decide ``plan``'s changes (and, with ``unchecked``, the source's never-checked documents) in place.

    New documents are first seen ``now`` (one sync's newcomers tie, and ties go to the smallest id)."""
    with read_tx(engine) as conn:
        never = unchecked_documents(conn, source_id) if unchecked else []
        # A no-op sync reads no stored signature, except one: whether shingle_size or num_perm changed.
        if not (plan.changed or plan.deleted or never or _signatures_changed(conn, source_id, settings)):
            return plan
        state = SourceCuration(conn, source_id)
    loaded: dict[str, StoredDocument] = {}
    changed = {doc.external_id: curation_document(doc, state.first_seen.get(doc.external_id, now))
               for _, doc in plan.changed}

    def load(ids: Sequence[str]) -> list[CurationDocument]:
        """Documents to decide again: a changed one as the source has it now, the others as stored."""
        with read_tx(engine) as conn:
            found = stored_documents(conn, source_id, [i for i in ids if i not in changed])
        loaded.update({s.document.external_id: s for s in found})
        return [changed[i] for i in ids if i in changed] + [
            curation_document(s.document, state.first_seen.get(s.document.external_id, s.ingested_at)) for s in found]

    changed_ids = set(changed)
    todo = [*changed.values(), *load([ext for ext in never if ext not in changed_ids])]
    outcome = Curator(settings, state).plan(todo, [ext for _, ext in plan.deleted], load)
    plan.decisions = dict(outcome.decisions)
    for ext, decision in outcome.decisions.items():
        if ext in changed_ids:
            continue
        stored = loaded[ext]
        before = state.status.get(ext)
        if before is None or (before == KEPT) != decision.kept:
            plan.rechecked.append((stored.row_id, stored.document))
        else:
            plan.relinked.append((stored.row_id, decision))
    return plan


def _signatures_changed(conn: sa.Connection, source_id: int, settings: CurateSettings) -> bool:
    """Whether the source's stored signatures were made with other shingling parameters, or are missing
    (near_duplicate was not among the rules): then the kept documents are re-checked (``Curator.stale``).
    At most two rows are read: a sync stores one spec."""
    if not settings.checks(NEAR_DUPLICATE):
        return False
    cu = schema.curation
    kept = sa.select(cu.c.signature).where(cu.c.source_id == source_id, cu.c.status == KEPT)
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


def chunk_tagger(settings: CurateSettings) -> Callable[[Sequence[str]], list[str]]:
    """Language tags for chunk texts, with the workspace's candidates (as ``Curator.languages``)."""
    def tag(texts: Sequence[str]) -> list[str]:
        return detect_languages(texts, settings.language_candidates, accuracy=settings.language_accuracy)
    return tag
