"""A source file's text as the code chunker reads it: tree-sitter byte offsets, lines, token counts.

The chunker counts the tokens of every syntax node it looks at, nested ones
included, so a count must not cost a scan of the node. Each character is
classified once (numpy, over the whole text) by the regex tokenizer's rule:
a word character, a character that is a token by itself (punctuation, a CJK
character), or a separator. A regex token starts at a character of the second
kind, or at a word character after a non-word one; prefix sums of those starts
(and, with a model's counter, of each token's model count) give the count of
any span as one subtraction.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING

from embedops.chunking.tokens import CJK_CHARS, TOKEN_RE, WordCounts

if TYPE_CHECKING:
    import numpy as np

# Same tokens as TOKEN_RE on ASCII text, and faster: most source files are ASCII.
ASCII_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\s]")
_CJK_CHAR = re.compile(rf"[{CJK_CHARS}]")
# The word tokens alone (TOKEN_RE's second alternative).
_ASCII_WORD_RE = re.compile(r"[A-Za-z0-9_]+")
_WORD_RE = re.compile(rf"[^\W{CJK_CHARS}]+")
_WORD_CHAR = re.compile(r"\w")
_SPACE_CHAR = re.compile(r"\s")
# Character classes; a run of WORD characters is one token, each SINGLE character is one.
SPACE, WORD, SINGLE = 0, 1, 2


def char_class(char: str) -> int:
    """The class of ``char`` under :data:`~embedops.chunking.tokens.TOKEN_RE`."""
    if _CJK_CHAR.match(char):
        return SINGLE
    if _WORD_CHAR.match(char):
        return WORD
    return SPACE if _SPACE_CHAR.match(char) else SINGLE


_ASCII_CLASSES = bytes(char_class(chr(i)) for i in range(128))


class SourceText:
    """One document's text, with byte→character offsets and token counts of any span.

    ``words`` counts single regex tokens with a model's tokenizer; ``None``
    counts regex tokens. ``tokens(start, end)`` equals counting
    ``text[start:end]`` token by token (a word cut by the span counts as the
    part inside it).
    """

    def __init__(self, text: str, data: bytes, words: WordCounts | None) -> None:
        import numpy as np  # a core dependency, imported where the chunker first needs it

        self.text = text
        self._words = words
        self.multibyte = len(data) != len(text)
        self._findall = TOKEN_RE.findall if self.multibyte else ASCII_TOKEN_RE.findall
        codes, classes = _classes(text, data, self.multibyte)
        self.classes = classes.tobytes()
        single = classes == SINGLE
        word_starts = classes == WORD
        word_starts[1:] &= classes[:-1] != WORD
        prefix = np.zeros(len(text) + 1, dtype=np.int32)
        if words is None:
            np.cumsum(single | word_starts, out=prefix[1:])  # regex tokens starting before each offset
        else:  # the model's tokens of the regex tokens starting before each offset
            np.cumsum(_model_counts(text, codes, single, word_starts, words, self.multibyte), out=prefix[1:])
        self._prefix = prefix.data  # a memoryview: indexing it gives Python ints, fast
        self._byte_chars = _byte_chars(data) if self.multibyte else None
        self._chars = None if self._byte_chars is None else self._byte_chars.data
        after = np.flatnonzero(codes == 10) + 1  # the character after each \n
        self.line_starts: list[int] = [0, *after.tolist()]

    def char(self, byte: int) -> int:
        """The character offset of byte offset ``byte`` (a character boundary)."""
        return byte if self._chars is None else self._chars[byte]

    def line(self, pos: int) -> int:
        """0-based line of character offset ``pos``."""
        return bisect_right(self.line_starts, pos) - 1

    def tokens(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]``, as if that were the whole text."""
        if start >= end:
            return 0
        classes, words = self.classes, self._words
        cut_start = start > 0 and classes[start] == WORD and classes[start - 1] == WORD
        if words is None:  # a word cut at the start counts from there; the one cut at the end, once
            return self._prefix[end] - self._prefix[start] + cut_start
        if cut_start or (end < len(classes) and classes[end] == WORD and classes[end - 1] == WORD):
            # The model counts the part inside the span, not the word: count the span's own tokens.
            return sum(map(words.__getitem__, self._findall(self.text, start, end)))
        return self._prefix[end] - self._prefix[start]


def _classes(text: str, data: bytes, multibyte: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each character's code point, and its class (:data:`SPACE`, :data:`WORD`, :data:`SINGLE`) as uint8."""
    import numpy as np

    table = np.frombuffer(_ASCII_CLASSES, dtype=np.uint8)
    if not multibyte:
        codes = np.frombuffer(data, dtype=np.uint8)
        return codes, table[codes]
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    classes = np.empty(len(codes), dtype=np.uint8)
    ascii_chars = codes < 128
    classes[ascii_chars] = table[codes[ascii_chars]]
    others = codes[~ascii_chars]
    distinct = np.unique(others)
    of_distinct = np.fromiter((char_class(chr(c)) for c in distinct.tolist()), np.uint8, len(distinct))
    classes[~ascii_chars] = of_distinct[np.searchsorted(distinct, others)]
    return codes, classes


def _model_counts(
    text: str, codes: np.ndarray, single: np.ndarray, word_starts: np.ndarray, words: WordCounts, multibyte: bool
) -> np.ndarray:
    """Per character: the model's count of the regex token starting there (0 inside or between tokens).

    Words are looked up one by one (a dictionary hit each); single characters
    once per distinct character, since code is mostly punctuation.
    """
    import numpy as np

    counts = np.zeros(len(codes), dtype=np.int32)
    found = (_WORD_RE if multibyte else _ASCII_WORD_RE).findall(text)
    counts[word_starts] = np.fromiter(map(words.__getitem__, words.prefetch(found)), np.int32, len(found))
    singles = codes[single]
    distinct, where = np.unique(singles, return_inverse=True)
    chars = words.prefetch([chr(c) for c in distinct.tolist()])
    counts[single] = np.fromiter(map(words.__getitem__, chars), np.int32, len(chars))[where]
    return counts


def _byte_chars(data: bytes) -> np.ndarray:
    """The character offset of each byte offset of UTF-8 ``data`` (and of its end)."""
    import numpy as np

    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.zeros(len(raw) + 1, dtype=np.int32)
    np.cumsum((raw & 0xC0) != 0x80, out=out[1:])  # a character starts at every byte but a continuation byte
    return out
