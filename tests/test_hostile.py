"""Hostile input (issue 13): each test reproduces a defect an adversarial user found, then holds the fix.

Lone surrogates and pathological metadata, symbolic links out of a source, terminal escape
sequences in documents, a service bound to the network with open reads, and smaller gaps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embedops.errors import BadRecord
from embedops.server import ServerConfig, create_app
from embedops.sources.base import Document
from embedops.sources.validate import MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_METADATA_KEYS
from embedops.workspace import Workspace

TOKEN = "hostile-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with ``depth`` levels of objects."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def pushed(tmp_path: Path, database: str | None) -> Iterator[Workspace]:
    """A workspace with a push source ``events`` holding one good document."""
    with Workspace.init(tmp_path / "ws", embedder="hashing", database=database) as ws:
        ws.add_source("events", kind="push")
        ws.upsert_documents("events", [Document("good", "A good document about glaciers.", {"lang": "en"})])
        yield ws


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("events", kind="push")
    monkeypatch.setenv("EMBEDOPS_TOKEN", TOKEN)
    with TestClient(create_app(tmp_path / "ws", ServerConfig()), raise_server_exceptions=False) as c:
        assert c.put("/sources/events/documents/good", json={"text": "A good document about glaciers."},
                     headers=AUTH).status_code == 200
        yield c


# -- 7. lone surrogates and pathological metadata ----------------------------------------------------
BAD_JSONL_RECORDS = {
    # raw JSON text of each line: json.loads turns \ud800 into a lone surrogate
    "surrogate-meta": (r'{"id": "m", "text": "metadata is broken", "k": "\ud800"}', 'metadata "k"'),
    "surrogate-text": (r'{"id": "t", "text": "broken \udc00 text"}', "text"),
    "nul-text": (r'{"id": "n", "text": "a NUL \u0000 inside"}', "NUL"),
    "nan-meta": ('{"id": "f", "text": "not a number", "score": NaN}', 'metadata "score"'),
}


def test_a_lone_surrogate_in_a_jsonl_line_skips_that_line_only(tmp_path: Path, database: str | None) -> None:
    lines = ['{"id": "ok1", "text": "first good record about rivers"}']
    lines += [raw for raw, _ in BAD_JSONL_RECORDS.values()]
    lines += [r'{"id": "\ud83d", "text": "an id that is half an emoji"}', '{"id": "ok2", "text": "last good one"}']
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Workspace.init(tmp_path / "ws", embedder="hashing", database=database) as ws:
        ws.add_source("j", path, kind="jsonl")
        result = ws.sync()
        assert result.counts.added == 2
        reasons = {s.external_id: s.reason for s in result.counts.skipped}
        for lineno, (ext_id, (_, field)) in enumerate(zip("mtnf", BAD_JSONL_RECORDS.values(), strict=True), 2):
            assert f"data.jsonl line {lineno} (id '{ext_id}')" in reasons[ext_id] and field in reasons[ext_id]
        assert "data.jsonl line 6: id" in reasons["data.jsonl:line 6"]
        assert "surrogate" in reasons["m"] and "surrogate" in reasons["t"] and "NaN" in reasons["f"]
        recorded = ws.history(kind="sync.source")[0]["details"]
        assert recorded["skipped_count"] == 5
        json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")  # the report itself is valid UTF-8
        assert {h.document_id for h in ws.search("good record", k=5)} == {"ok1", "ok2"}


def test_a_record_turned_bad_keeps_its_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a", "text": "glaciers retreat", "k": "v"}\n', encoding="utf-8")
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("j", path, kind="jsonl")
        ws.sync()
        path.write_text(r'{"id": "a", "text": "glaciers retreat", "k": "\ud800"}' + "\n", encoding="utf-8")
        result = ws.sync()
        assert (result.counts.deleted, [s.external_id for s in result.counts.skipped]) == (0, ["a"])
        assert ws.search("glaciers", k=1)[0].metadata == {"k": "v"}


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"k": "\ud800"}, 'metadata "k": lone surrogate'),
        ({"\udfff": 1}, "metadata key"),
        ({"deep": nested(MAX_METADATA_DEPTH)}, f"nested more than {MAX_METADATA_DEPTH} levels"),
        ({f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}, f"more than {MAX_METADATA_KEYS:,} keys"),
        ({"big": "x" * MAX_METADATA_BYTES}, f"over {MAX_METADATA_BYTES:,} bytes"),
        ({"n": float("inf")}, "Infinity"),
        ({"when": object()}, "not a JSON value"),
        ({"list": [1, {"x": "a\x00b"}]}, 'metadata "list"[1]["x"]: contains a NUL'),
    ],
    ids=["surrogate-value", "surrogate-key", "depth", "keys", "size", "infinity", "object", "nul"],
)
def test_pushed_metadata_is_checked_in_the_library(pushed: Workspace, metadata: dict[str, Any], problem: str) -> None:
    result = pushed.upsert_documents("events", [Document("bad", "some text", metadata), Document("fine", "more text")])
    assert result.counts.added == 1
    [skipped] = result.counts.skipped
    assert skipped.external_id == "bad" and problem in skipped.reason, skipped.reason
    assert sorted(h.document_id for h in pushed.search("text", k=5, mode="bm25")) == ["fine"]


def test_pushed_text_and_ids_are_checked_in_the_library(pushed: Workspace) -> None:
    docs = [Document("s", "half an emoji \ud83d"), Document("n", "NUL\x00"), Document("x" * 1025, "long id"),
            Document("nul\x00id", "id with a NUL")]
    result = pushed.upsert_documents("events", docs)
    reasons = [s.reason for s in result.counts.skipped]
    assert result.counts.added == 0 and len(reasons) == 4
    assert "text: lone surrogate" in reasons[0] and "text: contains a NUL" in reasons[1]
    assert "id: longer than 1,024 characters" in reasons[2] and "id: contains a NUL" in reasons[3]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (r'{"text": "hello", "metadata": {"k": "\ud800"}}', "metadata", "lone surrogate"),
        (json.dumps({"text": "hello", "metadata": nested(500)}), "metadata", "nested more than"),
        (r'{"text": "hello", "metadata": {"k": "\u0000"}}', "metadata", "NUL"),
        (r'{"text": "hello \u0000"}', "text", "NUL"),
        (r'{"text": "hello \ud800"}', "text", ""),
    ],
    ids=["surrogate", "deep", "nul-meta", "nul-text", "surrogate-text"],
)
def test_a_bad_push_is_a_422_naming_the_field_and_search_keeps_working(
    client: TestClient, body: str, field: str, problem: str
) -> None:
    response = client.put("/sources/events/documents/bad", content=body.encode(), headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert [p["field"] for p in error["problems"]] == [field] and problem in error["message"]
    for mode in ("vector", "bm25", "hybrid"):
        hits = client.get("/search", params={"query": "glaciers document", "mode": mode})
        assert hits.status_code == 200 and [h["document_id"] for h in hits.json()] == ["good"]


def test_a_bad_push_in_a_batch_is_a_bad_record(pushed: Workspace) -> None:
    from embedops.server.batch import apply_batch

    outcomes = apply_batch(pushed, [("events", Document("a", "fine text")), ("events", Document("b", "x", {"k": "\ud800"}))])
    assert not isinstance(outcomes[0], Exception)
    assert isinstance(outcomes[1], BadRecord) and "lone surrogate" in outcomes[1].message


def test_beir_metadata_and_folder_text_are_checked_too(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    beir.mkdir()
    records = [{"_id": "d1", "title": "T", "text": "a fine abstract", "metadata": {"year": 2020}},
               {"_id": "d2", "title": "T", "text": "too deep", "metadata": nested(MAX_METADATA_DEPTH + 5)}]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("plain text file")
    (docs / "late-nul.txt").write_bytes(b"text " * 2000 + b"\x00 more text")  # past the 8 KiB binary sniff
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("b", beir, kind="beir")
        ws.add_source("docs", docs)
        result = ws.sync()
        reasons = {s.external_id: s.reason for s in result.counts.skipped}
        assert result.counts.added == 2 and set(reasons) == {"d2", "late-nul.txt"}
        assert reasons["d2"].startswith("corpus.jsonl line 2 (id 'd2'): metadata") and "nested" in reasons["d2"]
        assert "NUL character at character 10000" in reasons["late-nul.txt"]


# -- 13. precise reasons for JSONL records -------------------------------------------------------------
def test_jsonl_null_text_and_empty_ids_get_precise_reasons(tmp_path: Path) -> None:
    lines = ['{"id": "a", "text": null}', '{"id": "", "text": "x"}', '{"id": "  ", "text": "x"}',
             '{"id": null, "text": "x"}', '{"text": "x", "title": "t"}', '{"id": "b"}', '{"id": "c", "text": 5}',
             '{"id": "d", "text": "fine"}']
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("j", path, kind="jsonl")
        result = ws.sync()
    reasons = [s.reason for s in result.counts.skipped]
    assert result.counts.added == 1
    assert reasons == [
        "data.jsonl line 1 (id 'a'): text field 'text' is null; give the record its text, or remove it",
        "data.jsonl line 2: id field 'id' is an empty string; give the record a non-empty id",
        "data.jsonl line 3: id field 'id' is blank (only whitespace); give the record an id with some text",
        "data.jsonl line 4: id field 'id' is null; give the record an id or set the source option id_field to the"
        " field that holds it (fields present: id, text)",
        "data.jsonl line 5: missing id field 'id'; give the record an id or set the source option id_field to the"
        " field that holds it (fields present: text, title)",
        "data.jsonl line 6 (id 'b'): missing text field 'text'; add it or set the source option text_field"
        " (fields present: id)",
        "data.jsonl line 7 (id 'c'): text field 'text' is a number, expected a string; store the text as a JSON string",
    ]


# -- 8. symbolic links out of a folder source --------------------------------------------------------
def linked_folder(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ with a real file, a link inside it, links out of it; outside/secret.txt holds the secret."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root:x:0:0 the secret password file")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "inside.md").write_text("# Inside\n\nA document about volcanoes.\n")
    (docs / "sub" / "link-in.md").symlink_to("../inside.md")
    (docs / "p.txt").symlink_to(outside / "secret.txt")
    (docs / "hop.txt").symlink_to("sub/../p.txt")  # a chain that ends outside
    (docs / "dir.txt").symlink_to(outside)
    return docs, outside


def test_a_link_out_of_the_folder_is_skipped_with_a_reason(tmp_path: Path) -> None:
    docs, outside = linked_folder(tmp_path)
    (tmp_path / "via-link").symlink_to(docs)  # the root itself may be a link: what counts is where it leads
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", tmp_path / "via-link")
        result = ws.sync()
        reasons = {s.external_id: s.reason for s in result.counts.skipped}
        assert result.counts.added == 2  # inside.md and sub/link-in.md
        assert set(reasons) == {"p.txt", "hop.txt", "dir.txt"}
        secret = str((outside / "secret.txt").resolve())
        assert reasons["p.txt"].startswith(f"p.txt: symbolic link to {secret}, outside the source folder")
        assert "follow_external_symlinks" in reasons["p.txt"] and secret in reasons["hop.txt"]
        assert not ws.search("secret password", k=10, mode="bm25")


def test_following_external_links_is_opt_in_and_turning_it_off_removes_them(tmp_path: Path) -> None:
    docs, _ = linked_folder(tmp_path)
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", docs, follow_external_symlinks=True)
        result = ws.sync()
        assert result.counts.added == 4 and [s.external_id for s in result.counts.skipped] == ["dir.txt"]
        assert {h.document_id for h in ws.search("secret password", k=10, mode="bm25")} == {"p.txt", "hop.txt"}
        ws.settings.sources["docs"].options.pop("follow_external_symlinks")
        ws.settings.save()
        result = ws.sync()
        # Not a bad record of the source (which would keep its previous version): not part of it at all.
        assert result.counts.deleted == 2 and {"p.txt", "hop.txt"} <= {s.external_id for s in result.counts.skipped}
        assert not ws.search("secret password", k=10, mode="bm25")


def test_source_add_follow_external_symlinks_flag(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    docs, _ = linked_folder(tmp_path)
    ws = str(tmp_path / "ws")
    runner = CliRunner()
    assert runner.invoke(app, ["init", ws, "--embedder", "hashing"]).exit_code == 0
    added = runner.invoke(app, ["source", "add", "docs", str(docs), "--follow-external-symlinks", "-w", ws, "--json"])
    assert added.exit_code == 0 and json.loads(added.stdout)["options"] == {"follow_external_symlinks": True}
    plain = runner.invoke(app, ["source", "add", "plain", str(docs), "-w", ws, "--json"])
    assert json.loads(plain.stdout)["options"] == {}


# -- 9. terminal output: document text, ids, paths and names printed literally -----------------------
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"  # set the window title, clear the screen, turn red


def test_the_cli_prints_untrusted_text_literally(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    data = tmp_path / f"data{ESCAPES}"
    data.mkdir()
    records = [{"id": f"doc{ESCAPES}:x:", "text": f"Glaciers {ESCAPES} calve :x: :thumbs_up: icebergs \u202eevil"},
               {"id": f"bad{ESCAPES}", "text": None}]
    (data / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ws = str(tmp_path / "ws")
    runner = CliRunner()
    # Not curated: the control characters would quarantine the document (`encoding`), and this test
    # needs it in search results; test_curation_sync checks what the quarantine commands print.
    runner.invoke(app, ["init", ws, "--embedder", "hashing", "--no-curate"])
    outputs = {
        "source add": runner.invoke(app, ["source", "add", "j", str(data / "d.jsonl"), "--kind", "jsonl", "-w", ws]),
        "sync": runner.invoke(app, ["sync", "-w", ws]),
        "search": runner.invoke(app, ["search", f"glaciers {ESCAPES} :x:", "-w", ws]),
        "status": runner.invoke(app, ["status", "-w", ws]),
        "history": runner.invoke(app, ["history", "-w", ws]),
        "error": runner.invoke(app, ["search", "glaciers", "--index", f"no{ESCAPES}:x:", "-w", ws]),
    }
    for name, result in outputs.items():
        printed = result.stdout + result.stderr
        assert "\x1b" not in printed and "\x07" not in printed and "\u202e" not in printed, (name, printed)
        assert "\u274c" not in printed and "\U0001f44d" not in printed, (name, printed)  # ❌ 👍: codes not rendered
    assert "\\x1b]0;pwned\\x07" in outputs["sync"].stderr and "bad\\x1b" in outputs["sync"].stderr
    assert ":x: :thumbs_up:" in outputs["search"].stdout and "\\u202eevil" in outputs["search"].stdout
    assert "'glaciers \\x1b]0;pwned\\x07" in outputs["search"].stdout  # the query in the title
    assert "data\\x1b]0;pwned\\x07" in outputs["source add"].stdout
    assert "no\\x1b]0;pwned\\x07" in outputs["error"].stderr and ":x:" in outputs["error"].stderr


def test_literal_escapes_controls_and_keeps_lines() -> None:
    from embedops.cli.common import literal

    assert literal("plain text, 10 €") == "plain text, 10 €"
    assert literal("a\x1b[31mb\x07\r\x7f\x85\u202e\ud800") == "a\\x1b[31mb\\x07\\r\\x7f\\x85\\u202e\\ud800"
    assert literal("two\nlines\tand a tab") == "two\nlines\tand a tab"


# -- 11. a service bound to the network ----------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_serve_on_a_public_interface_refuses_open_reads(tmp_path: Path, host: str) -> None:
    from typer.testing import CliRunner

    from embedops.cli import app

    Workspace.init(tmp_path / "ws", embedder="hashing").close()
    result = CliRunner().invoke(app, ["serve", "--host", host, "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert f"refusing to serve {host} with reads open to the network" in result.stderr
    assert "--auth-reads" in result.stderr and "--allow-public-reads" in result.stderr
    as_json = CliRunner().invoke(app, ["serve", "--host", host, "--json", "-w", str(tmp_path / "ws")])
    assert as_json.exit_code == 1 and "--allow-public-reads" in json.loads(as_json.stdout)["hint"]


@pytest.mark.parametrize(
    ("host", "auth_reads", "allow", "outcome"),
    [("127.0.0.1", False, False, None), ("::1", False, False, None), ("localhost", False, False, None),
     ("127.0.0.2", False, False, None), ("0.0.0.0", True, False, None), ("0.0.0.0", False, True, "warn"),
     ("0.0.0.0", False, False, "refuse")],
)
def test_read_exposure_decision(host: str, auth_reads: bool, allow: bool, outcome: str | None) -> None:
    from embedops.errors import ConfigError
    from embedops.server.run import check_exposure

    if outcome == "refuse":
        with pytest.raises(ConfigError):
            check_exposure(host, ServerConfig(auth_reads=auth_reads), allow_public_reads=allow)
        return
    warning = check_exposure(host, ServerConfig(auth_reads=auth_reads), allow_public_reads=allow)
    assert (warning is not None) == (outcome == "warn")
    if warning:
        assert "/status" in warning and "/metrics" in warning and "--auth-reads" in warning


def test_the_access_log_never_shows_query_values() -> None:
    import logging

    from embedops.server.run import RedactQueryValues

    redact = RedactQueryValues(["query", "k", "token"])
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("1.2.3.4:5", "GET", "/search?query=secret%20plans&k=3&token=T0K&T0K2&x=1", "1.1", 200),
                               None)
    assert redact.filter(record)
    line = record.getMessage()
    assert "T0K" not in line and "secret" not in line
    assert line == '1.2.3.4:5 - "GET /search?query=…&k=…&token=…&…&… HTTP/1.1" 200'


def test_serve_public_with_allow_warns_and_keeps_tokens_out_of_the_access_log(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx2 as httpx

    from tests.conftest import CHILD_ENV

    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("events", kind="push")
        ws.upsert_documents("events", [Document("a", "glaciers")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**CHILD_ENV, "EMBEDOPS_TOKEN": "sEcReT-token-value"}
    cmd = [sys.executable, "-m", "embedops.cli", "serve", "--host", "0.0.0.0", "--allow-public-reads", "--access-log",
           "--port", str(port), "-w", str(tmp_path / "ws")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        params = {"query": "private words", "token": "sEcReT-token-value", "access_token": "sEcReT-token-value"}
        assert httpx.get(f"{url}/search", params=params).status_code == 200
        assert httpx.get(f"{url}/search?sEcReT-token-value").status_code == 422
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0].decode()
    assert "PUBLIC READS" in output and "0.0.0.0" in output
    assert '"GET /search?query=…&…&… HTTP/1.1" 200' in output, output  # token: not an API parameter
    assert "sEcReT" not in output and "private words" not in output and os.sep + "search?query=private" not in output


# -- 13. smaller gaps ----------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A synced workspace: source `j` (two JSONL records with metadata `lang`) and an empty push source."""
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "1", "text": "glaciers calve icebergs", "lang": "en"}\n'
                    '{"id": "2", "text": "glaciers fondent", "lang": "fr"}\n', encoding="utf-8")
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("j", path, kind="jsonl")
        ws.add_source("events", kind="push")
        ws.sync()
    return tmp_path / "ws"


def cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from embedops.cli import app

    return CliRunner().invoke(app, list(args))


def test_search_for_a_source_that_does_not_exist_says_so(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embedops.errors import NotFound

    with Workspace.open(small) as ws:
        from embedops.search.engine import Filters

        with pytest.raises(NotFound, match="no source 'nope'"):
            ws.search("glaciers", filters=Filters(source="nope"))
        assert ws.search("glaciers", filters=Filters(source="events")) == []  # exists, holds nothing: no error
    result = cli("search", "glaciers", "--source", "nope", "-w", str(small))
    assert result.exit_code == 1 and "no source 'nope'" in result.stderr and "j, events" in result.stderr
    monkeypatch.setenv("EMBEDOPS_TOKEN", TOKEN)
    with TestClient(create_app(small, ServerConfig()), raise_server_exceptions=False) as client:
        for response in (client.get("/search", params={"query": "glaciers", "source": "nope"}),
                         client.post("/search", json={"query": "glaciers", "source": "nope"})):
            assert response.status_code == 404 and response.json()["error"] == "NotFound"


def test_a_filter_on_a_metadata_key_no_document_has_says_so(small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("search", "glaciers", "--where", "nokey=1", "-w", str(small))
    assert result.exit_code == 0 and "no results" in result.stdout
    assert "note: no document has metadata key 'nokey'" in result.stderr
    as_json = cli("search", "glaciers", "--where", "nokey=1", "--where", "lang=de", "-w", str(small), "--json")
    assert json.loads(as_json.stdout) == [] and "'nokey'" in as_json.stderr and "'lang'" not in as_json.stderr
    assert "note" not in cli("search", "glaciers", "--where", "lang=de", "-w", str(small)).stderr  # the key exists
    monkeypatch.setenv("EMBEDOPS_TOKEN", TOKEN)
    with TestClient(create_app(small, ServerConfig()), raise_server_exceptions=False) as client:
        response = client.get("/search", params={"query": "glaciers", "where": ["nokey=1"]})
        assert response.json() == [] and response.headers["x-embedops-note"] == "no document has metadata key 'nokey'"
        assert "x-embedops-note" not in client.get("/search", params={"query": "glaciers", "where": ["lang=fr"]}).headers


def test_threshold_values_are_cosines_and_negative_values_parse(small: Path) -> None:
    ws = str(small)
    refused = cli("thresholds", "add", "d", "1.5", "-w", ws)
    assert refused.exit_code == 1 and "within [-1, 1]" in " ".join(refused.stderr.split())
    added = cli("thresholds", "add", "d", "-0.2", "-w", ws, "--json")
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["value"] == -0.2
    space = json.loads(added.stdout)["space"]
    changed = cli("thresholds", "set", "d", "-.5", "--space", space, "-w", ws, "--json")
    assert changed.exit_code == 0 and json.loads(changed.stdout)["value"] == -0.5
    assert cli("thresholds", "set", "d", "-1.01", "--space", space, "-w", ws).exit_code == 1
    assert cli("thresholds", "add", "e", "0.5", "--bogus", "-w", ws).exit_code == 2  # typos are still errors


def test_history_limit_zero_is_refused_and_version_works(small: Path) -> None:
    from embedops import __version__

    refused = cli("history", "--limit", "0", "-w", str(small))
    assert refused.exit_code == 2 and "--limit" in refused.output
    assert len(json.loads(cli("history", "--limit", "1", "-w", str(small), "--json").stdout)) == 1
    version = cli("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"embedops {__version__}"


@pytest.mark.parametrize("name", ["", "   ", "a b", "x/y", "-dash", "é", "a" * 201, "nul\x00"])
def test_names_are_validated(small: Path, tmp_path: Path, name: str) -> None:
    from embedops.errors import ConfigError

    with Workspace.open(small) as ws, pytest.raises(ConfigError, match="name"):
        ws.add_source(name, kind="push")
    with Workspace.open(small) as ws, pytest.raises(ConfigError, match="name"):
        ws.thresholds.add(name, 0.5)
    qrels = tmp_path / "q.jsonl"
    qrels.write_text('{"query": "glaciers", "relevant_ids": ["1"]}\n', encoding="utf-8")
    result = cli("eval", "import", "--source", "j", "-w", str(small), "--", name, str(qrels))
    assert result.exit_code == 1 and "invalid eval set name" in result.stderr
    result = cli("eval", "bind", "x", "--alias", name, "-w", str(small))
    assert result.exit_code == 1 and "invalid alias name" in result.stderr


def test_names_are_stripped(small: Path) -> None:
    result = cli("source", "add", "  spaced  ", "--kind", "push", "-w", str(small), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "spaced"
    assert "[sources.spaced]" in (small / "embedops.toml").read_text()
    result = cli("thresholds", "add", " dedup ", "0.9", "-w", str(small), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "dedup"


# -- found by fuzzing ------------------------------------------------------------------------------------
def test_nul_characters_in_names_and_queries_are_answered_on_every_backend(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL refuses a NUL even as a parameter it only compares: every route must still answer."""
    with Workspace.init(tmp_path / "ws", embedder="hashing", database=database) as ws:
        ws.add_source("events", kind="push")
        ws.upsert_documents("events", [Document("a", "glaciers", {"k": "v"})])
        ws.thresholds.add("dedup", 0.9)
    monkeypatch.setenv("EMBEDOPS_TOKEN", TOKEN)
    requests = [("GET", "/search?query=glaciers&alias=%00"), ("GET", "/search?query=glaciers&index=%00"),
                ("GET", "/search?query=glaciers&source=%00"), ("GET", "/search?query=glaciers&where=k%3D%00"),
                ("GET", "/search?query=gla%00ciers&mode=bm25"), ("GET", "/search?query=gla%00ciers&mode=hybrid"),
                ("GET", "/thresholds/%00"), ("GET", "/thresholds/dedup?space=%00"), ("GET", "/thresholds?alias=%00"),
                ("GET", "/migrations/status?alias=%00"), ("GET", "/freshness?source=%00"),
                ("DELETE", "/sources/events/documents/%00"), ("PUT", "/sources/%00/documents/a"),
                ("POST", "/search", {"query": "gla\x00ciers", "mode": "bm25"}),
                ("POST", "/search", {"query": "glaciers", "source": "\x00", "alias": "prod"}),
                ("POST", "/search", {"query": "glaciers", "where": {"k": "\x00"}}),
                ("POST", "/sync", {"source": "\x00"})]
    with TestClient(create_app(tmp_path / "ws", ServerConfig()), raise_server_exceptions=False) as client:
        for method, url, *body in requests:
            response = client.request(method, url, json=body[0] if body else {"text": "x"}, headers=AUTH)
            assert response.status_code < 500, (method, url, response.text)
            assert response.status_code < 400 or "error" in response.json()
        assert client.get("/search", params={"query": "glaciers"}).json()[0]["document_id"] == "a"


def test_an_id_ending_in_a_line_break_is_refused_not_cut(client: TestClient) -> None:
    """The router's ``$`` matches before a final newline: PUT .../documents/a%0A arrived as id "a"."""
    for url in ("/sources/events/documents/a%0A", "/sources/events/documents/%0A", "/sources/events/documents/%0B"):
        response = client.put(url, json={"text": "not this one"}, headers=AUTH)
        assert response.status_code == 422 and response.json()["error"] == "RequestInvalid", response.text
        assert "line break" in response.text or "blank" in response.text
    assert client.get("/search", params={"query": "not this one", "mode": "bm25"}).json() == []


def test_a_time_in_the_year_10000_in_utc_is_kept_and_search_keeps_answering(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """9999-12-31T23:59:59-14:00 is valid ISO 8601 (the schema accepts it) but lies in the year 10000 in UTC:
    it was stored, and every search returning it failed (500) when showing it as a date."""
    late = {"text": "glaciers retreat late", "updated_at": "9999-12-31T23:59:59-14:00"}
    early = {"text": "glaciers advance early", "updated_at": "0001-01-01T00:00:00+14:00"}
    assert client.put("/sources/events/documents/late", json=late, headers=AUTH).status_code == 200
    assert client.put("/sources/events/documents/early", json=early, headers=AUTH).status_code == 200
    hits = client.get("/search", params={"query": "glaciers", "k": 5})
    assert hits.status_code == 200, hits.text
    shown = {h["document_id"]: h["tags"]["source_updated_at"] for h in hits.json()}
    assert shown["late"] is None and shown["early"] is None and set(shown) == {"good", "late", "early"}
    after = client.get("/search", params={"query": "glaciers", "updated_after": "9999-12-31T23:00:00-14:00"})
    assert [h["document_id"] for h in after.json()] == ["late"]


def test_a_library_search_with_a_nul_is_a_search_error(pushed: Workspace) -> None:
    from embedops.errors import SearchError
    from embedops.search.engine import Filters

    calls = [dict(query="gla\x00ciers", mode="bm25"), dict(query="gla\x00ciers", mode="hybrid"),
             dict(query="glaciers", alias="p\x00"), dict(query="glaciers", index="i\x00"),
             dict(query="glaciers", filters=Filters(source="s\x00")),
             dict(query="glaciers", filters=Filters(metadata={"lang": "e\x00"}))]
    for call in calls:
        with pytest.raises(SearchError, match="NUL"):
            pushed.search(**call)  # type: ignore[arg-type]
    with pytest.raises(SearchError, match="NUL"):
        pushed.search_batch(["ok", "n\x00"])
    assert pushed.search("glaciers", k=1)[0].document_id == "good"
