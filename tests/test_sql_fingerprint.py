"""An unchanged table's fast path: a sync whose fingerprint of the table's (id, updated_at) pairs is the one
recorded reads no row, and is exactly as blind as the id pass it skips. SQLite files and the embedded PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.scan_state import stored_fingerprint
from embedops.sources.sql import SqlSource
from embedops.sync.driver import SyncResult
from embedops.sync.run import SyncRunner
from embedops.workspace import Workspace
from tests.test_sql_source import TICKETS, _rows, execute, pg_tickets

FAST = "fingerprint"


@pytest.fixture(params=["sqlite", "postgresql"])
def table(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The 30 tickets (every tenth one spam) in a SQLite file (WAL, so that a test can write while a sync reads)
    or a fresh PostgreSQL database (updated_at a timestamptz); $APP_DB_URL names it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            conn.exec_driver_sql(TICKETS.format(ts="TEXT"))
            conn.exec_driver_sql("INSERT INTO support_tickets VALUES (?, ?, ?, ?, ?, ?, ?)", _rows(30))
    else:
        url, engine = pg_tickets(request.getfixturevalue("pg_server"))
    monkeypatch.setenv("APP_DB_URL", url)
    yield engine
    engine.dispose()


def stamp(engine: sa.Engine, text: str) -> str:
    """An updated_at literal in the table's type."""
    return f"'{text}+00'" if engine.dialect.name == "postgresql" else f"'{text}'"


def workspace(tmp_path: Path, **options: Any) -> Workspace:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    base: dict[str, Any] = {"url_env": "APP_DB_URL", "table": "support_tickets", "text": "subject || ' ' || body",
                            "updated_at": "updated_at", "where": "status <> 'spam'", "metadata": ["product"]}
    ws.add_source("tickets", kind="sql", **{**base, **options})
    return ws


def by(result: SyncResult) -> str | None:
    """How the source's plan was made: "fingerprint" when nothing was read."""
    return result.sources[0].get("unchanged_by")


def counts(result: SyncResult) -> tuple[int, int, int, int]:
    c = result.counts
    return c.added, c.updated, c.deleted, c.unchanged


def recorded(ws: Workspace) -> str | None:
    with ws.engine.connect() as conn:
        source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == "tickets")).scalar_one()
        return stored_fingerprint(conn, source_id)


