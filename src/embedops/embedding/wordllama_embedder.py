"""WordLlama (PyPI ``wordllama``): static token embeddings averaged, Matryoshka-trained for 64/128/256 dims.

The wheel ships the 256-d weights and the tokenizer; no network at run time.
``WordLlama.load()`` looks for a ``tokenizer/`` folder while the wheel holds
``tokenizers/``, so the package folder itself is given as the cache and
downloads are off. About 27k sentences per second on 2 cores: the cheap model
against which truncation is honest, since it was trained to be truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedops.refs import EmbedderRef

CONFIG = "l2_supercat"
MATRYOSHKA_DIMS = (64, 128, 256)
TOKENIZER_NAME = "wordllama-l2_supercat"


def package_dir() -> Path:
    import wordllama  # type: ignore[import-untyped]

    return Path(wordllama.__file__).parent


def tokenizer_file() -> Path:
    """The tokenizer the wheel ships (counting tokens needs no weights)."""
    return package_dir() / "tokenizers" / f"{CONFIG}_tokenizer_config.json"


class WordLlamaEmbedder:
    """``wordllama-256``: unit-length 256-d vectors (an empty text gets the zero vector)."""

    def __init__(self, ref: EmbedderRef) -> None:
        from wordllama import WordLlama

        self.ref = ref
        self.tokenizer_name: str | None = TOKENIZER_NAME
        self._model: Any = WordLlama.load(config=CONFIG, cache_dir=package_dir(), dim=ref.dims, disable_download=True)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.ref.dims), dtype=np.float32)
        vecs = np.asarray(self._model.embed(list(texts), norm=False), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return np.asarray(vecs / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A symmetric model: queries are embedded like documents."""
        return self.embed(texts)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer.encode(text, add_special_tokens=False).ids)
