"""Chunkers by name: the one place config and refs turn into chunker objects.

>>> make_chunker("structured", {"max_tokens": 64}).ref.params_dict["max_tokens"]
64
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embedops.chunking import structured
from embedops.chunking.base import Chunker
from embedops.chunking.tokens import REGEX_TOKENIZER
from embedops.embedding.base import TokenCounter
from embedops.errors import ChunkingError
from embedops.refs import ChunkerRef

# What `embedops init` (and Workspace.init) give a new workspace.
DEFAULT_CHUNKER = "auto"

# params, the embedder's counter and tokenizer name, the version to build → the chunker.
_Build = Callable[[dict[str, Any], TokenCounter | None, str | None, str], Chunker]


@dataclass(frozen=True)
class _ChunkerSpec:
    build: _Build
    defaults: Mapping[str, Any] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    versions: tuple[str, ...] = ("1",)  # buildable versions, the newest last

    @property
    def allowed(self) -> list[str]:
        return sorted({*self.defaults, *self.optional})


def _counter(
    name: str, params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None
) -> tuple[TokenCounter | None, str | None]:
    """The counter a token-bounded chunker uses: the embedder's, unless params pin the regex one."""
    wanted = params.get("tokenizer")
    if wanted == REGEX_TOKENIZER:
        # Chunks that do not depend on the model survive a model migration unchanged.
        return None, None
    if wanted is not None and wanted != tokenizer_name:
        raise ChunkingError(
            f"chunker {name!r} counts tokens with {wanted!r}, "
            f"but the embedder's tokenizer is {tokenizer_name!r}",
            hint="use the embedder that built the index, or set tokenizer = 'regex' "
            "in chunker_params (a new chunker ref: a migration)",
        )
    if tokenizer_name is None:
        # Embedder convention: no tokenizer_name means no tokenizer, so count regex tokens.
        return None, None
    return count_tokens, tokenizer_name


def _build_structured(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None, version: str
) -> Chunker:
    count_tokens, tokenizer_name = _counter("structured", params, count_tokens, tokenizer_name)
    return structured.StructuredChunker(
        max_tokens=params["max_tokens"],
        overlap_tokens=params["overlap_tokens"],
        count_tokens=count_tokens,
        tokenizer_name=tokenizer_name,
        version=version,
    )


def _build_code(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None, version: str
) -> Chunker:
    from embedops.chunking.code import CodeChunker

    return CodeChunker(**_syntax_options("code", params, count_tokens, tokenizer_name), language=params.get("language"))


def _build_auto(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None, version: str
) -> Chunker:
    from embedops.chunking.auto import AutoChunker

    return AutoChunker(**_syntax_options("auto", params, count_tokens, tokenizer_name))


def _syntax_options(
    name: str, params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None
) -> dict[str, Any]:
    """The settings the code and auto chunkers share: the token budget and how tokens are counted."""
    count_tokens, tokenizer_name = _counter(name, params, count_tokens, tokenizer_name)
    return {"max_tokens": params["max_tokens"], "min_tokens": params.get("min_tokens"),
            "overlap_tokens": params["overlap_tokens"], "count_tokens": count_tokens, "tokenizer_name": tokenizer_name}


def _build_whole(
    params: dict[str, Any], count_tokens: TokenCounter | None, tokenizer_name: str | None, version: str
) -> Chunker:
    from embedops.chunking.whole import WholeChunker

    return WholeChunker()


# 126 content tokens + [CLS] + [SEP] fit the smallest packaged model's 128-token window.
_TOKEN_BOUNDED = {"max_tokens": 126, "overlap_tokens": 16}
_CODE_OPTIONAL = frozenset({"tokenizer", "min_tokens"})  # min_tokens defaults from max_tokens

_REGISTRY: dict[str, _ChunkerSpec] = {
    "auto": _ChunkerSpec(_build_auto, _TOKEN_BOUNDED, _CODE_OPTIONAL),
    "code": _ChunkerSpec(_build_code, _TOKEN_BOUNDED, _CODE_OPTIONAL | {"language"}),
    "structured": _ChunkerSpec(
        _build_structured, _TOKEN_BOUNDED, frozenset({"tokenizer"}), structured.VERSIONS
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
    version: str | None = None,
) -> Chunker:
    """The chunker called ``name`` with ``params`` over its defaults.

    Pass the embedder's ``count_tokens`` and ``tokenizer_name``: token-bounded
    chunkers then count the model's tokens. Following the Embedder protocol,
    ``tokenizer_name=None`` means the embedder has no tokenizer, and
    ``count_tokens`` is then not used. ``params={"tokenizer": "regex"}`` makes
    the chunks independent of the embedder. ``version`` rebuilds an older
    version of the chunker (the one an existing index was made with); by
    default the newest.
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
    wanted = spec.versions[-1] if version is None else version
    if wanted not in spec.versions:
        raise ChunkingError(
            f"chunker {name!r} has no version {wanted!r}; this embedops builds {', '.join(spec.versions)}",
            hint="upgrade embedops, or chunk with the current version through a migration (embedops migrate plan)",
            chunker=name,
        )
    return spec.build({**spec.defaults, **given}, count_tokens, tokenizer_name, wanted)


def chunker_from_ref(
    ref: ChunkerRef,
    *,
    count_tokens: TokenCounter | None = None,
    tokenizer_name: str | None = None,
) -> Chunker:
    """Rebuilds the chunker that ``ref`` names, refusing one that would chunk differently."""
    try:
        chunker = make_chunker(
            ref.name,
            ref.params_dict,
            count_tokens=count_tokens,
            tokenizer_name=tokenizer_name,
            version=ref.version,
        )
    except ChunkingError as exc:
        raise ChunkingError(
            f"chunker {ref.key} cannot be rebuilt: {exc}",
            hint="chunk with the current chunker through a migration (embedops migrate plan)",
            chunker=ref.key,
        ) from exc
    if chunker.ref != ref:
        raise ChunkingError(
            f"chunker {ref.key} cannot be rebuilt: this embedops makes {chunker.ref.key}",
            hint="chunk with the current chunker through a migration (embedops migrate plan)",
            chunker=ref.key,
        )
    return chunker
