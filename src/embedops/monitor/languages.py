"""Corpus languages vs the languages the embedder was trained for.

An English-only model embeds German or Chinese text without an error; the
vectors are just poor (XQuAD: ``minilm-l6`` nDCG@10 0.94 in English, 0.09 for
Chinese questions). For every active index, this check takes a bounded random
sample of its chunks (``language_sample``), reads each one's language from the tag
curation stored (the chunk's ``lang``, else its document's), else from its document's
``language``/``lang`` metadata when the source gives one, else detects it from
the chunk text with the ingest's detector (lingua over ``[curate] language_candidates``,
by default 30 widely used languages; a language outside that set is reported as its
nearest candidate or ``unknown``), and compares the shares with the languages
the embedder's metadata lists (``ref.extra["languages"]``). It warns when more
than ``language_max_share`` of the sample is in languages the model was not
trained for. Embedders that declare no languages (``hashing``: any; HTTP and
generic paths: unknown) are not judged.

>>> assess(["en"] * 90 + ["de"] * 8 + ["unknown"] * 2, ("en",), 0.05).outside_share
0.08
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.vectors.base import IndexInfo
from embedops.vectors.sqlite import space_ref

if TYPE_CHECKING:
    from embedops.workspace import Workspace

UNKNOWN = "unknown"
#: Metadata keys a source may tag a document's language with (the first present wins).
LANGUAGE_KEYS = ("language", "lang")


@dataclass(frozen=True)
class LanguageAssessment:
    """Shares of a sample's languages and how much of it lies outside the trained ones."""

    shares: dict[str, float]
    outside: dict[str, float]
    outside_share: float
    status: Literal["ok", "warn"]


@dataclass
class IndexLanguages:
    index: str
    embedder: str
    trained: list[str] | str | None
    sampled: int = 0
    declared: int = 0
    detected: int = 0
    shares: dict[str, float] = field(default_factory=dict)
    outside: dict[str, float] = field(default_factory=dict)
    outside_share: float = 0.0
    status: Literal["ok", "warn", "skip"] = "skip"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def assess(labels: Sequence[str], trained: Sequence[str], max_share: float) -> LanguageAssessment:
    """Pure: language shares of ``labels`` and the share outside ``trained`` (``unknown`` counts as neither)."""
    counts = Counter(labels)
    total = max(len(labels), 1)
    shares = {lang: round(n / total, 4) for lang, n in counts.most_common()}
    allowed = set(trained) | {UNKNOWN}
    outside = {lang: share for lang, share in shares.items() if lang not in allowed}
    outside_share = round(sum(counts[lang] for lang in outside) / total, 4)
    return LanguageAssessment(shares, outside, outside_share, "warn" if outside_share > max_share else "ok")


def trained_languages(ws: Workspace, index: IndexInfo) -> list[str] | str | None:
    """The languages ``index``'s embedder lists: from the space as registered, else from the packaged model.

    ``"any"`` (hashing) or ``None`` (not declared) mean nothing to judge against.
    """
    with read_tx(ws.engine) as conn:
        ref = space_ref(conn, index.space_key)
    declared = ref.extra.get("languages") if ref is not None else None
    if declared is None:
        # Spaces registered before models listed their languages: the packaged model's own list, same space only.
        from embedops.embedding.registry import PACKAGED

        if index.embedder in PACKAGED:
            packaged = PACKAGED[index.embedder].describe()
            if packaged.key == index.space_key:
                declared = packaged.extra.get("languages")
    return declared if isinstance(declared, (str, list)) else None


def sample_chunks(ws: Workspace, index: IndexInfo, size: int) -> list[tuple[str, dict[str, Any], str | None]]:
    """Up to ``size`` random chunks of ``index``: (text, its document's metadata, its stored language tag).

    The stored tag is curation's: the chunk's ``lang`` (chunks.metadata), else its document's decision; None
    for a chunk synced without curation."""
    from embedops.catalog.curation import language_of

    v, c, d = schema.vectors, schema.chunks, schema.documents
    q = (sa.select(c.c.text, d.c.metadata, c.c.metadata, language_of())
         .select_from(v.join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id))
         .where(v.c.index_id == index.id, d.c.deleted_at.is_(None)).order_by(sa.func.random()).limit(size))
    with read_tx(ws.engine) as conn:
        rows = list(conn.execute(q))
    return [(text, _json(meta), _tag(_json(chunk_meta).get("lang")) or _tag(doc_tag))
            for text, meta, chunk_meta, doc_tag in rows]


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _tag(value: Any) -> str | None:
    """A stored language tag; "unknown" (curation could not tell) is no tag: detection may do better on the chunk."""
    return value.strip().lower() if isinstance(value, str) and value.strip() and value != UNKNOWN else None


def _declared(meta: dict[str, Any]) -> str | None:
    for key in LANGUAGE_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def check_index_languages(ws: Workspace, index: IndexInfo) -> IndexLanguages:
    settings = ws.settings.monitor
    trained = trained_languages(ws, index)
    out = IndexLanguages(index.id, index.embedder, trained)
    if not isinstance(trained, list):
        out.reason = f"embedder {index.embedder!r} lists " + ("any language" if trained == "any" else "no languages")
        return out
    sample = sample_chunks(ws, index, settings.language_sample)
    if not sample:
        out.reason = "the index holds no chunk"
        return out
    labels: list[str | None] = [tag or _declared(meta) for _, meta, tag in sample]
    todo = [i for i, label in enumerate(labels) if label is None]
    if todo:
        from embedops.curate.language import LanguageDetector

        detect = LanguageDetector.of(ws.settings.curate).documents
        for i, found in zip(todo, detect([sample[i][0] for i in todo]), strict=True):
            labels[i] = found
    result = assess([label or UNKNOWN for label in labels], trained, settings.language_max_share)
    out.sampled, out.declared, out.detected = len(sample), len(sample) - len(todo), len(todo)
    out.shares, out.outside, out.outside_share, out.status = result.shares, result.outside, result.outside_share, result.status
    return out


def check_languages(ws: Workspace) -> list[IndexLanguages]:
    """:func:`check_index_languages` for every active index."""
    with read_tx(ws.engine) as conn:
        indexes = ws.indexes(conn, "active")
    return [check_index_languages(ws, ix) for ix in indexes]
