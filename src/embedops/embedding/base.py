"""The Embedder protocol every provider implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from embedops.refs import EmbedderRef

if TYPE_CHECKING:
    import numpy as np

TokenCounter = Callable[[str], int]


def query_hash(ref: EmbedderRef | None, text: str) -> str:
    """The key of ``text``'s query vector among a space's content-addressed embeddings.

    In a symmetric space a query's vector is its text's vector: the text's
    :func:`~embedops.hashing.content_hash`, shared with chunks. An asymmetric
    space gives a query another vector than the same text as a document, so
    its query vectors get keys of their own. ``ref`` ``None`` (a space the catalog does not hold yet):
    the text's hash, since no vector of it can be stored.
    """
    from embedops.hashing import content_hash

    return content_hash("\x00query\x00" + text) if ref is not None and ref.asymmetric else content_hash(text)


class TokenSource(Protocol):
    """What a chunker and a cost estimate need of a model: its space and its tokenizer, not its weights."""

    ref: EmbedderRef
    tokenizer_name: str | None

    def count_tokens(self, text: str) -> int: ...


class Embedder(Protocol):
    """Turns texts into vectors of one space.

    ``embed`` (documents: what sync, backfill and adopt store) and
    ``embed_queries`` (what search, evaluation and the integrations ask with)
    return a float32 array of shape ``(len(texts), ref.dims)``, L2-normalized
    when ``ref.normalized``. A symmetric model embeds both alike; an asymmetric
    one (e5, bge, nomic) puts ``ref.query_prompt``/``ref.document_prompt``
    before the text. ``tokenizer_name``/``count_tokens``
    expose the model's own tokenizer (``None`` when it has none) so chunkers
    can bound chunks in the model's tokens.
    """

    ref: EmbedderRef
    tokenizer_name: str | None

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...
