"""Fingerprints: what a model actually does, measured on fixed sentinel texts.

An :class:`EmbedderRef` is what an embedder *declares*. A fingerprint is what
it *does*: the vectors it returns for :data:`SENTINELS`. Comparing a stored
fingerprint with a live one detects a provider that changed its model behind
the same name, weights swapped in place, or a quantized build posing as the
original (all-MiniLM-L6-v2 fp32 vs int8 agree only to cosine ~0.999).

An asymmetric model (e5's ``query:``/``passage:``, sentence-transformers
prompts) embeds queries through another path than documents: a dropped or
changed query prompt leaves every stored vector valid and turns search to
noise. :func:`take_fingerprints` measures both sides of such a model (a
symmetric one: the document side only, at no extra cost) and
:func:`compare_spaces` says which side changed.

>>> from embedops.embedding.registry import load_embedder
>>> emb = load_embedder("hashing")
>>> compare_fingerprints(take_fingerprint(emb), take_fingerprint(emb)).same
True
>>> take_fingerprints(emb).queries is None  # symmetric: queries are embedded as documents
True
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from embedops.embedding.base import Embedder
from embedops.errors import EmbeddingError

if TYPE_CHECKING:
    from embedops.embedding.spend import Spend

#: Bump when SENTINELS change: fingerprints of different versions are not comparable.
SENTINELS_VERSION = 1

#: Fixed probe texts: short and long, several languages and scripts, code, numbers.
#: Changing them makes stored fingerprints incomparable: bump SENTINELS_VERSION.
SENTINELS: tuple[str, ...] = (
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email account?",
    "Refunds are issued within 14 days of receiving the returned item, minus a 5% restocking fee.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing oxygen "
    "as a by-product; it takes place mainly in the chloroplasts of leaf cells, where chlorophyll "
    "absorbs red and blue light while reflecting green.",
    "Der Vertrag kann mit einer Frist von drei Monaten zum Quartalsende gekündigt werden.",
    "Le chat dort sur le canapé pendant que la pluie tombe doucement.",
    "¿Dónde está la estación de tren más cercana?",
    "東京は日本の首都であり、世界有数の大都市です。",
    "Москва — столица России.",
    "def fibonacci(n: int) -> int:\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT customer_id, SUM(amount) FROM orders WHERE created_at >= '2024-01-01' GROUP BY 1;",
    "3.14159 2.71828 1.41421 6.02214076e23 -273.15",
    "Invoice #INV-2024-00917: total USD 1,249.99, due 2024-03-31.",
    "ERROR 2024-05-02T10:15:42Z worker-7 connection reset by peer (retry 3/5)",
    "🙂 great product, would buy again!!!",
    # Longer than every packaged model's token limit: a changed truncation shows up here.
    "The history of the lighthouse begins long before electric lamps. Early harbours lit open fires on "
    "hilltops so that returning ships could find the channel at night, and the keepers who fed those fires "
    "were paid by the merchants whose cargo depended on them. Later towers burned whale oil, then colza oil, "
    "then kerosene, each change bringing a brighter and steadier light. The Fresnel lens, introduced in the "
    "eighteen twenties, bent the light of a single flame into a concentrated beam visible for more than "
    "twenty miles, and within a few decades most coastal nations had adopted it. Keepers lived in the towers "
    "with their families, trimming wicks, polishing brass and glass, winding the clockwork that turned the "
    "lens, and recording the weather in logbooks that historians still read today. Storms could cut them off "
    "for weeks. Automation arrived in the twentieth century: timers, photocells and finally solar panels "
    "replaced the keepers one station at a time, and the last manned lighthouses were converted before the "
    "end of the century. Many of the old towers are now museums, guest houses or nesting sites for seabirds, "
    "while satellite navigation has made their beams a backup rather than a lifeline. Yet sailors still "
    "speak of the relief of seeing a familiar light flash its pattern on a dark night, counting the seconds "
    "between flashes to be sure of which headland lies ahead, and steering for home.",
)

Side = Literal["documents", "queries"]
_SIDE_NAMES: dict[Side, str] = {"documents": "document", "queries": "query"}

_MAGIC = b"EOFP"
_HEADER = struct.Struct("<4sHII")  # magic, format version, rows, dims
_FORMAT_VERSION = 1


@dataclass
class Fingerprint:
    """The vectors an embedder returns for :data:`SENTINELS`, plus a short digest.

    The digest is a label for display and quick equality; decide with
    :func:`compare_fingerprints`, since tiny float noise can flip a rounded digit.
    """

    vectors: np.ndarray
    digest: str
    sentinels_version: int = SENTINELS_VERSION

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, sentinels_version: int = SENTINELS_VERSION) -> Fingerprint:
        """A fingerprint for stored vectors (e.g. read back with :func:`from_bytes`)."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        return cls(vectors=matrix, digest=vectors_digest(matrix), sentinels_version=sentinels_version)


