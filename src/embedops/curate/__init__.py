"""Corpus curation: keep duplicates, near-duplicates and low-quality documents out of the index.

Pure where it can be: the rules (:mod:`.rules`) and signatures
(:mod:`.signature`) take text and return data; the :class:`Curator` keeps an
in-memory index of the canonical documents, built once from the stored state
it reads through the :class:`CurationState` protocol.

In a workspace (``[curate] enabled = true``) sync drives it: ``sync/curation.py``
runs one ``Curator`` per sync over the changed and deleted documents of every source
(``[curate] scope = "source"``: one per source),
with the catalog's stored decisions (``catalog/curation.py``, schema 11) as its
:class:`CurationState`; ``sync/run.py`` writes each :class:`Decision` in the
transaction of its document and chunks only the kept ones; chunks get their
``lang`` tags from the same detector; ``sync/quarantine.py`` lists, shows and
releases quarantined documents. See docs/curation.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: `embedops.config` reads `CurateSettings` on every command, and the curator's
# index (datasketch, numpy) and language detector are only needed by a sync that curates.
_HOME = {
    "CurationDocument": "curator", "CurationPlan": "curator", "CurationState": "curator", "Curator": "curator",
    "Decision": "curator", "StoredCuration": "curator", "detect_language": "language", "detect_languages": "language",
    "Finding": "rules", "quality_findings": "rules", "RULE_NAMES": "settings", "CurateSettings": "settings",
    "Signature": "signature", "SignatureSpec": "signature",
}
# (The function `signature` is `embedops.curate.signature.signature`: here that name is its module.)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"embedops.curate.{_HOME[name]}"), name)


__all__ = [
    "RULE_NAMES", "CurateSettings", "CurationDocument", "CurationPlan", "CurationState", "Curator", "Decision",
    "Finding", "Signature", "SignatureSpec", "StoredCuration", "detect_language", "detect_languages",
    "quality_findings",
]
