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


# --- Parquet files --------------------------------------------------------------------------------


def write_parquet(path: Path, ids: list[Any], docs: list[str], vecs: list[Any], *, fixed: int | None = None,
                  row_group_size: int = 16) -> Path:
    """A Parquet file as another pipeline writes it: the vector column a fixed-size list of float32 (``fixed``
    dimensions) or a list of float64; small row groups, so that it is read in several batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = pa.list_(pa.float32(), fixed) if fixed is not None else pa.list_(pa.float64())
    table = pa.table({"doc_id": pa.array(ids), "content": pa.array(docs, pa.string()),
                      "lang": pa.array(["en"] * len(docs)),
                      "embedding": pa.array([None if v is None else [float(x) for x in v] for v in vecs], kind)})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_adopt_from_parquet_fixed_size_vectors_then_sync_only_changed_rows(tmp_path: Path) -> None:
    docs = texts()
    vecs = list(vectors("hashing", docs))
    path = write_parquet(tmp_path / "legacy.parquet", [f"d{i}" for i in range(N)], docs, vecs, fixed=len(vecs[0]))
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    given = AdoptInput("parquet", "embedding", {"id_field": "doc_id", "text_field": "content"}, path)
    result = adopt(ws, "legacy", given, embedder="hashing", sample=25, seed=3)
    assert result.check.passed and result.check.compared == 25 and result.check.min_cosine > 0.9999
    assert (result.rows, result.adopted, result.not_adopted, result.problems) == (N, N, {}, [])
    assert result.sync is not None and (result.sync["added"], result.sync["embedded"]) == (N, 0)
    assert result.origin == f"parquet {path} (embedding)" and ws.settings.sources["legacy"].kind == "parquet"
    assert ws.search(docs[17], k=1)[0].document_id == "d17"
    assert ws.get_documents("legacy", ["d5"])[0].metadata == {"lang": "en"}  # every other scalar column
    with ws.engine.connect() as conn:
        a = schema.adopted_embeddings
        assert conn.execute(sa.select(sa.func.count()).select_from(a).where(a.c.source == "legacy")).scalar_one() == N
    noop = ws.sync()
    assert (noop.counts.unchanged, noop.counts.updated, noop.counts.embedded) == (N, 0, 0)
    docs[4] = "rewritten by an editor"
    write_parquet(path, [f"d{i}" for i in range(N)], docs, vecs, fixed=len(vecs[0]))
    step = ws.sync()
    assert (step.counts.updated, step.counts.embedded, step.counts.unchanged) == (1, 1, N - 1)
    ws.close()


def test_bad_parquet_rows_are_named_with_the_file_row_and_fix_and_the_others_adopted(tmp_path: Path) -> None:
    docs = texts(40)
    vecs: list[Any] = list(vectors("hashing", docs))
    ids: list[Any] = list(range(40))
    vecs[3] = vecs[3][:7]  # wrong dimension
    vecs[8] = None  # no vector
    ids[12] = None  # no id
    path = write_parquet(tmp_path / "legacy.parquet", ids, docs, vecs)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    given = AdoptInput("parquet", "embedding", {"id_field": "doc_id", "text_field": "content"}, path)
    result = adopt(ws, "legacy", given, embedder="hashing", sample=40, seed=1)
    assert result.check.compared == 37 and result.check.unusable == 3 and result.check.passed
    assert (result.adopted, result.not_adopted) == (37, {"bad_vector": 2, "skipped": 1})
    dims = len(vecs[0])
    assert result.problems == [
        f"parquet {path} (embedding), id '3': a vector of 7 numbers where the embedder makes {dims}; the sync"
        " embeds this row's text instead (store this embedder's vector in the row to adopt it)",
        f"parquet {path} (embedding), id '8': no vector (null); the sync embeds this row's text instead (store this"
        " embedder's vector in the row to adopt it)",
        "legacy.parquet row 13: id field 'doc_id' is null; give the record an id or set the source option id_field"
        " to the field that holds it (fields present: content, doc_id, lang)",
    ]
    assert result.sync is not None and (result.sync["added"], result.sync["embedded"]) == (39, 2)
    ws.close()


def test_parquet_vectors_of_another_model_are_refused_with_the_measured_similarity(tmp_path: Path) -> None:
    docs = texts(30)
    path = write_parquet(tmp_path / "legacy.parquet", list(range(30)), docs, list(vectors("hashing:seed=7", docs)))
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole")
    given = AdoptInput("parquet", "embedding", {"id_field": "doc_id", "text_field": "content"}, path)
    with pytest.raises(AdoptRefused, match=r"do not match 'hashing': cosine of 30 sampled rows re-embedded is min -?0\."):
        adopt(ws, "legacy", given, embedder="hashing", sample=30)
    assert "legacy" not in ws.settings.sources and ws.history(kind="adopt") == []
    ws.close()


def test_a_parquet_scan_reads_record_batches_instead_of_the_file(tmp_path: Path) -> None:
    import tracemalloc

    from embedops.sources.base import Document
    from embedops.sources.parquet import ParquetSource

    n = 60_000
    path = write_parquet(tmp_path / "big.parquet", list(range(n)), ["lorem ipsum " * 40] * n, [[0.5, 0.5]] * n,
                         row_group_size=5_000)
    src = ParquetSource("big", path, id_field="doc_id", text_field="content")
    known = {item.external_id: item.signature for item in src.scan({}) if isinstance(item, Document)}
    assert len(known) == n
    for stage in ("full", "incremental"):
        tracemalloc.start()
        count = sum(1 for _ in src.scan({} if stage == "full" else known))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n
        # The file's text is ~29 MB as Python strings; a scan that held it would peak far above this. What a
        # scan does hold is the ids it has seen (duplicates are reported, as in JSONL): ~6 MB at 60k rows.
        assert peak < 14_000_000, f"{stage} scan peaked at {peak:,} bytes"


def test_a_file_that_is_not_parquet_is_a_source_error_naming_the_fix(tmp_path: Path) -> None:
    from embedops.errors import SourceError
    from embedops.sources.parquet import ParquetSource

    path = tmp_path / "legacy.parquet"
    path.write_text("id,text\n1,hello\n")
    with pytest.raises(SourceError, match="is not a readable Parquet file") as caught:
        ParquetSource("legacy", path).check()
    assert "pyarrow.parquet.write_table" in (caught.value.hint or "")


def test_cli_adopts_a_parquet_file_and_adds_one_as_a_source(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    docs = texts(12)
    path = write_parquet(tmp_path / "legacy.parquet", list(range(12)), docs, list(vectors("hashing", docs)))
    ws = str(tmp_path / "ws")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, Any]:
        result = runner.invoke(app, [*args, "--workspace", ws, "--json"])
        return result.exit_code, json.loads(result.stdout)

    assert run("init", "--embedder", "hashing", "--chunker", "whole")[0] == 0
    code, plan = run("adopt", "legacy", "--embedder", "hashing", "--file", str(path), "--id", "doc_id", "--text",
                     "content", "--sample", "5", "--plan")
    assert code == 0 and plan["plan"] and plan["check"]["passed"] and plan["origin"].startswith("parquet ")
    code, done = run("adopt", "legacy", "--embedder", "hashing", "--file", str(path), "--id", "doc_id", "--text",
                     "content", "--sample", "5")
    assert code == 0 and (done["adopted"], done["problems"], done["sync"]["embedded"]) == (12, [], 0)
    code, added = run("source", "add", "notes", str(path), "--kind", "parquet", "--id-field", "doc_id",
                      "--text-field", "content")
    assert code == 0 and added["kind"] == "parquet"
    code, synced = run("sync", "--source", "notes")
    assert code == 0 and (synced["added"], synced["embedded"]) == (12, 0)  # the same texts: embedded already