@dataclass
class SpaceFingerprint:
    """A space's fingerprints: its document side, and its query side when the model is asymmetric."""

    documents: Fingerprint
    queries: Fingerprint | None = None


@dataclass(frozen=True)
class FingerprintCheck:
    """Outcome of comparing two fingerprints sentinel by sentinel.

    For a whole space (:func:`compare_spaces`): ``min_cosine`` is the lowest over
    both sides, ``mean_cosine`` and ``per_sentinel`` are the document side's,
    ``query_min_cosine`` the query side's (None when it was not compared), and
    ``changed`` names the sides that differ.
    """

    same: bool
    min_cosine: float
    mean_cosine: float
    per_sentinel: list[float] = field(default_factory=list)
    reason: str = ""
    changed: tuple[Side, ...] = ()
    query_min_cosine: float | None = None


def vectors_digest(vectors: np.ndarray) -> str:
    """16-hex-digit blake2b of the vectors rounded to 3 decimals (shape included)."""
    # Integers, not rounded floats: -0.0 and 0.0 would hash differently.
    quantized = np.rint(np.asarray(vectors, dtype=np.float64) * 1000).astype("<i4")
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(quantized.shape).encode())
    digest.update(quantized.tobytes())
    return digest.hexdigest()


def take_fingerprint(embedder: Embedder, price: float | None = 0.0, spend: Spend | None = None, *,
                     side: Side = "documents") -> Fingerprint:
    """Embed :data:`SENTINELS` with ``embedder`` (as documents, or with ``side="queries"`` as queries) and
    fingerprint the result; what that cost is added to ``spend``."""
    from embedops.embedding.spend import Spend, embed_metered

    vectors = np.asarray(embed_metered(embedder, list(SENTINELS), price, spend if spend is not None else Spend(),
                                       query=side == "queries"), dtype=np.float32)
    if vectors.shape != (len(SENTINELS), embedder.ref.dims):
        raise EmbeddingError(
            f"embedder {embedder.ref.key} returned shape {vectors.shape} for {len(SENTINELS)} sentinels, "
            f"expected ({len(SENTINELS)}, {embedder.ref.dims})",
            hint="the provider does not honour its declared dimension; check the model configuration",
        )
    return Fingerprint.from_vectors(vectors)


def take_fingerprints(embedder: Embedder, price: float | None = 0.0, spend: Spend | None = None) -> SpaceFingerprint:
    """Both sides of an asymmetric embedder (``ref.asymmetric``), the document side of a symmetric one."""
    documents = take_fingerprint(embedder, price, spend)
    queries = take_fingerprint(embedder, price, spend, side="queries") if embedder.ref.asymmetric else None
    return SpaceFingerprint(documents, queries)


