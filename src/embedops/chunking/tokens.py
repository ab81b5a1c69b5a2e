"""Token counting for chunkers: a regex counter, and a counter over a ``tokenizer.json``.

Chunk sizes are bounded in the embedder's own tokens when the embedder has a
tokenizer; otherwise in regex tokens: runs of word characters, single
punctuation marks, and single CJK ideographs/kana. The CJK rule matters:
Chinese and Japanese are written without spaces, so ``\\w+`` alone would count
a whole paragraph as one token, while BERT-style tokenizers count one token per
ideograph.

>>> count_regex_tokens("Hello, world! 你好")
6
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from embedops.embedding.base import TokenCounter
from embedops.errors import ChunkingError

REGEX_TOKENIZER = "regex"

# CJK ideographs, kana and CJK compatibility ideographs: one token per character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def count_regex_tokens(text: str) -> int:
    """Number of regex tokens in ``text`` (see the module docstring)."""
    return len(TOKEN_RE.findall(text))


def token_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Character spans of the regex tokens of ``text[start:end]``, in order."""
    stop = len(text) if end is None else end
    for match in TOKEN_RE.finditer(text, start, stop):
        yield match.start(), match.end()


def tokenizer_file_counter(path: str | Path) -> TokenCounter:
    """A :data:`TokenCounter` over a Hugging Face ``tokenizer.json``, without special tokens.

    Truncation and padding configured in the file are switched off: a chunker
    needs the true length of a text, not the model's input window.
    """
    from tokenizers import Tokenizer  # heavy import: only when a real tokenizer is asked for

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for bad files
        raise ChunkingError(
            f"cannot load tokenizer file {path}: {exc}",
            hint="point at the model's tokenizer.json, or chunk with the regex counter",
            path=str(path),
        ) from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count_tokens
