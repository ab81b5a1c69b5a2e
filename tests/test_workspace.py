"""Sync and search end to end on real SQLite files with the hashing embedder."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.errors import ConfigChanged, NotFound, SearchError, SpaceMismatch
from embedops.search.engine import Filters
from embedops.vectors.base import VectorRow
from embedops.workspace import Workspace


def check_invariant_2(ws: Workspace) -> None:
    """Every live chunk has exactly one vector per kept index; none for deleted docs."""
    c, d, v = schema.chunks, schema.documents, schema.vectors
    with ws.engine.connect() as conn:
        for ix in ws.indexes(conn, "active"):
            live = set(conn.execute(
                sa.select(c.c.id).join(d, d.c.id == c.c.document_id)
                .where(d.c.deleted_at.is_(None), c.c.chunker_key == ix.chunker_key)).scalars())
            rows = conn.execute(sa.select(v.c.chunk_id).where(v.c.index_id == ix.id)).scalars().all()
            assert len(rows) == len(set(rows)), "duplicate vectors"
            assert set(rows) == live, f"index {ix.id}: {len(set(rows) ^ live)} chunks out of line"
            tags = conn.execute(sa.select(v.c.space_key, v.c.chunker_key).where(v.c.index_id == ix.id).distinct()).all()
            assert tags in ([], [(ix.space_key, ix.chunker_key)])
        dead = conn.execute(sa.select(sa.func.count()).select_from(d.join(c, c.c.document_id == d.c.id))
                            .where(d.c.deleted_at.is_not(None))).scalar_one()
        assert dead == 0


def test_first_sync_adds_everything_and_creates_prod(ws: Workspace) -> None:
    result = ws.sync()
    assert result.counts.added == 30 and result.counts.embedded > 0
    status = ws.status()
    assert status["documents"] == 30 and status["aliases"]["prod"] == status["indexes"][0]["id"]
    assert status["indexes"][0]["vectors"] == status["chunks"]
    check_invariant_2(ws)


def test_noop_sync_embeds_nothing(ws: Workspace) -> None:
    ws.sync()
    again = ws.sync()
    assert (again.counts.added, again.counts.updated, again.counts.deleted, again.counts.embedded) == (0, 0, 0, 0)
    assert again.counts.unchanged == 30


def test_edit_delete_add_reembeds_only_new_chunks(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    target = corpus / "sub0/doc000.md"
    target.write_text(target.read_text() + "\nA brand new closing paragraph about tides.\n")
    (corpus / "sub1/doc001.md").unlink()
    (corpus / "new.md").write_text("# New\n\nSomething entirely new about comets.\n")
    plan = ws.sync(plan_only=True)
    assert (plan.counts.added, plan.counts.updated, plan.counts.deleted) == (1, 1, 1)
    assert plan.chunks_to_embed is not None and 1 <= plan.chunks_to_embed <= 3
    result = ws.sync()
    assert (result.counts.added, result.counts.updated, result.counts.deleted) == (1, 1, 1)
    assert result.counts.embedded == plan.chunks_to_embed
    check_invariant_2(ws)
    assert all(r.document_id != "sub1/doc001.md" for r in ws.search("cell protein gene", k=50))


def test_plan_changes_nothing(ws: Workspace) -> None:
    before = ws.history()
    plan = ws.sync(plan_only=True)
    assert plan.counts.added == 30
    assert ws.status()["indexes"] == [] and ws.history() == before


def test_identical_text_is_embedded_once(tmp_path: Path) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    for i in range(5):
        (folder / f"copy{i}.txt").write_text("The very same sentence in every file.")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("dup", folder)
    result = ws.sync()
    assert result.counts.added == 5 and result.counts.embedded == 1
    assert ws.status()["indexes"][0]["vectors"] == 5


def test_search_returns_contract_fields_and_tags(ws: Workspace) -> None:
    ws.sync()
    results = ws.search("immune antibody vaccine", k=5)
    assert 1 <= len(results) <= 5
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    top = results[0].to_dict()
    assert {"document_id", "chunk_id", "score", "text", "tags"} <= set(top)
    assert set(top["tags"]) >= {"space", "chunker", "embedded_at", "source_updated_at"}
    index = ws.status()["indexes"][0]
    assert top["tags"]["space"] == index["space"] and top["tags"]["chunker"] == index["chunker"]


def test_search_filters(ws: Workspace) -> None:
    ws.sync()
    only = ws.search("cell", k=50, filters=Filters(metadata={"path": "sub2/doc002.md"}))
    assert {r.document_id for r in only} == {"sub2/doc002.md"}
    with pytest.raises(NotFound, match="no source 'nope'"):  # not 0 hits: a filter that can match nothing
        ws.search("cell", k=5, filters=Filters(source="nope"))


@pytest.mark.parametrize("key", ['a"b', "a]b", "$.x", "", "k" * 129, "a b"])
def test_filter_keys_that_could_change_the_json_path_are_refused(key: str) -> None:
    with pytest.raises(SearchError, match="metadata filter key"):
        Filters(metadata={key: "x"})


def test_search_errors_are_clear(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="embedops sync"):
        ws.search("anything")
    ws.sync()
    with pytest.raises(SearchError):
        ws.search("   ")
    with pytest.raises(SearchError, match="dimensions"):
        import numpy as np

        ws.search(vector=np.ones(3, dtype=np.float32))


def test_write_with_foreign_tags_is_refused(ws: Workspace) -> None:
    ws.sync()
    with ws.engine.connect() as conn:
        index = ws.indexes(conn)[0]
    row = VectorRow(1, "0" * 32, "other-space", index.chunker_key, "v")
    with ws.engine.begin() as conn, pytest.raises(SpaceMismatch, match="refused"):
        ws.store.write(conn, index, [row])


def test_config_change_refuses_to_reembed_in_place(ws: Workspace) -> None:
    ws.sync()
    ws.settings.embedder = "hashing:seed=7"
    ws.settings.save()
    reopened = Workspace.open(ws.root)
    with pytest.raises(ConfigChanged, match="never re-embeds in place"):
        reopened.sync()
    reopened.settings.embedder = "hashing"
    reopened.settings.chunker_params = {"max_tokens": 64}
    with pytest.raises(ConfigChanged):
        reopened.sync()


def test_every_state_change_has_a_ledger_row(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    (corpus / "sub0/doc000.md").unlink()
    ws.sync()
    kinds = [r["kind"] for r in ws.history()]
    for expected in ("workspace.init", "source.add", "index.create", "alias.set", "sync.batch", "sync.delete", "sync.source"):
        assert expected in kinds


def test_deleted_then_restored_document_comes_back(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    path = corpus / "sub0/doc003.md"
    text = path.read_text()
    path.unlink()
    ws.sync()
    path.write_text(text)
    result = ws.sync()
    assert result.counts.added == 1 and result.counts.embedded == 0
    check_invariant_2(ws)


def test_ann_file_is_rebuilt_when_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedops.vectors.ann as ann

    monkeypatch.setattr(ann, "EXACT_MAX", 10)  # force the HNSW path on a small corpus
    from tests.conftest import write_corpus

    write_corpus(tmp_path / "docs", 40)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path / "docs")
    result = ws.sync()
    assert result.indexes[0]["mode"] == "hnsw" and result.indexes[0]["saved"]
    expected = [r.chunk_id for r in ws.search("galaxy orbit star", k=5)]
    index_id = result.indexes[0]["id"]
    ws.close()
    (tmp_path / "ws/.embedops/ann" / f"{index_id}.usearch").write_bytes(b"garbage")
    fresh = Workspace.open(tmp_path / "ws")
    assert [r.chunk_id for r in fresh.search("galaxy orbit star", k=5)] == expected
    assert fresh.store.ann(fresh.searcher.resolve("prod")).rebuilds == 1


def test_a_search_for_more_results_than_ef_search_still_returns_k(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgvector cuts an HNSW scan at hnsw.ef_search rows; usearch widens it to k: both must return k."""
    import embedops.vectors.ann as ann_module
    from tests.conftest import write_corpus

    monkeypatch.setattr(ann_module, "EXACT_MAX", 10)  # SQLite: the HNSW path, not exact search
    for module in ("embedops.vectors.sqlite", "embedops.vectors.pgvector"):  # filtered: ANN, not exact
        monkeypatch.setattr(f"{module}.FILTER_EXACT_MAX", 10)
    write_corpus(tmp_path / "many", 150)
    workspace = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    try:
        workspace.add_source("docs", tmp_path / "many")
        workspace.settings.ann_ef_search = 20
        workspace.settings.save()
        workspace.close()
        workspace = Workspace.open(tmp_path / "ws")
        workspace.sync()
        assert workspace.status()["indexes"][0]["vectors"] > 100
        hits = workspace.search("galaxy orbit star", k=100)
        assert len(hits) == 100 and len({h.chunk_id for h in hits}) == 100
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        since = datetime(2000, 1, 1, tzinfo=timezone.utc)  # every document passes: the widest filtered scan
        filtered = workspace.search("galaxy orbit star", k=60, filters=Filters(updated_after=since))
        assert len(filtered) == 60
    finally:
        workspace.close()


