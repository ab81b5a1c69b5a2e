"""Segment labels for queries: language, source, query metadata, judged-document metadata.

``--segment-by`` takes one of:

=================  =============================================================
``language``       query metadata ``language`` when present, else detected from
                   the query text with the ingest's detector (lingua over the
                   workspace's ``[curate] language_candidates``, so a query's
                   tag is comparable with its documents'; ISO 639-1 code,
                   ``unknown`` when no language is reliable)
``source``         query metadata ``source`` when present, else the eval set's
                   bound source
``metadata.KEY``   query metadata ``KEY`` (``(unlabeled)`` when absent)
``doc.KEY``        metadata ``KEY`` of the query's best-graded judged document
                   (e.g. ``doc.ext``: a collapse on one document type shows;
                   ``doc.lang``: the language tag stored at ingest, never
                   detected again)
=================  =============================================================

>>> parse_segment_by("metadata.topic")
('metadata', 'topic')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from embedops.curate.language import LanguageDetector
from embedops.errors import ConfigError
from embedops.evaluate.compare import UNLABELED

SEGMENT_KINDS = ("language", "source", "metadata.KEY", "doc.KEY")


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
    detect: Callable[[Sequence[str]], list[str]] | None = None,
) -> dict[str, str]:
    """A label per query id. ``queries`` maps id → (text, metadata); ``doc_metadata``
    maps query id → metadata of its best-graded judged document (for ``doc.KEY``);
    ``detect`` tags query texts (for ``language``: the workspace's
    :meth:`~embedops.curate.language.LanguageDetector.queries`)."""
    kind, key = parse_segment_by(spec)
    if kind == "language":
        return language_labels(queries, detect or LanguageDetector().queries)
    if kind == "source":
        return {qid: str(meta.get("source") or source) for qid, (_, meta) in queries.items()}
    assert key is not None
    if kind == "metadata":
        return {qid: _label(meta.get(key)) for qid, (_, meta) in queries.items()}
    docs = doc_metadata or {}
    return {qid: _label(docs.get(qid, {}).get(key)) for qid in queries}


def language_labels(queries: Mapping[str, tuple[str, Mapping[str, Any]]],
                    detect: Callable[[Sequence[str]], list[str]]) -> dict[str, str]:
    """Declared ``language`` metadata wins; the other queries are tagged by ``detect`` in one batch."""
    labels = {qid: str(meta["language"]).lower() for qid, (_, meta) in queries.items() if meta.get("language")}
    todo = [qid for qid in queries if qid not in labels]
    if todo:
        labels.update(zip(todo, detect([queries[q][0] for q in todo]), strict=True))
    return labels


def _label(value: object) -> str:
    if value is None or value == "":
        return UNLABELED
    return str(value)
