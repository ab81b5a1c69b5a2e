"""The LlamaIndex vector store: used through VectorStoreIndex, and on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core", reason="needs the llama-index extra (make test installs it)")

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)

from embedops.errors import ConfigError, SearchError
from embedops.integrations.llama_index import EmbedopsVectorStore
from embedops.workspace import Workspace
from tests.test_workspace import check_invariant_2


def eq(**values: object) -> MetadataFilters:
    return MetadataFilters(filters=[MetadataFilter(key=k, value=v) for k, v in values.items()])  # type: ignore[arg-type]


@pytest.fixture
def li_ws(tmp_path: Path, database: str | None) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    yield ws
    ws.close()


def node(node_id: str, text: str, ref: str, **metadata: object) -> TextNode:
    n = TextNode(id_=node_id, text=text, metadata=dict(metadata))
    n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=ref)
    return n


def test_a_vector_store_index_inserts_retrieves_filters_and_deletes_by_document(li_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(li_ws)
    assert store.created_source
    index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
    index.insert(Document(text="Aurora borealis over the fjord.", metadata={"lang": "en"}, doc_id="aurora"))
    index.insert(Document(text="Volcanoes under the ice sheet.", metadata={"lang": "fr"}, doc_id="volcano"))
    [best, other] = index.as_retriever(similarity_top_k=2).retrieve("aurora borealis fjord")
    assert best.node.ref_doc_id == "aurora" and best.node.metadata == {"lang": "en"}
    assert best.node.get_content() == "Aurora borealis over the fjord." and best.score > other.score
    filtered = index.as_retriever(similarity_top_k=2, filters=eq(lang="fr")).retrieve("aurora borealis fjord")
    assert [n.node.ref_doc_id for n in filtered] == ["volcano"]
    index.delete_ref_doc("aurora")
    assert [n.node.ref_doc_id for n in index.as_retriever(similarity_top_k=5).retrieve("aurora")] == ["volcano"]
    assert li_ws.document_ids("llama_index") == [n.node_id for n in store.get_nodes()]
    check_invariant_2(li_ws)


def test_queries_are_embedded_by_the_store_not_by_the_index_model(li_ws: Workspace) -> None:
    # A model of another space (8 dims, constant vectors) as the index's embed_model: retrieval is still
    # right, because the store embeds the query text with the alias's own model, and node vectors from
    # LlamaIndex are never stored (embedops embeds the node text itself).
    store = EmbedopsVectorStore.open(li_ws)
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=8))
    index.insert(Document(text="Aurora borealis over the fjord.", doc_id="aurora"))
    index.insert(Document(text="Volcanoes under the ice sheet.", doc_id="volcano"))
    assert index.as_retriever(similarity_top_k=1).retrieve("volcanoes ice")[0].node.ref_doc_id == "volcano"
    assert li_ws.status()["indexes"][0]["dims"] == 384


def test_nodes_round_trip_with_relationships_and_metadata(li_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(li_ws, scope="source")
    original = node("n1", "Tides and comets.", "doc-a", lang="en", page=3)
    original.excluded_embed_metadata_keys = ["page"]
    assert store.add([original, node("n2", "Aurora over the fjord.", "doc-a", lang="fr", page=4)]) == ["n1", "n2"]
    [back] = store.get_nodes(["n1"])
    assert back.node_id == "n1" and back.get_content() == "Tides and comets." and back.ref_doc_id == "doc-a"
    assert back.metadata == {"lang": "en", "page": 3} and back.excluded_embed_metadata_keys == ["page"]
    assert [n.node_id for n in store.get_nodes(filters=eq(lang="fr"))] == ["n2"]
    assert [n.node_id for n in store.get_nodes(["n1", "n2"], filters=eq(page=4))] == ["n2"]
    result = store.query(VectorStoreQuery(query_str="tides comets", similarity_top_k=2))
    assert result.ids == ["n1", "n2"] and result.similarities is not None and result.similarities[0] > 0.5
    assert result.nodes is not None and result.nodes[0].metadata == {"lang": "en", "page": 3}


def test_deletes_by_node_filter_and_clear(li_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(li_ws)
    store.add([node(f"n{i}", f"Note {i} on tides.", f"doc-{i % 2}", part=str(i % 3)) for i in range(6)])
    store.delete_nodes(["n0"])
    store.delete_nodes(filters=eq(part="1"))  # n1, n4
    assert sorted(n.node_id for n in store.get_nodes()) == ["n2", "n3", "n5"]
    store.delete("doc-1")  # n3, n5
    assert [n.node_id for n in store.get_nodes()] == ["n2"]
    with pytest.raises(ConfigError, match="every node"):
        store.delete_nodes()
    store.clear()
    assert store.get_nodes() == [] and store.query(VectorStoreQuery(query_str="tides", similarity_top_k=3)).ids == []
    check_invariant_2(li_ws)


def test_query_modes_vectors_and_what_is_refused(li_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(li_ws)
    store.add([node("t", "Tides and comets.", "doc-t"), node("a", "Aurora over the fjord.", "doc-a")])
    q = lambda **kw: store.query(VectorStoreQuery(similarity_top_k=1, **kw)).ids  # noqa: E731
    assert q(query_str="tides", mode=VectorStoreQueryMode.TEXT_SEARCH) == ["t"]
    assert q(query_str="aurora fjord", mode=VectorStoreQueryMode.HYBRID) == ["a"]
    assert q(query_embedding=store.embed_model.get_query_embedding("aurora fjord")) == ["a"]
    assert q(query_str="tides comets aurora", doc_ids=["doc-a"]) == ["a"]
    refused = [
        dict(query_str="x", mode=VectorStoreQueryMode.SVM),
        dict(query_str="x", mode=VectorStoreQueryMode.MMR),
        dict(query_str="x", mode=VectorStoreQueryMode.HYBRID, alpha=0.3),
        dict(query_str="x", doc_ids=["doc-a", "doc-t"]),
        dict(query_str="x", node_ids=["a"]),
        dict(query_str="x", filters=MetadataFilters(filters=[MetadataFilter(key="k", value=1, operator=FilterOperator.GT)])),
        dict(query_str="x", filters=MetadataFilters(filters=[MetadataFilter(key="k", value="v")], condition=FilterCondition.OR)),
        dict(query_str="x", filters=MetadataFilters(filters=[eq(k="v")])),
    ]
    for kwargs in refused:
        with pytest.raises(SearchError):
            q(**kwargs)


def test_the_embed_model_is_the_alias_model(li_ws: Workspace) -> None:
    import numpy as np

    store = EmbedopsVectorStore.open(li_ws)
    store.add([node("t", "Tides and comets.", "doc-t")])
    index = li_ws.searcher.resolve(alias="prod")
    assert store.embed_model.space == index.space_key
    assert np.allclose(store.embed_model.get_text_embedding("tides"), li_ws.searcher.embed_query(index, "tides"))
    assert len(store.embed_model.get_text_embedding_batch(["a", "b", "c"])) == 3


def test_a_store_opened_from_a_path_owns_its_workspace(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    with EmbedopsVectorStore.open(tmp_path / "ws") as store:
        assert store.created_source and isinstance(store.client, Workspace)
        assert store.query(VectorStoreQuery(query_str="anything", similarity_top_k=2)).ids == []  # empty, no error
        store.add([node("n", "Tides.", "doc")])
    with EmbedopsVectorStore.open(tmp_path / "ws", source=None) as reader:
        assert not reader.created_source and reader.query(VectorStoreQuery(query_str="tides")).ids == ["n"]
        with pytest.raises(ConfigError, match="without a source"):
            reader.add([node("m", "More.", "doc")])
