"""The ``auto`` chunker: source code by its syntax, everything else by its prose structure.

Per document, by file type (:func:`~embedops.chunking.languages.language_for`:
the extension of metadata ``path`` or ``ext``, else a ``#!`` line): a file
in one of the code chunker's languages is chunked along its definitions
(:class:`~embedops.chunking.code.CodeChunker`); markdown, text, HTML and any
other document by the structured chunker. A code file that does not parse
falls back to the structured chunker, marked and counted as the code chunker
does. Prose chunks are the structured chunker's (version 2, same parameters):
moving an index from ``structured`` to ``auto`` gives its prose documents the
same chunks, whose vectors the migration finds in the embedding cache.

>>> chunker = AutoChunker(max_tokens=64)
>>> chunker.chunk("def f():\\n    return 1\\n", {"path": "f.py"})[0].metadata["kind"]
'function'
>>> chunker.chunk("# Notes\\n\\nPlain prose.", {"path": "notes.md"})[0].metadata
{}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedops.chunking.base import Chunk
from embedops.chunking.code import CodeChunker
from embedops.chunking.code import VERSION as CODE_VERSION
from embedops.chunking.languages import language_for
from embedops.embedding.base import TokenCounter
from embedops.refs import ChunkerRef

NAME = "auto"
# The code chunker's version, which pins the structured chunker's: a change in either is a new ref.
VERSION = CODE_VERSION


class AutoChunker:
    """Picks the code or the structured chunker per document; see the module docstring.

    Parameters are the code chunker's (``max_tokens``, ``min_tokens`` (default
    32, or a third of a small ``max_tokens``), ``overlap_tokens`` for prose,
    the tokenizer). :attr:`counts` counts the
    documents: ``code``, ``prose``, and ``fallback:unparsable``.
    """

    def __init__(
        self,
        max_tokens: int = 126,
        min_tokens: int | None = None,
        overlap_tokens: int = 16,
        count_tokens: TokenCounter | None = None,
        tokenizer_name: str | None = None,
    ) -> None:
        self.code = CodeChunker(max_tokens, min_tokens, overlap_tokens, count_tokens, tokenizer_name)
        self.counts = self.code.counts
        self.ref = ChunkerRef.make(NAME, VERSION, self.code.ref.params_dict)

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]:
        """Chunks of ``text``, in order; ``[]`` for a blank text."""
        if not text.strip():
            return []
        spec = language_for(metadata, text)
        if spec is None:
            self.counts["prose"] += 1
            return self.code.prose.chunk(text)
        return self.code.chunk_code(text, metadata, spec)
