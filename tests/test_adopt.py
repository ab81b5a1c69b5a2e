"""`embedops adopt`: vectors taken over from pgvector, SQLite and JSONL only when a re-embedded sample matches."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from embedops.adopt import AdoptInput, adopt
from embedops.catalog import schema
from embedops.embedding.registry import load_embedder
from embedops.errors import AdoptRefused
from embedops.workspace import Workspace
from tests.conftest import WORDS

N = 60


def texts(n: int = N) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} note {i}: " + " ".join(WORDS[i % 5: i % 5 + 6])
            for i in range(n)]


def vectors(model: str, docs: list[str]) -> np.ndarray:
    """What another pipeline stored: the texts embedded by ``model`` (the whole chunker strips them)."""
    return load_embedder(model).embed([t.strip() for t in docs])


@pytest.fixture
def pg_table(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make a pgvector table ``docs_embeddings(doc_id, content, embedding vector(384))`` in a fresh database."""
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(pg_server.get_uri(name))
    monkeypatch.setenv("LEGACY_DB_URL", url)

    def make(model: str, docs: list[str]) -> str:
        vecs = vectors(model, docs)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE TABLE docs_embeddings (doc_id integer PRIMARY KEY, content text, embedding vector(384))")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO docs_embeddings VALUES (%s, %s, %s::vector)",
                                [(i, t, "[" + ",".join(f"{x:.8f}" for x in v) + "]") for i, (t, v) in
                                 enumerate(zip(docs, vecs, strict=True))])
        return url

    return make


def sql_input(**extra: Any) -> AdoptInput:
    return AdoptInput("sql", "embedding", {"url_env": "LEGACY_DB_URL", "table": "docs_embeddings",
                                           "id_column": "doc_id", "text": "content", **extra})


def test_adopt_from_pgvector_embeds_nothing_and_later_syncs_only_changed_text(
        tmp_path: Path, database: str | None, pg_table: Any) -> None:
    url = pg_table("hashing", texts())
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole", database=database)
    result = adopt(ws, "legacy", sql_input(), embedder="hashing", sample=20)
    assert result.check.passed and result.check.compared == 20 and result.check.min_cosine > 0.9999
    assert (result.adopted, result.present, result.not_adopted) == (N, 0, {})
    assert result.sync is not None and (result.sync["added"], result.sync["embedded"]) == (N, 0)
    assert ws.search(texts()[17], k=1)[0].document_id == "17"
    space = ws.kept_targets()[0].index.space_key
    with ws.engine.connect() as conn:
        v, a = schema.vectors, schema.adopted_embeddings
        tagged = conn.execute(sa.select(sa.func.count()).select_from(v.join(
            a, sa.and_(a.c.space_key == v.c.space_key, a.c.content_hash == v.c.content_hash)))
            .where(a.c.source == "legacy")).scalar_one()
        assert tagged == N  # every vector row joins its adoption mark
        assert conn.execute(sa.select(sa.func.count()).select_from(v).where(
            v.c.space_key != space)).scalar_one() == 0
    kinds = [r["kind"] for r in ws.history(kind="adopt")]
    assert kinds.count("adopt") == 1 and kinds.count("adopt.batch") == 1
    again = adopt(ws, "legacy", sql_input(), embedder="hashing", sample=10)  # re-running (a resume): nothing new
    assert (again.adopted, again.present) == (0, N) and again.sync is not None and again.sync["embedded"] == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE docs_embeddings SET content = 'rewritten by an editor' WHERE doc_id = 3")
    step = ws.sync()
    assert (step.counts.updated, step.counts.embedded) == (1, 1)  # only the changed text is embedded
    ws.close()


def test_vectors_of_another_model_are_refused_with_the_measured_similarity(tmp_path: Path, pg_table: Any) -> None:
    pg_table("hashing:seed=7", texts())  # same dimension, another space: what a silent model change looks like
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    with pytest.raises(AdoptRefused, match=r"do not match 'hashing': cosine of 30 sampled rows re-embedded is min -?0\.") as caught:
        adopt(ws, "legacy", sql_input(), embedder="hashing", sample=30)
    assert caught.value.details["check"]["passed"] is False
    assert "legacy" not in ws.settings.sources and ws.history(kind="adopt") == []
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.embeddings)).scalar_one() == 0
    ws.close()


