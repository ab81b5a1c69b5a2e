"""A LlamaIndex vector store over an embedops alias, writing nodes to a push source.

>>> store = EmbedopsVectorStore.open("path/to/workspace", alias="prod", source="llama_index")  # doctest: +SKIP
>>> index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)  # doctest: +SKIP
>>> index.insert(Document(text="Cells divide by mitosis.", metadata={"lang": "en"}))  # doctest: +SKIP
>>> index.as_retriever(similarity_top_k=5, filters=MetadataFilters.from_dicts([{"key": "lang", "value": "en"}]))  # doctest: +SKIP

Each node is one embedops document (id: the node id; text: the node's text;
metadata: the node's metadata plus LlamaIndex's serialized node and its
``ref_doc_id``, as LlamaIndex's own stores keep them). The store embeds queries
itself (``is_embedding_query = False``) with the alias's own model, so a
retriever keeps working across a migration's cutover. What is supported, and
what is not and why: docs/integrations.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedops.errors import ConfigError, SearchError
from embedops.integrations.binding import AliasBinding, Granularity, Hit, Scope, equality_filters
from embedops.search.engine import Filters
from embedops.workspace import Workspace

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode, MetadataMode, TextNode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("embedops.integrations.llama_index needs llama-index-core: pip install 'embedops[llama-index]'") from exc

__all__ = ["EmbedopsEmbedding", "EmbedopsVectorStore", "parse_filters"]

# LlamaIndex query modes embedops answers, as embedops search modes.
MODES = {VectorStoreQueryMode.DEFAULT: "vector", VectorStoreQueryMode.HYBRID: "hybrid",
         VectorStoreQueryMode.TEXT_SEARCH: "bm25"}
_FILTER_HINT = "embedops filters are equalities (FilterOperator.EQ) of top-level metadata keys, combined with AND"


class EmbedopsEmbedding(BaseEmbedding):
    """The alias's own embedder as a LlamaIndex embedding model (pass it as ``embed_model``).

    LlamaIndex needs one to build a ``VectorStoreIndex``; with this one, whatever it
    embeds is in the space the alias serves now, and follows it across a cutover.
    """

    _binding: AliasBinding = PrivateAttr()

    def __init__(self, binding: AliasBinding, **kwargs: Any) -> None:
        super().__init__(model_name=f"embedops:{binding.alias}", **kwargs)
        self._binding = binding

    @classmethod
    def class_name(cls) -> str:
        return "EmbedopsEmbedding"

    @property
    def space(self) -> str:
        """The embedder's space key: equal keys, comparable vectors."""
        return self._binding.embedder().ref.key

    def _get_query_embedding(self, query: str) -> list[float]:
        return [float(x) for x in self._binding.embed_queries([query])[0]]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._binding.embed(texts)]


def parse_filters(filters: MetadataFilters | None) -> Filters | None:
    """LlamaIndex ``MetadataFilters`` as embedops :class:`Filters`: ``EQ`` filters under ``AND`` only.

    Any other operator, ``OR``/``NOT``, or nested filters are refused, never ignored.
    """
    if filters is None or not filters.filters:
        return None
    if filters.condition not in (None, FilterCondition.AND):
        raise SearchError(f"filter condition {filters.condition.value!r} is not supported", hint=_FILTER_HINT)
    equal: dict[str, Any] = {}
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            raise SearchError("nested MetadataFilters are not supported", hint=_FILTER_HINT)
        if f.operator != FilterOperator.EQ:
            raise SearchError(f"filter on {f.key!r}: operator {f.operator.value!r} is not supported", hint=_FILTER_HINT)
        equal[f.key] = f.value
    return equality_filters(equal)


class EmbedopsVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store whose nodes are an embedops push source, searched through an alias."""

    stores_text: bool = True
    is_embedding_query: bool = False  # queries arrive as text; embedops embeds them with the alias's model
    flat_metadata: bool = False
    _binding: AliasBinding = PrivateAttr()

    def __init__(self, binding: AliasBinding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._binding = binding

    @classmethod
    def open(cls, workspace: str | Path | Workspace, *, alias: str | None = None, source: str | None = "llama_index",
             scope: Scope = "alias", granularity: Granularity = "documents") -> EmbedopsVectorStore:
        """A store over ``workspace``'s ``alias`` (default: the workspace's), writing to push source ``source``.

        The push source is created when missing (``created_source`` says so); ``source=None`` opens a
        read-only store. ``scope="source"`` searches only that source; ``granularity="chunks"`` returns
        each matching chunk as a node instead of whole nodes.
        """
        return cls(AliasBinding.open(workspace, alias=alias, source=source, scope=scope, granularity=granularity))

    @classmethod
    def class_name(cls) -> str:
        return "EmbedopsVectorStore"

    def close(self) -> None:
        """Close the workspace when :meth:`open` opened it from a path."""
        self._binding.close()

    def __enter__(self) -> EmbedopsVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Workspace:
        return self._binding.ws

    @property
    def created_source(self) -> bool:
        """Whether opening this store created its push source."""
        return self._binding.created_source

    @property
    def embed_model(self) -> EmbedopsEmbedding:
        """The alias's embedder, for ``VectorStoreIndex.from_vector_store(store, embed_model=...)``."""
        return EmbedopsEmbedding(self._binding)

    # -- writing ----------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert ``nodes`` by node id; their embeddings, if any, are not used (embedops embeds the text)."""
        _no_extra("add", add_kwargs)
        return self._binding.upsert(
            [n.node_id for n in nodes], [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
            [node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata) for n in nodes])

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of source document ``ref_doc_id``."""
        _no_extra("delete", delete_kwargs)
        self._binding.delete(self._binding.ids_where({"ref_doc_id": ref_doc_id}))

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id and/or metadata equalities; with neither, refused (``clear()`` empties the store)."""
        _no_extra("delete_nodes", delete_kwargs)
        if not node_ids and (filters is None or not filters.filters):
            raise ConfigError("delete_nodes() without node_ids or filters would delete every node: refused",
                              hint="pass node_ids or filters, or call clear() to empty the store")
        self._binding.delete(self._node_ids(node_ids, filters))

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        """Stored nodes by id and/or metadata equalities (every node of the source with neither)."""
        ids = self._node_ids(node_ids, filters)
        return [_node(d.external_id, d.text, dict(d.metadata)) for d in self._binding.get(ids)]

    def clear(self) -> None:
        """Delete every node of this store's source (its vectors leave every kept index)."""
        self._binding.delete(self._binding.ids_where())

    def _node_ids(self, node_ids: list[str] | None, filters: MetadataFilters | None) -> list[str]:
        parsed = parse_filters(filters)
        if parsed is None:
            return list(node_ids) if node_ids else self._binding.ids_where()
        matching = self._binding.ids_where(parsed.metadata)
        wanted = set(node_ids or matching)
        return [i for i in matching if i in wanted]

    # -- searching --------------------------------------------------------------------------
    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes for ``query_str`` (embedded here) or a ``query_embedding``."""
        _no_extra("query", kwargs)
        filters = _restricted(parse_filters(query.filters), query)
        hits = self._binding.search(query.query_str, vector=query.query_embedding, k=query.similarity_top_k,
                                    filters=filters, mode=_mode(query))
        nodes = [_hit_node(h) for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits],
                                      ids=[n.node_id for n in nodes])


def _mode(query: VectorStoreQuery) -> str:
    mode = MODES.get(query.mode)
    if mode is None:
        raise SearchError(f"query mode {query.mode.value!r} is not supported",
                          hint="use default (vector), hybrid (BM25 + vector, fused by RRF) or text_search (BM25)")
    if query.alpha is not None or query.mmr_threshold is not None:
        raise SearchError("alpha and mmr_threshold are not supported: hybrid search fuses by reciprocal rank",
                          hint="leave them unset")
    return mode


def _restricted(filters: Filters | None, query: VectorStoreQuery) -> Filters | None:
    """``doc_ids`` of a single source document as one more equality; node id lists cannot be expressed."""
    if query.node_ids:
        raise SearchError("restricting a query to node_ids is not supported", hint=_FILTER_HINT)
    if not query.doc_ids:
        return filters
    if len(query.doc_ids) > 1:
        raise SearchError("restricting a query to several doc_ids is not supported (no IN filter)",
                          hint="query one ref_doc_id at a time, or filter on a metadata value they share")
    metadata = {**(filters.metadata if filters else {}), "ref_doc_id": query.doc_ids[0]}
    return equality_filters(metadata)


def _hit_node(hit: Hit) -> BaseNode:
    return _node(hit.id, hit.text, hit.metadata)


def _node(node_id: str, text: str, metadata: dict[str, Any]) -> BaseNode:
    """A stored document as a LlamaIndex node: rebuilt from its serialized node, or a plain ``TextNode``
    for documents that reached the alias another way (a folder, a table)."""
    if "_node_content" in metadata:
        return metadata_dict_to_node(metadata, text=text)
    return TextNode(id_=node_id, text=text, metadata=metadata)


def _no_extra(method: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ConfigError(f"{method}: unsupported arguments {', '.join(sorted(kwargs))}")
