"""The CLI's JSON contracts and error mapping, through the real typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from embedops.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON: {result.stdout!r}\nstderr: {result.stderr!r}") from exc


def test_json_contracts_end_to_end(tmp_path: Path, corpus: Path) -> None:
    ws = str(tmp_path / "ws")
    code, init = run("init", ws, "--embedder", "hashing", "--json")
    assert code == 0 and init["embedder"] == "hashing"  # type: ignore[index]
    code, _ = run("source", "add", "docs", str(corpus), "--workspace", ws, "--json")
    assert code == 0
    code, plan = run("sync", "--plan", "--workspace", ws, "--json")
    assert code == 0 and plan["added"] == 30 and plan["chunks_to_embed"] > 0  # type: ignore[index]
    code, sync = run("sync", "--workspace", ws, "--json")
    assert code == 0
    assert {"added", "updated", "deleted", "unchanged", "embedded", "skipped"} <= set(sync)  # type: ignore[arg-type]
    code, hits = run("search", "immune antibody", "-k", "3", "--workspace", ws, "--json")
    assert code == 0 and isinstance(hits, list) and len(hits) == 3
    assert {"document_id", "chunk_id", "score", "text", "tags"} <= set(hits[0])
    assert {"space", "chunker", "embedded_at", "source_updated_at"} <= set(hits[0]["tags"])
    code, status = run("status", "--workspace", ws, "--json")
    assert code == 0 and status["aliases"]["prod"] == status["indexes"][0]["id"]  # type: ignore[index]
    assert {"id", "space", "chunker", "vectors"} <= set(status["indexes"][0])  # type: ignore[index]
    code, history = run("history", "--workspace", ws, "--json")
    assert code == 0 and {"kind", "at", "details"} <= set(history[0])  # type: ignore[index]


def test_errors_are_json_objects_with_a_hint_and_exit_1(tmp_path: Path) -> None:
    code, err = run("status", "--workspace", str(tmp_path / "nowhere"), "--json")
    assert code == 1 and err["error"] == "WorkspaceNotFound" and "embedops init" in err["hint"]  # type: ignore[index]


def test_migrate_json_contract(tmp_path: Path, corpus: Path) -> None:
    ws = str(tmp_path / "ws")
    run("init", ws, "--embedder", "hashing", "--json")
    run("source", "add", "docs", str(corpus), "--workspace", ws, "--json")
    run("sync", "--workspace", ws, "--json")
    code, plan = run("migrate", "plan", "--to", "hashing:seed=3", "--workspace", ws, "--json")
    assert code == 0
    assert {"chunks_to_embed", "estimated_seconds", "storage_bytes_before", "storage_bytes_after", "thresholds"} <= set(plan)  # type: ignore[arg-type]
    run("migrate", "start", "--to", "hashing:seed=3", "--workspace", ws, "--json")
    code, status = run("migrate", "status", "--workspace", ws, "--json")
    assert code == 0 and status["phase"] == "backfilling" and status["done"] == 0 < status["total"]  # type: ignore[index]
    code, refused = run("migrate", "cutover", "--workspace", ws, "--json")
    assert code == 1 and refused["error"] == "GateFailed"  # type: ignore[index]
    run("migrate", "backfill", "--workspace", ws, "--json")
    code, cut = run("migrate", "cutover", "--workspace", ws, "--json")
    assert code == 0 and cut["seconds"] < 0.1  # type: ignore[index]
    code, doctor = run("doctor", "--workspace", ws, "--json")
    assert code == 0 and doctor["ok"] is True  # type: ignore[index]


def test_history_table_shows_each_rows_details_as_key_value_pairs(tmp_path: Path, corpus: Path) -> None:
    ws = str(tmp_path / "ws")
    run("init", ws, "--embedder", "hashing", "--json")
    run("source", "add", "docs", str(corpus), "--workspace", ws, "--json")
    run("sync", "--workspace", ws, "--json")
    result = runner.invoke(app, ["history", "--kind", "sync.source", "--workspace", ws], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "source=docs added=30 updated=0 deleted=0 unchanged=0" in result.stdout
    assert "skipped=" not in result.stdout  # an empty list says nothing


def test_text_that_looks_like_rich_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    docs = tmp_path / "[red]docs"
    docs.mkdir()
    (docs / "[b]odd.md").write_text("# Arrays\n\nIndex with xs[/i] and [bold]ys[0]\n")
    ws = str(tmp_path / "ws")
    run("init", ws, "--embedder", "hashing", "--json")
    run("source", "add", "src", str(docs), "--workspace", ws, "--json")  # names keep to [A-Za-z0-9._:-]
    wide = {"COLUMNS": "200"}
    synced = runner.invoke(app, ["sync", "--workspace", ws], env=wide)
    assert synced.exit_code == 0, synced.output
    found = runner.invoke(app, ["search", "arrays", "--workspace", ws], env=wide)
    assert found.exit_code == 0, found.output
    assert "[b]odd.md" in found.stdout and "xs[/i] and [bold]ys[0]" in found.stdout
    status = runner.invoke(app, ["status", "--workspace", ws], env=wide)
    assert status.exit_code == 0 and "[red]docs" in status.stdout
    missing = runner.invoke(app, ["source", "add", "x", str(tmp_path / "[/nope]"), "--workspace", ws], env=wide)
    assert missing.exit_code == 1 and "[/nope] does not exist" in missing.stderr


def test_a_time_without_a_zone_means_utc_in_the_cli_and_the_server(tmp_path: Path, monkeypatch: Any) -> None:
    """One parser: the CLI once read a naive --updated-after as local time while the server read UTC."""
    import time

    from fastapi.testclient import TestClient

    from embedops.server import create_app
    from embedops.workspace import Workspace

    monkeypatch.setenv("TZ", "America/New_York")  # local time is not UTC here
    time.tzset()
    rows = [{"id": "early", "text": "cell membrane protein", "at": "2024-05-01T09:30:00Z"},
            {"id": "late", "text": "cell membrane protein too", "at": "2024-05-01T10:30:00Z"}]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", tmp_path / "docs.jsonl", kind="jsonl", updated_field="at")
    ws.sync()
    code, hits = run("search", "cell membrane", "--updated-after", "2024-05-01T10:00:00", "--workspace", str(ws.root), "--json")
    assert code == 0 and [h["document_id"] for h in hits] == ["late"]  # type: ignore[index, union-attr]
    with TestClient(create_app(ws.root)) as client:
        served = client.get("/search", params={"query": "cell membrane", "updated_after": "2024-05-01T10:00:00"}).json()
    assert [h["document_id"] for h in served] == ["late"]
    code, error = run("search", "cell", "--updated-after", "yesterday", "--workspace", str(ws.root), "--json")
    assert code != 0 and "ISO 8601" in error["hint"]  # type: ignore[index]
    monkeypatch.delenv("TZ")
    time.tzset()
    ws.close()
