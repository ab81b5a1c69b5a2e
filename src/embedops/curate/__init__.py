"""Corpus curation: keep duplicates, near-duplicates and low-quality documents out of the index.

Pure where it can be: the rules (:mod:`.rules`) and signatures
(:mod:`.signature`) take text and return data; the :class:`Curator` keeps an
in-memory index of the canonical documents, built once from the stored state
it reads through the :class:`CurationState` protocol.

In a workspace (``[curate] enabled = true``) sync drives it: ``sync/curation.py``
runs one ``Curator`` per source per sync over the changed and deleted documents,
with the catalog's stored decisions (``catalog/curation.py``, schema 11) as its
:class:`CurationState`; ``sync/run.py`` writes each :class:`Decision` in the
transaction of its document and chunks only the kept ones; chunks get their
``lang`` tags from the same detector; ``sync/quarantine.py`` lists, shows and
releases quarantined documents. See docs/curation.md.
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
