"""Curation: settings, text units, quality rules, language tags, signatures, the duplicate index, the curator.

Everything here runs on literal texts; the Curator's stored state is a list of
rows (the CurationState protocol), as the catalog will return them.
"""

from __future__ import annotations

import doctest
import importlib
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from embedops.curate import (
    CurateSettings, CurationDocument, Curator, Decision, SignatureSpec, StoredCuration, detect_language,
    detect_languages, quality_findings,
)
import embedops.curate.index as index_module
from embedops.curate.index import Bands, DedupIndex, lsh_params
from embedops.curate.rules import (
    boilerplate, boilerplate_lines, boilerplate_ratio, encoding, encoding_marks, language_finding, non_text,
    non_text_ratio, too_long, too_short,
)
from embedops.curate.signature import Signature, shingles, signature
from embedops.curate.text import normalize, word_count, words
from embedops.errors import ConfigError, SignatureMismatch

SRC = Path(__file__).parents[1] / "src"

# Three distinct paragraphs (same broad topic: biology) and edited copies of the first.
CELLS = ("Cell division is the process by which a parent cell divides into two daughter cells. In eukaryotes "
         "mitosis separates the duplicated chromosomes into two identical nuclei, and cytokinesis then splits the "
         "cytoplasm. Errors in the checkpoints that guard each phase can lead to aneuploidy, a hallmark of many "
         "cancers, which is why the spindle assembly checkpoint is studied so closely.")
CELLS_EDITED = CELLS.replace("parent cell", "mother cell").replace("closely", "carefully").replace("many ", "")
CELLS_REORDERED = " ".join(reversed(CELLS.split(". ")))
PHOTOSYNTHESIS = ("Photosynthesis converts light energy into chemical energy stored in sugars. Chlorophyll in the "
                  "thylakoid membranes absorbs red and blue light, water is split to release oxygen, and the Calvin "
                  "cycle fixes carbon dioxide into three-carbon sugars that the plant uses to grow and to store energy.")
DNA = ("DNA replication copies the genome before a cell divides. Helicase unwinds the double helix, primase lays "
       "down short RNA primers, and DNA polymerase extends them, proofreading as it goes; the lagging strand is "
       "built in Okazaki fragments that ligase later joins into one continuous strand.")
GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund und läuft dann weiter in den dunklen Wald hinein."


class Rows:
    """The stored curation state: what a catalog returns through CurationState."""

    def __init__(self, rows: Iterable[StoredCuration] = ()) -> None:
        self.rows = list(rows)
        self.reads = 0

    def curated_documents(self) -> list[StoredCuration]:
        self.reads += 1
        return list(self.rows)


def doc(doc_id: str, text: str, first_seen: float = 0.0, **metadata: object) -> CurationDocument:
    return CurationDocument(doc_id, text, first_seen, metadata)


def loader(*docs: CurationDocument):  # type: ignore[no-untyped-def]
    by_id = {d.doc_id: d for d in docs}
    asked: list[str] = []

    def load(ids: Sequence[str]) -> list[CurationDocument]:
        asked.extend(ids)
        return [by_id[i] for i in ids if i in by_id]

    load.asked = asked  # type: ignore[attr-defined]
    return load


def outcome(decisions: dict[str, Decision]) -> dict[str, tuple[str, str | None]]:
    return {d: (dec.action, dec.canonical_id) for d, dec in sorted(decisions.items())}


# -- settings -------------------------------------------------------------------------------------

def test_default_settings_are_valid_and_round_trip_through_toml() -> None:
    CurateSettings().validate()
    custom = CurateSettings.from_toml({"min_words": 20, "allowed_languages": ["en", "de"], "shingle_size": 4})
    assert custom.to_toml() == {"min_words": 20, "allowed_languages": ["en", "de"], "shingle_size": 4}
    assert CurateSettings.from_toml(custom.to_toml()) == custom


