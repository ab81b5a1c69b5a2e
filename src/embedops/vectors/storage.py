"""Storage variants of an index: precision, dimensions and rescoring, part of the index's identity.

The catalog keeps every vector at full precision (the ``embeddings`` table); a
variant says how an index's ANN holds them and how a query meets them. It is
named by a short key stored with the index (``indexes.storage``):

==========================  ===================================================================
``f32``                     float32, all dimensions (the default)
``f16`` / ``i8`` / ``b1``   float16; int8 (each vector scaled so its largest component is ±127);
                            binary (one sign bit per dimension, compared by Hamming distance)
``…:d256``                  the first 256 dimensions, re-normalised (Matryoshka truncation)
``…:pca128@1a2b3c4d``       a PCA projection to 128 dimensions fitted on the corpus (``@`` names the fit)
``…:flat``                  no graph: every search is exact over the encoded vectors, whatever the size
``…+r4``                    rescoring: fetch 4×k candidates, re-rank them with the full-precision vectors
==========================  ===================================================================

A query goes through the same reduction and encoding as the stored vectors, so
an index's variant never has to be remembered by a caller.

>>> spec = StorageSpec.parse("i8:d256+r4")
>>> spec.precision, spec.dims, spec.rescore, spec.key
('i8', 256, 4, 'i8:d256+r4')
>>> StorageSpec.parse("f32").is_default
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, cast, get_args

from embedops.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

Precision = Literal["f32", "f16", "i8", "b1"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
Reduction = Literal["truncate", "pca"]
Layout = Literal["hnsw", "flat"]
DEFAULT_KEY = "f32"
MAX_RESCORE = 100  # candidates per result beyond this cost more than exact search over the catalog would
# Bytes per dimension of each precision in the ANN (b1: one bit).
PAYLOAD_BITS = {"f32": 32, "f16": 16, "i8": 8, "b1": 1}

_KEY = re.compile(r"^(f32|f16|i8|b1)(?::(d|pca)(\d+)(?:@([0-9a-f]{8,32}))?)?(:flat)?(?:\+r(\d+))?$")
_HINT = ("a storage key is PRECISION[:dN|:pcaN][:flat][+rN]: precision f32, f16, i8 or b1; e.g. i8+r4, f32:d256,"
         " b1:flat+r10, f16:pca128")
_BLOCK = 65_536  # stored rows scored per step of an exact search over encoded vectors
_XOR_BYTES = 1 << 25  # binary: bytes of query-by-row XOR held at once


@dataclass(frozen=True)
class StorageSpec:
    """How an index holds its vectors: precision, reduction (truncation or PCA) and rescoring."""

    precision: Precision = "f32"
    dims: int | None = None  # None: every dimension of the space
    reduction: Reduction = "truncate"
    projection: str | None = None  # the fitted PCA's id, once fitted
    rescore: int = 0  # candidates per result re-ranked at full precision; 0: no rescoring
    layout: Layout = "hnsw"  # flat: no graph, exact search over the encoded vectors at any size

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown storage precision {self.precision!r}", hint=_HINT)
        if self.dims is not None and self.dims < 1:
            raise ConfigError(f"storage dims must be at least 1 (got {self.dims})", hint=_HINT)
        if self.reduction == "pca" and self.dims is None:
            raise ConfigError("a PCA projection needs a number of dimensions", hint="pass --dims N with --pca")
        if self.rescore < 0 or self.rescore == 1 or self.rescore > MAX_RESCORE:
            raise ConfigError(f"rescore must be 0 (off) or 2..{MAX_RESCORE} candidates per result (got {self.rescore})",
                              hint="--rescore 4 fetches 4×k candidates and re-ranks them at full precision")

    @classmethod
    def parse(cls, key: str | None) -> StorageSpec:
        """The spec a key names (``None`` or ``""``: the default, f32)."""
        return _parse(key or DEFAULT_KEY)

    @property
    def key(self) -> str:
        reduced = ""
        if self.dims is not None:
            reduced = f":d{self.dims}" if self.reduction == "truncate" else f":pca{self.dims}"
            if self.projection:
                reduced += f"@{self.projection}"
        flat = ":flat" if self.layout == "flat" else ""
        return f"{self.precision}{reduced}{flat}" + (f"+r{self.rescore}" if self.rescore else "")

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT_KEY

    @property
    def reduces(self) -> bool:
        return self.dims is not None

    def stored_dims(self, space_dims: int) -> int:
        """Dimensions the ANN holds for a space of ``space_dims``; refuses a reduction that is none."""
        if self.dims is None:
            return space_dims
        if self.dims >= space_dims:
            raise ConfigError(f"storage {self.key} keeps {self.dims} dimensions, but the space has only {space_dims}",
                              hint=f"pass --dims below {space_dims}, or leave it out to keep them all")
        return self.dims

    def payload_bytes(self, space_dims: int) -> int:
        """Bytes of one vector's payload in the ANN (graph links and keys not included)."""
        return -(-self.stored_dims(space_dims) * PAYLOAD_BITS[self.precision] // 8)

    def fitted(self, projection: str) -> StorageSpec:
        return replace(self, projection=projection)

    def fetch(self, k: int) -> int:
        """Candidates to ask the ANN for, for ``k`` results."""
        return k * self.rescore if self.rescore else k


@lru_cache(maxsize=256)
def _parse(key: str) -> StorageSpec:
    m = _KEY.match(key.strip())
    if not m:
        raise ConfigError(f"invalid storage {key!r}", hint=_HINT)
    precision, kind, dims, projection, flat, rescore = m.groups()
    if projection and kind != "pca":
        raise ConfigError(f"invalid storage {key!r}: only a PCA reduction names a fit (@...)", hint=_HINT)
    return StorageSpec(
        precision=cast(Precision, precision), dims=int(dims) if dims else None,
        reduction="pca" if kind == "pca" else "truncate", projection=projection, rescore=int(rescore or 0),
        layout="flat" if flat else "hnsw",
    )


@dataclass(frozen=True)
class StorageOptions:
    """Storage settings asked for on the command line; those left out keep the base spec's values."""

    precision: str | None = None
    dims: int | None = None
    pca: bool = False
    rescore: int | None = None
    layout: str | None = None

    def given(self) -> bool:
        return (self.precision is not None or self.dims is not None or self.pca or self.rescore is not None
                or self.layout is not None)

    def apply(self, base: StorageSpec) -> StorageSpec:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"unknown storage precision {self.precision!r}", hint=_HINT)
        if self.pca and self.dims is None and base.reduction != "pca":
            raise ConfigError("--pca needs --dims N (the number of dimensions to project to)", hint=_HINT)
        dims = self.dims if self.dims is not None else base.dims
        reduction: Reduction = "pca" if self.pca else ("truncate" if self.dims is not None else base.reduction)
        keep_fit = reduction == "pca" and base.reduction == "pca" and dims == base.dims
        if self.layout is not None and self.layout not in ("hnsw", "flat"):
            raise ConfigError(f"unknown layout {self.layout!r}", hint="--layout hnsw (a graph) or flat (exact search)")
        return StorageSpec(cast(Precision, self.precision or base.precision), dims, reduction,
                           base.projection if keep_fit else None, base.rescore if self.rescore is None else self.rescore,
                           cast(Layout, self.layout or base.layout))


