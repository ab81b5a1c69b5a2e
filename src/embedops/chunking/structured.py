"""Structure-aware chunking of prose and markdown.

The text is split along its own structure, coarsest first:

1. markdown headings (ATX ``#`` and one-line setext) start sections; a chunk
   never spans two sections. A section made of headings only (a title right
   above a subtitle) is *tiny*: it joins the section below it, so a heading
   is never a chunk on its own;
2. blank lines separate blocks: paragraphs, and fenced code blocks, which stay
   whole when they fit in one chunk;
3. paragraphs that do not fit in one chunk are cut into sentences, code
   blocks into lines;
4. a sentence that alone exceeds the limit is cut at line breaks, then into
   token windows.

Sentences end at ``.!?…`` followed by whitespace (or, since version 2, by
Chinese/Japanese text), at the terminators of scripts written without spaces
(``。！？．｡``, which need no whitespace after them), at other scripts' full
stops (``। ॥ ؟ ۔ ። ။ ។ ៕ །``), and, since version 2, at the spaces of Thai,
Lao, Khmer and Myanmar text, which separate sentences and clauses there
(words are not separated). Since version 2, token windows and overlap tails
never start inside a grapheme: a Thai vowel sign or a combining accent stays
with its letter.

Units are packed greedily, in order, into chunks of at most ``max_tokens``
tokens. When a chunk closes inside a section, the next one starts with about
``overlap_tokens`` tokens taken from the end of the previous one: whole
sentences when they fit, else the tail of the last sentence.

Each unit is counted once and chunk sizes are sums of unit counts: exact for
the regex counter and for BERT-style tokenizers (which split at whitespace and
punctuation, as the units do), an estimate for other tokenizers.

>>> chunker = StructuredChunker(max_tokens=32, overlap_tokens=4)
>>> [c.text for c in chunker.chunk("# Title\\n\\nOne short paragraph.")]
['# Title\\n\\nOne short paragraph.']
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from embedops.chunking.base import Chunk
from embedops.chunking.tokens import REGEX_TOKENIZER, WordCounts, count_regex_tokens, token_pieces
from embedops.embedding.base import TokenCounter
from embedops.errors import ChunkingError
from embedops.refs import ChunkerRef

NAME = "structured"
# Bump when a change below moves any chunk boundary: the version is part of the ref.
# Older versions stay buildable, so the indexes they made keep syncing (a new version
# is reached through a migration). 2: scripts without spaces (see the module docstring).
VERSION = "2"
VERSIONS = ("1", "2")
MIN_MAX_TOKENS = 8

_ATX_HEADING = re.compile(r"#{1,6}(?:[ \t]|$)")
_FENCE_OPEN = re.compile(r"`{3,}|~{3,}")
_SETEXT_UNDERLINE = re.compile(r"(?:={3,}|-{3,})$")
# A Latin terminator must be followed by whitespace ("3.14" is not a sentence end);
# CJK terminators need none, those scripts do not use spaces.
_SENTENCE_END_V1 = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[」』”’）]*")
# Han, kana and fullwidth forms: text that needs no space after a sentence end.
_CJK_TEXT = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff5e"
# Thai, Lao, Myanmar, Khmer: spaces separate sentences and clauses, not words.
_SPACE_SEPARATED_SENTENCES = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
_SENTENCE_END = re.compile(
    rf"[.!?…]+[\"'”’)\]]*(?=\s|[{_CJK_TEXT}])"
    r"|[。！？．｡]+[」』”’）】〕》〉]*"
    r"|[।॥؟۔።။។៕།]+"
    rf"|(?<=[{_SPACE_SEPARATED_SENTENCES}])\s+(?=[{_SPACE_SEPARATED_SENTENCES}])"
)
_NEXT_CHAR = re.compile(r"\s*(\S)")

_BlockKind = Literal["heading", "code", "paragraph"]


@dataclass(frozen=True, slots=True)
class _Block:
    kind: _BlockKind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Atom:
    """The smallest packed unit: a stripped span and its token count."""

    start: int
    end: int
    tokens: int
    body: bool = True  # False for headings: a chunk of headings alone is useless


class StructuredChunker:
    """Chunks prose and markdown along headings, paragraphs and sentences.

    ``count_tokens`` is the embedder's tokenizer and ``tokenizer_name`` its
    name, given together; without them, chunks are bounded in regex tokens
    (:func:`embedops.chunking.tokens.count_regex_tokens`). The ref's params
    record ``max_tokens``, ``overlap_tokens`` and ``tokenizer``, so changing
    any of them changes the ref. ``metadata`` is accepted and ignored.
    """

    def __init__(
        self,
        max_tokens: int = 126,
        overlap_tokens: int = 16,
        count_tokens: TokenCounter | None = None,
        tokenizer_name: str | None = None,
        version: str = VERSION,
    ) -> None:
        _check_sizes(max_tokens, overlap_tokens)
        if version not in VERSIONS:
            raise ChunkingError(
                f"structured chunker: no version {version!r} (this embedops has {', '.join(VERSIONS)})",
                hint="upgrade embedops, or chunk with the current version through a migration",
            )
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._count, tokenizer = _resolve_counter(count_tokens, tokenizer_name)
        self._words = None if tokenizer == REGEX_TOKENIZER else WordCounts(self._count)
        self._sentence_end = _SENTENCE_END_V1 if version == "1" else _SENTENCE_END
        self._graphemes = version != "1"
        # Windows of an over-long sentence leave room for the overlap of the next chunk.
        self._window = max_tokens - overlap_tokens
        self.ref = ChunkerRef.make(
            NAME,
            version,
            {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens, "tokenizer": tokenizer},
        )

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]:
        """Chunks of ``text``, in order; ``[]`` for a blank text."""
        spans: list[tuple[int, int]] = []
        for blocks in _join_tiny_sections(_parse_sections(text)):
            whole = self._whole(text, blocks[0].start, blocks[-1].end)
            if whole is not None:
                if whole[0] < whole[1]:
                    spans.append(whole)
                continue
            spans.extend(self._pack(text, self._groups(text, blocks)))
        return [Chunk(i, text[s:e], s, e) for i, (s, e) in enumerate(spans)]

    def _whole(self, text: str, start: int, end: int) -> tuple[int, int] | None:
        """A section that fits in one chunk as that chunk's stripped span, without cutting it into units
        (``None`` when it does not fit, or may not).

        Only for regex tokens: their counts add up across the cuts between units (whitespace, after
        punctuation), so the section's count is the sum its units would have, and packing them would
        give this one span. A tokenizer's count of the whole may differ from the sum over its sentences.
        """
        if self._words is not None:
            return None
        segment = text[start:end]
        if count_regex_tokens(segment) > self.max_tokens:
            return None
        first = start + len(segment) - len(segment.lstrip())
        return first, first + len(segment.strip())

    # -- units -------------------------------------------------------------

    def _groups(self, text: str, blocks: list[_Block]) -> list[list[_Atom]]:
        """Packing units of one section: a block when it fits, else its sentences/lines."""
        groups: list[list[_Atom]] = []
        for block in blocks:
            atoms = self._block_atoms(text, block)
            if sum(a.tokens for a in atoms) <= self.max_tokens:
                if atoms:
                    groups.append(atoms)
                continue
            for atom in atoms:
                if atom.tokens <= self.max_tokens:
                    groups.append([atom])
                else:
                    groups.extend([piece] for piece in self._split_long(text, atom))
        return groups

    def _block_atoms(self, text: str, block: _Block) -> list[_Atom]:
        if block.kind == "paragraph":
            return self._sentence_atoms(text, block.start, block.end)
        if block.kind == "code":
            return list(self._line_atoms(text, block.start, block.end))
        heading = self._atom(text, block.start, block.end, body=False)
        return [heading] if heading else []

    def _atom(self, text: str, start: int, end: int, body: bool = True) -> _Atom | None:
        """The stripped span ``text[start:end]`` as an atom; ``None`` when blank."""
        segment = text[start:end]
        stripped = segment.strip()
        if not stripped:
            return None
        first = start + len(segment) - len(segment.lstrip())
        return _Atom(first, first + len(stripped), self._count(stripped), body)

    def _sentence_atoms(self, text: str, start: int, end: int) -> list[_Atom]:
        atoms: list[_Atom] = []
        begin = start
        for match in self._sentence_end.finditer(text, start, end):
            cut = match.end()
            if text[match.start()] in ".!?…":
                following = _NEXT_CHAR.match(text, cut, end)
                # "e.g. the": a lowercase continuation means an abbreviation, not an end.
                if following is None or following.group(1).islower():
                    continue
            atom = self._atom(text, begin, cut)
            if atom:
                atoms.append(atom)
            begin = cut
        last = self._atom(text, begin, end)
        if last:
            atoms.append(last)
        return atoms

    def _line_atoms(self, text: str, start: int, end: int) -> Iterator[_Atom]:
        pos = start
        for line in text[start:end].splitlines(keepends=True):
            atom = self._atom(text, pos, pos + len(line))
            pos += len(line)
            if atom:
                yield atom

    def _split_long(self, text: str, atom: _Atom) -> list[_Atom]:
        """An atom over ``max_tokens``, cut at line breaks, then into token windows."""
        lines = list(self._line_atoms(text, atom.start, atom.end))
        if len(lines) == 1:
            return self._windows(text, lines[0])
        pieces: list[_Atom] = []
        for line in lines:
            pieces.extend([line] if line.tokens <= self.max_tokens else self._windows(text, line))
        return pieces

    def _windows(self, text: str, atom: _Atom) -> list[_Atom]:
        """Consecutive spans of at most ``max_tokens - overlap_tokens`` tokens covering ``atom``."""
        windows: list[_Atom] = []
        first, last, used = -1, -1, 0
        for start, end, tokens in self._pieces(text, atom.start, atom.end, self._window):
            if first >= 0 and used + tokens > self._window:
                windows.append(_Atom(first, last, used))
                first = -1
            if first < 0:
                first, used = start, 0
            last, used = end, used + tokens
        if first >= 0:
            windows.append(_Atom(first, last, used))
        return windows

    def _pieces(
        self, text: str, start: int, end: int, limit: int
    ) -> Iterator[tuple[int, int, int]]:
        """Regex tokens of a span with their counts under this chunker's counter."""
        return token_pieces(text, start, end, self._words, limit, self._graphemes)

    # -- packing -----------------------------------------------------------

    def _pack(self, text: str, groups: list[list[_Atom]]) -> list[tuple[int, int]]:
        """Greedy packing of one section's groups into chunk spans, with overlap."""
        spans: list[tuple[int, int]] = []
        current: list[_Atom] = []
        used = 0
        for group in groups:
            size = sum(a.tokens for a in group)
            if used + size <= self.max_tokens:
                current.extend(group)
                used += size
                continue
            # Closing now would leave the headings alone: let the group flow in atom by atom.
            flow = bool(current) and not any(a.body for a in current)
            items = [[atom] for atom in group] if flow else [group]
            for item in items:
                size = sum(a.tokens for a in item)
                if used + size > self.max_tokens and current:
                    spans.append((current[0].start, current[-1].end))
                    current = self._overlap(text, current, self.max_tokens - size)
                    used = sum(a.tokens for a in current)
                current.extend(item)
                used += size
        if current:
            spans.append((current[0].start, current[-1].end))
        return spans

    def _overlap(self, text: str, closed: list[_Atom], room: int) -> list[_Atom]:
        """The end of a closed chunk that opens the next one: at most ``room`` tokens.

        Because the closed chunk plus the next unit exceeded ``max_tokens``,
        the overlap is always shorter than the closed chunk, so chunks advance.
        """
        budget = min(self.overlap_tokens, room)
        if budget <= 0:
            return []
        tail: list[_Atom] = []
        used = 0
        for atom in reversed(closed):
            if used + atom.tokens > budget:
                break
            tail.append(atom)
            used += atom.tokens
        if tail:
            return tail[::-1]
        partial = self._partial_tail(text, closed[-1], budget)
        return [partial] if partial else []

    def _partial_tail(self, text: str, atom: _Atom, budget: int) -> _Atom | None:
        """The last regex tokens of ``atom`` worth at most ``budget`` tokens, starting on a word."""
        chosen: list[tuple[int, int]] = []  # (start, tokens), from the end backwards
        used = 0
        for start, _end, tokens in reversed(list(self._pieces(text, atom.start, atom.end, budget))):
            if used + tokens > budget:
                break
            chosen.append((start, tokens))
            used += tokens
        # Never the whole atom (that would repeat it), never starting on a punctuation mark.
        while chosen and (chosen[-1][0] <= atom.start or not text[chosen[-1][0]].isalnum()):
            used -= chosen.pop()[1]
        if not chosen:
            return None
        return _Atom(chosen[-1][0], atom.end, used)


