"""The LangChain vector store: LangChain's own standard suite, then what embedops promises beyond it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests", reason="needs the langchain extra and langchain-tests (make test installs them)")

from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from embedops.integrations.binding import AliasBinding
from embedops.integrations.langchain import EmbedopsEmbeddings, EmbedopsVectorStore
from embedops.workspace import Workspace


class TestStandardSuite(VectorStoreIntegrationTests):
    """langchain-tests' VectorStoreIntegrationTests against a fresh workspace per test, on every backend.

    The suite's fake embeddings (random vectors seeded by a hash of the text) are not used:
    embedops embeds with the workspace's own model by design, so the store is built over the
    ``hashing`` embedder and :meth:`get_embeddings` returns that same model as LangChain
    ``Embeddings`` (identical texts, identical vectors: what the suite's assertions rely on)."""

    @pytest.fixture
    def vectorstore(self, tmp_path: Path, database: str | None) -> Iterator[EmbedopsVectorStore]:  # type: ignore[override]
        ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
        store = EmbedopsVectorStore(AliasBinding(ws, source="langchain"))
        try:
            yield store
        finally:
            ws.close()

    @staticmethod
    def get_embeddings() -> Embeddings:
        raise AssertionError("the store embeds with its workspace's model; see the fixture")


# -- what embedops promises beyond the standard suite -------------------------------------------------
LONG = "\n\n".join(
    f"## Part {i}\n\n" + " ".join(["Glaciers carve deep valleys as the ice sheet moves slowly."] * 12) for i in range(12)
) + "\n\n## Coda\n\nComets bring water and tides to distant moons."


@pytest.fixture
def lc_ws(tmp_path: Path, corpus: Path) -> Iterator[Workspace]:
    """A SQLite workspace (hashing embedder) with a synced folder source, as a running app would have."""
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    ws.sync()
    yield ws
    ws.close()


def test_open_creates_the_push_source_once_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    with caplog.at_level("INFO", logger="embedops"), EmbedopsVectorStore.open(tmp_path / "ws") as store:
        assert "created push source 'langchain'" in caplog.text
        assert store.created_source and store.source == "langchain" and store.alias == "prod"
        assert store.similarity_search("anything") == []  # nothing added yet: empty, not an error
    with EmbedopsVectorStore.open(tmp_path / "ws") as again:
        assert not again.created_source
        assert [s["kind"] for s in again.workspace.list_sources()] == ["push"]
        assert [r["kind"] for r in again.workspace.history(kind="source.add")] == ["source.add"]


def test_open_refuses_a_folder_source_and_an_unknown_alias(lc_ws: Workspace) -> None:
    from embedops.errors import NotFound
    from embedops.sync.push import NotPushSource

    with pytest.raises(NotPushSource, match="folder source"):
        EmbedopsVectorStore.open(lc_ws, source="docs")
    with pytest.raises(NotFound, match="no alias 'staging'"):
        EmbedopsVectorStore.open(lc_ws, alias="staging")


def test_a_read_only_store_searches_the_alias_and_refuses_writes(lc_ws: Workspace) -> None:
    from embedops.errors import ConfigError

    store = EmbedopsVectorStore.open(lc_ws, source=None)
    hits = store.similarity_search("cell protein gene", k=3)
    assert len(hits) == 3 and all(h.id and h.page_content for h in hits)
    assert [s["name"] for s in lc_ws.list_sources()] == ["docs"]  # opening changed nothing
    with pytest.raises(ConfigError, match="without a source"):
        store.add_texts(["x"])


def test_adds_are_pushes_with_generated_ids_and_ledger_rows(lc_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(lc_ws)
    batches = len(lc_ws.history(kind="sync.batch"))
    ids = store.add_texts(["Aurora over the fjord.", "Tides and comets."], [{"lang": "en"}, {"lang": "fr"}])
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert len(lc_ws.history(kind="sync.batch")) == batches + 1, "an add is a sync, with its ledger row"
    assert [d.page_content for d in store.get_by_ids(ids)] == ["Aurora over the fjord.", "Tides and comets."]
    # a repeated id in one call: the last copy wins, as two calls in a row would
    assert store.add_texts(["first", "second"], ids=["dup", "dup"]) == ["dup", "dup"]
    assert [d.page_content for d in store.get_by_ids(["dup"])] == ["second"]
    before = lc_ws.status()["indexes"][0]["vectors"]
    store.add_texts(["second"], ids=["dup"])  # unchanged text: nothing re-embedded
    assert lc_ws.status()["indexes"][0]["vectors"] == before


def test_delete_without_ids_is_refused_and_deletes_remove_vectors(lc_ws: Workspace) -> None:
    from embedops.errors import ConfigError
    from tests.test_workspace import check_invariant_2

    store = EmbedopsVectorStore.open(lc_ws)
    store.add_texts(["Aurora over the fjord.", "Tides and comets."], ids=["a", "b"])
    with pytest.raises(ConfigError, match="every document"):
        store.delete()
    assert store.delete(["a", "nope"]) is True
    assert [d.id for d in store.get_by_ids(["a", "b"])] == ["b"]
    assert all(h.id != "a" for h in store.similarity_search("aurora fjord", k=50))
    check_invariant_2(lc_ws)


def test_bad_metadata_writes_nothing_and_an_empty_text_is_reported(lc_ws: Workspace) -> None:
    from datetime import datetime

    from embedops.errors import BadRecord

    store = EmbedopsVectorStore.open(lc_ws)
    with pytest.raises(BadRecord, match="'when': not JSON|not JSON"):
        store.add_texts(["ok", "dated"], [{}, {"when": datetime(2024, 1, 1)}], ids=["ok", "dated"])
    assert store.get_by_ids(["ok", "dated"]) == []
    with pytest.raises(BadRecord, match="1 of 2 documents were not written") as err:
        store.add_texts(["fine", "   "], ids=["fine", "blank"])
    assert err.value.details["skipped"] == ["blank"]
    assert [d.id for d in store.get_by_ids(["fine", "blank"])] == ["fine"]


def test_filters_are_metadata_equalities_on_every_backend(tmp_path: Path, database: str | None) -> None:
    from embedops.errors import SearchError

    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    store = EmbedopsVectorStore(AliasBinding(ws, source="langchain"))
    store.add_texts(["Tides on the moon.", "Tides on the moon, page two.", "Tides in French."],
                    [{"lang": "en", "page": 1}, {"lang": "en", "page": 2}, {"lang": "fr", "page": 2}],
                    ids=["en1", "en2", "fr2"])
    found = lambda f: sorted(d.id or "" for d in store.similarity_search("tides moon", k=10, filter=f))  # noqa: E731
    assert found({"lang": "en"}) == ["en1", "en2"]
    assert found({"page": 2}) == ["en2", "fr2"]
    assert found({"lang": {"$eq": "en"}, "page": 2}) == ["en2"]  # every key must hold
    assert found({"lang": "de"}) == []
    for unsupported in ({"lang": {"$ne": "en"}}, {"$or": [{"lang": "en"}]}, {"page": {"$in": [1, 2]}}, {"draft": True},
                        {"lang": None}):
        with pytest.raises(SearchError):
            store.similarity_search("tides", filter=unsupported)
    ws.close()


def test_as_retriever_passes_k_and_filter(lc_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(lc_ws)
    store.add_texts([f"Comets and tides, note {i}." for i in range(6)], [{"lang": "en" if i % 2 else "fr"} for i in range(6)])
    retriever = store.as_retriever(search_kwargs={"k": 2, "filter": {"lang": "fr"}})
    docs = retriever.invoke("comets and tides")
    assert len(docs) == 2 and all(d.metadata == {"lang": "fr"} for d in docs)


def test_embeddings_are_the_alias_model_and_vector_search_agrees(lc_ws: Workspace) -> None:
    import numpy as np

    store = EmbedopsVectorStore.open(lc_ws)
    index = lc_ws.searcher.resolve(alias="prod")
    assert store.embeddings.space == index.space_key
    vector = store.embeddings.embed_query("cell protein gene")
    expected = lc_ws.searcher.embed_query(index, "cell protein gene")
    assert np.allclose(vector, expected) and len(store.embeddings.embed_documents(["a", "b"])) == 2
    assert store.similarity_search_by_vector(vector, k=5) == store.similarity_search("cell protein gene", k=5)
    scored = store.similarity_search_with_score("cell protein gene", k=5)
    by_vector = store.similarity_search_with_score_by_vector(vector, k=5)
    assert [(d.id, round(s, 5)) for d, s in scored] == [(d.id, round(s, 5)) for d, s in by_vector]
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)


def test_a_retriever_keeps_working_across_a_cutover(lc_ws: Workspace) -> None:
    from embedops.compose import migrator
    from tests.test_workspace import check_invariant_2

    store = EmbedopsVectorStore.open(lc_ws, lineage=True)
    retriever = store.as_retriever(search_kwargs={"k": 1})
    store.add_texts(["Aurora borealis over the fjord."], ids=["aurora"])
    old_space = store.embeddings.space
    m = migrator(lc_ws)
    m.start("hashing:seed=1")
    store.add_texts(["Volcanoes under the ice sheet."], ids=["volcano"])  # dual-written to the shadow index
    m.backfill()
    check_invariant_2(lc_ws)
    m.cutover()
    new_space = lc_ws.searcher.resolve(alias="prod").space_key
    assert new_space != old_space and store.embeddings.space == new_space
    for query, expected in (("aurora borealis fjord", "aurora"), ("volcanoes ice sheet", "volcano")):
        [doc] = retriever.invoke(query)  # the same retriever object, built before the migration
        assert doc.id == expected and doc.metadata["embedops"]["space"] == new_space


def test_lineage_names_the_chunk_its_tags_and_staleness(lc_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(lc_ws, lineage=True)
    store.add_texts(["Tides and comets."], [{"lang": "en"}], ids=["t"])
    [doc] = store.similarity_search("tides comets", k=1, filter={"lang": "en"})
    lineage = doc.metadata.pop("embedops")
    assert doc.metadata == {"lang": "en"}
    index = lc_ws.searcher.resolve(alias="prod")
    assert lineage["space"] == index.space_key and lineage["chunker"] == index.chunker_key
    assert lineage["source"] == "langchain" and lineage["span"] == [0, len("Tides and comets.")]
    assert lineage["stale"] is False and lineage["embedded_at"]
    assert EmbedopsVectorStore.open(lc_ws).similarity_search("tides comets", k=1)[0].metadata == {"lang": "en"}


def test_a_long_document_is_one_hit_or_its_chunks(lc_ws: Workspace) -> None:
    store = EmbedopsVectorStore.open(lc_ws, scope="source", lineage=True)
    store.add_texts([LONG, "Glaciers, briefly."], ids=["long", "short"])
    docs = store.similarity_search("glaciers carve valleys ice sheet", k=2)
    assert [d.id for d in docs] == ["long", "short"] and docs[0].page_content == LONG
    chunked = EmbedopsVectorStore.open(lc_ws, scope="source", granularity="chunks")
    chunks = chunked.similarity_search("glaciers carve valleys ice sheet", k=4)
    assert [d.id for d in chunks].count("long") >= 3 and all(len(d.page_content) < len(LONG) for d in chunks)
    coda = chunked.similarity_search("comets water tides distant moons", k=1)[0]
    assert coda.id == "long" and "Comets bring water" in coda.page_content


def test_scope_source_leaves_out_the_other_sources(lc_ws: Workspace) -> None:
    whole = EmbedopsVectorStore.open(lc_ws, lineage=True)
    whole.add_texts(["Cell protein gene membrane enzyme."], ids=["mine"])
    sources = {d.metadata["embedops"]["source"] for d in whole.similarity_search("cell protein gene membrane", k=10)}
    assert sources == {"docs", "langchain"}
    own = EmbedopsVectorStore.open(lc_ws, scope="source")
    assert [d.id for d in own.similarity_search("cell protein gene membrane", k=10)] == ["mine"]


def test_relevance_scores_are_clipped_cosines_and_modes_pass_through(lc_ws: Workspace) -> None:
    from embedops.errors import SearchError

    store = EmbedopsVectorStore.open(lc_ws, scope="source")
    store.add_texts(["Tides and comets.", "Aurora over the fjord."], ids=["t", "a"])
    scored = dict((d.id, s) for d, s in store.similarity_search_with_score("tides comets", k=2))
    relevant = dict((d.id, s) for d, s in store.similarity_search_with_relevance_scores("tides comets", k=2))
    assert relevant == {k: min(1.0, max(0.0, s)) for k, s in scored.items()}
    threshold = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"score_threshold": 0.5, "k": 2})
    assert [d.id for d in threshold.invoke("tides comets")] == ["t"]
    assert store.similarity_search("tides", k=1, mode="bm25")[0].id == "t"
    assert store.similarity_search("aurora fjord", k=1, mode="hybrid")[0].id == "a"
    with pytest.raises(SearchError, match="only mode='vector'"):
        store.similarity_search_with_relevance_scores("tides", k=1, mode="hybrid")
    with pytest.raises(SearchError, match="unsupported search arguments: where"):
        store.similarity_search("tides", where={"lang": "en"})


def test_from_texts_takes_only_the_alias_own_embeddings(lc_ws: Workspace) -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from embedops.errors import SpaceMismatch

    own = EmbedopsVectorStore.open(lc_ws).embeddings
    store = EmbedopsVectorStore.from_texts(["Tides and comets."], own, ids=["t"], workspace=lc_ws)
    assert [d.id for d in store.get_by_ids(["t"])] == ["t"]
    with pytest.raises(SpaceMismatch, match="not the alias's embedder"):
        EmbedopsVectorStore.from_texts(["x"], DeterministicFakeEmbedding(size=384), workspace=lc_ws)
    assert isinstance(own, EmbedopsEmbeddings)
