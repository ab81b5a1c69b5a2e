"""Near-duplicate signatures: MinHash over word shingles, persistable as bytes.

A document's shingles are its runs of ``shingle_size`` consecutive words
(:mod:`embedops.curate.text`); two documents' Jaccard similarity is the share
of shingles they have in common, and the MinHash signature (datasketch,
``affine32`` scheme, a fixed seed) estimates it from ``num_perm`` 32-bit values.
The signature is stored with the document, so checking a new document never
re-reads the corpus: the LSH index is rebuilt from the stored bytes.

The bytes carry the parameters that made them (``shingle_size``, ``num_perm``,
seed); a signature made with other parameters is refused with
:class:`~embedops.errors.SignatureMismatch` rather than compared wrongly.

>>> spec = SignatureSpec(shingle_size=3, num_perm=64)
>>> a = signature("the quick brown fox jumps over the lazy dog", spec)
>>> Signature.from_bytes(a.to_bytes(), spec).jaccard(a)
1.0
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedops.curate.text import words
from embedops.errors import SignatureMismatch

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

SEED = 1
_MAGIC = b"EMH1"
_HEADER = struct.Struct("<4sHHI")  # magic, shingle_size, num_perm, seed


@dataclass(frozen=True)
class SignatureSpec:
    """The parameters a signature depends on; changing one means every signature is recomputed."""

    shingle_size: int
    num_perm: int
    seed: int = SEED

    @property
    def key(self) -> str:
        """A short name for the spec, e.g. to store next to the signatures: ``minhash:k3:p128:s1``."""
        return f"minhash:k{self.shingle_size}:p{self.num_perm}:s{self.seed}"


@dataclass(frozen=True, eq=False)
class Signature:
    """A MinHash signature: ``num_perm`` unsigned 32-bit values and the spec that made them."""

    spec: SignatureSpec
    values: npt.NDArray[np.uint32]

    def jaccard(self, other: Signature) -> float:
        """Estimated Jaccard similarity: the share of equal values."""
        import numpy as np
        if other.spec != self.spec:
            raise SignatureMismatch(f"cannot compare signatures {self.spec.key} and {other.spec.key}")
        return float(np.count_nonzero(self.values == other.values)) / self.spec.num_perm

    def to_bytes(self) -> bytes:
        """The bytes to store; made once, so that the index and the decision hold the same object."""
        return self._bytes

    @functools.cached_property
    def _bytes(self) -> bytes:
        spec = self.spec
        return _HEADER.pack(_MAGIC, spec.shingle_size, spec.num_perm, spec.seed) + self.values.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, expected: SignatureSpec) -> Signature:
        """The signature stored in ``data``; :class:`SignatureMismatch` unless made with ``expected``."""
        import numpy as np
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise SignatureMismatch("not a stored embedops MinHash signature", hint=_RECOMPUTE)
        _, shingle_size, num_perm, seed = _HEADER.unpack_from(data)
        spec = SignatureSpec(shingle_size, num_perm, seed)
        if spec != expected:
            raise SignatureMismatch(f"stored signature was made with {spec.key}, the settings ask for {expected.key}",
                                    hint=_RECOMPUTE, stored=spec.key, expected=expected.key)
        if len(data) != _HEADER.size + 4 * num_perm:
            raise SignatureMismatch(f"truncated signature: {len(data)} bytes for {num_perm} values", hint=_RECOMPUTE)
        values = np.frombuffer(data, dtype="<u4", offset=_HEADER.size).astype(np.uint32)
        read = cls(spec, values)
        if type(data) is bytes:
            read.__dict__["_bytes"] = data  # to_bytes() hands back the stored object, not a copy
        return read


def stored_values(data: bytes) -> npt.NDArray[np.uint32]:
    """The values of a signature held as its bytes (:meth:`Signature.to_bytes`, or checked with
    :meth:`Signature.from_bytes`), read in place: the duplicate index keeps only the bytes."""
    import numpy as np
    return np.frombuffer(data, dtype="<u4", offset=_HEADER.size)


_RECOMPUTE = "shingle_size or num_perm changed: recompute every stored signature from its document's text"


def shingles(text: str, size: int) -> set[str]:
    """The distinct runs of ``size`` consecutive words; a shorter text is one shingle (empty: none)."""
    tokens = words(text)
    if len(tokens) <= size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def signature(text: str, spec: SignatureSpec) -> Signature:
    """The MinHash signature of ``text``'s shingles (an empty text has the all-max signature)."""
    import numpy as np
    from datasketch import MinHash  # type: ignore[import-untyped]

    minhash = MinHash(num_perm=spec.num_perm, seed=spec.seed, permutations=_permutations(spec.num_perm, spec.seed),
                      scheme="affine32")
    minhash.update_batch([s.encode("utf-8") for s in shingles(text, spec.shingle_size)])
    return Signature(spec, np.asarray(minhash.hashvalues, dtype=np.uint32))


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int, seed: int) -> Any:
    """The permutation parameters, drawn once per (num_perm, seed) rather than once per document."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