# -- markdown structure ------------------------------------------------------


class _SectionParser:
    """Splits a text into sections of blocks, line by line (CommonMark-ish, not a full parser)."""

    def __init__(self) -> None:
        self.sections: list[list[_Block]] = [[]]
        self.paragraph_start = -1
        self.paragraph_end = -1
        self.paragraph_lines = 0
        self.fence = ""
        self.fence_start = -1

    def parse(self, text: str) -> list[list[_Block]]:
        pos = 0
        for line in text.splitlines(keepends=True):
            self._line(line, pos, pos + len(line))
            pos += len(line)
        if self.fence:  # an unclosed fence runs to the end of the text, as in CommonMark
            self._add("code", self.fence_start, pos)
        self._flush_paragraph()
        return [blocks for blocks in self.sections if blocks]

    def _line(self, line: str, start: int, end: int) -> None:
        if self.fence:
            if _closes_fence(line, self.fence):
                self._add("code", self.fence_start, end)
                self.fence = ""
            return
        stripped = line.strip()
        if not stripped:
            self._flush_paragraph()
            return
        if stripped[0] in "#`~=-" and self._markup(stripped, start, end):
            return
        if self.paragraph_start < 0:
            self.paragraph_start, self.paragraph_lines = start, 0
        self.paragraph_end = end
        self.paragraph_lines += 1

    def _markup(self, stripped: str, start: int, end: int) -> bool:
        """Handles a heading or fence line; False when the line is ordinary text."""
        if _ATX_HEADING.match(stripped):
            self._flush_paragraph()
            self._heading(start, end)
            return True
        fence = _FENCE_OPEN.match(stripped)
        # "```x```" is inline code: a backtick fence's info string has no backtick.
        if fence and not (stripped[0] == "`" and "`" in stripped[fence.end() :]):
            self._flush_paragraph()
            self.fence, self.fence_start = fence.group(), start
            return True
        if self.paragraph_lines == 1 and _SETEXT_UNDERLINE.match(stripped):
            heading_start = self.paragraph_start
            self.paragraph_start, self.paragraph_lines = -1, 0
            self._heading(heading_start, end)
            return True
        return False

    def _heading(self, start: int, end: int) -> None:
        if self.sections[-1]:
            self.sections.append([])
        self._add("heading", start, end)

    def _flush_paragraph(self) -> None:
        if self.paragraph_start >= 0:
            self._add("paragraph", self.paragraph_start, self.paragraph_end)
            self.paragraph_start, self.paragraph_lines = -1, 0

    def _add(self, kind: _BlockKind, start: int, end: int) -> None:
        self.sections[-1].append(_Block(kind, start, end))


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def _parse_sections(text: str) -> list[list[_Block]]:
    return _SectionParser().parse(text)


