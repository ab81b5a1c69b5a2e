"""A source file's text as the code chunker reads it: tree-sitter byte offsets, lines, token counts.

Token counts of whole lines are summed once (prefix sums); a span counts its
whole lines from the sums and only the parts of its first and last line it
leaves out, so nested syntax nodes are not re-scanned.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import partial
from itertools import accumulate

from embedops.chunking.tokens import CJK_CHARS, TOKEN_RE, WordCounts

# Same tokens as TOKEN_RE on ASCII text, and faster: most source files are ASCII.
_ASCII_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\s]")
_CJK_CHAR = re.compile(rf"[{CJK_CHARS}]")


class SourceText:
    """One document's text, with byte→character offsets and token counts of any span.

    ``words`` counts single regex tokens with a model's tokenizer; ``None``
    counts regex tokens.
    """

    def __init__(self, text: str, data: bytes, words: WordCounts | None) -> None:
        self.text = text
        self._words = words
        self._findall = _ASCII_TOKEN_RE.findall if len(data) == len(text) else TOKEN_RE.findall
        self._multibyte: list[int] = []  # byte offsets of the non-ASCII characters
        self._extra: list[int] = [0]  # extra bytes before each of them (and after the last)
        self.multibyte = len(data) != len(text)
        if self.multibyte:
            self._map_multibyte()
        lines = text.split("\n")
        lengths = list(map(len, lines))
        self.line_starts = list(accumulate((n + 1 for n in lengths[:-1]), initial=0))
        # Where each line's text starts and ends: a span from the first to the last of them covers whole lines.
        self.indents = [n - k for n, k in zip(lengths, map(len, map(str.lstrip, lines)))]
        self.content_ends = [start + k for start, k in zip(self.line_starts, map(len, map(str.rstrip, lines)))]
        found = map(self._findall, lines)
        per_line = map(len, found) if words is None else map(sum, map(partial(map, words.__getitem__), found))
        self.prefix = list(accumulate(per_line, initial=0))

    def _map_multibyte(self) -> None:
        extra = 0
        for match in re.finditer(r"[^\x00-\x7f]", self.text):
            self._multibyte.append(match.start() + extra)
            code = ord(match.group())
            extra += 1 if code < 0x800 else 2 if code < 0x10000 else 3
            self._extra.append(extra)

    def char(self, byte: int) -> int:
        """The character offset of byte offset ``byte`` (a character boundary)."""
        if not self._multibyte:
            return byte
        return byte - self._extra[bisect_left(self._multibyte, byte)]

    def line(self, pos: int) -> int:
        """0-based line of character offset ``pos``."""
        return bisect_right(self.line_starts, pos) - 1

    def tokens(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]``: its lines' sums, less what the span leaves out of them."""
        if start >= end:
            return 0
        starts = self.line_starts
        first = bisect_right(starts, start) - 1
        last = bisect_right(starts, end - 1) - 1
        line_start = starts[first]
        if start - line_start <= self.indents[first] and end >= self.content_ends[last]:
            return self.prefix[last + 1] - self.prefix[first]  # whole lines: most statements and definitions
        line_end = starts[last + 1] - 1 if last + 1 < len(starts) else len(self.text)
        if (start - line_start) + (line_end - end) > end - start:  # mostly outside: count it directly
            return self._count(start, end)
        head, tail = self._outside(line_start, start, start), self._outside(end, line_end, end)
        if head < 0 or tail < 0:
            return self._count(start, end)
        return self.prefix[last + 1] - self.prefix[first] - head - tail

    def _outside(self, start: int, end: int, cut: int) -> int:
        """Tokens of ``text[start:end]``, a part of a line left out; -1 when a token straddles ``cut``."""
        if start >= end or self.text[start:end].isspace():
            return 0
        text = self.text
        if 0 < cut < len(text) and _is_word(text[cut - 1]) and _is_word(text[cut]):
            return -1
        return self._count(start, end)

    def _count(self, start: int, end: int) -> int:
        if self._words is None:
            return len(self._findall(self.text, start, end))
        return sum(map(self._words.__getitem__, self._findall(self.text, start, end)))


def _is_word(char: str) -> bool:
    """Whether ``char`` continues a regex word token (CJK characters are tokens of their own)."""
    return (char.isalnum() or char == "_") and not _CJK_CHAR.match(char)
