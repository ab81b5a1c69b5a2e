"""Chunkers by name: the one place config and refs turn into chunker objects.

>>> make_chunker("structured", {"max_tokens": 64}).ref.params_dict["max_tokens"]
64
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embedops.chunking.base import Chunker
from embedops.chunking.structured import StructuredChunker
from embedops.chunking.tokens import REGEX_TOKENIZER
from embedops.chunking.whole import WholeChunker
from embedops.embedding.base import TokenCounter
from embedops.errors import ChunkingError
from embedops.refs import ChunkerRef

DEFAULT_CHUNKER = "structured"

_Build = Callable[[dict[str, Any], TokenCounter | None, str | None], Chunker]


@dataclass(frozen=True)
class _ChunkerSpec:
    build: _Build
    defaults: Mapping[str, Any] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()

    @property
    def allowed(self) -> list[str]:
        return sorted({*self.defaults, *self.optional})


def _build_structured(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None
) -> Chunker:
    wanted = params.get("tokenizer")
    if wanted == REGEX_TOKENIZER:
        # Chunks that do not depend on the model survive a model migration unchanged.
        count_tokens, tokenizer_name = None, None
    elif wanted is not None and wanted != tokenizer_name:
        raise ChunkingError(
            f"chunker 'structured' counts tokens with {wanted!r}, "
            f"but the embedder's tokenizer is {tokenizer_name!r}",
            hint="use the embedder that built the index, or set tokenizer = 'regex' "
            "in chunker_params (a new chunker ref: a migration)",
        )
    if tokenizer_name is None:
        # Embedder convention: no tokenizer_name means no tokenizer, so count regex tokens.
        count_tokens = None
    return StructuredChunker(
        max_tokens=params["max_tokens"],
        overlap_tokens=params["overlap_tokens"],
        count_tokens=count_tokens,
        tokenizer_name=tokenizer_name,
    )


def _build_whole(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None
) -> Chunker:
    return WholeChunker()


_REGISTRY: dict[str, _ChunkerSpec] = {
    "structured": _ChunkerSpec(
        # 126 content tokens + [CLS] + [SEP] fit the smallest packaged model's 128-token window.
        _build_structured, {"max_tokens": 126, "overlap_tokens": 16}, frozenset({"tokenizer"})
    ),
    "whole": _ChunkerSpec(_build_whole),
}


def chunker_names() -> list[str]:
    """Names accepted by :func:`make_chunker`, sorted."""
    return sorted(_REGISTRY)


def make_chunker(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    count_tokens: TokenCounter | None = None,
    tokenizer_name: str | None = None,
) -> Chunker:
    """The chunker called ``name`` with ``params`` over its defaults.

    Pass the embedder's ``count_tokens`` and ``tokenizer_name``: token-bounded
    chunkers then count the model's tokens. Following the Embedder protocol,
    ``tokenizer_name=None`` means the embedder has no tokenizer, and
    ``count_tokens`` is then not used. ``params={"tokenizer": "regex"}`` makes
    the chunks independent of the embedder.
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ChunkingError(
            f"unknown chunker {name!r}; valid chunkers: {', '.join(chunker_names())}",
            hint=f"set chunker to one of {chunker_names()} in embedops.toml",
            chunker=name,
        )
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec.allowed))
    if unknown:
        raise ChunkingError(
            f"chunker {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"valid parameters: {', '.join(spec.allowed) or '(none)'}",
            hint="fix chunker_params in embedops.toml",
            chunker=name,
        )
    return spec.build({**spec.defaults, **given}, count_tokens, tokenizer_name)


def chunker_from_ref(
    ref: ChunkerRef,
    *,
    count_tokens: TokenCounter | None = None,
    tokenizer_name: str | None = None,
) -> Chunker:
    """Rebuilds the chunker that ``ref`` names, refusing one that would chunk differently."""
    chunker = make_chunker(
        ref.name, ref.params_dict, count_tokens=count_tokens, tokenizer_name=tokenizer_name
    )
    if chunker.ref != ref:
        raise ChunkingError(
            f"chunker {ref.key} cannot be rebuilt: this embedops makes {chunker.ref.key}",
            hint="chunk with the current chunker through a migration (embedops migrate plan)",
            chunker=ref.key,
        )
    return chunker
