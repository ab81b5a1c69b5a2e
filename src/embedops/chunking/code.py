"""Chunking source code along its syntax tree (tree-sitter).

A file is parsed with its language's grammar (:mod:`embedops.chunking.languages`)
and cut along definitions, coarsest first:

1. the top-level nodes are walked in order; a definition (function, method,
   class, namespace) that fits in the budget becomes one chunk, together with
   the comments and attributes right above it (no blank line between);
2. small neighbours are merged: statements outside definitions (imports,
   constants: a module-level block) and definitions under ``min_tokens``
   are packed greedily, in order, up to the budget;
3. a definition over the budget is split the same way, one level down: its
   signature and first statements, then its members (a class's methods) or
   its statements (a long function's body), recursively;
4. a single node over the budget with nothing to split along (a long string,
   a minified line) is cut at line breaks, then into token windows.

Every chunk's text starts with a context header in the language's comment
syntax: the file path and the signature of each enclosing definition, so a
method's chunk says which file and class it belongs to::

    # src/shop/cart.py
    # class Cart(Model):
    def total(self) -> Decimal:
        ...

The header counts against ``max_tokens``: ``len(header + code)`` in the
model's tokens never exceeds it (sizes are sums over regex tokens, exact for
BERT-style tokenizers, see :class:`embedops.chunking.tokens.WordCounts`).
Chunk metadata: ``kind`` (``function``, ``method``, ``class``, ``namespace``;
``module`` for a block of top-level statements; ``mixed`` when merged
definitions differ), ``symbol`` (qualified, e.g. ``Cart.total``; merged
definitions are listed), ``language``, ``start_line`` and ``end_line``
(1-based, of the code without the header). Code chunks do not overlap: a
definition is a complete unit.

A document whose language is unknown, or whose parse errors cover more than
half of it, is chunked by the structured (prose) chunker instead; its chunks
carry ``fallback`` (``unknown_language`` or ``unparsable``) in their metadata
and the chunker counts them in :attr:`CodeChunker.counts`.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from embedops.chunking.base import Chunk
from embedops.chunking.languages import (
    ATTACHED_TYPES,
    LANGUAGES,
    LanguageSpec,
    error_query,
    language_for,
    parser_for,
)
from embedops.chunking.spans import ASCII_TOKEN_RE as _ASCII_TOKEN_RE
from embedops.chunking.spans import SPACE, SourceText
from embedops.chunking.structured import MIN_MAX_TOKENS, StructuredChunker
from embedops.chunking.tokens import TOKEN_RE, WordCounts, token_pieces
from embedops.embedding.base import TokenCounter
from embedops.errors import ChunkingError
from embedops.refs import ChunkerRef

if TYPE_CHECKING:
    from tree_sitter import Node, Tree

log = logging.getLogger(__name__)

NAME = "code"
# Bump when a change moves any chunk boundary or header. Pins the prose chunker's version below.
VERSION = "1"
PROSE_VERSION = "2"
# min_tokens by default; a smaller budget gets a third of max_tokens.
DEFAULT_MIN_TOKENS = 32
MAX_ERROR_SHARE = 0.5
# Deeper than this, a node is cut as text: generated code can nest past Python's recursion limit.
MAX_DEPTH = 150
# The context header takes at most max_tokens // HEADER_SHARE tokens.
HEADER_SHARE = 3
SIGNATURE_CHARS = 120
PATH_CHARS = 120
# Definition bodies, for grammars that do not name the field `body`.
_BODY_TYPES = frozenset(
    {
        "block", "body_statement", "class_body", "compound_statement", "declaration_list",
        "enum_body", "enum_class_body", "field_declaration_list", "function_body",
        "interface_body", "statement_block",
    }
)  # fmt: skip
_SPECIFIERS = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
_GO_RECEIVER_NOISE = re.compile(r"[*\s]|\[.*\]")
_TRAILING_SPACE = frozenset(" \t\r\n\f\v")
_TOKENS = attrgetter("tokens")


@dataclass(frozen=True, slots=True)
class _Definition:
    kind: str
    name: str
    start: int  # where the definition (with its decorators/export) starts
    signature: str = ""


@dataclass(slots=True)  # not frozen: created for every node looked at, and frozen __init__ is slow
class _Unit:
    """A packed span: a node, or a piece of text, with its token count."""

    start: int
    end: int
    tokens: int
    definition: _Definition | None = None
    attached: bool = False  # a comment/attribute that belongs with the definition below it


@dataclass(frozen=True, slots=True)
class _Nested:
    """A definition over the budget: chunked one level down, under its own scope."""

    definition: _Definition
    children: list[Node]
    start: int
    end: int


@dataclass(slots=True)
class _Group:
    units: list[_Unit]
    scope: tuple[_Definition, ...]
    tokens: int = 0


class CodeChunker:
    """Chunks source code along definitions; see the module docstring.

    ``language`` fixes the grammar for every document (for sources of code
    records without file names); by default each document's language comes
    from its metadata ``path``/``ext`` (:func:`~embedops.chunking.languages.language_for`).
    ``overlap_tokens`` applies to prose fallbacks only.

    >>> chunker = CodeChunker(max_tokens=64)
    >>> [c.metadata["symbol"] for c in chunker.chunk("def f(x):\\n    return x\\n", {"path": "m.py"})]
    ['f']
    """

    def __init__(
        self,
        max_tokens: int = 126,
        min_tokens: int | None = None,
        overlap_tokens: int = 16,
        count_tokens: TokenCounter | None = None,
        tokenizer_name: str | None = None,
        language: str | None = None,
    ) -> None:
        given_min = min_tokens
        if min_tokens is None:
            min_tokens = default_min_tokens(max_tokens)
        _check_code_sizes(max_tokens, min_tokens)
        if language is not None and language not in LANGUAGES:
            raise ChunkingError(
                f"code chunker: unknown language {language!r}; valid languages: {', '.join(sorted(LANGUAGES))}",
                hint="fix chunker_params.language in embedops.toml, or remove it to go by file extension",
            )
        self.prose = StructuredChunker(max_tokens, overlap_tokens, count_tokens, tokenizer_name, PROSE_VERSION)
        tokenizer = self.prose.ref.params_dict["tokenizer"]
        self.max_tokens = max_tokens
        self.min_tokens = min_tokens
        self.language = language
        self._words = None if count_tokens is None or tokenizer == "regex" else WordCounts(count_tokens)
        # Documents by how they were chunked: "code", "prose", "fallback:<reason>".
        self.counts: Counter[str] = Counter()
        params: dict[str, Any] = {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens, "tokenizer": tokenizer}
        # A default min_tokens follows max_tokens (the rule is part of the version): only a given one is a
        # parameter, so a migration that changes max_tokens does not inherit a derived min_tokens.
        if given_min is not None:
            params["min_tokens"] = given_min
        if language is not None:
            params["language"] = language
        self.ref = ChunkerRef.make(NAME, VERSION, params)

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]:
        """Chunks of ``text`` in order; ``[]`` for a blank text."""
        if not text.strip():
            return []
        spec = LANGUAGES[self.language] if self.language else language_for(metadata, text)
        if spec is None:
            return self.fallback(text, metadata, "unknown_language", None)
        return self.chunk_code(text, metadata, spec)

    def chunk_code(self, text: str, metadata: Mapping[str, Any] | None, spec: LanguageSpec) -> list[Chunk]:
        """Chunks of ``text`` parsed as ``spec``'s language (prose when it does not parse)."""
        data = text.encode("utf-8", "surrogatepass")
        tree = parser_for(spec.name).parse(data)
        if tree.root_node.has_error and _error_share(tree, spec, len(data)) > MAX_ERROR_SHARE:
            return self.fallback(text, metadata, "unparsable", spec)
        self.counts["code"] += 1
        packer = _Packer(self, SourceText(text, data, self._words), spec, _path(metadata))
        packer.pack(tree.root_node.children, (), [], 0, 0, len(text))
        return [packer.chunk(i, group) for i, group in enumerate(packer.groups)]

    def fallback(
        self, text: str, metadata: Mapping[str, Any] | None, reason: str, spec: LanguageSpec | None
    ) -> list[Chunk]:
        """The prose chunker's chunks, marked with why the code chunker did not chunk ``text``."""
        self.counts[f"fallback:{reason}"] += 1
        where = _path(metadata) or "a document without a path"
        if reason == "unparsable" and spec is not None:
            log.info("%s: parse errors cover over half of it as %s; chunked as prose (is the extension right?)",
                     where, spec.language)
        else:
            log.info("%s: no grammar for its file type; chunked as prose", where)
        extra: dict[str, Any] = {"fallback": reason}
        if spec is not None:
            extra["language"] = spec.language
        return [Chunk(c.ordinal, c.text, c.start, c.end, extra) for c in self.prose.chunk(text)]