def test_a_noop_sync_of_an_unchanged_table_reads_no_row_and_says_so(
        table: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace(tmp_path)
    first = ws.sync()
    assert first.counts.added == 27 and by(first) is None and recorded(ws) is not None
    passes: list[str] = []
    original = SqlSource._id_pass

    def id_pass(self: SqlSource, *args: Any) -> Any:
        passes.append(self.name)
        return original(self, *args)

    monkeypatch.setattr(SqlSource, "_id_pass", id_pass)
    noop = ws.sync()
    assert counts(noop) == (0, 0, 0, 27) and noop.counts.embedded == 0
    assert by(noop) == FAST and passes == []  # no id pass: the fingerprint answered
    assert ws.sync(plan_only=True).sources[0]["unchanged_by"] == FAST  # `sync --plan` too
    row = ws.history(kind="sync.source", limit=1)[0]["details"]
    assert (row["unchanged_by"], row["unchanged"]) == (FAST, 27)
    execute(table, f"UPDATE support_tickets SET updated_at = {stamp(table, '2024-06-01 00:00:00')} WHERE id = 4")
    changed = ws.sync()
    assert by(changed) is None and passes == ["tickets"]  # the id pass ran, found the row and re-signed it
    ws.close()


@pytest.mark.parametrize("change", ["update", "delete", "swap ids", "swap stamps"])
def test_after_a_fingerprinted_noop_every_change_the_id_pass_sees_is_found(
        table: sa.Engine, tmp_path: Path, change: str) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    assert by(ws.sync()) == FAST
    if change == "update":
        execute(table, f"UPDATE support_tickets SET body = 'toner', updated_at = {stamp(table, '2024-06-01 00:00:00')}"
                       " WHERE id = 3")
        want = (0, 1, 0, 26)
    elif change == "delete":
        execute(table, "DELETE FROM support_tickets WHERE id = 7")
        want = (0, 0, 1, 26)
    elif change == "swap ids":  # one row gone, another in with the gone one's (older) updated_at: the count holds
        execute(table, "INSERT INTO support_tickets SELECT 500, subject, 'new', status, product, locale, updated_at"
                       " FROM support_tickets WHERE id = 8")
        execute(table, "DELETE FROM support_tickets WHERE id = 8")
        want = (1, 0, 1, 26)
    else:  # two rows trade updated_at: the same ids and the same times, other pairs
        execute(table, "UPDATE support_tickets SET body = 'b1', updated_at = (SELECT updated_at FROM support_tickets"
                       " WHERE id = 2) WHERE id = 1")
        execute(table, f"UPDATE support_tickets SET body = 'b2', updated_at = {stamp(table, '2024-01-01 00:00:01')}"
                       " WHERE id = 2")
        want = (0, 2, 0, 25)
    found = ws.sync()
    assert by(found) is None and counts(found) == want
    again = ws.sync()
    assert by(again) == FAST and counts(again) == (0, 0, 0, 27 + want[0] - want[2])
    ws.close()


def test_a_row_changed_while_a_sync_reads_is_found_by_the_next_sync(
        table: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    execute(table, f"UPDATE support_tickets SET body = 'first', updated_at = {stamp(table, '2024-06-01 00:00:00')}"
                   " WHERE id = 3")
    original = SqlSource._judge

    def judge(self: SqlSource, *args: Any) -> Any:  # a writer commits while the id pass streams
        for i, item in enumerate(original(self, *args)):
            if i == 0:
                execute(table, f"UPDATE support_tickets SET body = 'during', updated_at ="
                               f" {stamp(table, '2024-06-02 00:00:00')} WHERE id = 25")
            yield item

    with monkeypatch.context() as patched:
        patched.setattr(SqlSource, "_judge", judge)
        during = ws.sync()
    assert counts(during)[:2] == (0, 1)  # row 3; row 25's change came after the snapshot
    after = ws.sync()
    assert by(after) is None and counts(after)[:2] == (0, 1)
    assert ws.get_documents("tickets", ["25"])[0].text.endswith("during")
    assert by(ws.sync()) == FAST
    ws.close()


def test_a_sync_that_stops_half_way_leaves_no_fingerprint_to_hide_what_it_did_not_finish(
        table: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    assert by(ws.sync()) == FAST
    execute(table, f"UPDATE support_tickets SET body = 'new', updated_at = {stamp(table, '2024-06-01 00:00:00')}"
                   " WHERE id = 3")
    execute(table, "DELETE FROM support_tickets WHERE id = 7")

    def killed(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the sync.source row")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="killed"):
        patched.setattr(SyncRunner, "_finish", killed)
        ws.sync()  # row 3's batch and row 7's deletion are committed
    assert recorded(ws) is None
    # The table goes back to exactly what the recorded fingerprint described; the catalog does not.
    execute(table, f"UPDATE support_tickets SET body = 'printer 3 jams: paper:3', updated_at ="
                   f" {stamp(table, '2024-01-01 00:00:03')} WHERE id = 3")
    execute(table, "INSERT INTO support_tickets VALUES (7, 'Ticket 7', 'printer 7 jams: paper:7', 'open', 'p1', 'en',"
                   f" {stamp(table, '2024-01-01 00:00:07')})")
    repaired = ws.sync()
    assert by(repaired) is None and counts(repaired) == (1, 1, 0, 25)
    assert ws.get_documents("tickets", ["3"])[0].text == "Ticket 3 printer 3 jams: paper:3"
    ws.close()


def test_changed_options_never_reuse_the_fingerprint(table: sa.Engine, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    assert by(ws.sync()) == FAST
    cfg = ws.settings.sources["tickets"]  # the same rows, ids and updated_at; other documents
    ws.settings.sources["tickets"] = dataclasses.replace(cfg, options={**cfg.options, "text": "body"})
    ws.settings.save()
    changed = ws.sync()
    assert by(changed) is None and counts(changed) == (0, 27, 0, 0)
    assert ws.get_documents("tickets", ["4"])[0].text == "printer 4 jams: paper:4"
    assert by(ws.sync()) == FAST
    ws.close()


def test_sync_full_ignores_the_fingerprint_and_records_a_new_one(table: sa.Engine, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    execute(table, "UPDATE support_tickets SET body = 'quiet edit' WHERE id = 5")  # updated_at untouched
    quiet = ws.sync()
    assert by(quiet) == FAST and counts(quiet) == (0, 0, 0, 27)  # as blind as the id pass, no blinder
    full = ws.sync(full=True)
    assert by(full) is None and counts(full) == (0, 1, 0, 26)
    assert by(ws.sync()) == FAST
    ws.close()


def test_a_row_without_updated_at_keeps_every_sync_on_the_id_pass_which_reads_it(
        table: sa.Engine, tmp_path: Path) -> None:
    execute(table, "UPDATE support_tickets SET updated_at = NULL WHERE id = 2")
    ws = workspace(tmp_path)
    ws.sync()
    assert recorded(ws) is None
    assert by(ws.sync()) is None
    execute(table, "UPDATE support_tickets SET body = 'read every time' WHERE id = 2")
    found = ws.sync()
    assert by(found) is None and counts(found) == (0, 1, 0, 26)
    execute(table, f"UPDATE support_tickets SET updated_at = {stamp(table, '2024-06-01 00:00:00')} WHERE id = 2")
    ws.sync()
    assert by(ws.sync()) == FAST
    ws.close()


def test_a_source_without_updated_at_reads_every_row_at_every_sync(table: sa.Engine, tmp_path: Path) -> None:
    ws = workspace(tmp_path, updated_at=None)
    ws.sync()
    assert recorded(ws) is None and by(ws.sync()) is None
    execute(table, "UPDATE support_tickets SET body = 'no updated_at' WHERE id = 6")
    assert counts(ws.sync())[:2] == (0, 1)
    ws.close()


def test_a_query_source_takes_the_fast_path_and_sees_its_where_clause_change(table: sa.Engine, tmp_path: Path) -> None:
    query = "SELECT id AS ticket, subject, body, status, updated_at FROM support_tickets WHERE body LIKE '%paper:%'"
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("tickets", kind="sql", url_env="APP_DB_URL", query=query, id_column="ticket", text="body",
                  updated_at="updated_at", where="status <> 'spam'")
    assert ws.sync().counts.added == 27
    assert by(ws.sync()) == FAST
    execute(table, "UPDATE support_tickets SET status = 'spam' WHERE id = 11")  # leaves the --where, updated_at kept
    gone = ws.sync()
    assert by(gone) is None and counts(gone)[2] == 1
    assert by(ws.sync()) == FAST
    ws.close()


def test_a_source_removed_and_added_again_is_read_again(table: sa.Engine, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    ws.sync()
    cfg = ws.settings.sources["tickets"]
    assert ws.remove_source("tickets")["documents"] == 27
    assert recorded(ws) is None
    ws.add_source("tickets", kind="sql", **cfg.options)
    back = ws.sync()
    assert by(back) is None and back.counts.added == 27
    ws.close()


def test_cli_sync_json_and_text_say_the_fingerprint_answered(
        table: sa.Engine, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    ws = workspace(tmp_path)
    ws.sync()
    ws.close()
    runner = CliRunner()
    done = runner.invoke(app, ["sync", "--workspace", str(tmp_path / "ws"), "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["sources"][0]["unchanged_by"] == FAST and data["unchanged"] == 27
    text = runner.invoke(app, ["sync", "--workspace", str(tmp_path / "ws")], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "tickets: unchanged, by its fingerprint" in text.stdout


def test_the_fingerprint_is_taken_in_one_query_and_none_where_it_would_not_be_exact(
        table: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    src = SqlSource("t", url_env="APP_DB_URL", table="support_tickets", text="body", updated_at="updated_at")
    first = src.fingerprint()
    assert first is not None and first == src.fingerprint()
    assert SqlSource("t", url_env="APP_DB_URL", table="support_tickets", text="body").fingerprint() is None
    if table.dialect.name == "postgresql":  # timestamptz prints in the session's TimeZone: another one only misses
        with monkeypatch.context() as patched:
            patched.setenv("PGTZ", "Asia/Tokyo")
            assert src.fingerprint() not in (None, first)
    execute(table, "UPDATE support_tickets SET updated_at = NULL WHERE id = 29")
    assert src.fingerprint() is None  # that row is read whole at every id pass
    execute(table, "DELETE FROM support_tickets WHERE id = 29")
    assert src.fingerprint() not in (None, first)
