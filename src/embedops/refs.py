"""Identities of the things that make vectors: chunkers and embedders.

Two vectors are comparable only when they share an :class:`EmbedderRef` (space)
and a :class:`ChunkerRef`. Equal dimensions mean nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from embedops.hashing import params_hash

Metric = Literal["cosine", "dot", "l2"]


@dataclass(frozen=True)
class ChunkerRef:
    """``name@version`` plus a hash of the chunker's parameters."""

    name: str
    version: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, name: str, version: str, params: dict[str, Any]) -> ChunkerRef:
        return cls(name, version, tuple(sorted(params.items())))

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def key(self) -> str:
        """e.g. ``structured@1#3fa2c1d09e1b``: the tag stored on every vector."""
        return f"{self.name}@{self.version}#{params_hash(self.params_dict)}"

    def __str__(self) -> str:
        return self.key


#: Fields of an :class:`EmbedderRef` that join its key only when set, so spaces declared before they
#: existed keep their keys (and their vectors).
_KEYED_WHEN_SET = ("query_prompt", "document_prompt")


@dataclass(frozen=True)
class EmbedderRef:
    """What defines a vector space (fingerprint excluded: it is measured, not declared).

    ``query_prompt``/``document_prompt``: the texts an asymmetric model puts before a query and
    before a document (e5: ``"query: "``/``"passage: "``). They are part of the space: the same
    weights with another prompt make other vectors, so a prompt change is a migration. Both
    empty: a symmetric model, queries and documents embedded alike.

    >>> EmbedderRef("p", "m", "r", 8).key == EmbedderRef("p", "m", "r", 8, query_prompt="query: ").key
    False
    """

    provider: str
    model: str
    revision: str
    dims: int
    metric: Metric = "cosine"
    normalized: bool = True
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    query_prompt: str = ""
    document_prompt: str = ""

    @property
    def asymmetric(self) -> bool:
        """Whether queries and documents are embedded differently (query side vs document side)."""
        return self.query_prompt != self.document_prompt

    @property
    def languages(self) -> tuple[str, ...] | None:
        """ISO 639-1 codes the model was trained for, from its metadata; ``None``: any or unknown."""
        declared = self.extra.get("languages")
        return tuple(declared) if isinstance(declared, (list, tuple)) else None

    @property
    def key(self) -> str:
        """The space id stored on every vector, e.g. ``onnx:paraphrase-MiniLM-L3-v2@1a2b3c#5d6e``."""
        decl = {k: v for k, v in asdict(self).items() if k != "extra" and (k not in _KEYED_WHEN_SET or v)}
        return f"{self.provider}:{self.model}@{self.revision}#{params_hash(decl)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderRef:
        return cls(**data)

    def __str__(self) -> str:
        return self.key
