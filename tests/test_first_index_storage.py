"""``[embedops] storage`` / ``init --storage``: the storage variant of the index a first sync creates.

Also the multi-row chunk inserts on SQLite (sync/run.py): a batch larger than one statement's
bound parameters keeps every chunk id, document link and full-text row in line.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.cli import app
from embedops.compose import migrator
from embedops.errors import ConfigChanged, ConfigError
from embedops.vectors.storage import StorageOptions
from embedops.workspace import Workspace
from tests.test_gate import make_corpus


def _toml(ws: Workspace) -> dict:
    return tomllib.loads(ws.settings.path.read_text())


def test_the_first_sync_creates_the_index_with_the_configured_storage(tmp_path: Path, database: str | None) -> None:
    make_corpus(tmp_path)
    precision = "i8" if database is None else "f16"  # pgvector has no int8 type
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, storage=f"{precision}+r4")
    try:
        assert _toml(ws)["embedops"]["storage"] == f"{precision}+r4"
        ws.add_source("docs", tmp_path / "docs")
        ws.sync(plan_only=True)
        assert ws.status()["indexes"] == []  # the plan created nothing
        ws.sync()
        served = ws.searcher.resolve("prod")
        assert served.storage == f"{precision}+r4"
        assert ws.history(kind="index.create", limit=1)[0]["details"]["storage"] == f"{precision}+r4"
        text = (tmp_path / "docs" / "s007.txt").read_text()
        hits = ws.search(text, k=3)
        # Rescored: the best hit is the document itself, at its full-precision cosine.
        assert hits[0].document_id == "s007.txt" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    finally:
        ws.close()


def test_without_the_setting_the_first_index_is_float32_and_the_file_says_nothing(tmp_path: Path) -> None:
    make_corpus(tmp_path, short=5)
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", tmp_path / "docs")
        ws.sync()
        assert ws.searcher.resolve("prod").storage == "f32"
        assert "storage" not in _toml(ws)["embedops"]


@pytest.mark.parametrize(("key", "message"), [
    ("i9", "storage key"),
    ("f32:pca64", "PCA fitted on the index's own vectors"),
])
def test_a_storage_a_first_index_cannot_have_is_refused_at_init_leaving_nothing(tmp_path: Path, key: str,
                                                                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Workspace.init(tmp_path / "ws", embedder="hashing", storage=key)
    assert not (tmp_path / "ws" / "embedops.toml").exists()


def test_a_precision_the_store_cannot_hold_is_refused_at_init(tmp_path: Path, pg_server: object) -> None:
    import psycopg

    uri = pg_server.get_uri()  # type: ignore[attr-defined]
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "t_first_storage_i8"')
    with pytest.raises(ConfigError, match="holds no i8 vectors"):
        Workspace.init(tmp_path / "ws", embedder="hashing", database=pg_server.get_uri("t_first_storage_i8"),  # type: ignore[attr-defined]
                       storage="i8+r4")
    assert not (tmp_path / "ws" / "embedops.toml").exists()


def test_a_bad_storage_in_the_file_is_refused_when_the_workspace_opens(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    path = tmp_path / "ws" / "embedops.toml"
    path.write_text(path.read_text().replace("[embedops]\n", '[embedops]\nstorage = "q4"\n'))
    with pytest.raises(ConfigError, match=r"embedops.toml: storage 'q4'"):
        Workspace.open(tmp_path / "ws")


def test_changing_the_storage_after_the_first_sync_is_refused_until_migrated(tmp_path: Path) -> None:
    make_corpus(tmp_path, short=8)
    with Workspace.init(tmp_path / "ws", embedder="hashing", storage="i8+r4") as ws:
        ws.add_source("docs", tmp_path / "docs")
        ws.sync()
    path = tmp_path / "ws" / "embedops.toml"
    path.write_text(path.read_text().replace('storage = "i8+r4"', 'storage = "f16"'))
    with Workspace.open(tmp_path / "ws") as ws:
        with pytest.raises(ConfigChanged, match="asks for storage 'f16'.*held as 'i8\\+r4'") as caught:
            ws.sync()
        assert "migrate plan --storage" in (caught.value.hint or "")
        assert ws.searcher.resolve("prod").storage == "i8+r4"  # nothing was rebuilt


def test_cutover_and_rollback_keep_the_file_describing_the_served_index(tmp_path: Path) -> None:
    make_corpus(tmp_path, short=12)
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", tmp_path / "docs")
        ws.sync()
        m = migrator(ws)
        m.start(storage=StorageOptions(precision="i8", rescore=4))
        m.backfill()
        m.cutover(force=True, reason="test: storage follows the alias")
        assert _toml(ws)["embedops"]["storage"] == "i8+r4"
        ws.sync()  # the file and the served index agree: no ConfigChanged
        m.rollback()
        assert _toml(ws)["embedops"]["storage"] == "f32"
        ws.sync()


def test_cli_init_takes_the_storage_and_reports_it(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(tmp_path / "ws"), "--embedder", "hashing", "--storage", "i8+r4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["storage"] == "i8+r4"
    bad = runner.invoke(app, ["init", str(tmp_path / "other"), "--embedder", "hashing", "--storage", "i8+r1"])
    assert bad.exit_code != 0 and "rescore must be 0" in bad.output


def test_a_batch_beyond_one_statement_keeps_chunks_documents_and_full_text_in_line(tmp_path: Path) -> None:
    """4,000 one-chunk documents in one batch: more rows than one multi-row INSERT takes (32,766 parameters)."""
    rows = [{"id": f"d{i:05d}", "text": f"common words and the marker tok{i:05d}x here"} for i in range(4000)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with Workspace.init(tmp_path / "ws", embedder="hashing", chunker="whole") as ws:
        ws.settings.batch_size = 5000
        ws.add_source("docs", tmp_path / "docs.jsonl", kind="jsonl")
        ws.sync()
        with ws.engine.connect() as conn:
            c, d = schema.chunks, schema.documents
            pairs = conn.execute(sa.select(c.c.id, c.c.text, d.c.external_id).join(d, d.c.id == c.c.document_id)).all()
            assert len(pairs) == 4000
            assert all(text.endswith(f"tok{ext[1:]}x here") for _, text, ext in pairs)
            indexed = conn.exec_driver_sql("SELECT count(*) FROM chunks_fts_docsize").scalar_one()
            assert indexed == 4000
            last = dict((ext, cid) for cid, _, ext in pairs)["d03999"]
            found = conn.exec_driver_sql("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'tok03999x'").all()
            assert found == [(last,)]
        hits = ws.search("marker tok03999x", k=1, mode="hybrid")
        assert hits[0].document_id == "d03999"
        vectors = ws.store.raw().driver_connection.execute(
            "SELECT count(*) FROM vectors v JOIN chunks c ON c.id = v.chunk_id").fetchone()[0]
        assert vectors == 4000
        assert np.isfinite(hits[0].score)
