"""A LangChain ``VectorStore`` over an embedops alias, writing to a push source.

>>> store = EmbedopsVectorStore.open("path/to/workspace", alias="prod", source="langchain")  # doctest: +SKIP
>>> store.add_documents([Document("Cells divide by mitosis.", metadata={"lang": "en"})], ids=["bio-1"])  # doctest: +SKIP
['bio-1']
>>> retriever = store.as_retriever(search_kwargs={"k": 5, "filter": {"lang": "en"}})  # doctest: +SKIP
>>> retriever.invoke("how do cells divide")  # doctest: +SKIP

Every query is embedded with the alias's own model, never with a model the app
brings, so the retriever keeps working unchanged across a migration's cutover
(invariant 1). ``store.embeddings`` is that model as a LangChain ``Embeddings``,
for an app that needs vectors in the same space. What is supported, and what
is not and why: docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from embedops.errors import ConfigError, SearchError, SpaceMismatch
from embedops.integrations.binding import AliasBinding, Granularity, Hit, Scope, equality_filters
from embedops.search.engine import Filters
from embedops.workspace import Workspace

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("embedops.integrations.langchain needs langchain-core: pip install 'embedops[langchain]'") from exc

__all__ = ["EmbedopsEmbeddings", "EmbedopsVectorStore", "parse_filter"]

# Keyword arguments the search methods take; anything else is refused rather than silently ignored.
_SEARCH_KWARGS = frozenset({"filter", "mode"})


class EmbedopsEmbeddings(Embeddings):
    """The alias's own embedder as LangChain ``Embeddings``: vectors in the space the alias serves now.

    After a cutover it follows the alias to the new model, as searches do.
    """

    def __init__(self, binding: AliasBinding) -> None:
        self._binding = binding

    @property
    def space(self) -> str:
        """The embedder's space key (model, revision, dims, fingerprint): equal keys, comparable vectors."""
        return self._binding.embedder().ref.key

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._binding.embed(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self._binding.embed_queries([text])[0]]


def parse_filter(filter: Mapping[str, Any] | None) -> Filters | None:
    """A LangChain metadata filter as embedops :class:`Filters`: equalities of top-level keys, all of them.

    ``{"lang": "en"}`` and ``{"lang": {"$eq": "en"}}`` are supported; any other operator
    (``$ne``, ``$in``, ``$gt``, ``$and``, ``$or``, ...) is refused, never ignored.

    >>> parse_filter({"lang": {"$eq": "en"}, "page": 3}).metadata
    {'lang': 'en', 'page': 3}
    """
    if not filter:
        return None
    equal: dict[str, Any] = {}
    for key, value in filter.items():
        if key.startswith("$"):
            raise SearchError(f"filter operator {key!r} is not supported", hint=_FILTER_HINT)
        if isinstance(value, Mapping):
            if set(value) != {"$eq"}:
                raise SearchError(f"filter on {key!r}: operators {sorted(value)} are not supported", hint=_FILTER_HINT)
            value = value["$eq"]
        equal[key] = value
    return equality_filters(equal)


_FILTER_HINT = "embedops filters are equalities of top-level metadata keys, all of which must hold: {'key': value}"


