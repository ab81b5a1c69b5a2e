"""The Embedder protocol every provider implements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from embedops.refs import EmbedderRef

if TYPE_CHECKING:
    import numpy as np

TokenCounter = Callable[[str], int]


class TokenSource(Protocol):
    """What a chunker and a cost estimate need of a model: its space and its tokenizer, not its weights."""

    ref: EmbedderRef
    tokenizer_name: str | None

    def count_tokens(self, text: str) -> int: ...


class Embedder(Protocol):
    """Turns texts into vectors of one space.

    ``embed`` returns a float32 array of shape ``(len(texts), ref.dims)``,
    L2-normalized when ``ref.normalized``. ``tokenizer_name``/``count_tokens``
    expose the model's own tokenizer (``None`` when it has none) so chunkers
    can bound chunks in the model's tokens.
    """

    ref: EmbedderRef
    tokenizer_name: str | None

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...