class _Packer:
    """Packs one parsed document into groups of units (see the module docstring)."""

    def __init__(self, chunker: CodeChunker, source: SourceText, spec: LanguageSpec, path: str) -> None:
        self.chunker = chunker
        self.source = source
        self.spec = spec
        self.path = path[-PATH_CHARS:]
        self.groups: list[_Group] = []
        self._header_tokens: dict[str, int] = {}
        self._headers: dict[tuple[_Definition, ...], str] = {}
        self._notable = frozenset({*spec.definitions, *spec.wrappers, *spec.declarations})

    # -- packing -------------------------------------------------------------

    def pack(
        self, nodes: Sequence[Node], scope: tuple[_Definition, ...], lead: list[_Unit], depth: int,
        start: int, end: int,
    ) -> None:  # fmt: skip
        """Groups of ``nodes`` (the children of ``text[start:end]``) under ``scope``."""
        budget = self.budget(scope)
        group: list[_Unit] = []
        used = 0
        items: list[_Unit | _Nested] = []
        for unit in lead:  # comments from the scope above: they may not fit this scope's budget
            items.extend([unit] if unit.tokens <= budget else self._text_units(unit.start, unit.end, budget))
        self._collect(nodes, scope, budget, depth, start, end, items)
        min_tokens, first_group = self.chunker.min_tokens, len(self.groups)
        for item in items:
            if isinstance(item, _Nested):
                lead = _take_attached(group, item.start, self.source.text)
                if used < min_tokens and _statements_only(group):  # e.g. a `package` clause goes along
                    group, lead = [], group + lead
                self._flush(group, scope)
                group, used = [], 0
                inner = (*scope, item.definition)
                self.pack(item.children, inner, lead, depth + 1, item.start, item.end)
            elif item.definition is not None and item.tokens >= min_tokens:
                self._flush_definition(group, used, item, scope, budget)
                group, used = [], 0
            elif not group and self._joins_last(item, scope, budget, first_group):
                continue  # `;` or `}` on the line where the chunk before ended
            else:
                if group and used + item.tokens > budget:
                    self._flush(group, scope)
                    group, used = [], 0
                group.append(item)
                used += item.tokens
        last = self.groups[-1] if len(self.groups) > first_group else None
        if (last is not None and last.scope == scope and used < min_tokens and last.tokens + used <= budget
                and _statements_only(group)):
            last.units.extend(group)  # a closing brace or a trailing statement joins the chunk before it
            last.tokens += used
        else:
            self._flush(group, scope)

    def _joins_last(self, unit: _Unit, scope: tuple[_Definition, ...], budget: int, first_group: int) -> bool:
        """Appends ``unit`` to the chunk just made under ``scope`` when it continues that chunk's last line."""
        if len(self.groups) <= first_group or unit.definition is not None:
            return False
        last = self.groups[-1]
        if last.scope != scope or last.tokens + unit.tokens > budget:
            return False
        if "\n" in self.source.text[last.units[-1].end : unit.start]:
            return False
        last.units.append(unit)
        last.tokens += unit.tokens
        return True

    def _flush_definition(
        self, group: list[_Unit], used: int, unit: _Unit, scope: tuple[_Definition, ...], budget: int
    ) -> None:
        """A definition big enough to stand alone: one chunk with the comments right above it.

        A few small statements before it (no definition, under ``min_tokens``) join it when they fit:
        small definitions stay with each other, so a chunk's symbol names every definition in it.
        """
        attached = _take_attached(group, unit.start, self.source.text)
        alone = sum(a.tokens for a in attached) + unit.tokens
        rest = used - (alone - unit.tokens)
        if alone > budget:
            group.extend(attached)
            attached, rest = [], used
        elif group and rest < self.chunker.min_tokens and rest + alone <= budget and _statements_only(group):
            group, attached = [], group + attached
        self._flush(group, scope)
        self._flush([*attached, unit], scope)

    def _flush(self, group: list[_Unit], scope: tuple[_Definition, ...]) -> None:
        if group:  # callers start a new list after a flush: `group` is not copied
            self.groups.append(_Group(group, scope, sum(map(_TOKENS, group))))

    def _collect(
        self, nodes: Sequence[Node], scope: tuple[_Definition, ...], budget: int, depth: int,
        start: int, end: int, out: list[_Unit | _Nested],
    ) -> None:  # fmt: skip
        """Appends the units of ``nodes`` in order, descending inline into nodes over the budget."""
        # The hot loop of the chunker (every node it looks at): attributes are read once, into locals.
        source, text, pos = self.source, self.source.text, start
        to_char = source.char if source.multibyte else None
        tokens_of, notable, classes = source.tokens, self._notable, source.classes
        for node in nodes:
            node_start, node_end = node.start_byte, node.end_byte
            if to_char is not None:
                node_start, node_end = to_char(node_start), to_char(node_end)
            if node_end > node_start and classes[node_end - 1] == SPACE:  # preprocessor lines end in \n
                while node_end > node_start and text[node_end - 1] in _TRAILING_SPACE:
                    node_end -= 1
            if node_start > pos and not text[pos:node_start].isspace():
                out.extend(self._text_units(pos, node_start, budget))  # text no child covers
            if node_end > pos:
                pos = node_end
            tokens = tokens_of(node_start, node_end)
            node_type = node.type
            found = self._definition(node) if node_type in notable else None
            if tokens <= budget:
                definition = None if found is None else self._describe(found[0], found[1], node_start, scope)
                out.append(_Unit(node_start, node_end, tokens, definition, node_type in ATTACHED_TYPES))
            elif depth >= MAX_DEPTH or node.child_count == 0:
                out.extend(self._text_units(node_start, node_end, budget))
            elif found is not None:
                kind, inner = found
                described = self._describe(kind, inner, node_start, scope)
                signed = _Definition(described.kind, described.name, node_start, self._signature(inner))
                out.append(_Nested(signed, _split_children(node, inner), node_start, node_end))
            else:
                self._collect(node.children, scope, budget, depth + 1, node_start, node_end, out)
        if end > pos and not text[pos:end].isspace():
            out.extend(self._text_units(pos, end, budget))

    def _text_units(self, start: int, end: int, budget: int) -> Iterator[_Unit]:
        """Lines of ``text[start:end]``; a line over the budget in token windows."""
        text, pos = self.source.text, start
        while pos < end:
            stop = text.find("\n", pos, end)
            stop = end if stop < 0 else stop
            line = text[pos:stop]
            first = pos + len(line) - len(line.lstrip())
            last = pos + len(line.rstrip())
            pos = stop + 1
            if first >= last:
                continue
            tokens = self.source.tokens(first, last)
            if tokens <= budget:
                yield _Unit(first, last, tokens)
            else:
                yield from self._windows(first, last, budget)

    def _windows(self, start: int, end: int, budget: int) -> Iterator[_Unit]:
        window: tuple[int, int, int] | None = None  # start, end, tokens
        for s, e, n in token_pieces(self.source.text, start, end, self.chunker._words, budget):
            if window is not None and window[2] + n > budget:
                yield _Unit(*window)
                window = None
            window = (s, e, n) if window is None else (window[0], e, window[2] + n)
        if window is not None:
            yield _Unit(*window)

    # -- definitions -----------------------------------------------------------

    def _definition(self, node: Node) -> tuple[str, Node] | None:
        """``(kind, definition node)`` when ``node`` is (or wraps) a definition."""
        kind = self.spec.definitions.get(node.type)
        if kind is not None:
            return (kind, node) if _has_body(node) else None
        if node.type in self.spec.wrappers:
            for child in node.named_children:
                found = self._definition(child)
                if found is not None:
                    return found
        elif node.type in self.spec.declarations:
            for child in node.named_children:
                value = child.child_by_field_name("value")
                if value is not None and value.type in self.spec.function_values:
                    return "function", child
        return None

    def _describe(self, kind: str, node: Node, start: int, scope: tuple[_Definition, ...]) -> _Definition:
        if kind == "function" and scope and scope[-1].kind == "class":
            kind = "method"
        return _Definition(kind, self._name(node), start)

    def _name(self, node: Node) -> str:
        if node.type == "impl_item":
            return _node_text(node.child_by_field_name("type"))
        name = _node_text(node.child_by_field_name("name"))
        if node.type == "method_declaration" and self.spec.name == "go":
            receiver = _node_text(node.child_by_field_name("receiver")).strip("()").split()
            owner = _GO_RECEIVER_NOISE.sub("", receiver[-1]) if receiver else ""
            return f"{owner}.{name}" if owner else name
        if name:
            return name
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        if declarator is not None:
            return _node_text(declarator)
        for child in node.named_children:  # Go `type_declaration` → `type_spec` holds the name
            inner = _node_text(child.child_by_field_name("name"))
            if inner:
                return inner
        return ""

    def _signature(self, node: Node) -> str:
        """The definition's head (up to its body), on one line: what the header repeats."""
        body = node.child_by_field_name("body")
        if body is None:
            body = next((c for c in node.named_children if c.type in _BODY_TYPES), None)
        value = node.child_by_field_name("value")  # `const f = (x) => {...}`
        if body is None and value is not None:
            body = value.child_by_field_name("body")
        start = self.source.char(node.start_byte)
        # A comment between the head and the body (Python: after the colon) is not part of the head.
        comment = next((c for c in node.children if c.type in ATTACHED_TYPES and c.start_byte > node.start_byte), None)
        if comment is not None and (body is None or comment.start_byte < body.start_byte):
            body = comment
        if body is not None:
            head = self.source.text[start : self.source.char(body.start_byte)]
        else:
            head = self.source.text[start : self.source.char(node.end_byte)].split("\n", 1)[0]
        head = " ".join(head.split()).rstrip("{ ")
        return head if len(head) <= SIGNATURE_CHARS else head[: SIGNATURE_CHARS - 1] + "…"

    # -- headers and chunks ----------------------------------------------------

    def budget(self, scope: tuple[_Definition, ...]) -> int:
        """Tokens left for code under ``scope``, whichever header its chunks get (see :meth:`chunk_header`)."""
        return self.chunker.max_tokens - max(self._tokens(self.header(scope[:k])) for k in range(len(scope) + 1))

    def chunk_header(self, scope: tuple[_Definition, ...], start: int) -> str:
        """The header of a chunk starting at ``start``: definitions that start inside it show their own head."""
        if not scope or scope[-1].start < start:  # no definition starts inside the chunk: the common case
            return self.header(scope)
        return self.header(tuple(d for d in scope if d.start < start))

    def header(self, scope: tuple[_Definition, ...]) -> str:
        """Path and signatures of the enclosing definitions, within a third of ``max_tokens``."""
        header = self._headers.get(scope)
        if header is None:
            header = self._headers[scope] = self._make_header(scope)
        return header

    def _make_header(self, scope: tuple[_Definition, ...]) -> str:
        mark = self.spec.comment
        signatures = [f"{mark} {d.signature}" for d in scope if d.signature]
        path = [f"{mark} {self.path}"] if self.path else []
        cap = self.chunker.max_tokens // HEADER_SHARE
        while len(signatures) > 1 and self._tokens("\n".join(path + signatures)) > cap:
            del signatures[0]  # the outermost scope goes first
        if path and signatures and self._tokens("\n".join(path + signatures)) > cap:
            path = []
        lines = path + signatures
        while lines and self._tokens(lines[-1]) > cap:  # one line alone over the cap: cut it
            lines[-1] = lines[-1][: len(lines[-1]) // 2]
        return "\n".join(lines)

    def _tokens(self, header: str) -> int:
        """Tokens of a header, line by line: nested scopes' headers share their lines (no token spans a line)."""
        tokens = self._header_tokens.get(header)
        if tokens is None:
            if "\n" in header:
                tokens = sum(map(self._tokens, header.split("\n")))
            else:
                words = self.chunker._words
                found = (_ASCII_TOKEN_RE if header.isascii() else TOKEN_RE).findall(header)
                tokens = len(found) if words is None else sum(map(words.__getitem__, found))
            self._header_tokens[header] = tokens
        return tokens

    def chunk(self, ordinal: int, group: _Group) -> Chunk:
        start, end = group.units[0].start, group.units[-1].end
        header = self.chunk_header(group.scope, start)
        code = self.source.text[start:end]
        kind, symbol = _kind_and_symbol(group, self.chunker.min_tokens)
        metadata = {
            "kind": kind,
            "symbol": symbol,
            "language": self.spec.language,
            "start_line": bisect_right(self.source.line_starts, start),  # 1-based
            "end_line": bisect_right(self.source.line_starts, end - 1),
        }
        return Chunk(ordinal, f"{header}\n{code}" if header else code, start, end, metadata)


# -- helpers -------------------------------------------------------------------


def _take_attached(group: list[_Unit], start: int, text: str) -> list[_Unit]:
    """Pops the comments/attributes at the end of ``group`` that sit right above ``start``."""
    taken: list[_Unit] = []
    follow = start
    while group and group[-1].attached and text.count("\n", group[-1].end, follow) <= 1:
        taken.append(group.pop())
        follow = taken[-1].start
    return taken[::-1]


def _statements_only(group: list[_Unit]) -> bool:
    return all(u.definition is None for u in group)


def _split_children(node: Node, definition: Node) -> list[Node]:
    """The children to chunk a definition by: a wrapper's own children, the definition's inlined."""
    if node == definition:
        return list(node.children)
    out: list[Node] = []
    for child in node.children:
        out.extend(_split_children(child, definition) if _contains(child, definition) else [child])
    return out


def _contains(node: Node, inner: Node) -> bool:
    return node.start_byte <= inner.start_byte and inner.end_byte <= node.end_byte and node.child_count > 0


def _has_body(node: Node) -> bool:
    """C-family struct/enum/union: only with a body is it a definition (not `struct s *p`)."""
    if node.type in _SPECIFIERS:
        return node.child_by_field_name("body") is not None
    if node.type == "type_definition":
        inner = node.child_by_field_name("type")
        return inner is not None and inner.child_by_field_name("body") is not None
    return True


def _node_text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def _qualified(scope: Sequence[_Definition], definition: _Definition) -> str:
    return ".".join([d.name for d in scope if d.name] + [definition.name])


def _kind_and_symbol(group: _Group, min_tokens: int) -> tuple[str, str]:
    """A chunk is what its main definition is; small definitions merged together are listed."""
    defined = [u for u in group.units if u.definition is not None]
    main = max(defined, key=_TOKENS) if defined else None
    if main is not None and main.definition is not None and (len(defined) == 1 or main.tokens >= min_tokens):
        return main.definition.kind, _qualified(group.scope, main.definition)
    if defined:
        kinds = {u.definition.kind for u in defined if u.definition is not None}
        kind = kinds.pop() if len(kinds) == 1 else "mixed"
        return kind, ", ".join(_qualified(group.scope, u.definition) for u in defined if u.definition is not None)
    if group.scope:
        return group.scope[-1].kind, _qualified(group.scope[:-1], group.scope[-1])
    return "module", ""


def _path(metadata: Mapping[str, Any] | None) -> str:
    path = (metadata or {}).get("path")
    return path if isinstance(path, str) else ""


def _error_share(tree: Tree, spec: LanguageSpec, size: int) -> float:
    """Share of the bytes inside parse errors (nested errors counted once)."""
    from tree_sitter import QueryCursor

    errors = QueryCursor(error_query(spec.name)).captures(tree.root_node).get("error", [])
    covered, reach = 0, 0
    for node in sorted(errors, key=lambda n: n.start_byte):
        start = max(node.start_byte, reach)
        if node.end_byte > start:
            covered += node.end_byte - start
            reach = node.end_byte
    return covered / max(size, 1)


def default_min_tokens(max_tokens: int) -> int:
    """32, or a third of a small budget: below it a definition merges with its neighbours."""
    return min(DEFAULT_MIN_TOKENS, max_tokens // 3) if isinstance(max_tokens, int) else DEFAULT_MIN_TOKENS


def _check_code_sizes(max_tokens: int, min_tokens: int) -> None:
    hint = f"use max_tokens >= {MIN_MAX_TOKENS} and 0 <= min_tokens <= max_tokens"
    for name, value in (("max_tokens", max_tokens), ("min_tokens", min_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChunkingError(f"code chunker: {name} must be an integer, got {value!r}", hint=hint)
    if max_tokens < MIN_MAX_TOKENS:
        raise ChunkingError(f"code chunker: max_tokens={max_tokens} is too small", hint=hint)
    if not 0 <= min_tokens <= max_tokens:
        raise ChunkingError(
            f"code chunker: min_tokens={min_tokens} is out of range for max_tokens={max_tokens}", hint=hint
        )
