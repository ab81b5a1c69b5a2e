"""Invariant 7 at the workspace level: bad records are reported, recorded and skipped; the rest proceeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedops.errors import SourceError
from embedops.workspace import Workspace
from tests.conftest import CHILD_ENV, python_bound_by_file_modes, write_corpus


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_synced(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nA perfectly fine document about ferns.\n")
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (docs / "binary.txt").write_bytes(b"PK\x03\x04\x00\x00binary")
    (docs / "empty.md").write_text("")
    (docs / "blank.md").write_text("   \n\n  ")
    with (docs / "huge.txt").open("wb") as fh:
        fh.truncate(50 * 2**20)
    (docs / "dangling.md").symlink_to(docs / "missing-target.md")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", docs)
    result = ws.sync()
    reasons = {s.external_id: s.reason for s in result.counts.skipped}
    assert result.counts.added == 1
    assert "UTF-8" in reasons["latin1.txt"] and "binary" in reasons["binary.txt"].lower()
    assert "empty" in reasons["empty.md"] and "empty" in reasons["blank.md"]
    assert "MB" in reasons["huge.txt"] or "bytes" in reasons["huge.txt"]
    assert "dangling.md" in reasons
    recorded = ws.history(kind="sync.source")[0]["details"]
    assert recorded["skipped_count"] == len(reasons) and {s["id"] for s in recorded["skipped"]} == set(reasons)


def test_a_good_document_turned_bad_keeps_its_previous_version(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nOriginal text about glaciers.\n")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", docs)
    ws.sync()
    (docs / "a.md").write_bytes(b"\xff\xfe broken \x00 bytes")
    result = ws.sync()
    assert result.counts.deleted == 0 and [s.external_id for s in result.counts.skipped] == ["a.md"]
    assert ws.search("glaciers", k=1)[0].document_id == "a.md"


def test_malformed_jsonl_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "1", "text": "first record"}\n{not json\n{"id": "3"}\n{"id": "4", "text": "fourth"}\n')
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("j", path, kind="jsonl")
    result = ws.sync()
    assert result.counts.added == 2
    reasons = " | ".join(s.reason for s in result.counts.skipped)
    assert "line 2" in reasons and "line 3" in reasons


def test_provider_error_skips_only_the_rejected_document(tmp_path: Path) -> None:
    from embedops.errors import ProviderError

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"d{i}.md").write_text(f"# D{i}\n\nDocument number {i} about rivers.\n")
    (docs / "poison.md").write_text("# Poison\n\nThis text makes the provider fail.\n")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", docs)
    embedder = ws.embedder("hashing")
    real = embedder.embed

    class RejectingEmbedder:
        """Stands in for a remote provider that rejects one input with a non-transient error."""

        ref, tokenizer_name, count_tokens = embedder.ref, embedder.tokenizer_name, embedder.count_tokens

        def embed(self, texts: list[str]):  # type: ignore[no-untyped-def]
            if any("provider fail" in t for t in texts):
                raise ProviderError("400 Bad Request: input rejected")
            return real(texts)

    ws._embedders["hashing"] = RejectingEmbedder()  # type: ignore[assignment]
    import embedops.execute.base as run_mod

    run_mod.EMBED_RETRIES, saved = 1, run_mod.EMBED_RETRIES
    try:
        result = ws.sync()
    finally:
        run_mod.EMBED_RETRIES = saved
    assert result.counts.added == 5
    assert [s.external_id for s in result.counts.skipped] == ["poison.md"]
    assert "rejected" in result.counts.skipped[0].reason


def test_an_unreadable_file_is_skipped_by_a_cli_sync_and_recorded(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nA perfectly fine document about ferns.\n")
    secret = docs / "secret.md"
    secret.write_text("# Secret\n\nNobody may read this.\n")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("docs", docs)
    ws.close()
    secret.chmod(0)
    try:
        done = subprocess.run(
            [*python_bound_by_file_modes(), "-m", "embedops.cli", "sync", "--workspace", str(tmp_path / "ws"), "--json"],
            capture_output=True, text=True, env=CHILD_ENV, check=True,
        )
    finally:
        secret.chmod(0o644)
    out = json.loads(done.stdout)
    assert out["added"] == 1
    assert [s["id"] for s in out["skipped"]] == ["secret.md"] and "permission denied" in out["skipped"][0]["reason"]
    with Workspace.open(tmp_path / "ws") as reopened:
        recorded = reopened.history(kind="sync.source")[0]["details"]
        assert [s["id"] for s in recorded["skipped"]] == ["secret.md"]
        again = reopened.sync()  # readable now: picked up, nothing else re-embedded
        assert again.counts.added == 1 and again.counts.unchanged == 1


def test_a_source_whose_path_does_not_exist_is_refused_when_added(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    (tmp_path / "a-file.txt").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    cases = [
        ("folder", tmp_path / "nope", "does not exist"),
        ("folder", tmp_path / "a-file.txt", "not a folder"),
        ("jsonl", tmp_path / "nope.jsonl", "does not exist"),
        ("jsonl", tmp_path / "a-folder", "not a JSONL file"),
        ("beir", tmp_path / "nope", "does not exist"),
        ("beir", tmp_path / "a-folder", "no corpus.jsonl"),
    ]
    for kind, path, words in cases:
        with pytest.raises(SourceError, match=words) as caught:
            ws.add_source("src", path, kind=kind)
        assert caught.value.hint
    assert ws.settings.sources == {} and ws.history(kind="source.add") == []
    assert "[sources" not in (tmp_path / "ws" / "embedops.toml").read_text()


def two_folder_sources(tmp_path: Path, docs_a: int, docs_b: int) -> Workspace:
    """A workspace with folder sources `a` and `b` (at tmp_path/a and tmp_path/b), not synced yet."""
    write_corpus(tmp_path / "a", docs_a, seed=1)
    write_corpus(tmp_path / "b", docs_b, seed=2)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("a", tmp_path / "a")
    ws.add_source("b", tmp_path / "b")
    return ws


def test_an_unreadable_source_holds_back_neither_the_others_nor_its_own_documents(tmp_path: Path) -> None:
    ws = two_folder_sources(tmp_path, 5, 4)
    ws.sync()
    (tmp_path / "a" / "sub0" / "doc000.md").write_text("# Changed\n\nA new text about glaciers.\n")
    (tmp_path / "b").rename(tmp_path / "b-unmounted")  # a share that is not mounted right now
    with pytest.raises(SourceError, match=r"1 of 2 sources could not be read \(b\)") as caught:
        ws.sync()
    details = caught.value.details
    assert [f["source"] for f in details["failed"]] == ["b"] and "does not exist" in details["failed"][0]["error"]
    assert details["result"]["updated"] == 1 and details["result"]["deleted"] == 0
    assert ws.search("glaciers", k=1)[0].document_id == "sub0/doc000.md"
    assert ws.status()["documents"] == 9  # b's documents are kept, not taken for deleted
    assert ws.history(kind="sync.source_failed")[0]["details"]["source"] == "b"
    with pytest.raises(SourceError, match="folder .* does not exist"):  # one source asked for: its own error
        ws.sync(source="b")
    (tmp_path / "b-unmounted").rename(tmp_path / "b")
    again = ws.sync()
    assert again.counts.unchanged == 9 and again.counts.embedded == 0


def test_a_cli_sync_with_an_unreadable_source_exits_1_with_the_others_result(tmp_path: Path) -> None:
    two_folder_sources(tmp_path, 3, 2).close()
    (tmp_path / "b").rename(tmp_path / "gone")
    done = subprocess.run(
        [sys.executable, "-m", "embedops.cli", "sync", "--workspace", str(tmp_path / "ws"), "--json"],
        capture_output=True, text=True, env=CHILD_ENV,
    )
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["error"] == "SourceError" and out["failed"][0]["source"] == "b"
    assert out["result"]["added"] == 3
    assert "1 of 2 sources could not be read" in done.stderr and "embedops sync" in done.stderr
