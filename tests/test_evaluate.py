"""Eval sets, eval runs, comparisons, reports and hybrid search, end to end on real SQLite files.

The corpus is generated: every document carries three made-up words of its own,
and each query asks for one document's words, so the relevant document is
known and the hashing embedder (like BM25) finds it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytrec_eval
import sqlalchemy as sa
from typer.testing import CliRunner

from embedops import commands
from embedops.catalog import schema
from embedops.catalog.db import create_engine, ensure_schema, read_tx
from embedops.cli import app
from embedops.errors import ConfigError, NotFound, SearchError
from embedops.evaluate.report import build_report
from embedops.evaluate.runner import compare_evalset, compare_targets, run_evalset
from embedops.curate import CurateSettings
from embedops.curate.language import detect_query_languages
from embedops.evaluate.store import bound_evalsets, get_evalset, import_evalset, list_evalsets, load_evalset
from embedops.search.modes import fts_query, fuse
from embedops.workspace import Workspace

FILLER = "report study result method analysis sample group data effect level".split()
SYLLABLES = "ka lo mi nu pe ra si tu vo ze ba di fo gu".split()
N_DOCS = 40
N_QUERIES = 24


def _unique_words(rng: random.Random, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(4)))
    return sorted(words)


def make_beir(folder: Path, *, seed: int = 0) -> dict[str, list[str]]:
    """A BEIR folder: doc ``d{i}`` holds words ``w[i]``; query ``q{i}`` asks for them. Returns the words."""
    rng = random.Random(seed)
    vocab = _unique_words(rng, 3 * N_DOCS)
    words = {f"d{i}": vocab[3 * i : 3 * i + 3] for i in range(N_DOCS)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, (doc, own) in enumerate(words.items()):
            filler = " ".join(rng.choice(FILLER) for _ in range(12))
            kind = "faq" if i % 2 else "note"
            f.write(json.dumps({"_id": doc, "title": f"Title {i}", "text": f"{' '.join(own)} {filler}.",
                                "metadata": {"kind": kind}}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i in range(N_QUERIES):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(words[f"d{i}"][:2])}) + "\n")
        f.write(json.dumps({"_id": "q-train", "text": "a training split query"}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in range(N_QUERIES):
            f.write(f"q{i}\td{i}\t{2 if i % 3 == 0 else 1}\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq-train\td1\t1\n")
    return words


@pytest.fixture
def beir(tmp_path: Path) -> tuple[Path, dict[str, list[str]]]:
    folder = tmp_path / "beir"
    return folder, make_beir(folder)


@pytest.fixture
def ews(tmp_path: Path, beir: tuple[Path, dict[str, list[str]]]) -> Iterator[Workspace]:
    ws = Workspace.init(tmp_path / "ws", embedder="hashing")
    ws.add_source("corpus", beir[0], kind="beir")
    ws.sync()
    import_evalset(ws, "gen", beir[0])
    yield ws
    ws.close()


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- eval sets -------------------------------------------------------------------------
def test_import_is_versioned_and_idempotent(ews: Workspace, beir: tuple[Path, dict[str, list[str]]]) -> None:
    folder = beir[0]
    again = import_evalset(ews, "gen", folder)
    assert not again.created and again.info.version == 1
    assert again.info.queries == N_QUERIES  # the train split's query is not part of the test split
    qrels = folder / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text().replace("q0\td0\t2", "q0\td0\t1"))
    changed = import_evalset(ews, "gen", folder)
    assert changed.created and changed.info.version == 2
    with read_tx(ews.engine) as conn:
        assert load_evalset(conn, "gen@1").qrels["q0"] == {"d0": 2}  # the old version is kept, never overwritten
        assert load_evalset(conn, "gen").qrels["q0"] == {"d0": 1}
        assert [i.version for i in list_evalsets(conn)] == [1, 2]
        with pytest.raises(NotFound):
            get_evalset(conn, "gen@7")
    rebound = import_evalset(ews, "gen", folder, alias="prod")
    assert not rebound.created and rebound.info.alias == "prod"
    with read_tx(ews.engine) as conn:
        assert [i.label for i in bound_evalsets(conn, "prod")] == ["gen@2"]
    kinds = [r["kind"] for r in ews.history(kind="evalset")]
    assert kinds.count("evalset.import") == 2 and kinds.count("evalset.bind") == 1


def test_a_run_with_nothing_scorable_says_why(tmp_path: Path, beir: tuple[Path, dict[str, list[str]]]) -> None:
    with Workspace.init(tmp_path / "unsynced", embedder="hashing") as ws:
        ws.add_source("corpus", beir[0], kind="beir")
        imported = import_evalset(ws, "gen", beir[0])
        assert imported.check["scorable_queries"] == 0 and imported.check["documents"] == 0
        with pytest.raises(ConfigError, match="unknown document") as caught:
            run_evalset(ws, "gen")
        assert "embedops sync" in (caught.value.hint or "")


def test_import_needs_a_source_when_there_are_several(ews: Workspace, beir: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.md").write_text("# A\n\nSomething else.\n")
    ews.add_source("other", other)
    with pytest.raises(ConfigError, match="--source"):
        import_evalset(ews, "gen2", beir[0])
    ews.sync()
    result = import_evalset(ews, "gen2", beir[0], source="corpus")
    assert result.info.source == "corpus" and result.check["scorable_queries"] == N_QUERIES
    run = run_evalset(ews, "gen2", mode="hybrid")
    assert all(doc.startswith("d") for docs in run.run.values() for doc in docs)  # never the other source's ids


# -- runs --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_run_finds_the_known_documents(ews: Workspace, mode: str) -> None:
    run = run_evalset(ews, "gen", mode=mode, k=10)
    assert run.queries == N_QUERIES and not run.dropped
    assert {"ndcg@10", "recall@10", "precision@10", "mrr@10", "map"} <= set(run.metrics)
    assert run.metrics["recall@10"] == 1.0 and run.metrics["ndcg@10"] > 0.9
    # k distinct documents per query (BM25 returns only documents that share a word with the query)
    assert all(len(docs) == 10 if mode != "bm25" else 1 <= len(docs) <= 10 for docs in run.run.values())
    data = run.to_dict()
    assert data["queries"] == N_QUERIES and data["dropped"]["total"] == 0 and data["target"]["mode"] == mode


def test_a_rerun_reads_its_query_vectors_from_the_catalog_and_loads_no_model(
    ews: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_evalset(ews, "gen", k=10)
    hybrid = run_evalset(ews, "gen", k=10, mode="hybrid")

    def no_model(name: str) -> None:
        raise AssertionError(f"model {name} loaded: the query vectors should have come from the catalog")

    monkeypatch.setattr(ews, "embedder", no_model)
    again = run_evalset(ews, "gen", k=10)
    assert again.run == first.run and again.metrics == first.metrics
    assert run_evalset(ews, "gen", k=10, mode="hybrid").run == hybrid.run


def test_metrics_equal_pytrec_eval_on_the_run(ews: Workspace) -> None:
    run = run_evalset(ews, "gen", mode="hybrid", k=5)
    with read_tx(ews.engine) as conn:
        qrels = load_evalset(conn, "gen").qrels
    measures = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_5", "recall_5", "P_5", "map"}).evaluate(run.run)
    for qid, values in run.per_query.items():
        assert values["ndcg@5"] == pytest.approx(measures[qid]["ndcg_cut_5"], abs=1e-6)
        assert values["recall@5"] == pytest.approx(measures[qid]["recall_5"], abs=1e-6)
        assert values["precision@5"] == pytest.approx(measures[qid]["P_5"], abs=1e-6)
        assert values["map"] == pytest.approx(measures[qid]["map"], abs=1e-6)


def test_trec_run_file(ews: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run.trec"
    run = commands.eval_run(ews.root, name="gen", k=5, mode="vector", run_out=out)
    lines = [line.split() for line in out.read_text().splitlines()]
    assert len(lines) == sum(len(d) for d in run.run.values()) == 5 * N_QUERIES
    assert all(len(f) == 6 and f[1] == "Q0" and f[5] == lines[0][5] for f in lines)
    by_query: dict[str, list[list[str]]] = {}
    for f in lines:
        by_query.setdefault(f[0], []).append(f)
    for rows in by_query.values():
        assert [int(f[3]) for f in rows] == list(range(1, len(rows) + 1))
        scores = [float(f[4]) for f in rows]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
        assert all(f[2].startswith("d") for f in rows)  # the source's external ids
    assert by_query["q3"][0][2] == "d3"
    assert ews.history(kind="eval.run")[0]["details"]["queries"] == N_QUERIES


def test_segments_show_the_collapsed_segment(ews: Workspace, beir: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> None:
    words = beir[1]
    lines = []
    for i in range(12):
        broken = i >= 9  # these queries are judged against the wrong document
        relevant = f"d{(i + 20) % N_DOCS}" if broken else f"d{i}"
        lines.append(json.dumps({"id": f"j{i}", "query": " ".join(words[f"d{i}"]), "relevant_ids": [relevant],
                                 "topic": "broken" if broken else ("alpha" if i % 2 else "beta"),
                                 "language": "de" if i < 3 else "en"}))
    import_evalset(ews, "seg", write_jsonl(tmp_path / "seg.jsonl", lines))
    run = run_evalset(ews, "seg", segment_by="metadata.topic")
    assert set(run.segments) == {"alpha", "beta", "broken"} and run.segments["broken"]["n"] == 3
    assert run.worst_segment == "broken" and run.segments["broken"]["ndcg@10"] < 0.2
    assert run.metrics["ndcg@10"] > 0.6  # the mean looks fine; the segment does not
    by_language = run_evalset(ews, "seg", segment_by="language")  # declared metadata wins over detection
    assert {k: int(v["n"]) for k, v in by_language.segments.items()} == {"de": 3, "en": 9}
    by_doc = run_evalset(ews, "seg", segment_by="doc.kind")
    assert set(by_doc.segments) == {"faq", "note"}
    assert set(run_evalset(ews, "seg", segment_by="source").segments) == {"corpus"}
    with pytest.raises(ConfigError):
        run_evalset(ews, "seg", segment_by="colour")


def test_language_detection() -> None:
    texts = ["Wie viele Punkte hat die Verteidigung der Panthers abgegeben?",
             "How many points did the Panthers defense surrender?",
             "¿Cuántos puntos permitió la defensa de los Panthers?",
             "黑豹队的防守丢了多少分？", "12345"]
    assert detect_query_languages(texts) == ["de", "en", "es", "zh", "unknown"]


def test_query_languages_are_detected_with_the_ingests_candidates(
    ews: Workspace, beir: tuple[Path, dict[str, list[str]]], tmp_path: Path,
) -> None:
    """Query tags come from the detector the ingest uses: its candidates, so they compare with the stored tags."""
    words = beir[1]
    german = ["Wie viele Punkte hat die Verteidigung der Mannschaft im letzten Spiel abgegeben?",
              "Warum wandeln die Pflanzen das Licht in Zucker und Sauerstoff um?"]
    lines = [json.dumps({"id": f"g{i}", "query": text, "relevant_ids": [f"d{i}"]}) for i, text in enumerate(german)]
    lines += [json.dumps({"id": f"e{i}", "query": f"which documents mention {' '.join(words[f'd{i}'])} in the study?",
                          "relevant_ids": [f"d{i}"]}) for i in range(4)]
    import_evalset(ews, "langs", write_jsonl(tmp_path / "langs.jsonl", lines))
    assert set(run_evalset(ews, "langs", segment_by="language").labels.values()) == {"de", "en"}
    ews.settings.curate = CurateSettings(enabled=False, language_candidates=["en", "fr"])
    labels = run_evalset(ews, "langs", segment_by="language").labels
    assert set(labels.values()) <= {"en", "fr", "unknown"} and "de" not in labels.values()


def test_bad_input_is_counted_with_line_numbers(ews: Workspace, beir: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> None:
    words = beir[1]
    good = [json.dumps({"id": f"g{i}", "query": " ".join(words[f"d{i}"]), "relevant_ids": [f"d{i}"]}) for i in range(5)]
    lines = good + [
        "{not json",                                                                        # line 6: malformed
        json.dumps({"id": "g0", "query": "again", "relevant_ids": ["d1"]}),                 # 7: duplicate id
        json.dumps({"id": "u1", "query": "ghost", "relevant_ids": ["no-such-doc"]}),        # 8: unknown document
        json.dumps({"id": "u2", "query": "half", "relevant_ids": ["d7", "gone"]}),          # 9: one unknown judgment
        json.dumps({"id": "n1", "query": "nothing judged", "relevant_ids": []}),            # 10: no judgments
        json.dumps({"id": "m1", "query": "bad grades", "relevant_ids": ["d1"], "grades": [1, 2]}),  # 11: malformed
    ]
    imported = import_evalset(ews, "bad", write_jsonl(tmp_path / "bad.jsonl", lines))
    assert [p.line for p in imported.problems] == [6, 7, 11]
    run = run_evalset(ews, "bad")
    assert run.queries == 6  # g0..g4 and u2 (scored on d7)
    dropped = run.to_dict()["dropped"]
    assert dropped["total"] == 7
    assert dropped["by_reason"] == {"malformed line": 2, "duplicate id": 1, "unknown document": 2,
                                    "all relevant documents are unknown": 1, "no judgments": 1}
    lines_by_reason = {(d["reason"], d.get("doc_id")): d["line"] for d in dropped["items"]}
    assert lines_by_reason[("unknown document", "no-such-doc")] == 8
    assert lines_by_reason[("unknown document", "gone")] == 9
    assert lines_by_reason[("no judgments", None)] == 10
    assert lines_by_reason[("all relevant documents are unknown", None)] == 8


# -- comparison ----------------------------------------------------------------------------
def _second_index(ws: Workspace, embedder_name: str, chunker: str = "structured") -> str:
    """A second index, served by alias ``b`` so that a sync fills it."""
    embedder = ws.embedder(embedder_name)
    with ws.engine.begin() as conn:
        index = ws.create_index(conn, embedder_name, embedder, ws.make_chunker(chunker, {}, embedder))
        ws.set_alias(conn, "b", index.id)
    ws.sync()
    return index.id


def test_compare_targets(ews: Workspace) -> None:
    same = compare_targets(ews, "gen", "prod", "prod", n_boot=200, segment_by=None)
    assert same.delta == 0.0 and same.ties == N_QUERIES and same.p_value == 1.0
    other = _second_index(ews, "hashing:dims=16")  # a tiny space: worse retrieval
    cmp = compare_evalset(ews, "gen", "prod", "b", segment_by="doc.kind", n_boot=500)
    c = cmp.comparison
    assert c.n == N_QUERIES and c.wins + c.losses + c.ties == N_QUERIES
    assert c.delta < 0 and c.ci_low <= c.delta <= c.ci_high and c.losses > c.wins
    assert set(c.segments) == {"faq", "note"} and sum(s.n for s in c.segments.values()) == N_QUERIES
    assert cmp.run_b.target.index.id == other and cmp.run_a.target.alias == "prod"
    assert compare_targets(ews, "gen", "prod", other, n_boot=100, segment_by=None).delta == c.delta  # by index id
    modes = compare_evalset(ews, "gen", None, "prod", mode_a="vector", mode_b="bm25", n_boot=200, segment_by=None)
    assert modes.run_b.target.mode == "bm25" and modes.to_dict()["comparison"]["n"] == N_QUERIES
    with pytest.raises(NotFound):
        compare_targets(ews, "gen", "prod", "nope")


def test_report_is_self_contained(ews: Workspace, tmp_path: Path) -> None:
    single = commands.eval_report(ews.root, name="gen", out=tmp_path / "run.html", segment_by="doc.kind")
    ab = commands.eval_report(ews.root, name="gen", out=tmp_path / "ab.html", a="prod", b="prod", mode_b="bm25",
                              segment_by="doc.kind")
    for result in (single, ab):
        page = Path(result.path).read_text()
        assert "<svg" in page and "http://" not in page and "https://" not in page and "<script" not in page
        assert "ndcg@10" in page and "gen@1" in page
    assert ab.kind == "comparison" and "CI" in ab.summary and "wins" in ab.summary
    assert "ndcg@10" in single.summary
    report = build_report(run=run_evalset(ews, "gen"))
    assert report.html.startswith("<!DOCTYPE html>")


# -- hybrid / bm25 -----------------------------------------------------------------------------
def test_bm25_and_hybrid_search(ews: Workspace, beir: tuple[Path, dict[str, list[str]]]) -> None:
    words = beir[1]
    assert ews.search(words["d7"][2], k=3, mode="bm25")[0].document_id == "d7"
    hybrid = ews.search(" ".join(words["d8"]), k=5, mode="hybrid")
    assert hybrid[0].document_id == "d8" and len(hybrid) == 5
    assert [r.score for r in hybrid] == sorted((r.score for r in hybrid), reverse=True)
    for nasty in ['"unbalanced', "a AND (b OR", "NEAR(x y) -z ^*", "col:value", "'; DROP TABLE chunks; --"]:
        ews.search(nasty, k=3, mode="bm25")  # quoted terms: FTS5 syntax never errors
        ews.search(nasty, k=3, mode="hybrid")
    assert ews.search("?!", k=3, mode="bm25") == []
    assert fts_query('say "hi" (now)') == '"say" OR "hi" OR "now"'
    with pytest.raises(SearchError):
        ews.search("x", mode="semantic")


def test_fuse_is_reciprocal_rank_fusion(ews: Workspace, beir: tuple[Path, dict[str, list[str]]]) -> None:
    a = ews.search(beir[1]["d1"][0], k=3)
    b = list(reversed(a))
    fused = fuse([a, b], [1.0, 1.0], rrf_k=60)
    assert {r.chunk_id for r in fused} == {r.chunk_id for r in a}
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)


def test_bm25_only_searches_the_index_chunker(ews: Workspace, beir: tuple[Path, dict[str, list[str]]]) -> None:
    whole = _second_index(ews, "hashing", chunker="whole")
    word = beir[1]["d5"][0]
    for index in (whole, None):  # None: the alias, on the structured chunker
        results = ews.search(word, k=10, mode="bm25", index=index)
        chunkers = {r.tags["chunker"] for r in results}
        assert len(chunkers) == 1 and len({r.document_id for r in results}) == len(results)
    assert ews.search(word, k=10, mode="bm25", index=whole)[0].tags["chunker"].startswith("whole@")


def test_fts_stays_in_sync_with_edits_and_deletes(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe zanzibarx archipelago and its spice trade.\n")
    (docs / "b.md").write_text("# B\n\nThe quixotron engine hums along.\n")
    (docs / "c.md").write_text("# C\n\nPlain words about gardens.\n")
    with Workspace.init(tmp_path / "ws", embedder="hashing") as ws:
        ws.add_source("docs", docs)
        ws.sync()
        assert ws.search("zanzibarx", mode="bm25")[0].document_id == "a.md"
        (docs / "a.md").write_text("# A\n\nNow only quokkaz live here.\n")
        (docs / "b.md").unlink()
        ws.sync()
        assert ws.search("zanzibarx", mode="bm25") == []  # edited away
        assert ws.search("quixotron", mode="bm25") == []  # deleted
        assert ws.search("quokkaz", mode="bm25")[0].document_id == "a.md"
        with ws.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
            n_fts = conn.exec_driver_sql("SELECT count(*) FROM chunks_fts_docsize").scalar_one()
            n_chunks = conn.execute(sa.select(sa.func.count()).select_from(schema.chunks)).scalar_one()
        assert n_fts == n_chunks


# -- schema upgrade ------------------------------------------------------------------------------
V1_TABLES = ("meta", "sources", "documents", "chunkers", "chunks", "spaces", "embeddings", "indexes", "vectors",
             "vector_deletions", "aliases", "ledger")


def test_schema_upgrade_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    plain = sa.create_engine(f"sqlite:///{path}")
    with plain.begin() as conn:
        schema.metadata.create_all(conn, tables=[schema.metadata.tables[t] for t in V1_TABLES])
        conn.execute(sa.insert(schema.meta).values(key="schema_version", value="1"))
        conn.execute(sa.insert(schema.sources).values(id=1, name="docs", kind="folder", config={}, created_at=0.0))
        conn.execute(sa.insert(schema.documents).values(
            id=1, source_id=1, external_id="a.md", content_hash="h", text="t", metadata={}, ingested_at=0.0))
        conn.execute(sa.insert(schema.chunkers).values(key="whole@1#x", name="whole", version="1", params={}))
        conn.execute(sa.insert(schema.chunks).values(
            id=1, document_id=1, chunker_key="whole@1#x", ordinal=0, text="an old wombatz chunk", start=0, end=20,
            content_hash="c"))
    plain.dispose()
    engine = create_engine(f"sqlite:///{path}")
    assert ensure_schema(engine) == schema.SCHEMA_VERSION
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.chunks.c.text)).scalar_one() == "an old wombatz chunk"
        assert sa.inspect(conn).has_table("evalsets") and sa.inspect(conn).has_table("evalset_qrels")
        hits = conn.exec_driver_sql("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'wombatz'").scalars().all()
        assert hits == [1]  # chunks written before the upgrade are indexed
        upgrades = conn.execute(sa.select(schema.ledger.c.details).where(schema.ledger.c.kind == "catalog.upgrade")).scalars().all()
        assert {"schema_version": 2} in upgrades
    engine.dispose()


# -- CLI -------------------------------------------------------------------------------------------
def test_cli_eval_commands(ews: Workspace, beir: tuple[Path, dict[str, list[str]]], tmp_path: Path) -> None:
    runner = CliRunner()
    w = ["--workspace", str(ews.root)]
    result = runner.invoke(app, ["eval", "run", "gen", "--json", "--segment-by", "doc.kind", *w])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"metrics", "segments", "queries", "dropped"} <= set(data) and data["queries"] == N_QUERIES
    assert set(data["segments"]) == {"faq", "note"} and "ndcg@10" in data["metrics"]
    listed = json.loads(runner.invoke(app, ["eval", "list", "--json", *w]).stdout)
    assert [e["label"] for e in listed] == ["gen@1"]
    cmp = runner.invoke(app, ["eval", "compare", "gen", "--b", "prod", "--mode-b", "hybrid", "--segment-by", "none", "--json", *w])
    assert cmp.exit_code == 0, cmp.output
    assert "ci_low" in json.loads(cmp.stdout)["comparison"]
    search = runner.invoke(app, ["search", beir[1]["d2"][0], "--mode", "hybrid", "--json", *w])
    assert json.loads(search.stdout)[0]["document_id"] == "d2"
    missing = runner.invoke(app, ["eval", "run", "nope", *w])
    assert missing.exit_code != 0