class EmbedopsVectorStore(VectorStore):
    """A LangChain vector store whose documents are an embedops push source, searched through an alias.

    ``add_texts``/``add_documents`` upsert by id (ids are generated when missing),
    ``delete(ids)`` tombstones, ``get_by_ids`` reads the catalog. A search hit is a
    stored document with the text and metadata it was added with; ``lineage=True``
    adds ``metadata["embedops"]``: the matching chunk, its span, space and chunker
    tags, and whether its source changed since it was embedded.
    """

    def __init__(self, binding: AliasBinding, *, lineage: bool = False) -> None:
        self._binding = binding
        self._lineage = lineage

    @classmethod
    def open(cls, workspace: str | Path | Workspace, *, alias: str | None = None, source: str | None = "langchain",
             scope: Scope = "alias", granularity: Granularity = "documents", lineage: bool = False) -> EmbedopsVectorStore:
        """A store over ``workspace``'s ``alias`` (default: the workspace's), writing to push source ``source``.

        The push source is created when missing (``created_source`` says so); ``source=None`` opens a
        read-only store. ``scope="source"`` searches only that source; ``granularity="chunks"`` returns
        each matching chunk instead of whole documents.
        """
        binding = AliasBinding.open(workspace, alias=alias, source=source, scope=scope, granularity=granularity)
        return cls(binding, lineage=lineage)

    def close(self) -> None:
        """Close the workspace when :meth:`open` opened it from a path."""
        self._binding.close()

    def __enter__(self) -> EmbedopsVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workspace(self) -> Workspace:
        return self._binding.ws

    @property
    def alias(self) -> str:
        return self._binding.alias

    @property
    def source(self) -> str | None:
        return self._binding.source

    @property
    def created_source(self) -> bool:
        """Whether opening this store created its push source."""
        return self._binding.created_source

    @property
    def embeddings(self) -> EmbedopsEmbeddings:
        return EmbedopsEmbeddings(self._binding)

    # -- writing ----------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Upsert ``texts`` by id (generated where ``ids`` is missing or has None); returns the ids."""
        _no_extra("add_texts", kwargs)
        texts = list(texts)
        return self._binding.upsert(ids if ids is not None else [None] * len(texts), texts,
                                    metadatas if metadatas is not None else [{}] * len(texts))

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert ``documents``: ``ids=`` wins over each ``Document.id``; the documents are not modified."""
        ids = kwargs.pop("ids", None)
        _no_extra("add_documents", kwargs)
        return self._binding.upsert(ids if ids is not None else [d.id for d in documents],
                                    [d.page_content for d in documents], [d.metadata for d in documents])

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id; unknown ids are ignored. ``ids=None`` (delete everything) is refused."""
        _no_extra("delete", kwargs)
        if ids is None:
            raise ConfigError("delete() without ids would delete every document of the store: refused",
                              hint=f"pass the ids; to remove the whole source: `embedops source remove {self.source}`")
        self._binding.delete(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids``, in the order asked; missing ids are left out."""
        return [Document(id=d.external_id, page_content=d.text, metadata=dict(d.metadata))
                for d in self._binding.get(ids)]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, **kwargs: Any) -> EmbedopsVectorStore:
        """A store opened with ``kwargs`` (``workspace=`` required, as for :meth:`open`), with ``texts`` added.

        ``embedding`` must be an embedops store's ``embeddings`` of the same space: embedops embeds
        with the alias's own model and refuses to pretend it used another."""
        if "workspace" not in kwargs:
            raise ConfigError("from_texts needs workspace=PATH", hint="or use EmbedopsVectorStore.open(PATH)")
        store = cls.open(kwargs.pop("workspace"), **kwargs)
        try:
            _same_space(embedding, store.embeddings)
            store.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            store.close()
            raise
        return store

    # -- searching --------------------------------------------------------------------------
    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Top ``k`` documents for ``query``; ``filter={...}`` (equalities), ``mode`` vector/hybrid/bm25."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Top ``k`` documents with their best chunk's score (cosine similarity in vector mode, higher is closer)."""
        return self._search(query, None, k, kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        """Top ``k`` documents for a vector in the alias's space (from :attr:`embeddings`)."""
        return [doc for doc, _ in self._search(None, embedding, k, kwargs)]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        return self._search(None, embedding, k, kwargs)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Scores are cosine similarities already; clipping to [0, 1] keeps a threshold's meaning
        # (0.8 means cosine 0.8, as in `embedops thresholds`) for every positive threshold.
        return _relevance

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                 **kwargs: Any) -> list[tuple[Document, float]]:
        if kwargs.get("mode", "vector") != "vector":
            raise SearchError("relevance scores are cosine similarities: only mode='vector' has them",
                              hint="use similarity_search_with_score for hybrid or bm25 scores")
        return [(doc, _relevance(score)) for doc, score in self.similarity_search_with_score(query, k, **kwargs)]

    def _search(self, query: str | None, vector: list[float] | None, k: int,
                kwargs: dict[str, Any]) -> list[tuple[Document, float]]:
        unknown = set(kwargs) - _SEARCH_KWARGS
        if unknown:
            raise SearchError(f"unsupported search arguments: {', '.join(sorted(unknown))}",
                              hint="embedops takes k, filter={...} (metadata equalities) and mode (vector, hybrid, bm25)")
        hits = self._binding.search(query, vector=vector, k=k, filters=parse_filter(kwargs.get("filter")),
                                    mode=kwargs.get("mode", "vector"))
        return [(self._document(hit), hit.score) for hit in hits]

    def _document(self, hit: Hit) -> Document:
        metadata = dict(hit.metadata)
        if self._lineage:
            metadata["embedops"] = hit.lineage()
        return Document(id=hit.id, page_content=hit.text, metadata=metadata)


def _relevance(score: float) -> float:
    return min(1.0, max(0.0, score))


def _no_extra(method: str, kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise ConfigError(f"{method}: unsupported arguments {', '.join(sorted(kwargs))}")


def _same_space(given: Embeddings | None, own: EmbedopsEmbeddings) -> None:
    """``given`` must embed in the alias's space: only an embedops adapter of the same space can."""
    if given is None:
        return
    if not isinstance(given, EmbedopsEmbeddings) or given.space != own.space:
        raise SpaceMismatch(
            f"{type(given).__name__} is not the alias's embedder ({own.space}): embedops embeds documents and"
            " queries with the alias's own model, so vectors from another model would be another space",
            hint="pass store.embeddings of an embedops store over the same alias, or None")