# -- PCA -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Projection:
    """A PCA fitted on a corpus: ``(x - mean) @ components``, then re-normalised."""

    id: str
    mean: np.ndarray  # (space dims,)
    components: np.ndarray  # (space dims, kept dims)

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int) -> Projection:
        """The top ``dims`` principal directions of ``vectors`` (rows); deterministic for the same rows."""
        import numpy as np
        x = np.asarray(vectors, dtype=np.float64)
        if len(x) < 2 or dims >= x.shape[1]:
            raise ConfigError(f"cannot fit a PCA to {dims} dimensions on {len(x)} vectors of {x.shape[1]}",
                              hint="PCA needs at least 2 indexed vectors and fewer dimensions than the space")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        components = vt[:dims].T
        # SVD signs are arbitrary: fix each direction's sign so a refit of the same rows gives the same bytes.
        signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(dims)])
        components = (components * signs).astype(np.float32)
        mean32 = mean.astype(np.float32)
        digest = hashlib.sha256(mean32.tobytes() + components.tobytes()).hexdigest()[:12]
        return cls(digest, mean32, components)

    def apply(self, x: np.ndarray) -> np.ndarray:
        import numpy as np
        return np.asarray((x - self.mean) @ self.components, dtype=np.float32)

    def to_bytes(self) -> tuple[bytes, bytes]:
        return self.mean.tobytes(), self.components.tobytes()

    @classmethod
    def from_bytes(cls, projection_id: str, mean: bytes, components: bytes, dims: int) -> Projection:
        import numpy as np
        m = np.frombuffer(mean, dtype=np.float32)
        return cls(projection_id, m, np.frombuffer(components, dtype=np.float32).reshape(len(m), dims))