def test_an_ef_search_above_the_backends_limit_is_refused_on_open(tmp_path: Path, database: str | None) -> None:
    from embedops.errors import ConfigError

    workspace = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    workspace.settings.ann_ef_search = 2000  # usearch takes it; pgvector stops at 1000
    workspace.settings.save()
    workspace.close()
    if database is None:
        with Workspace.open(tmp_path / "ws") as reopened:
            assert reopened.store.ef_search == 2000
    else:
        with pytest.raises(ConfigError, match="pgvector's limit"):
            Workspace.open(tmp_path / "ws")


def test_an_index_made_by_an_older_chunker_version_keeps_syncing(tmp_path: Path, corpus: Path,
                                                                  database: str | None) -> None:
    """embedops.toml names a chunker, not its version: upgrading embedops never re-chunks an index."""
    from embedops.chunking.registry import make_chunker

    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="structured", database=database)
    ws.add_source("docs", corpus)
    embedder = ws.embedder("hashing")
    old = make_chunker("structured", version="1")  # what an index made before version 2 carries
    with ws.engine.begin() as conn:
        index = ws.create_index(conn, "hashing", embedder, old)
        ws.set_alias(conn, "prod", index.id)
    ws.sync()
    (corpus / "new.md").write_text("# New\n\n好吧!我们走。A new page about tides.\n", encoding="utf-8")
    result = ws.sync()
    assert result.counts.added == 1
    with ws.engine.connect() as conn:
        keys = set(conn.execute(sa.select(schema.chunks.c.chunker_key)).scalars())
        assert keys == {old.ref.key} and old.ref.key.startswith("structured@1#")
    check_invariant_2(ws)
    ws.close()
