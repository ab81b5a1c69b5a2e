"""Chunks and the Chunker protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from embedops.hashing import content_hash
from embedops.refs import ChunkerRef


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text == document_text[start:end]`` (character offsets)."""

    ordinal: int
    text: str
    start: int
    end: int

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


class Chunker(Protocol):
    ref: ChunkerRef

    def chunk(self, text: str, metadata: Mapping[str, Any] | None = None) -> list[Chunk]: ...