def _join_tiny_sections(sections: list[list[_Block]]) -> list[list[_Block]]:
    """Heading-only sections join the next section (or the previous one, at the end)."""
    joined: list[list[_Block]] = []
    pending: list[_Block] = []
    for blocks in sections:
        if all(b.kind == "heading" for b in blocks):
            pending.extend(blocks)
            continue
        joined.append(pending + blocks)
        pending = []
    if pending:
        if joined:
            joined[-1].extend(pending)
        else:
            joined.append(pending)
    return joined


# -- parameters --------------------------------------------------------------


def _check_sizes(max_tokens: int, overlap_tokens: int) -> None:
    hint = f"use max_tokens >= {MIN_MAX_TOKENS} and 0 <= overlap_tokens <= max_tokens // 2"
    for name, value in (("max_tokens", max_tokens), ("overlap_tokens", overlap_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChunkingError(
                f"structured chunker: {name} must be an integer, got {value!r}", hint=hint
            )
    if max_tokens < MIN_MAX_TOKENS:
        raise ChunkingError(f"structured chunker: max_tokens={max_tokens} is too small", hint=hint)
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ChunkingError(
            f"structured chunker: overlap_tokens={overlap_tokens} is out of range "
            f"for max_tokens={max_tokens}",
            hint=hint,
        )


def _resolve_counter(
    count_tokens: TokenCounter | None, tokenizer_name: str | None
) -> tuple[TokenCounter, str]:
    """The counter to use and the tokenizer name the ref records."""
    if count_tokens is None and tokenizer_name in (None, REGEX_TOKENIZER):
        return count_regex_tokens, REGEX_TOKENIZER
    if count_tokens is None or tokenizer_name is None or tokenizer_name == REGEX_TOKENIZER:
        given = "a function" if count_tokens else None
        raise ChunkingError(
            "structured chunker: count_tokens and tokenizer_name must be given together "
            f"(got count_tokens={given}, tokenizer_name={tokenizer_name!r})",
            hint="pass the embedder's count_tokens with its tokenizer_name (not 'regex'), "
            "or neither to count regex tokens",
        )
    return count_tokens, tokenizer_name
