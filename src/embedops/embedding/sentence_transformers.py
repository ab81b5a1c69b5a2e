"""sentence-transformers embedders, loaded offline on CPU.

torch and sentence-transformers are imported only when an embedder is built:
they take seconds to import. Models load from local files only (a folder, or
the Hugging Face cache for a hub id); nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedops.errors import EmbedderNotFound, EmbeddingError
from embedops.refs import EmbedderRef

if TYPE_CHECKING:
    import tokenizers
    from sentence_transformers import SentenceTransformer

BATCH_SIZE = 64


@dataclass(frozen=True)
class ModelLocation:
    """A resolved local model folder plus the identity it gets in an ``EmbedderRef``."""

    path: Path
    model: str
    revision: str


def locate_model(name_or_path: str) -> ModelLocation:
    """Resolve a folder path or a hub id (from the local HF cache) to a folder.

    The revision is the Hugging Face commit when the folder is a cache
    snapshot, else ``"local"``: a plain folder has no version of its own, and
    the fingerprint catches weights swapped in place.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        path = candidate.resolve()
        repo = _cached_repo_id(path)
        if repo is not None:
            return ModelLocation(path=path, model=repo, revision=path.name)
        return ModelLocation(path=path, model=str(path), revision="local")
    if candidate.exists() or name_or_path.count("/") > 1 or name_or_path.startswith((".", "/", "~")):
        raise EmbedderNotFound(
            f"sentence-transformers model folder {name_or_path} does not exist",
            hint="pass a folder holding modules.json/config.json, or a hub id already in the HF cache",
        )
    return _from_hf_cache(name_or_path)


def _cached_repo_id(path: Path) -> str | None:
    """``org/name`` when ``path`` is ``.../models--org--name/snapshots/<commit>``."""
    if path.parent.name != "snapshots" or not path.parent.parent.name.startswith("models--"):
        return None
    return path.parent.parent.name.removeprefix("models--").replace("--", "/")


def _offline() -> None:
    """Forbid downloads; read when huggingface_hub is first imported (local_files_only covers later)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _from_hf_cache(repo_id: str) -> ModelLocation:
    _offline()
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # hub raises several unrelated types for "not cached"
        raise EmbedderNotFound(
            f"sentence-transformers model {repo_id!r} is not in the local Hugging Face cache",
            hint="downloads are disabled: copy the model folder here and use 'sentence-transformers:<folder>'",
        ) from exc
    return ModelLocation(path=path.resolve(), model=repo_id, revision=path.name)


def _load_model(path: Path) -> SentenceTransformer:
    _offline()
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # The weight-loading progress bar would land in every CLI command's output.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # the loader raises OSError, ValueError, KeyError... for bad folders
        raise EmbeddingError(
            f"cannot load sentence-transformers model from {path}: {exc}",
            hint="check that the folder is a complete sentence-transformers model",
        ) from exc


def _counting_tokenizer(model: SentenceTransformer) -> tokenizers.Tokenizer | None:
    """An untruncated, unpadded copy of the model's fast tokenizer, if it has one."""
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_truncation()
    counter.no_padding()
    return counter


def model_prompts(model: SentenceTransformer) -> tuple[str, str]:
    """``(query prompt, document prompt)`` the model's config declares; ``("", "")`` when symmetric.

    e5, bge and nomic models name them ``query`` and ``document`` (or ``passage``)
    in ``config_sentence_transformers.json``. A model whose two prompts are equal
    (or absent) embeds queries and documents alike, as it always did here.
    """
    prompts = dict(getattr(model, "prompts", None) or {})
    query = str(prompts.get("query", ""))
    document = str(prompts.get("document", prompts.get("passage", "")))
    return (query, document) if query != document else ("", "")


class SentenceTransformerEmbedder:
    """Embeds with a sentence-transformers model on CPU; L2-normalized float32 output.

    An asymmetric model (its config declares different ``query`` and
    ``document``/``passage`` prompts) embeds documents with the document prompt
    and queries with the query prompt; both are part of its space.
    """

    def __init__(
        self,
        location: ModelLocation,
        *,
        tokenizer_name: str | None = None,
        ref: EmbedderRef | None = None,
        name: str | None = None,
    ) -> None:
        self.location = location
        self._model = _load_model(location.path)
        self._counter = _counting_tokenizer(self._model)
        self.tokenizer_name: str | None = tokenizer_name or location.model
        dims = self._model.get_embedding_dimension()
        max_tokens = self._model.max_seq_length
        if dims is None or max_tokens is None:
            raise EmbeddingError(f"{location.path} does not declare its embedding dimension and token limit")
        if ref is not None and ref.dims != dims:
            raise EmbeddingError(
                f"{location.path} produces {dims}-d vectors, but {ref.model} is declared {ref.dims}-d",
                hint="reinstall the model package; its files do not match this version of embedops",
            )
        query_prompt, document_prompt = model_prompts(self._model)
        self.ref = ref or EmbedderRef(
            provider="sentence-transformers",
            model=location.model,
            revision=location.revision,
            dims=int(dims),
            metric="cosine",
            normalized=True,
            max_tokens=int(max_tokens),
            extra={"name": name, "path": str(location.path)},
            query_prompt=query_prompt,
            document_prompt=document_prompt,
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors of documents, shape ``(len(texts), dims)``, in input order."""
        return self._encode(texts, self.ref.document_prompt)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors: with the query prompt for an asymmetric model, else as :meth:`embed`."""
        return self._encode(texts, self.ref.query_prompt)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.ref.dims), dtype=np.float32)
        # A symmetric space passes no prompt at all: the model's own default applies, as before prompts were keyed.
        prompt_arg: dict[str, Any] = {"prompt": prompt} if self.ref.asymmetric else {}
        try:
            vectors: Any = self._model.encode(
                texts,
                batch_size=BATCH_SIZE,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
                **prompt_arg,
            )
        except Exception as exc:
            raise EmbeddingError(f"sentence-transformers model {self.ref.model} failed on a batch: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Model tokens in ``text``, special tokens included, without truncation."""
        if self._counter is not None:
            return len(self._counter.encode(text).ids)
        encoded = self._model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """``count_tokens`` of each text, in one batch encode (a chunker counting a file's new words, a plan's sample)."""
        if self._counter is not None:
            return [len(e.ids) for e in self._counter.encode_batch(list(texts))]
        encoded = self._model.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]
