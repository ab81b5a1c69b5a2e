"""The catalog's own schema: created at the current version, upgraded in place, never downgraded."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import create_engine, database_url, ensure_schema
from embedops.catalog.ledger import read_ledger
from embedops.errors import SchemaVersionError


def test_new_catalog_is_current_and_in_wal_mode(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    assert ensure_schema(engine) == schema.SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert [r["kind"] for r in read_ledger(conn)] == ["catalog.create"]
    assert ensure_schema(engine) == schema.SCHEMA_VERSION  # idempotent


def test_v2_catalog_is_upgraded_to_v3_with_a_ledger_row(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        tables = [t for t in schema.metadata.sorted_tables if t.name != "migrations"]
        schema.metadata.create_all(conn, tables=tables)
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="2"))
        conn.execute(sa.insert(schema.sources).values(name="keep", kind="folder", config={}, created_at=1.0))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("migrations")
        assert conn.execute(sa.select(schema.sources.c.name)).scalars().all() == ["keep"]
        upgrades = [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
        assert 3 in upgrades


def test_catalog_from_a_newer_embedops_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(schema.meta).values(value=str(schema.SCHEMA_VERSION + 1)))
    with pytest.raises(SchemaVersionError, match="upgrade embedops"):
        ensure_schema(engine)


def test_v8_catalog_gains_chunk_metadata(tmp_path: Path, database: str | None) -> None:
    engine = create_engine(database_url(database or "v8.db", tmp_path))
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.exec_driver_sql("ALTER TABLE chunks DROP COLUMN metadata")  # the table as version 8 made it
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="8"))
        conn.execute(sa.insert(schema.sources).values(id=1, name="s", kind="folder", config={}, created_at=1.0))
        conn.execute(sa.insert(schema.documents).values(
            id=1, source_id=1, external_id="a.py", content_hash="h", text="x = 1", metadata={}, ingested_at=1.0))
        conn.execute(sa.insert(schema.chunkers).values(key="whole@1#x", name="whole", version="1", params={}))
        conn.exec_driver_sql(
            "INSERT INTO chunks (id, document_id, chunker_key, ordinal, text, start, \"end\", content_hash)"
            " VALUES (1, 1, 'whole@1#x', 0, 'x = 1', 0, 5, 'c')")
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 9
    with engine.begin() as conn:
        assert conn.execute(sa.select(schema.chunks.c.metadata)).scalar_one() is None  # written before: unknown
        conn.execute(sa.update(schema.chunks).values(metadata={"kind": "module"}))
        assert conn.execute(sa.select(schema.chunks.c.metadata)).scalar_one() == {"kind": "module"}
        upgrades = [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
        assert sorted(upgrades) == list(range(9, schema.SCHEMA_VERSION + 1))


def test_v12_catalog_gains_the_query_side_fingerprint_column(tmp_path: Path, database: str | None) -> None:
    engine = create_engine(database_url(database or "v12.db", tmp_path))
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.exec_driver_sql("ALTER TABLE spaces DROP COLUMN query_fingerprint")  # the table as version 12 made it
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="12"))
        conn.execute(sa.insert(schema.spaces).values(key="k", embedder="e", ref={}, dims=2, fingerprint=b"f",
                                                     fingerprint_digest="d", created_at=1.0))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 13
    with engine.connect() as conn:
        # Unknown until the space's next verification measures it (embedding/verify.py).
        assert conn.execute(sa.select(schema.spaces.c.query_fingerprint)).scalar_one() is None
        upgrades = [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
        assert 13 in upgrades


def test_v13_catalog_gains_the_canonical_source_and_old_duplicates_keep_their_own_source(
    tmp_path: Path, database: str | None,
) -> None:
    from embedops.catalog.curation import StoredCurations, doc_key

    engine = create_engine(database_url(database or "v13.db", tmp_path))
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.exec_driver_sql("ALTER TABLE curation DROP COLUMN canonical_source")  # as version 13 made it
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="13"))
        conn.execute(sa.insert(schema.sources).values(id=7, name="s", kind="folder", config={}, created_at=1.0))
        for i, ext in enumerate(["a.md", "b.md"], start=1):
            conn.execute(sa.insert(schema.documents).values(id=i, source_id=7, external_id=ext, content_hash="h",
                                                            text="x", metadata={}, ingested_at=1.0))
        conn.exec_driver_sql("INSERT INTO curation (document_id, source_id, status, first_seen, content_hash, findings,"
                             " language, decided_at) VALUES (1, 7, 'kept', 1.0, 'h', '[]', 'en', 1.0)")
        conn.exec_driver_sql("INSERT INTO curation (document_id, source_id, status, first_seen, content_hash, canonical,"
                             " findings, language, decided_at) VALUES (2, 7, 'quarantined', 1.0, 'h', 'a.md', '[]',"
                             " 'en', 1.0)")
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 14
    with engine.connect() as conn:
        stored = {s.doc_id: s.canonical_id for s in StoredCurations(conn, None).curated_documents()}
        assert stored == {doc_key(7, "a.md"): None, doc_key(7, "b.md"): doc_key(7, "a.md")}
        upgrades = [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
        assert 14 in upgrades


def test_v14_catalog_gains_the_scan_fingerprint_column_empty_so_the_next_sync_runs_its_id_pass(
    tmp_path: Path, database: str | None,
) -> None:
    from embedops.catalog.scan_state import record_fingerprint, stored_fingerprint

    engine = create_engine(database_url(database or "v14.db", tmp_path))
    with engine.begin() as conn:
        schema.metadata.create_all(conn)
        conn.exec_driver_sql("ALTER TABLE sources DROP COLUMN scan_fingerprint")  # as version 14 made it
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="14"))
        conn.execute(sa.insert(schema.sources).values(id=3, name="t", kind="sql", config={}, created_at=1.0))
    assert ensure_schema(engine) == schema.SCHEMA_VERSION >= 15
    with engine.begin() as conn:
        assert stored_fingerprint(conn, 3) is None  # nothing recorded: no fast path until a sync records one
        record_fingerprint(conn, 3, "fp1|k|sqlite|1|0")
        assert stored_fingerprint(conn, 3) == "fp1|k|sqlite|1|0"
        upgrades = [r["details"]["schema_version"] for r in read_ledger(conn, kind_prefix="catalog.upgrade")]
        assert 15 in upgrades
    engine.dispose()
