"""The in-memory duplicate index: canonical documents by content hash and by MinHash LSH.

Only canonical documents (kept, not quarantined) are indexed: a new document
is compared with what is embedded, never with another copy, so chains of
near-duplicates (A ≈ B ≈ C with A ≉ C) cannot drift a group apart. Each
canonical document remembers its members (the duplicates linked to it), so
changing or deleting it names exactly the documents to re-check.

The index holds no text: a signature (the ``num_perm`` × 4 bytes that
:meth:`Signature.to_bytes` returns, the very object the decision stores) and a
rank per canonical document, so it is rebuilt from stored rows in one pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embedops.curate.signature import Signature, SignatureSpec, stored_values
from embedops.errors import SignatureMismatch

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# (first_seen, doc_id): the smaller rank is the canonical copy of a group.
Rank = tuple[float, str]


@dataclass(frozen=True, slots=True)
class Match:
    """A canonical document similar to the one being checked."""

    doc_id: str
    rank: Rank
    similarity: float


@dataclass(slots=True)
class _Canonical:
    # One per kept document, so no __dict__, and no members dict until it has a member.
    first_seen: float  # its rank is (first_seen, its id)
    content_hash: str
    signature: bytes | None  # Signature.to_bytes(): the object its Decision stores
    ordinal: int  # its owner number in the bands (-1: not banded)
    members: dict[str, float] | None = None  # member id -> its first_seen


class DedupIndex:
    """Canonical documents, findable by exact content hash and by estimated Jaccard similarity."""

    def __init__(self, spec: SignatureSpec, threshold: float) -> None:
        self.spec = spec
        self.threshold = threshold
        self._canonical: dict[str, _Canonical] = {}
        self._by_hash: dict[str, str | list[str]] = {}  # nearly every hash has one document: no list for it
        self._member_of: dict[str, str] = {}
        self._bands = Bands(spec.num_perm, threshold)
        self._ids: list[str | None] = []  # band owner (ordinal) -> doc id; None once forgotten

    def __len__(self) -> int:
        return len(self._canonical)

    def is_canonical(self, doc_id: str) -> bool:
        return doc_id in self._canonical

    def canonical_of(self, doc_id: str) -> str | None:
        """The canonical document ``doc_id`` is linked to, if it is a duplicate."""
        return self._member_of.get(doc_id)

    def members(self, doc_id: str) -> list[str]:
        """The duplicates linked to canonical ``doc_id``, oldest first."""
        entry = self._canonical.get(doc_id)
        if entry is None or entry.members is None:
            return []
        return [m for m, _ in sorted(entry.members.items(), key=lambda kv: (kv[1], kv[0]))]

    def add_canonical(self, doc_id: str, rank: Rank, content_hash: str, signature: Signature | None) -> None:
        """Index a kept document; without a signature it is found by exact content only."""
        self._absent(doc_id, rank)
        ordinal, data = -1, None
        if signature is not None:
            self._same_spec(signature)
            data = signature.to_bytes()
            ordinal = len(self._ids)  # a re-added document gets a new one
            self._bands.insert(ordinal, stored_values(data))
            self._ids.append(doc_id)
        self._canonical[doc_id] = _Canonical(rank[0], content_hash, data, ordinal)
        held = self._by_hash.get(content_hash)
        if held is None:
            self._by_hash[content_hash] = doc_id
        elif isinstance(held, str):
            self._by_hash[content_hash] = [held, doc_id]
        else:
            held.append(doc_id)

    def add_member(self, doc_id: str, rank: Rank, canonical_id: str) -> None:
        """Link duplicate ``doc_id`` to ``canonical_id`` (which must be indexed)."""
        self._absent(doc_id, rank)
        entry = self._canonical[canonical_id]
        if entry.members is None:
            entry.members = {}
        entry.members[doc_id] = rank[0]
        self._member_of[doc_id] = canonical_id

    def _absent(self, doc_id: str, rank: Rank) -> None:
        # Re-adding a canonical document would silently unlink its members: forget() it first.
        if doc_id in self._canonical or doc_id in self._member_of:
            raise ValueError(f"{doc_id!r} is already indexed; forget() it first")
        if rank[1] != doc_id:  # only first_seen is kept: the rest of the rank is the id
            raise ValueError(f"the rank of {doc_id!r} must be (first_seen, {doc_id!r}), not {rank!r}")

    def _same_spec(self, signature: Signature) -> None:
        if signature.spec != self.spec:
            raise SignatureMismatch(f"cannot compare signatures {signature.spec.key} and {self.spec.key}")

    def forget(self, doc_id: str) -> list[str]:
        """Drop ``doc_id``; when it was canonical, its members (oldest first), now unlinked, to re-check."""
        canonical_id = self._member_of.pop(doc_id, None)
        if canonical_id is not None:
            canonical = self._canonical[canonical_id]
            assert canonical.members is not None
            del canonical.members[doc_id]
            if not canonical.members:
                canonical.members = None
        entry = self._canonical.get(doc_id)
        if entry is None:
            return []
        orphans = self.members(doc_id)
        for member in orphans:
            del self._member_of[member]
        del self._canonical[doc_id]
        held = self._by_hash[entry.content_hash]
        if isinstance(held, str):
            del self._by_hash[entry.content_hash]
        else:
            held.remove(doc_id)
            if len(held) == 1:
                self._by_hash[entry.content_hash] = held[0]
        if entry.signature is not None:
            self._bands.remove(entry.ordinal, stored_values(entry.signature))
            self._ids[entry.ordinal] = None
        return orphans

    def exact(self, content_hash: str) -> Match | None:
        """The oldest canonical document with this exact content."""
        held = self._by_hash.get(content_hash)
        if held is None:
            return None
        rank = min(self._rank(d) for d in ([held] if isinstance(held, str) else held))
        return Match(rank[1], rank, 1.0)

    def near(self, signature: Signature) -> list[Match]:
        """Canonical documents whose estimated Jaccard similarity reaches the threshold,
        most similar first, ties to the oldest (LSH candidates are verified on the signatures)."""
        import numpy as np
        self._same_spec(signature)
        values, num_perm = signature.values, self.spec.num_perm
        kept = []
        for ordinal in self._bands.query(values):
            doc_id = self._ids[ordinal]
            assert doc_id is not None  # the bands hand back no removed owner
            stored = self._canonical[doc_id].signature
            assert stored is not None
            similarity = float(np.count_nonzero(values == stored_values(stored))) / num_perm
            if similarity >= self.threshold:
                kept.append(Match(doc_id, self._rank(doc_id), similarity))
        return sorted(kept, key=lambda m: (-m.similarity, m.rank))

    def _rank(self, doc_id: str) -> Rank:
        return (self._canonical[doc_id].first_seen, doc_id)


# Keys inserted since the last flush, held in a dict before they are sorted into a level: at most this many
# (about 1.2 MB of dict and int objects, some 550 documents' worth of bands at 30 bands).
RECENT_KEYS = 16_384
# A new level is merged into the one before it while it is at least this share of its size: levels then grow
# geometrically (7 at most at 10 million documents), and each key is merged ~18 times over a first sync.
MERGE_SHARE = 0.25
# A level of at least this many keys (2,200 documents' worth) gets a directory: a binary search in a large
# level misses the CPU caches at most steps, 30 times a query (2 × 30 µs at 28M keys against 15 µs through
# a directory).
DIRECTORY_FROM = 1 << 16
# Keys per directory bucket (on average: the keys are uniform), and the most a bucket may hold.
_BUCKET, _WIDEST = 8, 128


class Bands:
    """LSH banding: each signature is cut into ``bands`` runs of ``rows`` values, and two
    signatures sharing any whole run are candidates (probability 1 - (1 - J^rows)^bands).

    Documents are owner numbers (ordinals, never reused: :class:`DedupIndex` maps them to ids).
    Each run is reduced to a 64-bit key (the band's number mixed in), and the keys are held
    log-structured: the latest inserts in a dict (key -> owner(s), at most ``RECENT_KEYS``), then
    sorted numpy levels (keys, owners: 12 bytes a key), the newest merged into the one before it
    while it is at least ``MERGE_SHARE`` of its size. A query looks up its keys in the dict and in
    each level (binary search, or through the level's directory when it is large). A removed owner
    is deleted from the dict, or, once in a level, marked dead: left out of answers, and dropped
    when its level is merged.

    About 400 bytes per indexed document at 30 bands (measured: 395 bytes on 20,000 signatures of
    128 values, the dict of recent keys and the directories included), against 1.95 KB with one
    dict per band keyed by Python's hash of the run, and 9.8 KB with datasketch's MinHashLSH (a set
    per bucket); this decides how large a corpus fits in memory. The keys are the same in every
    process. Two runs with the same key are both candidates, equal or not: a collision only adds a
    candidate, which the caller verifies on the signatures.
    """

    def __init__(self, num_perm: int, threshold: float) -> None:
        import numpy as np
        self.bands, self.rows = lsh_params(threshold, num_perm)
        self._recent: dict[int, int | list[int]] = {}
        self._shared = 0  # keys of the recent dict held by a list of owners
        self._levels: list[_Level] = []
        self._dead: set[int] = set()  # removed owners still in a level
        self._offset = (np.arange(1, self.bands + 1, dtype=np.uint64) * np.uint64(_GOLDEN))[:, None]
        self._multiplier = (np.arange(1, self.rows + 1, dtype=np.uint64) * np.uint64(_MIX1)) | np.uint64(1)
        self._shift = np.uint64(29)
        self._last: tuple[bytes, npt.NDArray[np.uint64]] = (b"", np.empty(0, dtype=np.uint64))

    def keys(self, values: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        """The 64-bit key of each band of ``values``: equal runs give equal keys.

        Each value is offset by its band's constant, multiplied by its row's (odd) constant and
        mixed (xorshift), and a band's key is the sum of its row's: unequal runs rarely share one."""
        import numpy as np
        used = values[: self.bands * self.rows]
        raw = used.tobytes()
        if raw == self._last[0]:  # a kept document's signature is queried, then inserted
            return self._last[1]
        x = np.add(used.reshape(self.bands, self.rows), self._offset)  # uint64: arrays wrap silently
        x *= self._multiplier
        x ^= x >> self._shift
        key: npt.NDArray[np.uint64] = x.sum(axis=1, dtype=np.uint64)
        key.flags.writeable = False
        self._last = (raw, key)
        return key

    def insert(self, owner: int, values: npt.NDArray[np.uint32]) -> None:
        if owner in self._dead:
            raise ValueError(f"owner {owner} was removed and is still in a level: owners are never reused")
        recent, keys = self._recent, self.keys(values).tolist()
        if recent.keys().isdisjoint(keys) and len(set(keys)) == len(keys):
            recent.update(dict.fromkeys(keys, owner))  # nearly every key has one owner: no list for it
        else:
            for key in keys:
                held = recent.get(key)
                if held is None:
                    recent[key] = owner
                elif isinstance(held, int):
                    recent[key] = [held, owner]
                    self._shared += 1
                else:
                    held.append(owner)
        if len(recent) >= RECENT_KEYS:
            self._flush()

    def remove(self, owner: int, values: npt.NDArray[np.uint32]) -> None:
        keys = self.keys(values).tolist()
        held = self._recent.get(keys[0])
        if not (held == owner or (isinstance(held, list) and owner in held)):
            self._dead.add(owner)  # all of an owner's keys are in one place: a level
            return
        for key in keys:
            held = self._recent[key]
            if isinstance(held, int):
                del self._recent[key]
            else:
                held.remove(owner)
                if len(held) == 1:
                    self._recent[key] = held[0]
                    self._shared -= 1

    def query(self, values: npt.NDArray[np.uint32]) -> set[int]:
        """The owners sharing at least one band's key with ``values`` (removed ones left out)."""
        keys = self.keys(values)
        found: set[int] = set()
        for held in map(self._recent.get, keys.tolist()):
            if held is None:
                continue
            if isinstance(held, int):
                found.add(held)
            else:
                found.update(held)
        for level in self._levels:
            found.update(level.owners_of(keys))
        if self._dead:
            found = {o for o in found if o not in self._dead}
        return found

    @property
    def level_sizes(self) -> list[int]:
        """Keys in each sorted level, oldest (largest) first; the recent dict's are not counted."""
        return [len(level.keys) for level in self._levels]

    def _flush(self) -> None:
        import numpy as np
        recent, size = self._recent, len(self._recent)
        keys = np.fromiter(recent.keys(), dtype=np.uint64, count=size)
        if not self._shared:
            owners = np.fromiter(recent.values(), dtype=np.int64, count=size)
            more = []
        else:
            owners = np.fromiter((held if isinstance(held, int) else held[0] for held in recent.values()),
                                 dtype=np.int64, count=size)
            more = [(key, owner) for key, held in recent.items() if isinstance(held, list) for owner in held[1:]]
        self._recent, self._shared = {}, 0
        if more:
            keys = np.concatenate([keys, np.array([key for key, _ in more], dtype=np.uint64)])
            owners = np.concatenate([owners, np.array([owner for _, owner in more], dtype=np.int64)])
        order = np.argsort(keys)  # the order of equal keys does not matter
        self._levels.append(_Level(keys[order], owners[order].astype(_owner_type(int(owners.max())))))
        while len(self._levels) >= 2 and len(self._levels[-1].keys) >= MERGE_SHARE * len(self._levels[-2].keys):
            newer = self._levels.pop()
            older = self._levels.pop()
            self._levels.append(_merge(self._alive(older), self._alive(newer)))

    def _alive(self, level: _Level) -> _Level:
        """``level`` without the entries of dead owners; those owners are then gone from every level."""
        import numpy as np
        if not self._dead:
            return level
        dead = np.isin(level.owners, np.fromiter(self._dead, dtype=np.int64, count=len(self._dead)))
        if not dead.any():
            return level
        self._dead.difference_update(np.unique(level.owners[dead]).tolist())
        alive = ~dead
        return _Level(level.keys[alive], level.owners[alive])


class _Level:
    """Sorted keys and their owners. A large level also has a directory: where the keys whose top
    bits are b start, for every b (about ``_BUCKET`` keys a bucket: the keys are uniform), and the
    most keys a bucket holds, a window wide enough to read any bucket whole."""

    __slots__ = ("keys", "owners", "starts", "shift", "window")

    def __init__(self, keys: npt.NDArray[np.uint64], owners: npt.NDArray[np.signedinteger]) -> None:
        import numpy as np
        self.keys, self.owners = keys, owners
        self.starts: npt.NDArray[np.signedinteger] | None = None
        self.shift = np.uint64(64)
        self.window = np.arange(0)
        if len(keys) >= DIRECTORY_FROM:
            bits = max(1, (len(keys) // _BUCKET).bit_length() - 1)
            shift = np.uint64(64 - bits)
            starts = np.append(keys.searchsorted(np.arange(1 << bits, dtype=np.uint64) << shift), len(keys))
            widest = int(np.diff(starts).max())
            if widest <= _WIDEST:  # else many owners share keys: binary search reads each run at once
                self.starts = starts.astype(np.int32 if len(keys) < 2**31 else np.int64)
                self.shift, self.window = shift, np.arange(widest)

    def owners_of(self, keys: npt.NDArray[np.uint64]) -> list[int]:
        """The owners of every entry equal to one of ``keys`` (an owner may come more than once)."""
        import numpy as np
        if self.starts is not None:  # the bucket of each key, read whole: equal entries are in it
            at = self.starts.take((keys >> self.shift).astype(np.intp))[:, None] + self.window
            equal = self.keys.take(at, mode="clip") == keys[:, None]  # past the end: the last key again
            owners: list[int] = self.owners.take(at[equal], mode="clip").tolist()
            return owners
        lo = self.keys.searchsorted(keys, side="left")
        counts = self.keys.searchsorted(keys, side="right") - lo
        total = int(counts.sum())
        if not total:
            return []
        # The positions lo[i] .. lo[i] + counts[i] - 1 for every key i, in one array.
        ends = np.cumsum(counts)
        at = np.arange(total) + np.repeat(lo - (ends - counts), counts)
        owners = self.owners[at].tolist()
        return owners


def _merge(older: _Level, newer: _Level) -> _Level:
    """Two sorted levels as one without sorting again: the newer level's entries go where a binary
    search puts them, the older's fill the other slots in order."""
    import numpy as np
    size = len(older.keys) + len(newer.keys)
    keys = np.empty(size, dtype=np.uint64)
    owners = np.empty(size, dtype=np.result_type(older.owners, newer.owners))
    slots = older.keys.searchsorted(newer.keys, side="right")
    slots += np.arange(len(newer.keys), dtype=slots.dtype)
    keys[slots] = newer.keys
    owners[slots] = newer.owners
    rest = np.ones(size, dtype=bool)
    rest[slots] = False
    keys[rest] = older.keys
    owners[rest] = older.owners
    return _Level(keys, owners)


_GOLDEN, _MIX1 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9


def _owner_type(largest: int) -> type[np.signedinteger]:
    import numpy as np
    return np.int32 if largest < 2**31 else np.int64


# A missed candidate is a duplicate embedded; a false one costs one signature comparison.
_FALSE_POSITIVE_WEIGHT, _FALSE_NEGATIVE_WEIGHT = 0.2, 0.8


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands × rows ≤ num_perm minimizing the weighted areas of false
    candidates below the threshold and of missed ones above it (datasketch's criterion)."""
    import numpy as np
    s = np.linspace(0.0, 1.0, 1001)
    below, above = s <= threshold, s >= threshold
    best: tuple[float, int, int] | None = None
    for bands in range(2, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            p = 1.0 - (1.0 - s ** rows) ** bands
            error = (_FALSE_POSITIVE_WEIGHT * np.trapezoid(p[below], s[below])
                     + _FALSE_NEGATIVE_WEIGHT * np.trapezoid(1.0 - p[above], s[above]))
            if best is None or error < best[0]:
                best = (float(error), bands, rows)
    assert best is not None
    return best[1], best[2]