# -- encoding ---------------------------------------------------------------------------------
def _normalized(x: np.ndarray) -> np.ndarray:
    import numpy as np
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


class Codec:
    """Turns full-precision vectors (stored or queries) into what one variant's ANN holds and compares.

    ``reduce`` truncates or projects and re-normalises; ``encode`` converts to the
    stored type; ``prepare`` is encode then decode, as float32 unit rows, so an
    exact (brute force) search ranks exactly as the ANN of that type does.
    """

    def __init__(self, spec: StorageSpec, space_dims: int, projection: Projection | None = None) -> None:
        if spec.reduction == "pca" and spec.dims is not None and projection is None:
            raise ConfigError(f"storage {spec.key} needs its fitted projection", hint="run `embedops migrate start` with --pca to fit one")
        self.spec = spec
        self.space_dims = space_dims
        self.ndim = spec.stored_dims(space_dims)
        self.projection = projection
        self.identity = spec.precision == "f32" and not spec.reduces

    # what usearch is told
    @property
    def usearch_dtype(self) -> str:
        return self.spec.precision

    @property
    def usearch_metric(self) -> str:
        return "hamming" if self.spec.precision == "b1" else "cos"

    def reduce(self, x: np.ndarray) -> np.ndarray:
        import numpy as np
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.space_dims)
        if not self.spec.reduces:
            return x
        if self.projection is not None:
            return _normalized(self.projection.apply(x))
        return _normalized(x[:, : self.ndim])

    def encode(self, reduced: np.ndarray) -> np.ndarray:
        import numpy as np
        p = self.spec.precision
        if p == "f32":
            return np.ascontiguousarray(reduced, dtype=np.float32)
        if p == "f16":
            return reduced.astype(np.float16)
        if p == "i8":
            # Cosine ignores each vector's scale, so scaling to the int8 range per vector loses nothing
            # and uses all 255 levels (usearch's own cast spends most of them on components never reached).
            peak = np.abs(reduced).max(axis=1, keepdims=True)
            return np.round(reduced * (127.0 / np.where(peak > 0, peak, 1.0))).astype(np.int8)
        return np.packbits(reduced > 0, axis=1)

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded rows back to float32 unit rows (b1: ±1 per bit)."""
        import numpy as np
        if self.spec.precision == "b1":
            bits = np.unpackbits(encoded, axis=1, count=self.ndim).astype(np.float32)
            return _normalized(bits * 2.0 - 1.0)
        return _normalized(encoded.astype(np.float32))

    def compared(self, encoded: np.ndarray) -> np.ndarray:
        """Encoded rows (``ann_vectors``) as float32 unit rows whose dot products are the graph's similarities."""
        if self.spec.precision == "f32":
            return encoded  # already unit rows (reduce re-normalises)
        return self.decode(encoded)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """What an exact search compares: reduced, encoded and decoded unit rows (``x`` itself for f32)."""
        import numpy as np
        if self.identity:
            return np.asarray(x, dtype=np.float32).reshape(-1, self.space_dims)
        return self.decode(self.encode(self.reduce(x)))

    def exact_scores(self, codes: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """Similarity of each query (full-precision rows) with every encoded row (``ann_vectors``): what the
        variant's graph measures; a brute-force scan in numpy."""
        import numpy as np
        q = self.ann_vectors(queries)
        if self.spec.precision == "f32":
            return np.asarray(q @ codes.T, dtype=np.float32)
        out = np.empty((len(q), len(codes)), dtype=np.float32)
        qf = _normalized(q.astype(np.float32)) if self.spec.precision != "b1" else q
        # Binary XORs every query with every row of a block: keep that temporary near 32 MB.
        step = max(1, _XOR_BYTES // max(1, len(q) * q.shape[1])) if self.spec.precision == "b1" else _BLOCK
        for lo in range(0, len(codes), step):
            block = codes[lo : lo + step]
            if self.spec.precision == "b1":
                bits = np.bitwise_count(block[None, :, :] ^ q[:, None, :]).sum(axis=2)
                out[:, lo : lo + len(block)] = 1.0 - 2.0 * bits / self.ndim
            else:
                out[:, lo : lo + len(block)] = qf @ _normalized(block.astype(np.float32)).T
        return out

    def exact_top_k(self, codes: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's top ``k`` encoded rows (row offsets, scores, best first): a flat index's search.

        int8 and float16 rows are scanned by usearch's SIMD kernels (5x numpy's speed on int8, where
        numpy would convert every row to float32 first); float32 and binary by numpy."""
        import numpy as np
        k = min(k, len(codes))
        if k == 0:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in range(len(queries))]
        if self.spec.precision in ("f16", "i8"):
            from embedops.vectors.ann import GIL_HANDOFF, usearch_index

            usearch_index()  # onnxruntime before usearch's extension (see there)
            from usearch.index import search

            q = self.ann_vectors(queries)
            with GIL_HANDOFF:
                found = search(codes, q, k, "cos", exact=True)
            rows = np.asarray(found.keys, dtype=np.int64).reshape(len(q), -1)
            scores = self.scores(np.asarray(found.distances).reshape(len(q), -1))
            return [(rows[i], scores[i]) for i in range(len(q))]
        out = []
        for row in self.exact_scores(codes, queries):
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.argsort(-row[top], kind="stable")]
            out.append((top, row[top]))
        return out

    def ann_vectors(self, x: np.ndarray) -> np.ndarray:
        """Rows as the ANN takes them (for stored vectors and queries alike)."""
        return self.encode(self.reduce(x))

    def scores(self, distances: np.ndarray) -> np.ndarray:
        """Similarity from usearch distances: cosine, or 1 − 2·hamming/bits for b1 (the cosine of ±1 vectors)."""
        import numpy as np
        d = np.asarray(distances, dtype=np.float32)
        if self.spec.precision == "b1":
            return np.asarray(1.0 - 2.0 * d / self.ndim, dtype=np.float32)
        return np.asarray(1.0 - d, dtype=np.float32)


def rescore(keys: np.ndarray, full: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of candidate ``keys`` by cosine of their full-precision rows ``full`` with ``query``."""
    import numpy as np
    if len(keys) == 0:
        return np.empty(0, np.uint64), np.empty(0, np.float32)
    scores = np.asarray(full @ np.asarray(query, dtype=np.float32), dtype=np.float32)
    order = np.argsort(-scores, kind="stable")[:k]
    return np.asarray(keys, dtype=np.uint64)[order], scores[order]
