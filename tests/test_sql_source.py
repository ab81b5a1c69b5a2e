"""SQL sources against real databases: SQLite files and the embedded PostgreSQL as the *source* database."""

from __future__ import annotations

import sqlite3
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.errors import ConfigError, SourceError
from embedops.sources.base import Document, Unchanged
from embedops.sources.registry import make_source
from embedops.sources.sql import SqlSource
from embedops.sync.plan import CatalogStream, Unsigned
from embedops.sync.source_plan import plan_source
from embedops.workspace import Workspace
from tests.test_sources import split

TICKETS = """CREATE TABLE support_tickets (
    id INTEGER PRIMARY KEY, subject TEXT, body TEXT, status TEXT, product TEXT, locale TEXT, updated_at {ts})"""


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [(i, f"Ticket {i}", f"printer {i} jams: paper:{i}", "spam" if i % 10 == 9 else "open", f"p{i % 3}", "en",
             f"2024-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}") for i in range(n)]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[str, sa.Engine]]:
    """A source database in a SQLite file: 30 tickets, every tenth one spam."""
    path = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(TICKETS.format(ts="TEXT"))
        conn.exec_driver_sql("INSERT INTO support_tickets VALUES (?, ?, ?, ?, ?, ?, ?)", _rows(30))
    yield f"sqlite:///{path}", engine
    engine.dispose()


@pytest.fixture
def pg_db(pg_server: Any) -> Iterator[tuple[str, sa.Engine]]:
    """A fresh PostgreSQL database holding the same 30 tickets, updated_at a timestamptz."""
    url, engine = pg_tickets(pg_server)
    yield url, engine
    engine.dispose()


def pg_tickets(pg_server: Any) -> tuple[str, sa.Engine]:
    """A new database on ``pg_server`` with the 30 tickets (updated_at a timestamptz): its URL and an engine."""
    name = f"src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(pg_server.get_uri(name))
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(TICKETS.format(ts="TIMESTAMPTZ"))
        conn.exec_driver_sql("INSERT INTO support_tickets VALUES (%s, %s, %s, %s, %s, %s, %s)",
                             [r[:6] + (r[6] + "+00",) for r in _rows(30)])
    return url, engine


def tickets(url: str, **options: Any) -> SqlSource:
    """The tickets table as a source; the URL (PostgreSQL's has a password) comes through $SRC_DB_URL."""
    assert url
    base: dict[str, Any] = {"url_env": "SRC_DB_URL", "table": "support_tickets", "text": "subject || ' ' || body",
                            "updated_at": "updated_at", "where": "status <> 'spam'", "metadata": ["product", "locale"]}
    return SqlSource("tickets", **{**base, **options})


def execute(engine: sa.Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


@pytest.fixture(params=["sqlite", "postgresql"])
def source_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, sa.Engine]:
    """Each source test on a SQLite file and on PostgreSQL; $SRC_DB_URL holds the URL."""
    url, engine = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
    monkeypatch.setenv("SRC_DB_URL", url)
    return url, engine


# --- the scan ------------------------------------------------------------------------------


def test_first_scan_reads_every_selected_row_with_text_metadata_and_time(source_db: tuple[str, sa.Engine]) -> None:
    url, _ = source_db
    docs, skipped, unchanged = split(tickets(url).scan({}))
    assert sorted(docs, key=int) == [str(i) for i in range(30) if i % 10 != 9]  # the where clause held
    assert not skipped and not unchanged
    doc = docs["4"]
    assert doc.text == "Ticket 4 printer 4 jams: paper:4"  # ':' in data and '||' in the expression survive
    assert doc.metadata == {"product": "p1", "locale": "en"}
    assert doc.updated_at is not None and doc.updated_at.isoformat() == "2024-01-01T00:00:04+00:00"
    assert doc.signature is not None


