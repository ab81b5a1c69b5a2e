"""An embedder that loads its model only when something has to be embedded.

A storage migration (another precision, fewer dimensions) rebuilds an index
from the vectors the catalog already holds: it needs the space's identity and
tokenizer (to chunk a document a concurrent sync adds), not the model's
weights. ``loaded`` says whether the model was ever needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from embedops.embedding.base import Embedder, TokenSource

if TYPE_CHECKING:
    import numpy as np


class DeferredEmbedder:
    """``tokens``' space and tokenizer now; the model from ``load`` on the first :meth:`embed`."""

    def __init__(self, tokens: TokenSource, load: Callable[[], Embedder]) -> None:
        self.ref = tokens.ref
        self.tokenizer_name = tokens.tokenizer_name
        self._tokens = tokens
        self._load = load
        self._model: Embedder | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        return self._model.embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        return self._model.embed_queries(texts)

    def count_tokens(self, text: str) -> int:
        return self._tokens.count_tokens(text)
