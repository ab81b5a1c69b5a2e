"""A deterministic feature-hashing embedder: numpy only, no model files.

Meant for tests, demos and CI, where a real model is too slow or absent. Each
lowercased word contributes one signed feature for the word itself plus signed
features for its character 3-grams (with ``<``/``>`` boundary marks), so texts
that share words, or word stems, land close together. Features are hashed with
a seeded blake2b, never Python's ``hash()``: the same text gives the same
vector in every process, on every machine, in every batch. A different seed or
dimension is a different space, and the :class:`EmbedderRef` says so.

>>> emb = HashingEmbedder(dims=64, seed=1)
>>> emb.embed(["hello world"]).shape
(1, 64)
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Sequence

import numpy as np

from embedops.errors import ConfigError
from embedops.refs import EmbedderRef

# Bump when anything below changes the vectors: the revision is part of the space key.
ALGORITHM_REVISION = "1"

_WORD = re.compile(r"\w+")
# Marks the end of each text in a tokenized batch; never part of a word.
_SEPARATOR = "\x00"
_SEPARATOR_ROW = 0
_WORD_OR_SEPARATOR = re.compile(r"\w+|\x00")
# Words carry the meaning; trigrams only add stem overlap, so they get less mass.
_TRIGRAM_NORM = 0.7
# A text without any word still gets a unit vector (identical texts, identical vectors).
_EMPTY_FEATURE = "e:"
# Bounds the per-instance vocabulary cache (a few hundred bytes a word).
_MAX_CACHED_WORDS = 1_000_000
# Texts per internal batch, bounded so a batch's dense float64 block stays ~16 MB.
_BATCH = 2048
_BATCH_CELLS = 2**21
_MAX_DIMS = 65_536


class _FeatureTable:
    """Cache: word -> its hashed features, stored CSR-style for vectorized lookup.

    Row 0 is the batch separator, which has no features.
    """

    def __init__(self, dims: int, seed: int) -> None:
        self.dims = dims
        self._salt = seed.to_bytes(16, "little")
        self.index: dict[str, int] = {}
        self.start = np.zeros(1024, dtype=np.int64)
        self.count = np.zeros(1024, dtype=np.int64)
        self.bucket = np.zeros(8192, dtype=np.int64)
        self.weight = np.zeros(8192, dtype=np.float64)
        self._used = 0
        self._clear()

    def ids(self, words: list[str]) -> list[int]:
        """Row ids of ``words``, hashing the ones seen for the first time."""
        # Clearing only between calls keeps the ids handed out in this call valid.
        if len(self.index) >= _MAX_CACHED_WORDS:
            self._clear()
        found: list[int | None] = list(map(self.index.get, words))
        if None not in found:
            return found  # type: ignore[return-value]
        return [self._add(w) if row is None else row for w, row in zip(words, found)]

    def hash_features(self, feats: list[tuple[str, float]]) -> tuple[list[int], list[float]]:
        """Bucket and signed weight of each ``(feature, weight)``, from a seeded blake2b."""
        buckets: list[int] = []
        weights: list[float] = []
        for feat, weight in feats:
            digest = hashlib.blake2b(feat.encode("utf-8", "surrogatepass"), digest_size=8, salt=self._salt)
            value = int.from_bytes(digest.digest(), "little")
            buckets.append((value >> 1) % self.dims)
            weights.append(weight if value & 1 else -weight)
        return buckets, weights

    def _add(self, word: str) -> int:
        existing = self.index.get(word)
        if existing is not None:
            return existing
        buckets, weights = self.hash_features(_word_features(word))
        row, used, size = len(self.index), self._used, len(buckets)
        self._reserve(row + 1, used + size)
        self.start[row] = used
        self.count[row] = size
        self.bucket[used : used + size] = buckets
        self.weight[used : used + size] = weights
        self._used += size
        self.index[word] = row
        return row

    def _reserve(self, rows: int, feats: int) -> None:
        if rows > len(self.start):
            self.start = _grow(self.start, rows)
            self.count = _grow(self.count, rows)
        if feats > len(self.bucket):
            self.bucket = _grow(self.bucket, feats)
            self.weight = _grow(self.weight, feats)

    def _clear(self) -> None:
        self.index.clear()
        self.index[_SEPARATOR] = _SEPARATOR_ROW
        self.start[_SEPARATOR_ROW] = 0
        self.count[_SEPARATOR_ROW] = 0
        self._used = 0


def _grow(arr: np.ndarray, need: int) -> np.ndarray:
    new = np.zeros(max(need, 2 * len(arr)), dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


def _word_features(word: str) -> list[tuple[str, float]]:
    """The word itself (weight 1) and its boundary-marked 3-grams (joint norm 0.7)."""
    marked = f"<{word}>"
    grams = [marked[i : i + 3] for i in range(len(marked) - 2)]
    # A one-letter word's only trigram is "<a>", which is the word again: skip it.
    if len(word) < 2:
        grams = []
    feats = [("w:" + word, 1.0)]
    if grams:
        each = _TRIGRAM_NORM / math.sqrt(len(grams))
        feats.extend(("g:" + g, each) for g in grams)
    return feats


class HashingEmbedder:
    """Feature-hashing embedder (see module docstring). Thread-safe.

    ``dims`` buckets (default 384) and a ``seed`` (default 0) define the space.
    ``count_tokens`` counts regex words; there is no model tokenizer.
    """

    tokenizer_name: str | None = None

    def __init__(self, dims: int = 384, seed: int = 0, *, name: str | None = None) -> None:
        if not 2 <= dims <= _MAX_DIMS:
            raise ConfigError(
                f"hashing embedder: dims must be between 2 and {_MAX_DIMS}, got {dims}",
                hint="use e.g. 'hashing:dims=384'",
            )
        if not 0 <= seed < 2**64:
            raise ConfigError(
                f"hashing embedder: seed must be in [0, 2**64), got {seed}", hint="use e.g. 'hashing:seed=1'"
            )
        self.dims = dims
        self.seed = seed
        self.ref = hashing_ref(dims, seed, name=name)
        self._table = _FeatureTable(dims, seed)
        buckets, weights = self._table.hash_features([(_EMPTY_FEATURE, 1.0)])
        self._empty_vector = np.zeros(dims)
        self._empty_vector[buckets[0]] = weights[0]
        # The feature cache grows during embed; one writer at a time keeps it consistent.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape ``(len(texts), dims)``."""
        texts = list(texts)
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        step = max(1, min(_BATCH, _BATCH_CELLS // self.dims))
        for lo in range(0, len(texts), step):
            out[lo : lo + step] = self._embed_batch(texts[lo : lo + step])
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """A symmetric model: queries are embedded like documents."""
        return self.embed(texts)

    def count_tokens(self, text: str) -> int:
        """Number of lowercased regex words (``\\w+``) in ``text``, as ``embed`` sees them (an ASCII text
        through ``bytes.translate``, as ``_tokenize_batch`` does: 3.5x the regex's speed)."""
        if text.isascii() and _SEPARATOR not in text:
            return len(text.encode("ascii").translate(_ASCII_TABLE).split())
        return len(_WORD.findall(text.lower()))

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        n, dims = len(texts), self.dims
        tokens = _tokenize_batch(texts)
        with self._lock:
            table = self._table
            ids = np.fromiter(table.ids(tokens), dtype=np.int64, count=len(tokens))
            counts = table.count[ids]
            # Token i belongs to document (number of separators before it).
            doc = np.cumsum(ids == _SEPARATOR_ROW)
            starts = table.start[ids]
            # Expand every word occurrence into its feature rows (a CSR gather).
            ends = np.cumsum(counts)
            pos = np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]), dtype=np.int64)
            cells = np.repeat(doc * dims, counts) + table.bucket[pos]
            weights = table.weight[pos]
        # bincount sums each document's features in text order: batch-independent results.
        vec = np.bincount(cells, weights=weights, minlength=n * dims).reshape(n, dims)
        # With no features at all bincount returns integers.
        vec = vec.astype(np.float64, copy=False)
        words = np.bincount(doc[ids != _SEPARATOR_ROW], minlength=n)
        vec[words == 0] = self._empty_vector
        norms = np.linalg.norm(vec, axis=1, keepdims=True)
        # Opposite signs can cancel exactly; such a row stays zero rather than NaN.
        np.divide(vec, norms, out=vec, where=norms > 0)
        return vec.astype(np.float32)


