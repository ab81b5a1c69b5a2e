"""Programming languages the code chunker parses: grammars, file types, definitions.

Each grammar comes from its own PyPI package (``tree-sitter-python``, ...),
imported the first time a file of that language is chunked, so only the
grammars a corpus needs are loaded. Nothing is downloaded at run time.

>>> language_for({"path": "src/app/main.py"}).name
'python'
>>> language_for({"ext": "tsx"}).language
'typescript'
>>> language_for({"path": "README.md"}) is None
True
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from embedops.errors import ChunkingError

if TYPE_CHECKING:
    import tree_sitter

Kind = str  # "function" | "method" | "class" | "namespace"

# Node types whose text is a comment or an attribute: they belong to the definition below them.
ATTACHED_TYPES = frozenset(
    {"comment", "line_comment", "block_comment", "doc_comment", "attribute_item", "heredoc_body"}
)


@dataclass(frozen=True)
class LanguageSpec:
    """How to read one language's syntax tree.

    ``definitions`` maps node types to the kind of definition they are; a
    ``function`` inside a class is reported as a ``method``. ``wrappers`` are
    nodes around one definition (decorators, ``export``, ``template<...>``):
    they are chunked as the definition they wrap.
    """

    name: str  # the grammar: a key of LANGUAGES
    language: str  # what chunk metadata reports (tsx files are "typescript")
    module: str
    extensions: tuple[str, ...]
    definitions: Mapping[str, Kind]
    entry: str = "language"
    comment: str = "//"
    wrappers: frozenset[str] = frozenset()
    # JavaScript-like `const f = () => ...`: a declaration whose value is a function.
    declarations: frozenset[str] = frozenset()
    function_values: frozenset[str] = field(default_factory=frozenset)


_CLASS = "class"
_FUNCTION = "function"
_METHOD = "method"
_NAMESPACE = "namespace"

_JS_DEFINITIONS: dict[str, Kind] = {
    "function_declaration": _FUNCTION,
    "generator_function_declaration": _FUNCTION,
    "class_declaration": _CLASS,
    "method_definition": _METHOD,
}
_TS_DEFINITIONS: dict[str, Kind] = {
    **_JS_DEFINITIONS,
    "abstract_class_declaration": _CLASS,
    "interface_declaration": _CLASS,
    "enum_declaration": _CLASS,
    "type_alias_declaration": _CLASS,
    "internal_module": _NAMESPACE,
    "module": _NAMESPACE,
    "function_signature": _FUNCTION,
    "abstract_method_signature": _METHOD,
}
# `namespace N {...}` parses as an expression statement around the namespace.
_TS_WRAPPERS = frozenset({"export_statement", "expression_statement"})
_JS_DECLARATIONS = frozenset({"lexical_declaration", "variable_declaration"})
_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_C_DEFINITIONS: dict[str, Kind] = {
    "function_definition": _FUNCTION,
    "struct_specifier": _CLASS,
    "union_specifier": _CLASS,
    "enum_specifier": _CLASS,
    "type_definition": _CLASS,
}

_SPECS = (
    LanguageSpec(
        "python", "python", "tree_sitter_python", ("py", "pyi", "pyw"),
        {"function_definition": _FUNCTION, "class_definition": _CLASS},
        comment="#", wrappers=frozenset({"decorated_definition"}),
    ),
    LanguageSpec(
        "javascript", "javascript", "tree_sitter_javascript", ("js", "jsx", "mjs", "cjs"),
        _JS_DEFINITIONS, wrappers=frozenset({"export_statement"}),
        declarations=_JS_DECLARATIONS, function_values=_JS_FUNCTION_VALUES,
    ),
    LanguageSpec(
        "typescript", "typescript", "tree_sitter_typescript", ("ts", "mts", "cts"),
        _TS_DEFINITIONS, entry="language_typescript", wrappers=_TS_WRAPPERS,
        declarations=_JS_DECLARATIONS, function_values=_JS_FUNCTION_VALUES,
    ),
    LanguageSpec(
        "tsx", "typescript", "tree_sitter_typescript", ("tsx",),
        _TS_DEFINITIONS, entry="language_tsx", wrappers=_TS_WRAPPERS,
        declarations=_JS_DECLARATIONS, function_values=_JS_FUNCTION_VALUES,
    ),
    LanguageSpec(
        "go", "go", "tree_sitter_go", ("go",),
        {"function_declaration": _FUNCTION, "method_declaration": _METHOD, "type_declaration": _CLASS},
    ),
    LanguageSpec(
        "java", "java", "tree_sitter_java", ("java",),
        {
            "class_declaration": _CLASS, "interface_declaration": _CLASS, "enum_declaration": _CLASS,
            "record_declaration": _CLASS, "annotation_type_declaration": _CLASS,
            "method_declaration": _FUNCTION, "constructor_declaration": _FUNCTION,
        },
    ),
    LanguageSpec(
        "rust", "rust", "tree_sitter_rust", ("rs",),
        {
            "function_item": _FUNCTION, "function_signature_item": _FUNCTION, "macro_definition": _FUNCTION,
            "struct_item": _CLASS, "enum_item": _CLASS, "union_item": _CLASS, "trait_item": _CLASS,
            "impl_item": _CLASS, "mod_item": _NAMESPACE,
        },
    ),
    LanguageSpec("c", "c", "tree_sitter_c", ("c",), _C_DEFINITIONS),
    LanguageSpec(
        # C headers are read as C++: the C++ grammar parses C declarations too, not the reverse.
        "cpp", "cpp", "tree_sitter_cpp", ("cc", "cpp", "cxx", "c++", "h", "hh", "hpp", "hxx", "h++", "ipp"),
        {**_C_DEFINITIONS, "class_specifier": _CLASS, "namespace_definition": _NAMESPACE},
        wrappers=frozenset({"template_declaration"}),
    ),
    LanguageSpec(
        "ruby", "ruby", "tree_sitter_ruby", ("rb", "rake", "gemspec"),
        {"method": _FUNCTION, "singleton_method": _FUNCTION, "class": _CLASS, "singleton_class": _CLASS,
         "module": _NAMESPACE},
        comment="#",
    ),
    LanguageSpec(
        "php", "php", "tree_sitter_php", ("php", "phtml"),
        {
            "function_definition": _FUNCTION, "method_declaration": _METHOD, "class_declaration": _CLASS,
            "interface_declaration": _CLASS, "trait_declaration": _CLASS, "enum_declaration": _CLASS,
            "namespace_definition": _NAMESPACE,
        },
        entry="language_php",
    ),
    LanguageSpec(
        "csharp", "csharp", "tree_sitter_c_sharp", ("cs",),
        {
            "class_declaration": _CLASS, "struct_declaration": _CLASS, "interface_declaration": _CLASS,
            "enum_declaration": _CLASS, "record_declaration": _CLASS, "method_declaration": _FUNCTION,
            "constructor_declaration": _FUNCTION, "destructor_declaration": _FUNCTION,
            "operator_declaration": _FUNCTION, "property_declaration": _FUNCTION,
            "local_function_statement": _FUNCTION, "namespace_declaration": _NAMESPACE,
            "file_scoped_namespace_declaration": _NAMESPACE,
        },
    ),
    LanguageSpec(
        "kotlin", "kotlin", "tree_sitter_kotlin", ("kt", "kts"),
        {"function_declaration": _FUNCTION, "class_declaration": _CLASS, "object_declaration": _CLASS,
         "companion_object": _CLASS},
    ),
    LanguageSpec(
        "bash", "bash", "tree_sitter_bash", ("sh", "bash"),
        {"function_definition": _FUNCTION},
        comment="#",
    ),
)  # fmt: skip

LANGUAGES: dict[str, LanguageSpec] = {spec.name: spec for spec in _SPECS}
_BY_EXTENSION: dict[str, LanguageSpec] = {ext: spec for spec in _SPECS for ext in spec.extensions}
# Interpreters named on a `#!` line, for files without an extension (bin/ scripts).
_SHEBANGS = {"python": "python", "python3": "python", "node": "javascript", "bash": "bash", "sh": "bash",
             "ruby": "ruby", "php": "php"}  # fmt: skip


def code_extensions() -> list[str]:
    """File extensions the code chunker parses, sorted."""
    return sorted(_BY_EXTENSION)


def language_for(metadata: Mapping[str, Any] | None, text: str = "") -> LanguageSpec | None:
    """The language of a document from its file extension, else from its ``#!`` line.

    The extension is taken from metadata ``path`` (folder sources set it),
    else from metadata ``ext`` (other sources may set e.g. ``"py"`` on records
    that hold code). Only a file without an extension is sniffed for ``#!``.
    """
    ext = _extension(metadata or {})
    if ext:
        return _BY_EXTENSION.get(ext)
    return _from_shebang(text)


def _extension(metadata: Mapping[str, Any]) -> str:
    path = metadata.get("path")
    if isinstance(path, str):
        name = re.split(r"[\\/]", path)[-1].lstrip(".")
        return name.rsplit(".", 1)[-1].lower() if "." in name else ""
    ext = metadata.get("ext")
    return ext.lstrip(".").lower() if isinstance(ext, str) else ""


def _from_shebang(text: str) -> LanguageSpec | None:
    if not text.startswith("#!"):
        return None
    words = text[2:].split("\n", 1)[0].split()
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "env" and len(words) > 1:
        program = words[1]
    name = _SHEBANGS.get(program) or _SHEBANGS.get(program.rstrip("0123456789."))
    return LANGUAGES[name] if name else None


@cache
def _grammar(name: str) -> tree_sitter.Language:
    import tree_sitter  # heavy import: only when code is chunked

    spec = LANGUAGES[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        package = spec.module.replace("_", "-")
        raise ChunkingError(
            f"the {spec.language} grammar is not installed (Python package {package})",
            hint=f"pip install {package}, or chunk with chunker = 'structured'",
        ) from exc
    return tree_sitter.Language(getattr(module, spec.entry)())


_parsers = threading.local()


def parser_for(name: str) -> tree_sitter.Parser:
    """A parser for grammar ``name``, one per thread (parsers are not shared between threads)."""
    import tree_sitter

    cached: dict[str, tree_sitter.Parser] | None = getattr(_parsers, "by_name", None)
    if cached is None:
        cached = _parsers.by_name = {}
    parser = cached.get(name)
    if parser is None:
        parser = cached[name] = tree_sitter.Parser(_grammar(name))
    return parser


@cache
def error_query(name: str) -> tree_sitter.Query:
    """A query matching the parse errors of grammar ``name``."""
    import tree_sitter

    return tree_sitter.Query(_grammar(name), "(ERROR) @error")
