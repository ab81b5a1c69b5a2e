"""Text units shared by the curation rules and the near-duplicate signatures.

A *word* is a run of letters/digits in scripts written with spaces; in scripts
written without them (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) every
character is one word, so counts and shingles mean something there too (a
Chinese paragraph is otherwise one "word"). Text is NFKC-normalized and
case-folded first, so full-width forms and case do not make two copies differ.

>>> words("Hello, World! 你好世界")
['hello', 'world', '你', '好', '世', '界']
>>> word_count("The 2 cats")
3
"""

from __future__ import annotations

import re
import unicodedata

# Scripts written without spaces between words: each character is a word.
_UNSPACED = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+")


def normalize(text: str) -> str:
    """NFKC, case-folded: the form every comparison is made on."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The normalized words of ``text`` (see the module docstring)."""
    return _WORD.findall(normalize(text))


def word_count(text: str) -> int:
    """Number of words of ``text`` as written (not normalized: counting needs no case folding)."""
    return len(_WORD.findall(text))


def content_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]