def test_incremental_scan_reads_only_changed_rows_and_drops_deleted_ones(source_db: tuple[str, sa.Engine]) -> None:
    url, engine = source_db
    src = tickets(url)
    known = {d.external_id: d.signature for d in src.scan({}) if isinstance(d, Document)}
    later = "'2024-01-01 00:00:40+00'" if engine.dialect.name == "postgresql" else "'2024-01-01 00:00:40'"
    execute(engine, f"UPDATE support_tickets SET body = 'toner empty', updated_at = {later} WHERE id = 3")
    execute(engine, "DELETE FROM support_tickets WHERE id = 7")
    docs, skipped, unchanged = split(src.scan(known))
    assert set(docs) == {"3"}  # the only row read whole: its updated_at is not the one synced
    assert docs["3"].text == "Ticket 3 toner empty"
    assert "7" not in unchanged and "7" not in docs  # absent from the scan: the sync deletes it
    assert len(unchanged) == 25 and not skipped


def test_a_row_committed_late_with_an_old_updated_at_is_still_found(source_db: tuple[str, sa.Engine]) -> None:
    url, engine = source_db
    src = tickets(url)
    known = {d.external_id: d.signature for d in src.scan({}) if isinstance(d, Document)}
    old = "'2023-05-01 00:00:00+00'" if engine.dialect.name == "postgresql" else "'2023-05-01 00:00:00'"
    execute(engine, f"UPDATE support_tickets SET body = 'late edit', updated_at = {old} WHERE id = 2")
    execute(engine, f"INSERT INTO support_tickets VALUES (500, 'new', 'inserted late', 'open', 'p0', 'de', {old})")
    docs, _, unchanged = split(src.scan(known))
    assert docs["2"].text == "Ticket 2 late edit"
    assert docs["500"].metadata["locale"] == "de"
    assert set(docs) == {"2", "500"}  # an earlier updated_at is a change too: no watermark to fall behind
    assert len(unchanged) == 26


def test_full_rescan_without_signatures_reads_every_row(source_db: tuple[str, sa.Engine]) -> None:
    url, engine = source_db
    src = tickets(url)
    known = {d.external_id: d.signature for d in src.scan({}) if isinstance(d, Document)}
    execute(engine, "UPDATE support_tickets SET body = 'edited quietly' WHERE id = 1")  # updated_at untouched
    docs, _, unchanged = split(src.scan(known))
    assert "1" in unchanged  # an incremental scan trusts updated_at
    docs, _, unchanged = split(src.scan(dict.fromkeys(known)))  # what `sync --full` passes
    assert len(docs) == 27 and not unchanged and docs["1"].text == "Ticket 1 edited quietly"


def test_a_row_without_updated_at_is_read_at_every_scan(sqlite_db: tuple[str, sa.Engine],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, engine = sqlite_db
    monkeypatch.setenv("SRC_DB_URL", url)
    execute(engine, "UPDATE support_tickets SET updated_at = NULL WHERE id = 2")
    src = tickets(url)
    known = {d.external_id: d.signature for d in src.scan({}) if isinstance(d, Document)}
    assert known["2"] is None
    docs, _, unchanged = split(src.scan(known))
    assert "2" in docs and "2" not in unchanged


def test_changed_options_change_every_signature(sqlite_db: tuple[str, sa.Engine],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = sqlite_db
    monkeypatch.setenv("SRC_DB_URL", url)
    known = {d.external_id: d.signature for d in tickets(url).scan({}) if isinstance(d, Document)}
    docs, _, unchanged = split(tickets(url, text="body").scan(known))
    assert len(docs) == 27 and not unchanged  # another text expression: every row is read again


def test_query_mode_and_user_sql_with_colons_percent_and_or(source_db: tuple[str, sa.Engine]) -> None:
    url, _ = source_db
    query = "SELECT id AS ticket, subject, body, updated_at FROM support_tickets WHERE body LIKE '%paper:1%'"
    src = SqlSource("q", url_env="SRC_DB_URL", query=query, id_column="ticket", text="subject", title="'T: ' || ticket",
                    updated_at="updated_at", where="ticket = 1 OR ticket = 10")
    docs, _, _ = split(src.scan({}))
    assert set(docs) == {"1", "10"}  # the where clause is one parenthesized condition
    assert docs["10"].text == "T: 10\n\nTicket 10"
    rows = sorted((d.external_id, 0, d.content_hash, d.signature) for d in docs.values())
    again = list(src.scan_in_order(CatalogStream(rows, signed=lambda prefix: True)))  # the id pass, by the driver
    assert again == [Unchanged("1"), Unchanged("10")]


def test_identifiers_are_quoted_so_a_name_cannot_inject_sql(sqlite_db: tuple[str, sa.Engine]) -> None:
    url, engine = sqlite_db
    execute(engine, 'CREATE TABLE "odd; name" ("my id" INTEGER, "te""xt" TEXT)')
    execute(engine, """INSERT INTO "odd; name" VALUES (1, 'quoted ok')""")
    docs, _, _ = split(SqlSource("odd", url=url, table="odd; name", id_column="my id", text='"te""xt"').scan({}))
    assert docs["1"].text == "quoted ok"
    hostile = SqlSource("evil", url=url, table="support_tickets; DROP TABLE support_tickets", text="body")
    with pytest.raises(SourceError, match="no such table"):
        hostile.check()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM support_tickets").scalar_one() == 30


def test_bad_rows_are_skipped_with_the_table_and_the_fix(sqlite_db: tuple[str, sa.Engine]) -> None:
    url, engine = sqlite_db
    execute(engine, "CREATE TABLE notes (id TEXT, body)")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO notes VALUES (?, ?)", [(str(i), f"note {i}") for i in range(30)] + [
            (None, "no id"), ("600", ""), ("601", b"\xff\xfe"), ("  ", "blank id"), ("602", "a\x00b")])
    docs, skipped, _ = split(SqlSource("t", url=url, table="notes", text="body").scan({}))
    assert "empty document" in skipped["600"] and "table notes" in skipped["600"]
    assert "not UTF-8" in skipped["601"]
    assert "table notes" in skipped["602"] and "NUL" in skipped["602"]  # the catalog could not store it
    nulls = [reason for key, reason in skipped.items() if key.startswith("t:row without id")]
    assert len(nulls) == 2 and "id column 'id' NULL or blank" in nulls[0]
    assert len(docs) == 30