def _ascii_table() -> bytes:
    """Byte map that lowercases ASCII word characters and blanks everything else."""
    table = bytearray(b" " * 256)
    for code in range(128):
        char = chr(code)
        if char.isalnum() or char == "_":
            table[code] = ord(char.lower())
    table[ord(_SEPARATOR)] = ord(_SEPARATOR)
    return bytes(table)


_ASCII_TABLE = _ascii_table()


def _tokenize_batch(texts: list[str]) -> list[str]:
    """Lowercased ``\\w+`` words of all texts, with a separator token after each text.

    One pass over the joined batch is several times faster than a regex per
    text. ASCII batches go through ``bytes.translate``, which gives exactly the
    tokens the regex would.
    """
    joined = f" {_SEPARATOR} ".join(texts) + f" {_SEPARATOR}"
    if joined.count(_SEPARATOR) != len(texts):
        # A text contains the separator itself: tokenize text by text instead.
        return [tok for text in texts for tok in (*_WORD.findall(text.lower()), _SEPARATOR)]
    if joined.isascii():
        return joined.encode("ascii").translate(_ASCII_TABLE).decode("ascii").split()
    return _WORD_OR_SEPARATOR.findall(joined.lower())


def hashing_ref(dims: int, seed: int, *, name: str | None = None) -> EmbedderRef:
    """The space of ``HashingEmbedder(dims, seed)``: seed and dims are in the key."""
    return EmbedderRef(
        provider="hashing",
        model=f"words-char3-seed{seed}",
        revision=ALGORITHM_REVISION,
        dims=dims,
        metric="cosine",
        normalized=True,
        max_tokens=None,
        # Words and character trigrams of any script: no language is favoured (nor understood).
        extra={"name": name or f"hashing:dims={dims},seed={seed}", "seed": seed, "languages": "any"},
    )
