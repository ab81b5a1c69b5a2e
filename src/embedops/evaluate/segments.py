"""Segment labels for queries: language, source, query metadata, judged-document metadata.

``--segment-by`` takes one of:

=================  =============================================================
``language``       query metadata ``language`` when present, else detected from
                   the query text (lingua, ISO 639-1 code; ``unknown`` when no
                   language is reliable)
``source``         query metadata ``source`` when present, else the eval set's
                   bound source
``metadata.KEY``   query metadata ``KEY`` (``(unlabeled)`` when absent)
``doc.KEY``        metadata ``KEY`` of the query's best-graded judged document
                   (e.g. ``doc.ext``: a collapse on one document type shows)
=================  =============================================================

>>> parse_segment_by("metadata.topic")
('metadata', 'topic')
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from embedops.errors import ConfigError
from embedops.evaluate.compare import UNLABELED

UNKNOWN_LANGUAGE = "unknown"
SEGMENT_KINDS = ("language", "source", "metadata.KEY", "doc.KEY")

# Detection runs in lingua's low-accuracy mode over widely used languages:
# loading every high-accuracy model takes ~10 s, too slow for an eval run, and
# restricting the candidates removes most short-query confusions (Latin, Tagalog).
LANGUAGES = (
    "ar bn cs da de el en es fa fi fr he hi hu id it ja ko nb nl pl pt ro ru sv th tr uk vi zh"
).split()

_detector: Any = None
_detector_lock = threading.Lock()


def parse_segment_by(spec: str) -> tuple[str, str | None]:
    """``(kind, key)`` for a ``--segment-by`` value, or a :class:`ConfigError`."""
    if spec in ("language", "source"):
        return spec, None
    kind, sep, key = spec.partition(".")
    if sep and key and kind in ("metadata", "doc"):
        return kind, key
    raise ConfigError(f"bad --segment-by {spec!r}", hint=f"use one of: {', '.join(SEGMENT_KINDS)}")


def segment_labels(
    spec: str,
    queries: Mapping[str, tuple[str, Mapping[str, Any]]],
    *,
    source: str,
    doc_metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """A label per query id. ``queries`` maps id → (text, metadata); ``doc_metadata``
    maps query id → metadata of its best-graded judged document (for ``doc.KEY``)."""
    kind, key = parse_segment_by(spec)
    if kind == "language":
        return language_labels(queries)
    if kind == "source":
        return {qid: str(meta.get("source") or source) for qid, (_, meta) in queries.items()}
    assert key is not None
    if kind == "metadata":
        return {qid: _label(meta.get(key)) for qid, (_, meta) in queries.items()}
    docs = doc_metadata or {}
    return {qid: _label(docs.get(qid, {}).get(key)) for qid in queries}


def language_labels(queries: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Declared ``language`` metadata wins; the other queries are detected in one batch."""
    labels = {qid: str(meta["language"]).lower() for qid, (_, meta) in queries.items() if meta.get("language")}
    todo = [qid for qid in queries if qid not in labels]
    if todo:
        labels.update(zip(todo, detect_languages([queries[q][0] for q in todo]), strict=True))
    return labels


def detect_languages(texts: Sequence[str]) -> list[str]:
    """ISO 639-1 codes (``unknown`` where undecidable), detected with lingua.

    Short queries full of names and jargon fool any detector (8% of SciFact's
    English claims come out French, Romanian...). The set itself is evidence:
    each query's confidences are weighted by how common each language is in a
    first pass over the whole set (an empirical prior, add-one smoothed), which
    halves those errors without hiding a real minority language.
    """
    if not texts:
        return []
    confidences = _lingua().compute_language_confidence_values_in_parallel(list(texts))
    first = [_code(c[0].language) if c else UNKNOWN_LANGUAGE for c in confidences]
    counts: dict[str, int] = {}
    for code in first:
        counts[code] = counts.get(code, 0) + 1
    denominator = len(texts) + len(LANGUAGES)
    labels = []
    for values in confidences:
        if not values:
            labels.append(UNKNOWN_LANGUAGE)
            continue
        best = max(values, key=lambda v: v.value * (counts.get(_code(v.language), 0) + 1) / denominator)
        labels.append(_code(best.language) if best.value > 0 else UNKNOWN_LANGUAGE)
    return labels


def _code(language: Any) -> str:
    return str(language.iso_code_639_1.name.lower())


def _lingua() -> Any:
    global _detector
    with _detector_lock:
        if _detector is None:
            try:
                from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
            except ImportError as exc:
                raise ConfigError(
                    "language segments need lingua-language-detector",
                    hint="pip install lingua-language-detector, or give each query a `language` metadata field",
                ) from exc
            languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in LANGUAGES]
            _detector = LanguageDetectorBuilder.from_languages(*languages).with_low_accuracy_mode().build()
        return _detector


def _label(value: object) -> str:
    if value is None or value == "":
        return UNLABELED
    return str(value)
