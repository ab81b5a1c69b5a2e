"""The whole-document chunker: one chunk per document, the model truncates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedops.chunking.base import Chunk
from embedops.refs import ChunkerRef

NAME = "whole"
VERSION = "1"


class WholeChunker:
    """One chunk per non-blank document: its text without leading/trailing whitespace.

    Meant for short documents (titles, questions, product records) and for
    embedders that take a whole document; text past the model's input window
    is truncated by the model, not here.

    >>> [c.text for c in WholeChunker().chunk("  A short record.\\n")]
    ['A short record.']
    """

    ref: ChunkerRef = ChunkerRef.make(NAME, VERSION, {})

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]:
        """``[]`` for a blank text, else one chunk; ``metadata`` is ignored."""
        stripped = text.strip()
        if not stripped:
            return []
        start = len(text) - len(text.lstrip())
        return [Chunk(0, stripped, start, start + len(stripped))]
