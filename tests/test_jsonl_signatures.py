"""JSONL line signatures: an unchanged line is answered Unchanged without being parsed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.sources.base import Document, Skipped, SourceItem, Unchanged
from embedops.sources.beir import BeirSource
from embedops.sources.jsonl import JsonlSource
from embedops.workspace import Workspace


def write_lines(path: Path, records: list[dict[str, object]], newline: str = "\n") -> Path:
    path.write_text("".join(json.dumps(r) + newline for r in records), encoding="utf-8")
    return path


def known_of(items: list[SourceItem]) -> dict[str, str | None]:
    return {i.external_id: i.signature for i in items if isinstance(i, Document)}


def kinds(items: list[SourceItem]) -> list[tuple[str, str]]:
    return [(type(i).__name__, i.external_id) for i in items]


RECORDS: list[dict[str, object]] = [
    {"id": "a", "title": "Alpha", "text": "first record"},
    {"id": 2, "title": "Beta", "text": "second record"},
    {"id": "c", "title": "Gamma", "text": "third record"},
]


def test_unchanged_lines_are_not_parsed_and_edits_are(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", RECORDS)
    source = JsonlSource("r", path, title_field="title")
    first = list(source.scan({}))
    assert all(isinstance(i, Document) and i.signature for i in first)
    assert list(source.scan({})) == first  # signatures are stable
    edited = [dict(r) for r in RECORDS]
    edited[2]["text"] = "third record, edited"
    write_lines(path, edited, newline="\r\n")  # line endings are not content
    again = list(source.scan(known_of(first)))
    assert kinds(again) == [("Unchanged", "a"), ("Unchanged", "2"), ("Document", "c")]
    assert isinstance(again[2], Document) and again[2].text == "Gamma third record, edited"


def test_other_options_sign_differently(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", RECORDS)
    known = known_of(list(JsonlSource("r", path, title_field="title").scan({})))
    untitled = list(JsonlSource("r", path).scan(known))
    assert all(isinstance(i, Document) for i in untitled)
    assert untitled[0].text == "first record"  # type: ignore[union-attr]
    # The BEIR dialect builds other texts from the same lines: its own signatures.
    beir_lines = write_lines(tmp_path / "corpus.jsonl", [{"_id": "a", "title": "T", "text": "x"}])
    assert JsonlSource("r", beir_lines, id_field="_id").scan({}).__next__().signature != (
        BeirSource("r", beir_lines).scan({}).__next__().signature  # type: ignore[union-attr]
    )


def test_lines_are_matched_by_signature_not_by_reading_their_id(tmp_path: Path) -> None:
    records: list[dict[str, object]] = [
        {"meta": {"id": "b"}, "id": "a", "text": "a nested id comes first"},
        {"id": "b", "text": "the real b"},
        {"id": "q\"uote", "text": "an escaped id"},
    ]
    path = write_lines(tmp_path / "r.jsonl", records)
    source = JsonlSource("r", path)
    first = list(source.scan({}))
    assert kinds(list(source.scan(known_of(first)))) == [("Unchanged", "a"), ("Unchanged", "b"), ("Unchanged", 'q"uote')]


def test_a_repeated_unchanged_line_is_still_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    line = json.dumps({"id": "a", "text": "same"}) + "\n"
    path.write_text(line)
    known = known_of(list(JsonlSource("r", path).scan({})))
    path.write_text(line + line)
    items = list(JsonlSource("r", path).scan(known))
    assert kinds(items) == [("Unchanged", "a"), ("Skipped", "r.jsonl:line 2")]
    assert isinstance(items[1], Skipped) and "duplicate id 'a'" in items[1].reason


def test_gzip_lines_are_signed_too(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in RECORDS)
    source = JsonlSource("r", path)
    known = known_of(list(source.scan({})))
    assert all(isinstance(i, Unchanged) for i in source.scan(known))


def test_sync_signs_old_catalog_rows_once_and_then_skips_parsing(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", [{"id": f"d{i}", "text": f"document number {i}"} for i in range(40)])
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("r", path, kind="jsonl")
    assert ws.sync().counts.added == 40
    d = schema.documents
    with ws.engine.begin() as conn:  # a catalog written before records were signed
        conn.execute(sa.update(d).values(signature=None))
    resync = ws.sync()
    assert (resync.counts.unchanged, resync.counts.updated, resync.counts.embedded) == (40, 0, 0)
    with ws.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(d.c.external_id, d.c.signature)).all())
    assert None not in stored.values()
    assert all(isinstance(i, Unchanged) for i in JsonlSource("r", path).scan(stored))
    ws.close()
