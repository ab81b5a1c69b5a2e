"""Chunks and the Chunker protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from embedops.hashing import content_hash
from embedops.refs import ChunkerRef


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: the text to embed, its character span, and what it is.

    ``text`` ends with ``document_text[start:end]``; a code chunk's text starts
    with a context header (file path, enclosing class and signature, see
    :mod:`embedops.chunking.code`), so the embedded text says where the code
    lives. Prose chunks have no header: ``text == document_text[start:end]``.
    ``metadata`` describes the chunk (a code chunk's ``kind``, ``symbol``,
    ``language``, ``start_line``, ``end_line``); it is stored with the chunk and
    is not part of its ``content_hash``, which covers the embedded text only.
    """

    ordinal: int
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @cached_property  # the cache lookup, the chunk row and the vector row each ask: computed once
    def content_hash(self) -> str:
        return content_hash(self.text)


class Chunker(Protocol):
    """Cuts a document into chunks; ``ref`` is its identity (name, version, parameters).

    A chunker that decides per document how to chunk it (``code``, ``auto``)
    also has ``counts``, a ``Counter`` of documents by how they were chunked
    (``code``, ``prose``, ``fallback:<reason>``); each sync records its share
    in the ``sync.source`` ledger row (``chunked``).
    """

    ref: ChunkerRef

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]: ...