def test_a_plan_measures_and_writes_nothing(tmp_path: Path, pg_table: Any) -> None:
    pg_table("hashing", texts())
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    result = adopt(ws, "legacy", sql_input(), embedder="hashing", sample=15, plan_only=True)
    assert result.plan and result.check.passed and result.check.compared == 15 and result.adopted == 0
    assert "legacy" not in ws.settings.sources and ws.history(kind="adopt") == []
    ws.close()


def test_another_embedder_than_the_workspace_is_refused_before_reading(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    given = AdoptInput("jsonl", "embedding", {}, tmp_path / "missing.jsonl")
    with pytest.raises(AdoptRefused, match=r"workspace embeds with 'hashing'.*hashing:seed=3"):
        adopt(ws, "legacy", given, embedder="hashing:seed=3")
    ws.close()


def test_one_stale_vector_in_the_sample_refuses_and_names_the_row(tmp_path: Path) -> None:
    docs = texts(20)
    path = tmp_path / "app.db"
    vecs = vectors("hashing", docs)
    with sqlite3.connect(path) as conn:  # float32 bytes in a BLOB column
        conn.execute("CREATE TABLE legacy (id TEXT, body TEXT, vec BLOB)")
        conn.executemany("INSERT INTO legacy VALUES (?, ?, ?)",
                         [(f"d{i}", t, v.astype(np.float32).tobytes()) for i, (t, v) in enumerate(zip(docs, vecs))])
        conn.execute("UPDATE legacy SET body = 'edited after it was embedded' WHERE id = 'd4'")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    given = AdoptInput("sql", "vec", {"url": f"sqlite:///{path}", "table": "legacy", "text": "body"})
    with pytest.raises(AdoptRefused, match=r"lowest: d4 0\.") as caught:
        adopt(ws, "legacy", given, embedder="hashing", sample=20)
    assert caught.value.details["check"]["min_cosine"] < 0.9
    ws.close()


def test_adopt_from_jsonl_with_a_splitting_chunker_embeds_only_the_split_documents(tmp_path: Path) -> None:
    docs = texts(30)
    docs[5] = "\n\n".join(f"# Part {p}\n\n" + " ".join(WORDS) * 3 for p in range(4))  # several chunks
    vecs = vectors("hashing", docs)
    path = tmp_path / "legacy.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": t, "embedding": v.tolist()}) + "\n"
                            for i, (t, v) in enumerate(zip(docs, vecs))), encoding="utf-8")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")  # structured chunker: short texts stay one chunk
    result = adopt(ws, "legacy", AdoptInput("jsonl", "embedding", {}, path), embedder="hashing", sample=30, seed=1)
    assert result.check.split == 1 and result.check.compared == 29
    assert result.adopted == 29 and result.not_adopted == {"split": 1}
    assert result.sync is not None and result.sync["embedded"] >= 4  # the split document's chunks only
    with ws.engine.connect() as conn:
        n_chunks = conn.execute(sa.select(sa.func.count()).select_from(schema.chunks)).scalar_one()
    assert result.sync["embedded"] == n_chunks - 29
    assert ws.settings.sources["legacy"].kind == "jsonl"
    ws.close()


def test_a_version_9_catalog_gets_the_adoption_table_on_upgrade(tmp_path: Path) -> None:
    from embedops.catalog.db import create_engine, ensure_schema
    from embedops.catalog.ledger import read_ledger

    engine = create_engine(f"sqlite:///{tmp_path / 'v9.db'}")
    with engine.begin() as conn:
        schema.metadata.create_all(conn, tables=[t for t in schema.metadata.sorted_tables
                                                 if t.name != "adopted_embeddings"])
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="9"))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 10
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("adopted_embeddings")
        assert [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")][::-1] == list(
            range(10, schema.SCHEMA_VERSION + 1))
    engine.dispose()