def to_bytes(vectors: np.ndarray) -> bytes:
    """Serialize a float32 matrix for a database blob (small header + little-endian data)."""
    matrix = np.ascontiguousarray(vectors, dtype="<f4")
    if matrix.ndim != 2:
        raise EmbeddingError(f"fingerprint vectors must be 2-D, got shape {matrix.shape}")
    rows, dims = matrix.shape
    return _HEADER.pack(_MAGIC, _FORMAT_VERSION, rows, dims) + matrix.tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    """Inverse of :func:`to_bytes`; raises :class:`EmbeddingError` for a damaged blob."""
    if len(blob) < _HEADER.size:
        raise EmbeddingError(f"fingerprint blob is {len(blob)} bytes, too short for its header", hint=_REFINGERPRINT)
    magic, version, rows, dims = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _FORMAT_VERSION:
        raise EmbeddingError(f"fingerprint blob has unknown format {magic!r} v{version}", hint=_REFINGERPRINT)
    expected = _HEADER.size + rows * dims * 4
    if len(blob) != expected:
        raise EmbeddingError(f"fingerprint blob is {len(blob)} bytes, expected {expected}", hint=_REFINGERPRINT)
    data = np.frombuffer(blob, dtype="<f4", offset=_HEADER.size).reshape(rows, dims)
    return data.astype(np.float32)


_REFINGERPRINT = "the stored fingerprint is damaged; re-take it from the index's embedder"


def compare_fingerprints(
    stored: Fingerprint | np.ndarray, live: Fingerprint | np.ndarray, min_cosine: float = 0.99999
) -> FingerprintCheck:
    """Same space when every sentinel's vectors agree to cosine >= ``min_cosine``.

    The default tolerates float noise from batching and threads (cosine
    ~0.9999999) and rejects a quantized or retrained model (~0.999 and below).
    Different shapes or sentinel versions are reported as not the same, with
    cosines of -1.0 and a ``reason``.
    """
    if isinstance(stored, Fingerprint) and isinstance(live, Fingerprint):
        if stored.sentinels_version != live.sentinels_version:
            why = f"sentinel versions differ ({stored.sentinels_version} vs {live.sentinels_version})"
            return FingerprintCheck(False, -1.0, -1.0, [], why)
    a, b = _matrix(stored), _matrix(live)
    if a.shape != b.shape:
        return FingerprintCheck(False, -1.0, -1.0, [], f"shapes differ: {a.shape} vs {b.shape}")
    cosines = [float(c) for c in _row_cosines(a, b)]
    low = min(cosines) if cosines else 1.0
    mean = sum(cosines) / len(cosines) if cosines else 1.0
    same = low >= min_cosine
    reason = "" if same else f"lowest sentinel cosine {low:.6f} < {min_cosine}"
    return FingerprintCheck(same, low, mean, cosines, reason)


def compare_spaces(stored: SpaceFingerprint, live: SpaceFingerprint, min_cosine: float = 0.99999) -> FingerprintCheck:
    """:func:`compare_fingerprints` on each side both hold; the result names the sides that changed.

    >>> a, b = Fingerprint.from_vectors(np.eye(2)), Fingerprint.from_vectors(np.eye(2)[::-1])
    >>> check = compare_spaces(SpaceFingerprint(a, a), SpaceFingerprint(a, b))
    >>> check.same, check.changed, check.reason
    (False, ('queries',), 'query side: lowest sentinel cosine 0.000000 < 0.99999')
    """
    documents = compare_fingerprints(stored.documents, live.documents, min_cosine)
    if stored.queries is None or live.queries is None:
        return replace(documents, changed=() if documents.same else ("documents",))
    queries = compare_fingerprints(stored.queries, live.queries, min_cosine)
    sides: tuple[tuple[Side, FingerprintCheck], ...] = (("documents", documents), ("queries", queries))
    changed = tuple(side for side, check in sides if not check.same)
    reason = "; ".join(f"{_SIDE_NAMES[side]} side: {check.reason}" for side, check in sides if not check.same)
    return FingerprintCheck(not changed, min(documents.min_cosine, queries.min_cosine), documents.mean_cosine,
                            documents.per_sentinel, reason, changed, queries.min_cosine)


def _matrix(value: Fingerprint | np.ndarray) -> np.ndarray:
    return np.asarray(value.vectors if isinstance(value, Fingerprint) else value, dtype=np.float64)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    # Two zero vectors are identical; a zero vector against a non-zero one is not.
    any_zero = norms == 0
    cosines = dots / np.where(any_zero, 1.0, norms)
    cosines = np.where(any_zero, np.where((a == b).all(axis=1), 1.0, 0.0), cosines)
    return np.clip(cosines, -1.0, 1.0)
