"""Curation wired into sync: decisions written with their documents, quarantine commands, language tags.

Every test builds its corpus here (no shared data); the database tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops.catalog import schema
from embedops.cli import app
from embedops.config import load_settings
from embedops.curate import CurateSettings
from embedops.errors import ConfigError, NotFound
from embedops.search.engine import Filters
from embedops.sources.base import Document
from embedops.sync.quarantine import NotQuarantined
from embedops.workspace import Workspace
from tests.test_workspace import check_invariant_2

EN = ("Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the chloroplasts of plant"
      " cells, and almost every food chain on land starts with it.")
DE = ("Die Photosynthese wandelt Licht, Wasser und Kohlendioxid in den Chloroplasten der Pflanzenzellen in Zucker"
      " und Sauerstoff um, und fast jede Nahrungskette an Land beginnt damit.")
ES = ("Las mareas suben y bajan dos veces al día porque la gravedad de la Luna atrae los océanos hacia ella y forma"
      " dos abultamientos de agua en lados opuestos de la Tierra.")
NEAR = EN.replace("sugar", "glucose")


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def curated(tmp_path: Path, database: str | None) -> Any:
    folder = tmp_path / "docs"
    write(folder, {"a.md": EN, "b.md": EN, "c.md": "Too short.", "d.md": DE, "e.md": NEAR, "f.md": ES})
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    ws.add_source("docs", folder)
    yield ws, folder
    ws.close()


def decisions(ws: Workspace) -> dict[str, tuple[str, str | None, str | None]]:
    """external id → (status, reason, canonical) of every live document with a decision."""
    d, cu = schema.documents, schema.curation
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.external_id, cu.c.status, cu.c.reason, cu.c.canonical)
                            .join(cu, cu.c.document_id == d.c.id).where(d.c.deleted_at.is_(None))).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def chunked(ws: Workspace) -> set[str]:
    """Live documents that have chunks."""
    d, c = schema.documents, schema.chunks
    with ws.engine.connect() as conn:
        return set(conn.execute(sa.select(d.c.external_id).join(c, c.c.document_id == d.c.id)
                                .where(d.c.deleted_at.is_(None))).scalars())


def check_counts(ws: Workspace) -> dict[str, Any]:
    """The status invariant: live + quarantined + deleted = seen, and the per-reason counts sum up."""
    status = ws.status()
    assert status["documents"] + status["quarantined_documents"] + status["deleted_documents"] == status["seen_documents"]
    assert sum(status["quarantined_by_reason"].values()) == status["quarantined_documents"]
    assert sum(status["documents_by_language"].values()) == status["documents"] - status["unchecked_documents"]
    assert sum(s["documents"] for s in status["sources"]) == status["documents"]
    return status


def test_only_kept_documents_are_chunked_and_embedded(curated: Any) -> None:
    ws, _ = curated
    result = ws.sync()
    assert result.counts.added == 6 and result.counts.quarantined == 3
    assert decisions(ws) == {
        "a.md": ("kept", None, None), "b.md": ("quarantined", "duplicate", "a.md"), "c.md": ("quarantined", "too_short", None),
        "d.md": ("kept", None, None), "e.md": ("quarantined", "near_duplicate", "a.md"), "f.md": ("kept", None, None),
    }
    assert chunked(ws) == {"a.md", "d.md", "f.md"}  # nothing of a quarantined document reaches the embedder
    status = check_counts(ws)
    assert (status["documents"], status["quarantined_documents"], status["seen_documents"]) == (3, 3, 6)
    assert status["quarantined_by_reason"] == {"duplicate": 1, "near_duplicate": 1, "too_short": 1}
    assert status["documents_by_language"] == {"de": 1, "en": 1, "es": 1}
    assert status["indexes"][0]["vectors"] == status["chunks"]
    check_invariant_2(ws)
    again = ws.sync()
    assert again.counts.embedded == 0 and again.counts.quarantined == 0 and again.counts.rechecked == 0


def test_language_tags_filter_search_and_tag_chunks(curated: Any) -> None:
    ws, _ = curated
    ws.sync()
    hits = ws.search("Pflanzenzellen Zucker", k=5, filters=Filters(metadata={"lang": "de"}))
    assert [h.document_id for h in hits] == ["d.md"]
    assert {h.document_id for h in ws.search("photosynthesis", k=5, filters=Filters(metadata={"lang": "en"}))} == {"a.md"}
    assert ws.filter_notes(Filters(metadata={"lang": "fr"})) == []  # the key exists: no "no document has it" note
    c = schema.chunks
    with ws.engine.connect() as conn:
        tags = [m.get("lang") for m in conn.execute(sa.select(c.c.metadata)).scalars()]
    assert tags and set(tags) <= {"en", "de", "es"}


def test_deleting_a_canonical_document_re_elects_its_copy(curated: Any) -> None:
    ws, folder = curated
    ws.sync()
    (folder / "a.md").unlink()
    result = ws.sync()
    assert result.counts.deleted == 1 and result.counts.rechecked == 2 and result.counts.embedded == 0
    assert decisions(ws)["b.md"] == ("kept", None, None)  # the oldest copy (ties: smallest id) takes over
    assert decisions(ws)["e.md"][1:] == ("near_duplicate", "b.md")
    assert chunked(ws) == {"b.md", "d.md", "f.md"}
    check_invariant_2(ws)
    status = check_counts(ws)
    assert (status["documents"], status["quarantined_documents"], status["deleted_documents"]) == (3, 2, 1)


def test_an_update_that_becomes_a_copy_loses_its_vectors(curated: Any) -> None:
    ws, folder = curated
    ws.sync()
    (folder / "f.md").write_text(EN, encoding="utf-8")
    result = ws.sync()
    assert result.counts.updated == 1 and result.counts.quarantined == 1
    assert decisions(ws)["f.md"] == ("quarantined", "duplicate", "a.md")
    assert "f.md" not in chunked(ws)
    check_invariant_2(ws)
    check_counts(ws)


def test_sync_plan_says_what_would_be_quarantined_and_writes_nothing(curated: Any) -> None:
    ws, _ = curated
    plan = ws.sync(plan_only=True)
    assert plan.sources[0]["quarantined"] == {"duplicate": 1, "near_duplicate": 1, "too_short": 1}
    assert plan.counts.quarantined == 3 and decisions(ws) == {}
    embedded = ws.sync().counts.embedded
    assert plan.chunks_to_embed == embedded  # the estimate leaves the quarantined documents out


def test_release_embeds_a_document_and_curation_leaves_it_alone(curated: Any) -> None:
    ws, folder = curated
    ws.sync()
    planned = ws.release("c.md", plan_only=True)
    assert planned.entry.reason == "too_short" and "c.md" not in chunked(ws)
    ws.release("c.md")
    assert "c.md" in chunked(ws) and decisions(ws)["c.md"] == ("released", "too_short", None)
    check_invariant_2(ws)
    ledger = ws.history(kind="curate.release")
    assert [r["details"]["document"] for r in ledger] == ["c.md"]
    with pytest.raises(NotQuarantined):
        ws.release("c.md")
    with pytest.raises(NotQuarantined):
        ws.release("a.md")
    with pytest.raises(NotFound):
        ws.release("nope.md")
    ws.release("b.md")  # a released copy is not re-checked when its canonical document goes
    (folder / "a.md").unlink()
    ws.sync()
    assert decisions(ws)["b.md"][0] == "released" and "b.md" in chunked(ws)
    status = check_counts(ws)
    assert status["released_documents"] == 2
    (folder / "c.md").write_text("Still short.", encoding="utf-8")  # changed content: checked again
    ws.sync()
    assert decisions(ws)["c.md"] == ("quarantined", "too_short", None) and "c.md" not in chunked(ws)
    check_invariant_2(ws)


def test_pushed_documents_are_curated(tmp_path: Path, database: str | None) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    ws.add_source("events", kind="push")
    result = ws.upsert_documents("events", [Document("1", EN), Document("2", EN), Document("3", "hi"),
                                            Document("4", ES, {"lang": "it"})])
    assert result.sources[0]["documents"] == {"1": "added", "2": "quarantined", "3": "quarantined", "4": "added"}
    assert ws.status()["documents_by_language"] == {"en": 1, "it": 1}  # a declared lang is taken as it is
    assert chunked(ws) == {"1", "4"}
    ws.delete_documents("events", ["1"])
    assert decisions(ws)["2"] == ("kept", None, None) and chunked(ws) == {"2", "4"}
    check_invariant_2(ws)
    check_counts(ws)
    ws.close()


def test_curation_off_embeds_everything_and_turning_it_on_checks_what_is_there(tmp_path: Path, database: str | None) -> None:
    folder = tmp_path / "docs"
    write(folder, {"a.md": EN, "b.md": EN, "c.md": DE})
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database)
    assert ws.settings.curation is None
    ws.add_source("docs", folder)
    first = ws.sync()
    assert first.counts.quarantined == 0 and chunked(ws) == {"a.md", "b.md", "c.md"} and decisions(ws) == {}
    assert ws.status()["unchecked_documents"] == 3
    ws.settings.curate = CurateSettings()
    ws.settings.save()
    ws.reload_settings()
    on = ws.sync()
    assert on.counts.rechecked == 3 and on.counts.quarantined == 1 and on.counts.embedded == 0  # vectors from the cache
    assert decisions(ws)["b.md"] == ("quarantined", "duplicate", "a.md") and chunked(ws) == {"a.md", "c.md"}
    check_invariant_2(ws)
    status = check_counts(ws)
    assert status["unchecked_documents"] == 0
    ws.settings.curate = CurateSettings(enabled=False)
    ws.settings.save()
    ws.reload_settings()
    (folder / "b.md").write_text(EN + " Changed.", encoding="utf-8")  # changed while off: embedded, decision dropped
    ws.sync()
    assert "b.md" in chunked(ws) and "b.md" not in decisions(ws)
    check_counts(ws)
    ws.close()


def fail_vector_write(ws: Workspace, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The ``n``-th vector write of ``ws``'s store raises (a batch's transaction failing mid-way)."""
    calls = {"n": 0}
    original = ws.store.write

    def failing_write(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(ws.store, "write", failing_write)

def test_a_failed_batch_writes_no_decision_and_the_next_sync_completes(curated: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _ = curated
    ws.settings.batch_size = 2
    fail_vector_write(ws, monkeypatch, 2)  # the second batch's transaction fails mid-way
    with pytest.raises(RuntimeError):
        ws.sync()
    d = schema.documents
    with ws.engine.connect() as conn:
        stored = set(conn.execute(sa.select(d.c.external_id)).scalars())
    assert set(decisions(ws)) == stored  # every stored document has its decision; the failed batch left neither
    monkeypatch.undo()
    ws.sync()
    assert set(decisions(ws)) == {"a.md", "b.md", "c.md", "d.md", "e.md", "f.md"}
    assert chunked(ws) == {"a.md", "d.md", "f.md"}
    check_invariant_2(ws)
    check_counts(ws)


def test_curate_table_is_read_validated_and_written(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", curate=True)
    ws.close()
    config = tmp_path / "ws" / "embedops.toml"
    assert "[curate]\nenabled = true" in config.read_text()
    text = config.read_text().replace("enabled = true", "enabled = true\nmin_words = 20\nallowed_languages = [\"en\"]")
    config.write_text(text)
    settings = load_settings(tmp_path / "ws")
    assert settings.curation is not None and settings.curation.min_words == 20
    settings.save()
    assert load_settings(tmp_path / "ws").curate == settings.curate  # kept through a rewrite of the file
    config.write_text(text.replace("min_words = 20", "min_words = -1"))
    with pytest.raises(ConfigError, match=r"\[curate\] min_words"):
        load_settings(tmp_path / "ws")
    config.write_text(text.replace("min_words = 20", "enabled = false"))
    with pytest.raises(ConfigError):  # a key given twice is invalid TOML
        load_settings(tmp_path / "ws")
    config.write_text(text.replace("enabled = true", "enabled = false"))
    assert load_settings(tmp_path / "ws").curation is None
    config.write_text("\n".join(line for line in text.splitlines()
                                if not line.startswith(("[curate]", "enabled", "min_words", "allowed_languages"))))
    assert load_settings(tmp_path / "ws").curate is None  # no table: off, as before curation existed


def run(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def test_quarantine_commands(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write(folder, {"a.md": EN, "b.md": EN, "c.md": "Too short.", "e.md": NEAR})
    ws = str(tmp_path / "ws")
    code, init = run("init", ws, "--embedder", "hashing", "--json")
    assert code == 0 and init["curate"] is True  # `embedops init` curates new workspaces
    assert run("source", "add", "docs", str(folder), "--workspace", ws, "--json")[0] == 0
    code, synced = run("sync", "--workspace", ws, "--json")
    assert code == 0 and synced["quarantined"] == 3
    code, listed = run("quarantine", "list", "--workspace", ws, "--json")
    assert code == 0 and sorted(e["document"] for e in listed) == ["b.md", "c.md", "e.md"]
    code, near = run("quarantine", "list", "--reason", "near_duplicate", "--workspace", ws, "--json")
    assert [e["document"] for e in near] == ["e.md"]
    assert run("quarantine", "list", "--reason", "nonsense", "--workspace", ws, "--json")[0] == 1
    code, shown = run("quarantine", "show", "e.md", "--workspace", ws, "--json")
    assert code == 0 and shown["canonical"] == "a.md" and shown["reason"] == "near_duplicate"
    finding = shown["findings"][0]
    assert finding["value"] >= finding["limit"] == 0.5 and "a.md" in finding["detail"]
    code, missing = run("quarantine", "show", "zz.md", "--workspace", ws, "--json")
    assert code == NotFound.exit_code and missing["error"] == "NotFound"
    code, planned = run("quarantine", "release", "c.md", "--plan", "--workspace", ws, "--json")
    assert code == 0 and planned["plan"] is True and planned["reason"] == "too_short"
    assert run("quarantine", "list", "--workspace", ws, "--json")[1][1]["document"] == "c.md"  # --plan changed nothing
    code, released = run("quarantine", "release", "c.md", "--workspace", ws, "--json")
    assert code == 0 and released["plan"] is False
    code, listed = run("quarantine", "list", "--workspace", ws, "--json")
    assert sorted(e["document"] for e in listed) == ["b.md", "e.md"]
    code, everything = run("quarantine", "list", "--released", "--workspace", ws, "--json")
    assert {e["document"]: e["status"] for e in everything}["c.md"] == "released"
    code, status = run("status", "--workspace", ws, "--json")
    assert status["quarantined_by_reason"] == {"duplicate": 1, "near_duplicate": 1}
    assert status["documents"] + status["quarantined_documents"] + status["deleted_documents"] == status["seen_documents"] == 4
    other = tmp_path / "other"
    write(other, {"c.md": "Also short."})  # the same id in a second source: --source tells them apart
    assert run("source", "add", "other", str(other), "--workspace", ws, "--json")[0] == 0
    assert run("sync", "--workspace", ws, "--json")[0] == 0
    code, ambiguous = run("quarantine", "show", "c.md", "--workspace", ws, "--json")
    assert code == 1 and "--source" in ambiguous["hint"]
    code, shown = run("quarantine", "show", "c.md", "--source", "other", "--workspace", ws, "--json")
    assert code == 0 and (shown["source"], shown["status"]) == ("other", "quarantined")
    code, only = run("quarantine", "list", "--source", "other", "--workspace", ws, "--json")
    assert [(e["source"], e["document"]) for e in only] == [("other", "c.md")]
    assert run("quarantine", "release", "c.md", "--source", "other", "--workspace", ws, "--json")[0] == 0
    code, _ = run("init", str(tmp_path / "off"), "--embedder", "hashing", "--no-curate", "--json")
    assert code == 0 and load_settings(tmp_path / "off").curation is None


def test_new_shingling_parameters_recompute_the_stored_signatures(curated: Any) -> None:
    ws, _ = curated
    ws.sync()
    assert ws.sync().counts.rechecked == 0  # a no-op sync decides nothing again
    assert ws.settings.curate is not None
    ws.settings.curate.num_perm = 64
    result = ws.sync()
    assert result.counts.rechecked == 5 and result.counts.embedded == 0  # the 3 kept and the 2 copies of a.md
    cu = schema.curation
    with ws.engine.connect() as conn:
        sizes = set(conn.execute(sa.select(sa.func.length(cu.c.signature)).where(cu.c.status == "kept")).scalars())
    assert sizes == {12 + 4 * 64}
    assert decisions(ws)["e.md"][1:] == ("near_duplicate", "a.md")
    assert ws.sync().counts.rechecked == 0


# -- duplicates across sources ([curate] scope) ---------------------------------------------------
def two_sources(tmp_path: Path, database: str | None, scope: str = "workspace") -> Workspace:
    """Source ``docs`` (added first) and source ``wiki``, which holds an exact and a near copy of docs/a.md."""
    write(tmp_path / "docs", {"a.md": EN, "d.md": DE})
    write(tmp_path / "wiki", {"x.md": EN, "y.md": NEAR, "z.md": ES})
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    assert ws.settings.curate is not None and ws.settings.curate.scope == "workspace"  # the default
    ws.settings.curate.scope = scope  # type: ignore[assignment]
    ws.add_source("docs", tmp_path / "docs")
    ws.add_source("wiki", tmp_path / "wiki")
    return ws


def test_a_copy_in_another_source_is_a_duplicate_of_the_first_sources_document(tmp_path: Path, database: str | None) -> None:
    from embedops import commands

    ws = two_sources(tmp_path, database)
    result = ws.sync()
    assert result.counts.quarantined == 2
    assert decisions(ws) == {
        "a.md": ("kept", None, None), "d.md": ("kept", None, None), "x.md": ("quarantined", "duplicate", "a.md"),
        "y.md": ("quarantined", "near_duplicate", "a.md"), "z.md": ("kept", None, None),
    }  # one sync: the copies tie on first seen, and the source added first keeps its document
    assert chunked(ws) == {"a.md", "d.md", "z.md"}
    shown = commands.quarantine_show(ws.root, document="x.md")
    assert (shown.source, shown.canonical_source, shown.canonical) == ("wiki", "docs", "a.md")
    assert shown.findings[0]["detail"] == "same text as docs/a.md"
    out = CliRunner().invoke(app, ["quarantine", "show", "y.md", "-w", str(ws.root)]).output
    assert "canonical document: docs/a.md" in out and "with docs/a.md" in out
    status = check_counts(ws)
    assert (status["documents"], status["quarantined_documents"], status["seen_documents"]) == (3, 2, 5)
    check_invariant_2(ws)
    assert ws.sync().counts.rechecked == 0  # incremental: nothing changed, nothing decided again

    # Deleting the canonical document promotes its oldest copy, in the other source: a sync of docs alone
    # re-checks wiki's documents too (the copy is embedded, the near copy relinked to it).
    (tmp_path / "docs" / "a.md").unlink()
    promoted = ws.sync(source="docs")
    assert promoted.counts.deleted == 1 and promoted.counts.rechecked == 2
    assert decisions(ws) == {
        "d.md": ("kept", None, None), "x.md": ("kept", None, None),
        "y.md": ("quarantined", "near_duplicate", "x.md"), "z.md": ("kept", None, None),
    }
    assert commands.quarantine_show(ws.root, document="y.md").canonical_source == "wiki"
    assert chunked(ws) == {"d.md", "x.md", "z.md"}
    status = check_counts(ws)
    assert (status["documents"], status["quarantined_documents"], status["deleted_documents"]) == (3, 1, 1)
    check_invariant_2(ws)
    assert ws.sync().counts.rechecked == 0
    ws.close()


def test_a_sync_killed_before_re_electing_in_another_source_is_finished_by_the_next_no_op_sync(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from embedops.sync.run import SyncRunner

    ws = two_sources(tmp_path, database)
    ws.sync()
    (tmp_path / "docs" / "a.md").unlink()
    run = SyncRunner.run

    def killed_in_wiki(self: SyncRunner, source_id: int, plan: Any) -> Any:
        if plan.source == "wiki":  # the deletion in docs is committed; the copies in wiki are not re-elected
            raise KeyboardInterrupt
        return run(self, source_id, plan)

    monkeypatch.setattr(SyncRunner, "run", killed_in_wiki)
    with pytest.raises(KeyboardInterrupt):
        ws.sync()
    monkeypatch.undo()
    assert decisions(ws)["x.md"] == ("quarantined", "duplicate", "a.md") and "a.md" not in decisions(ws)
    again = ws.sync()  # nothing changed in any source: the orphaned copies alone bring the curator back
    assert again.counts.rechecked == 2 and decisions(ws)["x.md"] == ("kept", None, None)
    assert decisions(ws)["y.md"] == ("quarantined", "near_duplicate", "x.md")
    check_counts(ws)
    check_invariant_2(ws)
    assert ws.sync().counts.rechecked == 0
    ws.close()


def test_scope_source_compares_each_source_only_with_itself(tmp_path: Path, database: str | None) -> None:
    ws = two_sources(tmp_path, database, scope="source")
    ws.sync()
    assert decisions(ws) == {
        "a.md": ("kept", None, None), "d.md": ("kept", None, None), "x.md": ("kept", None, None),
        "y.md": ("quarantined", "near_duplicate", "x.md"), "z.md": ("kept", None, None),
    }
    check_counts(ws)
    check_invariant_2(ws)
    ws.close()
    with pytest.raises(ConfigError, match="scope must be one of workspace, source"):
        CurateSettings.from_toml({"scope": "tenant"})


def test_a_push_deleting_the_canonical_document_promotes_its_copy_in_another_source(
    tmp_path: Path, database: str | None,
) -> None:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    ws.add_source("events", kind="push")
    ws.add_source("mirror", kind="push")
    ws.upsert_documents("events", [Document("e1", EN), Document("e2", DE)])
    copied = ws.upsert_documents("mirror", [Document("m1", EN), Document("m2", ES)])
    assert copied.sources[0]["documents"] == {"m1": "quarantined", "m2": "added"}
    assert decisions(ws)["m1"] == ("quarantined", "duplicate", "e1")
    result = ws.delete_documents("events", ["e1"])
    assert result.counts.deleted == 1 and result.counts.rechecked == 1
    assert decisions(ws)["m1"] == ("kept", None, None) and chunked(ws) == {"e2", "m1", "m2"}
    check_counts(ws)
    check_invariant_2(ws)
    ws.close()


def test_doc_lang_segments_an_eval_run_by_the_judged_documents_language(curated: Any) -> None:
    from embedops.evaluate.runner import run_evalset
    from embedops.evaluate.store import import_evalset

    ws, folder = curated
    ws.sync()
    lines = [{"id": "q1", "query": "plants make sugar from light", "relevant_ids": ["a.md"]},
             {"id": "q2", "query": "Zucker aus Licht", "relevant_ids": ["d.md"]},
             {"id": "q3", "query": "why tides", "relevant_ids": ["f.md"]},
             {"id": "q4", "query": "light and water", "relevant_ids": ["a.md"]}]
    path = folder.parent / "queries.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    import_evalset(ws, "langs", path, source="docs")
    run = run_evalset(ws, "langs", segment_by="doc.lang")
    assert {k: int(v["n"]) for k, v in run.segments.items()} == {"de": 1, "en": 2, "es": 1}


def test_quarantine_output_prints_document_text_literally(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    write(folder, {"a.md": EN, "b\x1b[2J.md": EN})
    ws = str(tmp_path / "ws")
    runner = CliRunner()
    assert runner.invoke(app, ["init", ws, "--embedder", "hashing"]).exit_code == 0
    runner.invoke(app, ["source", "add", "docs", str(folder), "-w", ws])
    runner.invoke(app, ["sync", "-w", ws])
    for args in (["quarantine", "list"], ["quarantine", "show", "b\x1b[2J.md"]):
        result = runner.invoke(app, [*args, "-w", ws])
        assert result.exit_code == 0 and "\x1b" not in result.stdout and "\\x1b[2J" in result.stdout, result.stdout


def test_a_curated_sync_survives_kill_9_between_batches(tmp_path: Path, database: str | None) -> None:
    """Invariant 4 with curation: kill -9 after a random batch commit, sync again: every document has a
    decision, each distinct text is kept exactly once, nothing quarantined has a vector, counts add up."""
    import os
    import random
    import subprocess
    import sys
    import time

    from tests.conftest import sentence, write_corpus
    from tests.test_crash import batches_since, run_and_kill

    folder = tmp_path / "docs"
    write_corpus(folder, 60, seed=3)
    rng = random.Random(5)
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", database=database, curate=True)
    ws.settings.batch_size = 4  # many commit boundaries to land between
    ws.settings.save()
    ws.add_source("docs", folder)
    ws.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "embedops.cli", "sync", "--workspace", str(tmp_path / "ws"), "--json"]

    def mutate() -> None:  # copies of live files, deleted originals (re-elections), stubs, edits
        files = sorted(p for p in folder.rglob("*.md"))
        for path in rng.sample(files, k=12):
            (folder / f"copy{rng.randrange(10**9)}.md").write_text(path.read_text(), encoding="utf-8")
        for path in rng.sample(files, k=6):
            path.unlink()
        for _ in range(3):
            (folder / f"stub{rng.randrange(10**9)}.md").write_text("Short.", encoding="utf-8")
        for path in rng.sample(sorted(folder.rglob("*.md")), k=4):
            path.write_text(path.read_text() + f"\nEdited {rng.randrange(10**9)} " + sentence(rng) + "\n", encoding="utf-8")

    def after_a_batch(proc: subprocess.Popen[bytes], mark: int) -> None:
        wanted = rng.randint(1, 4)
        while proc.poll() is None and batches_since(watcher, mark) < wanted:
            time.sleep(0.005)

    subprocess.run(cmd, env=env, check=True, capture_output=True)
    killed = 0
    with Workspace.open(tmp_path / "ws") as watcher:
        for trial in range(3):
            mutate()
            killed += run_and_kill(watcher, cmd, env, after_a_batch)
            with Workspace.open(tmp_path / "ws") as ws:
                ws.sync()
                check_invariant_2(ws)
                status = check_counts(ws)
                assert status["unchecked_documents"] == 0, f"trial {trial}"
                decided = decisions(ws)
                kept = {ext for ext, (state, _, _) in decided.items() if state == "kept"}
                assert chunked(ws) == kept, f"trial {trial}: quarantined documents with chunks, or kept ones without"
                by_text: dict[str, list[str]] = {}
                for path in folder.rglob("*.md"):
                    if path.read_text() != "Short.":
                        by_text.setdefault(path.read_text(), []).append(path.relative_to(folder).as_posix())
                for ids in by_text.values():  # at most one kept copy per distinct text, the others link to it
                    mine = set(ids) & kept
                    assert len(mine) <= 1, (trial, ids)
                    if mine:
                        canonical = next(iter(mine))
                        assert all(decided[i] == ("quarantined", "duplicate", canonical) for i in ids if i != canonical)
                for ext, (state, reason, canonical) in decided.items():  # a copy links to a live, kept document
                    assert (canonical in kept) == (reason in ("duplicate", "near_duplicate")), (trial, ext, reason)
                    assert (state == "kept") == (reason is None), (trial, ext, state)
                again = ws.sync()
                assert again.counts.embedded == again.counts.quarantined == again.counts.rechecked == 0
    assert killed >= 2, f"only {killed} of 3 syncs were killed before they ended"


def test_http_pushes_are_curated_and_metrics_count_the_quarantine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from embedops.server import ServerConfig, create_app

    with Workspace.init(tmp_path / "ws", embedder="hashing", curate=True) as ws:
        ws.add_source("events", kind="push")
    monkeypatch.setenv("EMBEDOPS_TOKEN", "tok")
    auth = {"Authorization": "Bearer tok"}
    with TestClient(create_app(tmp_path / "ws", ServerConfig())) as client:
        first = client.put("/sources/events/documents/a", json={"text": EN}, headers=auth)
        copy = client.put("/sources/events/documents/b", json={"text": EN}, headers=auth)
        assert (first.json()["result"], copy.json()["result"]) == ("added", "quarantined")
        status = client.get("/status").json()
        assert status["quarantined_by_reason"] == {"duplicate": 1} and status["documents"] == 1
        assert 'embedops_quarantined_documents{reason="duplicate"} 1' in client.get("/metrics").text


GERMAN = [
    "Die Photosynthese wandelt Licht, Wasser und Kohlendioxid in den Chloroplasten der Pflanzenzellen in Zucker um.",
    "Im Herbst verlieren viele Laubbäume ihre Blätter, weil die Tage kürzer werden und das Wasser im Boden gefriert.",
    "Bienen sammeln Nektar und Pollen von Blüten und tragen dabei zur Bestäubung zahlreicher Nutzpflanzen bei.",
    "Der Rhein entspringt in den Schweizer Alpen und fließt durch mehrere Länder, bevor er in die Nordsee mündet.",
    "Gletscher speichern einen großen Teil des Süßwassers der Erde und schmelzen in warmen Sommern immer schneller.",
    "Moose wachsen an schattigen, feuchten Orten und können lange Trockenzeiten in einer Art Starre überstehen.",
    "Viele Zugvögel fliegen im Winter nach Süden und orientieren sich dabei am Magnetfeld und an den Sternen.",
    "Eichen können mehrere hundert Jahre alt werden und bieten unzähligen Insekten und Vögeln einen Lebensraum.",
    "Im Wattenmeer leben Würmer, Muscheln und Krebse, die bei Ebbe von vielen hungrigen Vögeln gesucht werden.",
    "Pilze zersetzen abgestorbenes Holz und Laub und geben die Nährstoffe so an den Boden des Waldes zurück.",
]
ENGLISH = [
    "The tides rise and fall twice a day because the Moon's gravity pulls the oceans into two bulges.",
    "Volcanoes form where molten rock from deep inside the Earth finds a way up through cracks in the crust.",
    "Coral reefs are built by tiny animals that take calcium from seawater to grow hard skeletons around them.",
    "Earthquakes happen when stress that has built up along a fault is released in a sudden slip of the rocks.",
    "Rainbows appear when sunlight is bent and reflected inside raindrops, splitting white light into colours.",
    "Deserts can be cold as well as hot; what makes a desert is how little rain falls there over a year.",
]


def test_chunks_past_the_measured_start_of_a_document_get_their_own_tag(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    text = "\n\n".join(GERMAN) + "\n\n" + "\n\n".join(ENGLISH) + "\n"
    write(folder, {"mixed.md": text})
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", curate=True)
    ws.settings.chunker_params = {"max_tokens": 40, "tokenizer": "regex"}
    ws.add_source("docs", folder)
    ws.sync()
    c = schema.chunks
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(c.c.start, c.c.metadata).order_by(c.c.ordinal)).all()
    tags = [(start >= 1000, meta["lang"]) for start, meta in rows]
    assert len(rows) > 3 and decisions(ws)["mixed.md"][0] == "kept"
    assert {tag for early, tag in tags if not early} == {"de"}  # the document's tag, measured on its start
    assert tags[-1] == (True, "en")  # detected on its own
    ws.close()


def test_turning_near_duplicates_on_checks_the_kept_documents_again(curated: Any) -> None:
    ws, _ = curated
    assert ws.settings.curate is not None
    ws.settings.curate.rules = [r for r in ws.settings.curate.rules if r != "near_duplicate"]
    ws.sync()
    assert decisions(ws)["e.md"] == ("kept", None, None)  # no near-duplicate rule: the edited copy is kept
    ws.settings.curate.rules.append("near_duplicate")
    result = ws.sync()
    assert result.counts.quarantined == 1 and decisions(ws)["e.md"] == ("quarantined", "near_duplicate", "a.md")
    assert "e.md" not in chunked(ws)
    check_invariant_2(ws)
    assert ws.sync().counts.rechecked == 0