def test_scan_streams_instead_of_loading_the_table(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, updated_at INTEGER)")
        conn.executemany("INSERT INTO docs VALUES (?, ?, ?)", ((i, "lorem ipsum " * 40, 1_700_000_000 + i)
                                                              for i in range(60_000)))
    src = SqlSource("big", url=f"sqlite:///{path}", table="docs", text="body", updated_at="updated_at")
    known = {}
    for item in src.scan({}):
        assert isinstance(item, Document)
        known[item.external_id] = item.signature
    for stage in ("full", "incremental"):
        tracemalloc.start()
        n = sum(1 for _ in src.scan({} if stage == "full" else known))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert n == 60_000
        # The table's text is ~30 MB; a scan that held it (or its rows) would peak far above this.
        assert peak < 8_000_000, f"{stage} scan peaked at {peak:,} bytes"


def test_scan_in_order_gives_ids_ascending_with_each_row_read_whole_in_its_place(
        source_db: tuple[str, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    url, engine = source_db
    monkeypatch.setattr("embedops.sources.sql.FETCH_BATCH", 2)  # several reads, and rows held past each
    monkeypatch.setattr("embedops.sources.sql.HELD_MAX", 5)
    src = tickets(url)
    first = list(src.scan_in_order(Unsigned()))
    ids = [item.external_id for item in first]
    assert ids == sorted(str(i) for i in range(30) if i % 10 != 9) and ids[:3] == ["0", "1", "10"]  # as text
    assert all(isinstance(item, Document) for item in first)
    later = "'2024-01-01 00:00:40+00'" if engine.dialect.name == "postgresql" else "'2024-01-01 00:00:40'"
    execute(engine, f"UPDATE support_tickets SET body = 'toner empty', updated_at = {later} WHERE id IN (3, 11, 21, 22)")
    execute(engine, "DELETE FROM support_tickets WHERE id = 7")
    rows = sorted((d.external_id, 0, d.content_hash, d.signature) for d in first if isinstance(d, Document))
    again = list(src.scan_in_order(CatalogStream(rows, signed=lambda prefix: rows[0][3].startswith(prefix))))
    assert [item.external_id for item in again] == [i for i in ids if i != "7"]
    assert [item.external_id for item in again if isinstance(item, Document)] == ["11", "21", "22", "3"]
    assert all(isinstance(item, Unchanged) for item in again if item.external_id not in {"11", "21", "22", "3"})


@pytest.mark.parametrize("ids", [["1.5", "1e+20"]])
def test_ids_the_database_sorts_otherwise_than_python_fall_back_to_the_loaded_plan(
        tmp_path: Path, ids: list[str], caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as conn:  # SQLite writes 1e20 as text '1.0e+20', which sorts before '1.5'
        conn.execute("CREATE TABLE t (id REAL, body TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, '2024-01-01')", [(float(i), f"body {i}") for i in ids])
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("odd", kind="sql", url=f"sqlite:///{path}", table="t", text="body", updated_at="updated_at")
    with caplog.at_level("INFO", logger="embedops.sync.source_plan"):
        assert ws.sync().counts.added == 2
    assert "gave '1.5' after '1e+20'" in caplog.text and "loaded whole" in caplog.text
    noop = ws.sync()
    assert (noop.counts.unchanged, noop.counts.added, noop.counts.deleted) == (2, 0, 0)
    ws.close()


BIG = 50_000


def _big_table(database: str | None, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, sa.Engine]:
    """BIG rows of ~500 characters, in a SQLite file (SQLite catalog) or a PostgreSQL database (PostgreSQL one)."""
    rows = [(i, "lorem ipsum " * 40, f"2024-01-01 00:00:{i % 60:02d}") for i in range(BIG)]
    if database is None:
        url = f"sqlite:///{tmp_path / 'big.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT)")
            conn.exec_driver_sql("INSERT INTO docs VALUES (?, ?, ?)", rows)
        return url, engine
    server = request.getfixturevalue("pg_server")
    name = f"big_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(server.get_uri(name))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id bigint PRIMARY KEY, body text, updated_at timestamptz)")
        with conn.cursor() as cur, cur.copy("COPY docs FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row[0], row[1], row[2] + "+00"))
    return url, sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def test_a_noop_plan_streams_the_catalog_side_as_well_as_the_table(
        tmp_path: Path, database: str | None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    url, engine = _big_table(database, tmp_path, request)
    monkeypatch.setenv("SRC_DB_URL", url)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("big", kind="sql", url_env="SRC_DB_URL", table="docs", text="body", updated_at="updated_at")
    source = ws.open_source(ws.settings.sources["big"])
    with ws.engine.begin() as conn:  # the catalog as a first sync leaves it, without embedding 50k documents
        source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == "big")).scalar_one()
        conn.execute(sa.insert(schema.documents), [
            {"source_id": source_id, "external_id": d.external_id, "content_hash": d.content_hash, "text": "",
             "signature": d.signature, "metadata": {}, "ingested_at": 0.0}
            for d in source.scan({}) if isinstance(d, Document)])
    tracemalloc.start()
    plan = plan_source(ws.engine, source_id, source)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert plan.is_noop and plan.unchanged == BIG
    # The catalog's view of 50k documents (ids, hashes, signatures) loaded whole takes ~25 MB here.
    assert peak < 8_000_000, f"a no-op plan of {BIG:,} rows peaked at {peak:,} bytes"
    later = "'2024-02-01 00:00:00+00'" if database else "'2024-02-01 00:00:00'"
    execute(engine, f"UPDATE docs SET body = 'changed ' || id, updated_at = {later} WHERE id - id / 100 * 100 = 7")
    execute(engine, "DELETE FROM docs WHERE id - id / 1000 * 1000 = 3")  # no '%': psycopg reads it
    plan = plan_source(ws.engine, source_id, source)
    assert sorted(int(d.external_id) for _, d in plan.updated) == [i for i in range(BIG) if i % 100 == 7]
    assert sorted(int(ext) for _, ext in plan.deleted) == [i for i in range(BIG) if i % 1000 == 3]
    assert plan.unchanged == BIG - len(plan.updated) - len(plan.deleted) and not plan.added
    ws.close()
    engine.dispose()


# --- configuration and credentials -------------------------------------------------------


def test_a_url_with_a_password_is_refused_and_never_written(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    with pytest.raises(ConfigError, match=r"holds a password") as caught:
        ws.add_source("t", kind="sql", url="postgresql://app:hunter2@db/prod", table="t")
    assert "hunter2" not in str(caught.value) and "--url-env" in (caught.value.hint or "")
    assert "hunter2" not in (tmp_path / "ws" / "embedops.toml").read_text()
    ws.close()


def test_url_env_is_read_at_scan_time_and_a_missing_variable_names_the_fix(
        sqlite_db: tuple[str, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = sqlite_db
    monkeypatch.delenv("APP_DB_URL", raising=False)
    src = make_source("t", "sql", None, url_env="APP_DB_URL", table="support_tickets", text="body")
    with pytest.raises(SourceError, match=r"\$APP_DB_URL is not set") as caught:
        src.check()
    assert "export APP_DB_URL=" in (caught.value.hint or "")
    monkeypatch.setenv("APP_DB_URL", url)
    assert len(split(src.scan({}))[0]) == 30


@pytest.mark.parametrize("options, message", [
    ({"table": "t", "query": "SELECT 1"}, "exactly one of table and query"),
    ({}, "exactly one of table and query"),
    ({"table": "t", "url_env": "postgresql://x"}, "must name an environment variable"),
    ({"table": "t", "overlap": "10m"}, "unknown option 'overlap' for a sql source"),
])
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_source("t", "sql", None, **{"url": "sqlite:///x.db", **options})


def test_an_unreachable_database_or_missing_column_is_a_source_error_with_the_table(
        sqlite_db: tuple[str, sa.Engine]) -> None:
    url, _ = sqlite_db
    with pytest.raises(SourceError, match="reading table support_tickets failed: no such column: nope"):
        SqlSource("t", url=url, table="support_tickets", text="nope").check()


# --- through the workspace: both catalogs, PostgreSQL as the source database ----------------


def test_sync_from_postgresql_add_update_delete_noop_and_full(
        tmp_path: Path, database: str | None, pg_db: tuple[str, sa.Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    url, engine = pg_db
    monkeypatch.setenv("APP_DB_URL", url)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    ws.add_source("tickets", kind="sql", url_env="APP_DB_URL", table="support_tickets",
                  text="subject || E'\\n\\n' || body", updated_at="updated_at", where="status <> 'spam'",
                  metadata=["product", "locale"])
    assert "APP_DB_URL" in (tmp_path / "ws" / "embedops.toml").read_text()
    first = ws.sync()
    assert (first.counts.added, first.counts.embedded) == (27, 27)
    noop = ws.sync()
    assert (noop.counts.added, noop.counts.updated, noop.counts.deleted, noop.counts.embedded) == (0, 0, 0, 0)
    execute(engine, "UPDATE support_tickets SET body = 'toner empty', updated_at = now() WHERE id = 3")
    execute(engine, "UPDATE support_tickets SET product = 'p9', updated_at = now() WHERE id = 4")  # metadata only
    execute(engine, "DELETE FROM support_tickets WHERE id IN (5, 6)")
    step = ws.sync()
    assert (step.counts.updated, step.counts.deleted, step.counts.embedded) == (2, 2, 1)
    hits = ws.search("toner empty", k=1)
    assert hits[0].document_id == "3"
    full = ws.sync(full=True)
    assert (full.counts.added, full.counts.updated, full.counts.deleted, full.counts.embedded) == (0, 0, 0, 0)
    assert full.counts.unchanged == 25
    sql_rows = [r for r in ws.history(kind="sync.source") if r["details"]["source"] == "tickets"]
    assert len(sql_rows) == 4  # every sync of the source has its ledger row
    ws.close()


def test_a_table_emptied_by_its_where_clause_is_refused_as_a_mass_delete_and_planned_first(
        tmp_path: Path, sqlite_db: tuple[str, sa.Engine]) -> None:
    from embedops.errors import MassDelete

    url, engine = sqlite_db
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url=url, table="support_tickets", text="body", updated_at="updated_at",
                  where="status <> 'spam'")
    assert ws.sync().counts.added == 27
    execute(engine, "UPDATE support_tickets SET status = 'spam' WHERE id >= 3")  # updated_at untouched
    for plan_only in (True, False):  # `sync --plan` says so too
        with pytest.raises(MassDelete) as refused:
            ws.sync(plan_only=plan_only)
        planned = refused.value.details["result"]["sources"][0]
        assert (planned["deleted"], planned["unchanged"], refused.value.details["deleting"]) == (24, 3, 24)
    assert len(ws.document_ids("tickets")) == 27  # nothing changed
    assert ws.sync(allow_mass_delete=True).counts.deleted == 24
    assert sorted(ws.document_ids("tickets"), key=int) == ["0", "1", "2"]
    ws.close()


def test_a_column_gone_between_syncs_is_a_source_error_from_the_in_order_id_pass_too(
        tmp_path: Path, sqlite_db: tuple[str, sa.Engine]) -> None:
    url, engine = sqlite_db
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url=url, table="support_tickets", text="body", updated_at="updated_at")
    ws.sync()
    execute(engine, "ALTER TABLE support_tickets RENAME COLUMN updated_at TO changed_at")  # read by the driver
    with pytest.raises(SourceError, match="reading table support_tickets failed: no such column: support_tickets.updated_at"):
        ws.sync()
    assert len(ws.document_ids("tickets")) == 30  # nothing of it changed
    ws.close()


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_source_add_sql_sync_full_and_adopt_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import numpy as np
    from typer.testing import CliRunner

    from embedops.cli import app
    from embedops.embedding.registry import load_embedder

    db = tmp_path / "app.db"
    docs = [f"ticket {i} about the printer queue" for i in range(12)]
    vecs = load_embedder("hashing").embed(docs)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, product TEXT, vec TEXT, updated_at TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, 'p1', ?, '2024-01-01 00:00:00')",
                         [(i, d, json.dumps(np.round(v, 7).tolist())) for i, (d, v) in enumerate(zip(docs, vecs))])
    monkeypatch.setenv("APP_DB_URL", f"sqlite:///{db}")
    runner = CliRunner()
    ws = str(tmp_path / "ws")

    def run(*args: str) -> tuple[int, Any]:
        result = runner.invoke(app, [*args, "--workspace", ws, "--json"])
        return result.exit_code, json.loads(result.stdout)

    assert run("init", "--embedder", "hashing", "--chunker", "whole")[0] == 0
    code, plan = run("adopt", "legacy", "--embedder", "hashing", "--url-env", "APP_DB_URL", "--table", "t", "--text",
                     "body", "--vector", "vec", "--sample", "5", "--plan")
    assert code == 0 and plan["plan"] and plan["check"]["passed"] and plan["check"]["compared"] == 5
    code, added = run("source", "add", "tickets", "--kind", "sql", "--url-env", "APP_DB_URL", "--table", "t", "--id",
                      "id", "--text", "body", "--updated-at", "updated_at", "--where", "id < 10",
                      "--metadata", "product")
    assert code == 0 and added["options"] == {"url_env": "APP_DB_URL", "table": "t", "id_column": "id",
                                              "text": "body", "updated_at": "updated_at", "where": "id < 10",
                                              "metadata": ["product"]}
    code, first = run("sync")
    assert code == 0 and first["added"] == 10
    code, full = run("sync", "--full")
    assert code == 0 and (full["unchanged"], full["embedded"]) == (10, 0)
    code, refused = run("source", "add", "bad", "--kind", "sql", "--url", "postgresql://u:pw@h/db", "--table", "t")
    assert code == 1 and refused["error"] == "ConfigError" and "pw" not in json.dumps(refused)


def test_freshness_reports_changed_and_deleted_rows_before_a_sync(
        tmp_path: Path, sqlite_db: tuple[str, sa.Engine]) -> None:
    from embedops.monitor.freshness import check_freshness

    url, engine = sqlite_db
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url=url, table="support_tickets", text="body", updated_at="updated_at")
    ws.sync()
    execute(engine, "UPDATE support_tickets SET body = 'changed', updated_at = '2024-03-01 00:00:00' WHERE id = 4")
    execute(engine, "DELETE FROM support_tickets WHERE id = 5")
    report = check_freshness(ws, "tickets").sources[0]
    assert (report.kind, report.changed, report.deleted) == ("sql", 1, 1)
    assert sorted(report.stale_ids) == ["4", "5"]
    ws.sync()
    assert check_freshness(ws, "tickets").sources[0].stale == 0
    ws.close()