@pytest.mark.parametrize(("table", "words_in_message"), [
    ({"jaccard_threshold": 1.5}, ["jaccard_threshold", "1.5", "0.1 to 1.0"]),
    ({"jaccard_threshold": "high"}, ["jaccard_threshold", "'high'"]),
    ({"shingle_size": 0}, ["shingle_size", "from 1 to 16", "(got 0)"]),
    ({"num_perm": True}, ["num_perm", "integer", "(got True)"]),
    ({"min_words": 50, "max_words": 10}, ["max_words", "min_words", "(got 10)"]),
    ({"max_boilerplate_ratio": -0.1}, ["max_boilerplate_ratio", "0.0 to 1.0", "-0.1"]),
    ({"rules": ["too_short", "spam"]}, ["rules", "'spam'", "near_duplicate"]),
    ({"rules": "too_short"}, ["rules", "list of strings"]),
    ({"language_candidates": ["en", "xx"]}, ["language_candidates", "'xx'"]),
    ({"language_candidates": ["en"]}, ["language_candidates", "at least two"]),
    ({"allowed_languages": ["fr"], "language_candidates": ["en", "de"]}, ["allowed_languages", "'fr'"]),
    ({"language_accuracy": "best"}, ["language_accuracy", "low, high", "'best'"]),
    ({"treshold": 0.5}, ["unknown setting", "treshold", "[curate]"]),
])
def test_bad_settings_name_the_key_the_value_and_what_is_allowed(table: dict[str, object],
                                                                  words_in_message: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        CurateSettings.from_toml(table)
    message = str(raised.value)
    for expected in words_in_message:
        assert expected in message


# -- text units -----------------------------------------------------------------------------------

def test_words_split_spaced_scripts_by_words_and_unspaced_scripts_by_character() -> None:
    assert words("Ｈｅｌｌｏ, World! 你好世界 ไทย") == ["hello", "world", "你", "好", "世", "界", "ไ", "ท", "ย"]
    assert word_count("The 2 cats, 你好") == 5
    assert normalize("STRASSE Ⅻ") == "strasse xii"


# -- quality rules --------------------------------------------------------------------------------

def test_length_rules_count_words_against_their_limits() -> None:
    settings = CurateSettings(min_words=5, max_words=8)
    short = too_short("two words", settings)
    assert short is not None and (short.reason, short.value, short.limit) == ("too_short", 2, 5)
    assert too_short("one two three four five", settings) is None
    assert too_short("你好世界呀", settings) is None  # five characters of an unspaced script: five words
    long = too_long("one two three four five six seven eight nine", settings)
    assert long is not None and long.reason == "too_long" and long.value == 9
    assert too_long("one two three four five six seven eight", settings) is None


def test_non_text_ratio_counts_digits_symbols_and_punctuation_but_not_letters_or_marks() -> None:
    assert non_text_ratio("abc 123 !!") == pytest.approx(5 / 8)
    assert non_text_ratio("नमस्ते दुनिया") == 0.0  # vowel signs are combining marks: text
    assert non_text_ratio("½ a") == pytest.approx(1 / 2)
    assert non_text_ratio("   ") == 0.0
    settings = CurateSettings()
    table = non_text("12.5 | 13.7 | 99.1 | 45.0 | 3.14 | 2.72 | 1.41 | 0.57", settings)
    assert table is not None and table.reason == "non_text" and table.value == 1.0
    # Digits and full-width punctuation make Chinese prose run high; the default leaves room for it.
    census = "那里有158,349户，其中68,511户（43.3%）有不到18岁的孩子在家里生活。"
    assert 0.4 < non_text_ratio(census) < settings.max_non_text_ratio
    assert non_text(census, settings) is None and non_text(CELLS, settings) is None


def test_boilerplate_lines_are_repeats_menus_page_chrome_and_vertical_menus() -> None:
    lines = [
        "Home | News | Sport | Weather",                      # menu: 4 short items between separators
        "The committee met on Tuesday to discuss the budget.",
        "© 2024 Example Corp. All rights reserved.",           # stock phrase on a short line
        "The committee met on Tuesday to discuss the budget.",  # repeat of line 2
        "The ratio a > b holds for every sample we measured.",  # a separator in prose is not a menu
        "Products", "Pricing", "Careers",                       # a run of three very short lines
        "Read the full minutes of the meeting on the council's website, which posts them each week.",
        "Results",                                             # a lone short line (a heading) is content
        "The budget passed.", "Questions", "Answers",           # two short lines are not a run
    ]
    assert boilerplate_lines(lines) == [True, False, True, True, False, True, True, True, False, False, False, False,
                                        False]
    assert boilerplate_lines(["Page 1 of 12", "Some text here.", "Page 2 of 12"]) == [False, False, True]
    assert boilerplate_lines(["Accept all cookies", "Sign in to comment.", "©2024 Acme",
                              "The catalog index lists every item we sell."]) == [True, True, True, False]


def test_boilerplate_ratio_is_the_share_of_characters_on_boilerplate_lines() -> None:
    text = "Home | About | Contact\n\nOur bakery opens at seven every morning.\nHome | About | Contact\n"
    menu, prose = len("Home | About | Contact"), len("Our bakery opens at seven every morning.")
    assert boilerplate_ratio(text) == pytest.approx(2 * menu / (2 * menu + prose))
    assert boilerplate_ratio("") == 0.0
    settings = CurateSettings(max_boilerplate_ratio=0.5)
    finding = boilerplate(text, settings)
    assert finding is not None and finding.reason == "boilerplate" and finding.limit == 0.5
    assert boilerplate(CELLS, settings) is None


def test_encoding_rule_counts_replacement_characters_controls_and_mojibake() -> None:
    assert encoding_marks("café “nice” Straße São Paulo 黑豹队") == 0
    assert encoding_marks("caf\ufffd and na\ufffdve") == 2
    assert encoding_marks("tab\tnewline\nreturn\r") == 0
    assert encoding_marks("bell\x07 escape\x1b") == 2
    assert encoding_marks("cafÃ© â€œniceâ€") >= 2
    settings = CurateSettings(max_encoding_errors=0.01)
    broken = encoding("The cafÃ© â€œGrand Hotelâ€ was rebuilt after the fire of 1911.", settings)
    assert broken is not None and broken.reason == "encoding" and broken.value is not None and broken.value > 0.01
    assert encoding("The café “Grand Hotel” was rebuilt after the fire of 1911.", settings) is None
    # One mark in a long text stays under a 1% threshold.
    assert encoding(CELLS + " caf\ufffd", settings) is None


def test_language_rule_quarantines_only_disallowed_detected_languages() -> None:
    allowed = CurateSettings(allowed_languages=["en"])
    finding = language_finding("de", allowed)
    assert finding is not None and finding.reason == "language" and "de" in finding.detail
    assert language_finding("en", allowed) is None
    assert language_finding("unknown", allowed) is None
    assert language_finding("de", CurateSettings()) is None  # no list: every language allowed


def test_quality_findings_run_the_enabled_rules_in_order() -> None:
    text = "12 34 56 ##"
    assert [f.reason for f in quality_findings(text, CurateSettings())] == ["too_short", "non_text"]
    only_length = CurateSettings(rules=["too_short"])
    assert [f.reason for f in quality_findings(text, only_length)] == ["too_short"]
    german_not_allowed = CurateSettings(allowed_languages=["en"])
    assert [f.reason for f in quality_findings(GERMAN, german_not_allowed, "de")] == ["language"]
    assert quality_findings(CELLS, CurateSettings(), "en") == []


# -- language tags --------------------------------------------------------------------------------

def test_language_detection_per_document_and_per_chunk() -> None:
    assert detect_language(CELLS) == "en"
    assert detect_language(GERMAN) == "de"
    assert detect_language("光合作用是植物利用光能把二氧化碳和水转化为糖的过程。") == "zh"
    assert detect_language("1234 5678 !!") == "unknown"
    assert detect_languages([CELLS, GERMAN, "3.14 2.72"], ["en", "de"]) == ["en", "de", "unknown"]
    assert detect_languages([]) == []
    # A language outside the candidates is never returned.
    assert detect_language("Le renard brun saute par-dessus le chien paresseux.", ["en", "de"]) in ("en", "de")
    with pytest.raises(ConfigError, match="at least two"):
        detect_language(CELLS, ["en"])


# -- signatures -----------------------------------------------------------------------------------

def test_shingles_are_runs_of_consecutive_words() -> None:
    assert shingles("A b c D", 3) == {"a b c", "b c d"}
    assert shingles("just two", 3) == {"just two"}
    assert shingles("  ", 3) == set()


def test_signature_bytes_round_trip_and_refuse_other_parameters() -> None:
    spec = SignatureSpec(shingle_size=3, num_perm=64)
    sig = signature(CELLS, spec)
    data = sig.to_bytes()
    assert len(data) == 12 + 4 * 64
    restored = Signature.from_bytes(data, spec)
    assert restored.jaccard(sig) == 1.0 and (restored.values == sig.values).all()
    with pytest.raises(SignatureMismatch, match="k3:p64"):
        Signature.from_bytes(data, SignatureSpec(shingle_size=4, num_perm=64))
    with pytest.raises(SignatureMismatch, match="truncated"):
        Signature.from_bytes(data[:-4], spec)
    with pytest.raises(SignatureMismatch, match="not a stored"):
        Signature.from_bytes(b"garbage", spec)
    with pytest.raises(SignatureMismatch):
        sig.jaccard(signature(CELLS, SignatureSpec(shingle_size=2, num_perm=64)))


def test_signature_estimates_the_jaccard_similarity_of_the_shingles() -> None:
    spec = SignatureSpec(shingle_size=3, num_perm=256)
    a, b = shingles(CELLS, 3), shingles(CELLS_EDITED, 3)
    exact = len(a & b) / len(a | b)
    assert 0.5 < exact < 0.9
    assert signature(CELLS, spec).jaccard(signature(CELLS_EDITED, spec)) == pytest.approx(exact, abs=0.1)
    assert signature(CELLS, spec).jaccard(signature(DNA, spec)) < 0.1


def test_signature_bytes_do_not_depend_on_the_process() -> None:
    # Python's str hash changes per process; stored signatures must not.
    code = ("import sys; from embedops.curate.signature import signature, SignatureSpec; "
            "sys.stdout.write(signature(sys.argv[1], SignatureSpec(3, 32)).to_bytes().hex())")
    outputs = {subprocess.run([sys.executable, "-c", code, CELLS], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert outputs == {signature(CELLS, SignatureSpec(3, 32)).to_bytes().hex()}


# -- the duplicate index --------------------------------------------------------------------------

def test_index_finds_canonical_documents_and_hands_back_their_members() -> None:
    spec = SignatureSpec(3, 128)
    index = DedupIndex(spec, threshold=0.5)
    index.add_canonical("a", (0.0, "a"), "hash-a", signature(CELLS, spec))
    index.add_canonical("b", (0.0, "b"), "hash-b", signature(DNA, spec))
    index.add_member("c", (2.0, "c"), "a")
    index.add_member("d", (1.0, "d"), "a")
    assert index.exact("hash-a") is not None and index.exact("hash-a").doc_id == "a"  # type: ignore[union-attr]
    assert index.exact("hash-z") is None
    assert [m.doc_id for m in index.near(signature(CELLS_EDITED, spec))] == ["a"]
    assert index.canonical_of("c") == "a" and index.members("a") == ["d", "c"]
    with pytest.raises(ValueError, match="already indexed"):
        index.add_canonical("a", (0.0, "a"), "hash-a", None)
    assert index.forget("a") == ["d", "c"]  # oldest first
    assert index.canonical_of("c") is None and index.near(signature(CELLS_EDITED, spec)) == []
    assert index.exact("hash-a") is None and len(index) == 1


def test_lsh_bands_find_shared_bands_and_forget_removed_documents() -> None:
    spec = SignatureSpec(3, 128)
    bands = Bands(spec.num_perm, threshold=0.5)
    cells, edited, dna = (signature(t, spec).values for t in (CELLS, CELLS_EDITED, DNA))
    bands.insert(1, cells)
    bands.insert(2, cells)  # identical signature: every key now has two owners
    bands.insert(4, dna)
    assert bands.query(edited) == {1, 2} and bands.query(dna) == {4}
    bands.remove(1, cells)
    assert bands.query(cells) == {2}
    bands.remove(2, cells)
    assert bands.query(cells) == set() and bands.query(dna) == {4}


def _band_sharers(stored: np.ndarray, alive: np.ndarray, query: np.ndarray, bands: int, rows: int) -> set[int]:
    """Brute force: the live rows of ``stored`` sharing at least one whole band run with ``query``."""
    runs = stored[:, : bands * rows].reshape(len(stored), bands, rows)
    shared = (runs == query[: bands * rows].reshape(bands, rows)).all(axis=2).any(axis=1)
    return set(np.flatnonzero(shared & alive).tolist())


def _related_signatures(count: int, seed: int, share: float = 0.7) -> np.ndarray:
    """Random 128-value signatures, most copying some values of an earlier one (some copying all)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 2**32, size=(count, 128), dtype=np.uint64).astype(np.uint32)
    for i in range(1, count):
        if rng.random() < share:
            source = out[rng.integers(0, i)]
            kept = rng.random(128) < rng.choice([0.3, 0.6, 0.8, 0.9, 1.0])
            out[i, kept] = source[kept]
    return out


@pytest.mark.parametrize("directory_from", [1 << 20, 64], ids=["binary-search", "directory"])
def test_lsh_bands_answer_from_the_recent_keys_and_every_sorted_level_and_never_a_removed_owner(
        monkeypatch: pytest.MonkeyPatch, directory_from: int) -> None:
    monkeypatch.setattr(index_module, "RECENT_KEYS", 120)  # a level every 4 signatures at 30 bands
    monkeypatch.setattr(index_module, "DIRECTORY_FROM", directory_from)  # 64: every level but the newest
    bands = Bands(128, threshold=0.5)
    stored = _related_signatures(600, seed=3)
    alive = np.zeros(len(stored), dtype=bool)
    removed: list[int] = []

    def check(queries: Iterable[np.ndarray]) -> None:
        for values in queries:
            assert bands.query(values) == _band_sharers(stored, alive, values, bands.bands, bands.rows)

    levels, directories = set(), 0
    for owner, values in enumerate(stored[:400]):
        bands.insert(owner, values)
        alive[owner] = True
        if owner % 20 == 19:
            check(stored[: owner + 1: 2])
            levels.add(len(bands.level_sizes))
            directories += sum(level.starts is not None for level in bands._levels)
    assert max(levels) >= 3 and bands._recent  # the answers came from the recent keys and up to 3+ levels
    assert (directories > 10) == (directory_from == 64)
    check(stored[:400])
    for owner in range(0, 400, 3):  # removed from the sorted levels and from the recent keys
        bands.remove(owner, stored[owner])
        alive[owner] = False
        removed.append(owner)
    check(stored[:400])
    for owner, values in enumerate(stored[400:], start=400):  # more flushes: levels holding dead owners merge
        bands.insert(owner, values)
        alive[owner] = True
    check(stored)
    check(_related_signatures(200, seed=4, share=0.0))  # fresh signatures: (almost) no candidate
    for owner in sorted(bands._dead)[:5]:  # still in a level: inserted again, it would be left out of answers
        with pytest.raises(ValueError, match="never reused"):
            bands.insert(owner, stored[owner])
    # A dead owner keeps its 30 entries until its level merges, then has none; some have merged by now.
    in_levels = [int(np.isin(level.owners, removed).sum()) for level in bands._levels]
    assert sum(in_levels) == 30 * len(bands._dead) and len(bands._dead) < len(removed) - 10


def test_the_index_finds_exactly_the_verified_band_sharers_among_thousands_of_near_duplicates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "RECENT_KEYS", 1024)
    monkeypatch.setattr(index_module, "DIRECTORY_FROM", 20_000)  # the oldest level has a directory
    spec = SignatureSpec(3, 128)
    index = DedupIndex(spec, threshold=0.5)
    stored = _related_signatures(3000, seed=5, share=0.9)
    alive = np.zeros(len(stored), dtype=bool)
    for i, values in enumerate(stored):
        index.add_canonical(f"d{i}", (float(i % 7), f"d{i}"), f"h{i}", Signature(spec, values))
        alive[i] = True
    for i in range(0, len(stored), 5):
        index.forget(f"d{i}")
        alive[i] = False
    bands, rows = index._bands.bands, index._bands.rows
    assert len(index._bands.level_sizes) >= 2 and index._bands._levels[0].starts is not None
    for values in [*stored[::7], *_related_signatures(300, seed=6, share=0.9)]:
        similarity = (stored == values).sum(axis=1) / 128
        expected = {i for i in _band_sharers(stored, alive, values, bands, rows) if similarity[i] >= 0.5}
        matches = index.near(Signature(spec, values))
        assert {int(m.doc_id[1:]) for m in matches} == expected
        assert [m.similarity for m in matches] == sorted((similarity[i] for i in expected), reverse=True)
        assert all(m.rank == (float(int(m.doc_id[1:]) % 7), m.doc_id) for m in matches)


def test_a_kept_signature_is_held_once_as_the_bytes_its_decision_stores() -> None:
    spec = SignatureSpec(3, 128)
    made = signature(CELLS, spec)
    assert made.to_bytes() is made.to_bytes()
    stored = bytes(made.to_bytes())
    assert Signature.from_bytes(stored, spec).to_bytes() is stored  # the stored object, not a copy
    curator = Curator(CurateSettings(), Rows())
    kept = curator.check(doc("a", CELLS))
    assert not hasattr(kept, "__dict__")  # one Decision per checked document: slots only
    assert kept.signature is curator.index._canonical["a"].signature
    rebuilt = Curator(CurateSettings(), Rows([StoredCuration("a", 0.0, kept.content_hash, stored)]))
    assert rebuilt.index._canonical["a"].signature is stored


def test_lsh_parameters_trade_false_candidates_for_recall_around_the_threshold() -> None:
    assert lsh_params(0.5, 128) == (30, 4)  # what datasketch's MinHashLSH picks for weights (0.2, 0.8)
    for threshold, num_perm in ((0.3, 64), (0.5, 128), (0.8, 128), (0.9, 256)):
        b, r = lsh_params(threshold, num_perm)
        assert b * r <= num_perm
        assert 1 - (1 - threshold ** r) ** b > 0.5  # a pair at the threshold is more likely found than not


# -- the curator ----------------------------------------------------------------------------------

def test_exact_and_near_duplicates_link_to_the_canonical_document() -> None:
    curator = Curator(CurateSettings(), Rows())
    first = curator.check(doc("a", CELLS))
    assert first.kept and first.language == "en" and first.signature is not None and first.findings == ()
    exact = curator.check(doc("b", CELLS))
    assert (exact.action, exact.reason, exact.canonical_id, exact.similarity) == ("quarantine", "duplicate", "a", 1.0)
    near = curator.check(doc("c", CELLS_EDITED))
    assert (near.reason, near.canonical_id) == ("near_duplicate", "a")
    assert near.similarity is not None and near.similarity >= 0.5 and "Jaccard" in near.findings[0].detail
    assert curator.check(doc("d", CELLS_REORDERED)).canonical_id == "a"
    assert curator.check(doc("e", DNA)).kept and curator.check(doc("f", PHOTOSYNTHESIS)).kept
    assert curator.index.members("a") == ["b", "c", "d"]


def test_thresholds_and_rules_come_from_the_settings() -> None:
    strict = Curator(CurateSettings(jaccard_threshold=0.99), Rows())
    strict.check(doc("a", CELLS))
    assert strict.check(doc("c", CELLS_EDITED)).kept
    no_near = Curator(CurateSettings(rules=["duplicate"]), Rows())
    no_near.check(doc("a", CELLS))
    kept = no_near.check(doc("c", CELLS_EDITED))
    assert kept.kept and kept.signature is None  # near-duplicates off: no signature computed
    assert no_near.check(doc("b", CELLS)).reason == "duplicate"


def test_a_document_failing_quality_is_quarantined_and_never_becomes_canonical() -> None:
    curator = Curator(CurateSettings(min_words=100), Rows())
    short = curator.check(doc("a", CELLS))
    assert short.reason == "too_short" and short.canonical_id is None and short.stored() is None
    again = curator.check(doc("b", CELLS))
    assert again.reason == "too_short"  # not a "duplicate" of a quarantined document
    assert len(curator.index) == 0


def test_declared_language_wins_and_the_language_rule_uses_it() -> None:
    curator = Curator(CurateSettings(allowed_languages=["en"]), Rows())
    assert curator.check(doc("a", CELLS, language="EN")).language == "en"
    german = curator.check(doc("b", GERMAN))
    assert (german.language, german.reason) == ("de", "language")
    assert curator.languages([CELLS, GERMAN]) == ["en", "de"]


def test_a_plan_detects_languages_in_one_batch_with_the_tags_one_at_a_time_gives() -> None:
    french = "Le renard brun et rapide saute par-dessus le chien paresseux qui dort au soleil du jardin."
    docs = [doc("en", CELLS), doc("de", GERMAN), doc("fr", french), doc("said", GERMAN + " Noch einmal.", language="EN")]
    curator = Curator(CurateSettings(), Rows())
    calls: list[int] = []
    languages = curator.languages
    curator.languages = lambda texts: calls.append(len(texts)) or languages(texts)  # type: ignore[method-assign]
    plan = curator.plan(docs, [], loader(*docs))
    assert calls == [3]  # one batch, without the document that declares its language
    assert {d: decision.language for d, decision in plan.decisions.items()} == {
        "en": detect_language(CELLS), "de": detect_language(GERMAN), "fr": detect_language(french), "said": "en"}
    assert [detect_language(CELLS), detect_language(GERMAN), detect_language(french)] == ["en", "de", "fr"]


def test_the_oldest_copy_is_canonical_whatever_the_call_order() -> None:
    docs = [doc("b", CELLS, 0.0), doc("a", CELLS_EDITED, 0.0), doc("c", CELLS, 1.0), doc("d", DNA, 0.0)]
    plan = Curator(CurateSettings(), Rows()).plan(docs, [], loader(*docs))
    # One sync (same first_seen): the smallest id wins; c was seen later.
    assert outcome(plan.decisions) == {"a": ("keep", None), "b": ("quarantine", "a"), "c": ("quarantine", "a"),
                                       "d": ("keep", None)}
    assert sorted(plan.kept) == ["a", "d"]
    assert plan.quarantined == {"b": "near_duplicate", "c": "near_duplicate"}


def test_a_plan_decides_each_document_once_with_its_last_version_and_skips_removed_ones() -> None:
    later, earlier = doc("a", DNA, 5.0), doc("a", CELLS, 1.0)
    plan = Curator(CurateSettings(), Rows()).plan([later, earlier, doc("b", CELLS, 3.0), doc("x", DNA)], ["x"],
                                                  loader())
    assert outcome(plan.decisions) == {"a": ("keep", None), "b": ("quarantine", "a")}
    assert plan.decisions["a"].first_seen == 1.0 and plan.removed == ("x",)


def test_incremental_batches_and_shuffled_calls_reach_the_batch_result() -> None:
    texts = [CELLS, CELLS_EDITED, CELLS_REORDERED, DNA, DNA + " Telomerase extends the chromosome ends.",
             PHOTOSYNTHESIS, CELLS, "tiny"]
    docs = [doc(f"d{i}", text, float(i // 3)) for i, text in enumerate(texts)]
    expected = outcome(Curator(CurateSettings(), Rows()).plan(docs, [], loader(*docs)).decisions)
    assert expected["d0"] == ("keep", None) and expected["d4"] == ("quarantine", "d3")
    for seed in range(5):
        shuffled = docs[:]
        random.Random(seed).shuffle(shuffled)
        curator = Curator(CurateSettings(), Rows())
        final: dict[str, Decision] = {}
        for start in range(0, len(shuffled), 3):  # three syncs, each a plan over its documents
            final.update(curator.plan(shuffled[start:start + 3], [], loader(*docs)).decisions)
        assert outcome(final) == expected, seed


def test_an_older_document_that_changes_into_a_copy_takes_over_as_canonical() -> None:
    curator = Curator(CurateSettings(), Rows())
    old, young = doc("old", DNA, 0.0), doc("young", CELLS, 5.0)
    curator.plan([old, young], [], loader(old, young))
    member = doc("member", CELLS_EDITED, 6.0)
    assert curator.check(member).canonical_id == "young"
    changed = doc("old", CELLS, 0.0)
    decision = curator.check(changed)
    assert decision.kept and decision.recheck == ("young",)
    plan = curator.plan([changed], [], loader(changed, young, member))
    assert outcome(plan.decisions)["young"] == ("quarantine", "old")
    assert outcome(plan.decisions)["member"] == ("quarantine", "old")  # the displaced canonical's duplicate follows


def test_deleting_a_canonical_document_re_elects_the_oldest_duplicate() -> None:
    docs = [doc("a", CELLS, 0.0), doc("b", CELLS_EDITED, 1.0), doc("c", CELLS_REORDERED, 2.0), doc("d", DNA, 0.0)]
    curator = Curator(CurateSettings(), Rows())
    curator.plan(docs, [], loader(*docs))
    load = loader(*docs[1:])
    plan = curator.plan([], ["a"], load)
    assert load.asked == ["b", "c"]  # type: ignore[attr-defined]
    assert plan.removed == ("a",)
    assert outcome(plan.decisions) == {"b": ("keep", None), "c": ("quarantine", "b")}
    assert "a" not in plan.decisions and not curator.index.is_canonical("a")


def test_changing_a_canonical_document_re_checks_its_duplicates() -> None:
    docs = [doc("a", CELLS, 0.0), doc("b", CELLS, 1.0), doc("c", CELLS_EDITED, 2.0)]
    curator = Curator(CurateSettings(), Rows())
    curator.plan(docs, [], loader(*docs))
    rewritten = doc("a", PHOTOSYNTHESIS, 0.0)
    plan = curator.plan([rewritten], [], loader(rewritten, *docs[1:]))
    assert outcome(plan.decisions) == {"a": ("keep", None), "b": ("keep", None), "c": ("quarantine", "b")}


def test_a_document_to_re_check_that_no_longer_exists_is_dropped_and_its_duplicates_re_checked() -> None:
    young, member = doc("young", CELLS, 5.0), doc("member", CELLS_EDITED, 6.0)
    curator = Curator(CurateSettings(), Rows())
    curator.plan([doc("old", DNA, 0.0), young, member], [], loader(young, member))
    changed = doc("old", CELLS, 0.0)  # displaces "young", which the loader no longer finds
    plan = curator.plan([changed], [], loader(changed, member))
    assert outcome(plan.decisions) == {"member": ("quarantine", "old"), "old": ("keep", None)}
    assert not curator.index.is_canonical("young") and curator.index.members("old") == ["member"]


def test_a_new_curator_rebuilds_the_index_from_stored_rows() -> None:
    docs = [doc("a", CELLS, 0.0), doc("b", CELLS_EDITED, 1.0), doc("d", DNA, 0.0)]
    plan = Curator(CurateSettings(), Rows()).plan(docs, [], loader(*docs))
    rows = Rows(row for d in plan.decisions.values() if (row := d.stored()) is not None)
    assert {r.doc_id: r.canonical_id for r in rows.rows} == {"a": None, "b": "a", "d": None}
    curator = Curator(CurateSettings(), rows)
    near = curator.check(doc("e", CELLS_REORDERED, 3.0))
    assert (near.reason, near.canonical_id) == ("near_duplicate", "a") and rows.reads == 1
    assert curator.stale == () and curator.index.members("a") == ["b", "e"]
    assert curator.remove("a") == ("b", "e")


def test_rows_that_cannot_be_used_as_stored_are_re_checked_first() -> None:
    old_spec = SignatureSpec(shingle_size=5, num_perm=128)
    rows = Rows([
        StoredCuration("a", 0.0, "h-a", signature(CELLS, old_spec).to_bytes()),  # made with other parameters
        StoredCuration("d", 0.0, "h-d", None),                                    # no signature at all
        StoredCuration("x", 1.0, "h-x", None, canonical_id="gone"),               # linked to a missing canonical
    ])
    curator = Curator(CurateSettings(), rows)
    assert curator.stale == ("a", "d", "x")
    load = loader(doc("a", CELLS, 0.0), doc("d", DNA, 0.0), doc("x", CELLS_EDITED, 1.0))
    plan = curator.plan([], [], load)
    assert load.asked == ["a", "d", "x"]  # type: ignore[attr-defined]
    assert outcome(plan.decisions) == {"a": ("keep", None), "d": ("keep", None), "x": ("quarantine", "a")}
    fresh = plan.decisions["a"].signature
    assert fresh is not None and Signature.from_bytes(fresh, curator.spec).jaccard(signature(CELLS, curator.spec)) == 1


def test_near_matches_are_ordered_by_similarity_then_age() -> None:
    spec = SignatureSpec(3, 128)
    index = DedupIndex(spec, threshold=0.5)
    index.add_canonical("edited", (0.0, "edited"), "h1", signature(CELLS_EDITED, spec))  # older, less similar
    index.add_canonical("same", (1.0, "same"), "h2", signature(CELLS, spec))
    for doc_id, first_seen in (("p", 4.0), ("q", 2.0), ("r", 5.0), ("s", 3.0)):
        index.add_canonical(doc_id, (first_seen, doc_id), f"h-{doc_id}", signature(DNA, spec))
    matches = index.near(signature(CELLS, spec))
    assert [m.doc_id for m in matches] == ["same", "edited"] and matches[0].similarity == 1.0
    # Equal similarity: oldest first, whatever order the LSH buckets return them in.
    assert [m.doc_id for m in index.near(signature(DNA, spec))] == ["q", "s", "p", "r"]


@pytest.mark.parametrize("module", ["text", "settings", "rules", "language", "signature", "curator"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"embedops.curate.{module}"))
    assert result.attempted > 0 and result.failed == 0
