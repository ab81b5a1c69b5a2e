"""What the LangChain and LlamaIndex stores share: a workspace, the alias they search, the push source they write.

No framework is imported here, so both adapters stay thin translations of their
framework's types. A framework's document (a LangChain ``Document``, a
LlamaIndex node) is one embedops document of a push source, by id: adding it
is an upsert (a small sync: chunked, embedded with the alias's model,
dual-written during a migration, a ledger row), deleting it tombstones it.

A search resolves the alias once, embeds the query with that index's own
embedder and searches that same index, so a cutover between the two steps can
never pair a query vector with another space (invariant 1). A hit is a whole
document scored by its best chunk (``granularity="documents"``, what a
framework gave is what it gets back) or each matching chunk (``"chunks"``, for
long documents synced from folders or tables).

>>> equality_filters({"lang": "en", "page": 3}).metadata
{'lang': 'en', 'page': 3}
>>> equality_filters({"draft": True})
Traceback (most recent call last):
...
embedops.errors.SearchError: metadata filter 'draft': True is a bool; embedops compares metadata values as text, so only strings and numbers can be matched
  hint: store the flag as a string ("true") and filter on that
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from embedops.embedding.base import Embedder
from embedops.errors import BadRecord, ConfigError, NotFound, SearchError
from embedops.search.engine import Filters, SearchResult
from embedops.sources.base import Document
from embedops.sync.push import require_push
from embedops.vectors.base import IndexInfo
from embedops.workspace import Workspace

log = logging.getLogger("embedops")

Scope = Literal["alias", "source"]
Granularity = Literal["documents", "chunks"]
SCOPES: tuple[str, ...] = get_args(Scope)
GRANULARITIES: tuple[str, ...] = get_args(Granularity)

# A document scores its best chunk: fetch this many chunks per wanted document, then 4x more while
# too few distinct documents came back (the depths `embedops eval run` uses, so both rank alike).
CHUNKS_PER_DOC = 5
MAX_CHUNKS_PER_DOC = 80


@dataclass(frozen=True)
class Hit:
    """One search result as an adapter shows it: a document (or chunk) and the chunk that matched."""

    id: str
    source: str
    text: str  # the whole document as stored, or the matching chunk's text
    metadata: dict[str, Any]
    score: float  # the best chunk's: cosine similarity in vector mode
    best: SearchResult

    def lineage(self) -> dict[str, Any]:
        """Where the matching vector came from: source, chunk and its span, space and chunker tags, staleness."""
        b = self.best
        return {"source": b.source, "chunk_id": b.chunk_id, "span": [b.start, b.end], "score": b.score,
                "stale": b.stale, **b.tags}


def equality_filters(metadata: Mapping[str, Any]) -> Filters:
    """Metadata equalities as :class:`Filters`; values must be strings or numbers (compared as text)."""
    for key, value in metadata.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind = type(value).__name__ if value is not None else "null"
            hint = ('store the flag as a string ("true") and filter on that' if isinstance(value, bool)
                    else "filter on a top-level key whose value is a string or a number")
            raise SearchError(
                f"metadata filter {key!r}: {value!r} is a {kind}; embedops compares metadata values as text,"
                " so only strings and numbers can be matched", hint=hint)
    return Filters(metadata=dict(metadata))


class AliasBinding:
    """An alias to search and (unless read-only) a push source to write, in one workspace.

    ``scope="alias"`` searches every document the alias serves (folders, tables and
    pushes alike); ``"source"`` only this binding's push source.
    """

    def __init__(self, ws: Workspace, *, alias: str | None = None, source: str | None = None,
                 scope: Scope = "alias", granularity: Granularity = "documents", owns_workspace: bool = False) -> None:
        _check_choice("scope", scope, SCOPES)
        _check_choice("granularity", granularity, GRANULARITIES)
        if scope == "source" and source is None:
            raise ConfigError("scope='source' needs a source", hint="pass source=NAME, or search the whole alias")
        self.ws, self.scope, self.granularity, self.owns_workspace = ws, scope, granularity, owns_workspace
        self.alias = alias or ws.settings.alias
        self.source = source
        self.created_source = self._ensure_source() if source is not None else False
        self._check_alias()

    @classmethod
    def open(cls, workspace: str | Path | Workspace, **options: Any) -> AliasBinding:
        """A binding over ``workspace`` (an open :class:`Workspace`, or a path to open and later close)."""
        if isinstance(workspace, Workspace):
            return cls(workspace, **options)
        ws = Workspace.open(workspace)
        try:
            return cls(ws, owns_workspace=True, **options)
        except BaseException:
            ws.close()
            raise

    def close(self) -> None:
        """Close the workspace when this binding opened it."""
        if self.owns_workspace:
            self.ws.close()

    def _ensure_source(self) -> bool:
        """The push source exists afterwards; True when this call created it."""
        assert self.source is not None
        cfg = self.ws.settings.sources.get(self.source)
        if cfg is not None:
            require_push(cfg)  # a folder's documents would vanish at its next sync
            return False
        self.ws.add_source(self.source, kind="push")
        log.info("created push source %r in %s for the integration's documents", self.source, self.ws.root)
        return True

    def _check_alias(self) -> None:
        # The configured alias is created by the first write; any other must already exist.
        if self.alias != self.ws.settings.alias and self.index() is None:
            raise NotFound(f"no alias {self.alias!r}", hint=f"the workspace's alias is {self.ws.settings.alias!r};"
                           " list aliases with `embedops status`")

    # -- reading the alias --------------------------------------------------------------
    def index(self) -> IndexInfo | None:
        """The index the alias serves now; None before the first document reached the workspace."""
        return self.ws.store.lookup_index(alias=self.alias)

    def embedder(self) -> Embedder:
        """The alias's own embedder; before its index exists, the one the first write will create it with."""
        index = self.index()
        if index is None:
            return self.ws.embedder(self.ws.settings.embedder)
        embedder: Embedder = self.ws.searcher.query_embedder(index)
        return embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` embedded as documents with the alias's own model, one float32 row each."""
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        return np.asarray(self.embedder().embed(list(texts)), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` embedded as queries (the query side of an asymmetric model), one float32 row each."""
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        return np.asarray(self.embedder().embed_queries(list(texts)), dtype=np.float32)

    def search(self, query: str | None = None, *, vector: Sequence[float] | np.ndarray | None = None, k: int = 4,
               filters: Filters | None = None, mode: str = "vector") -> list[Hit]:
        """Top ``k`` hits for ``query`` (or a precomputed ``vector`` in the alias's space)."""
        if k < 1:
            raise SearchError(f"k must be at least 1 (got {k})")
        index = self.index()
        if index is None:
            return []  # nothing was ever added: an empty store, not an error
        vec = np.asarray(vector, dtype=np.float32) if vector is not None else None
        if vec is None and mode != "bm25" and query and query.strip():  # an empty query: search says so
            vec = self.ws.searcher.embed_query(index, query)
        scoped = self._scoped(filters)

        def fetch(depth: int) -> list[SearchResult]:
            return self.ws.search(query, vector=vec, k=depth, index=index.id, filters=scoped, mode=mode)

        if self.granularity == "chunks":
            return [_chunk_hit(r) for r in fetch(k)]
        return self._documents(_best_chunks(fetch, k))

    def _scoped(self, filters: Filters | None) -> Filters | None:
        if self.scope != "source":
            return filters
        return Filters(source=self.source, metadata=dict(filters.metadata) if filters else {},
                       updated_after=filters.updated_after if filters else None)

    def _documents(self, best: list[SearchResult]) -> list[Hit]:
        """Each best chunk's document as stored; one deleted meanwhile is left out."""
        stored: dict[tuple[str, str], Document] = {}
        for source in dict.fromkeys(r.source for r in best):
            ids = [r.document_id for r in best if r.source == source]
            stored.update({(source, d.external_id): d for d in self.ws.get_documents(source, ids)})
        hits = []
        for r in best:
            doc = stored.get((r.source, r.document_id))
            if doc is not None:
                hits.append(Hit(r.document_id, r.source, doc.text, dict(doc.metadata), r.score, r))
        return hits

    # -- writing the push source --------------------------------------------------------
    def upsert(self, ids: Sequence[str | None], texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> list[str]:
        """Add or replace documents by id (a missing id gets a new one); returns the ids, in order."""
        source = self.writable_source()
        if not len(ids) == len(texts) == len(metadatas):
            raise ConfigError(f"{len(texts)} texts, {len(ids)} ids and {len(metadatas)} metadatas: they must pair up")
        final = [i if i else uuid.uuid4().hex for i in ids]
        latest: dict[str, Document] = {}  # a repeated id: the last copy wins, as with successive upserts
        for ext, text, metadata in zip(final, texts, metadatas, strict=True):
            latest[ext] = Document(ext, text, _json_metadata(ext, metadata))
        if latest:
            result = self.ws.upsert_documents(source, list(latest.values()))
            _raise_skipped(source, result.counts.skipped, len(latest))
        return final

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; ids that are not there are ignored. Returns how many were deleted."""
        source = self.writable_source()
        if not ids:
            return 0
        return self.ws.delete_documents(source, list(ids), missing_ok=True).counts.deleted

    def get(self, ids: Sequence[str]) -> list[Document]:
        """This source's live documents among ``ids``, in the order asked."""
        return self.ws.get_documents(self.writable_source(), ids)

    def ids_where(self, metadata: Mapping[str, Any] | None = None) -> list[str]:
        """Ids of this source's live documents (with these metadata values, when given)."""
        if metadata:
            equality_filters(metadata)  # the same values a search filter accepts
        return self.ws.document_ids(self.writable_source(), metadata=metadata)

    def writable_source(self) -> str:
        if self.source is None:
            raise ConfigError("this store was opened without a source: it searches, it does not store",
                              hint="open it with source=NAME (a push source, created when missing)")
        return self.source


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}", hint=f"use one of: {', '.join(allowed)}")


def _best_chunks(fetch: Callable[[int], list[SearchResult]], k: int) -> list[SearchResult]:
    """The best chunk of each of the first ``k`` distinct documents, fetching deeper while too few came back."""
    depth = k * CHUNKS_PER_DOC
    while True:
        results = fetch(depth)
        best: dict[tuple[str, str], SearchResult] = {}
        for r in results:  # best first, so a document's first chunk is its best
            best.setdefault((r.source, r.document_id), r)
            if len(best) == k:
                return list(best.values())
        if len(results) < depth or depth >= k * MAX_CHUNKS_PER_DOC:
            return list(best.values())
        depth *= 4


def _chunk_hit(r: SearchResult) -> Hit:
    return Hit(r.document_id, r.source, r.text, dict(r.metadata), r.score, r)


def _json_metadata(external_id: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` as the catalog stores it (JSON), refused with the offending document's id otherwise."""
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadRecord(f"document {external_id!r}: its metadata is not JSON ({exc}); nothing was written",
                        hint="convert dates, objects and NaN to strings or numbers first", id=external_id) from exc
    return dict(metadata)


def _raise_skipped(source: str, skipped: Sequence[Any], total: int) -> None:
    """Documents the push refused (no text): the others are written; say which were not, and why."""
    if skipped:
        reasons = "; ".join(s.reason for s in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        raise BadRecord(f"{len(skipped)} of {total} documents were not written to {source!r}: {reasons}",
                        hint="the others were written; give each document some text",
                        skipped=[s.external_id for s in skipped])
