"""Corpus curation: keep duplicates, near-duplicates and low-quality documents out of the index.

Pure where it can be: the rules (:mod:`.rules`) and signatures
(:mod:`.signature`) take text and return data; the :class:`Curator` keeps an
in-memory index of the canonical documents, built once from the stored state
it reads through the :class:`CurationState` protocol.

Intended integration into sync (not built yet; the quarantine table, the
``embedops quarantine list|show|release`` commands and the status counts come
with it):

1. The catalog implements :class:`CurationState`: one row per kept document
   (first seen, content hash, signature bytes) and per duplicate (its
   canonical id); quality-quarantined documents are not returned.
2. ``sync/plan`` computes the changed and deleted documents as it does now;
   one ``Curator(settings.curate, catalog_state)`` per sync then makes
   ``plan = curator.plan(changed, deleted, load=catalog_documents)``: a
   decision per document, including the re-checks that the changes caused
   (duplicates of a deleted or changed canonical document are re-elected).
3. ``sync/run`` writes each :class:`Decision` with its document, in the same
   transaction: ``decision.stored()`` as the curation row, the findings in the
   quarantine table; only kept documents are chunked and embedded, and the
   vectors of a document that became quarantined are deleted like a
   deletion's. If the transaction fails, drop the curator (its index is ahead
   of the database) and build a new one.
4. Chunks get their language tags from ``curator.languages(chunk_texts)``.
"""

from __future__ import annotations

from embedops.curate.curator import (
    CurationDocument, CurationPlan, CurationState, Curator, Decision, StoredCuration,
)
from embedops.curate.language import detect_language, detect_languages
from embedops.curate.rules import Finding, quality_findings
from embedops.curate.settings import RULE_NAMES, CurateSettings
from embedops.curate.signature import Signature, SignatureSpec, signature

__all__ = [
    "RULE_NAMES", "CurateSettings", "CurationDocument", "CurationPlan", "CurationState", "Curator", "Decision",
    "Finding", "Signature", "SignatureSpec", "StoredCuration", "detect_language", "detect_languages",
    "quality_findings", "signature",
]
