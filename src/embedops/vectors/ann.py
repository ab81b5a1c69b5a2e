"""A derived, rebuildable ANN index (usearch HNSW) for one vector index.

The catalog is the truth; this file is a cache kept current from the catalog's
change sequence: additions are vector rows with ``seq`` above the last one
applied, deletions are rows of ``vector_deletions``. A missing, corrupt or
inconsistent file is rebuilt from the database. Small indexes are searched
exactly (numpy), which is both faster and exact below a few thousand vectors.

Every refresh reads the catalog in one read transaction, so the stamp it
compares and the changes it applies describe the same state; concurrent
refreshes are serialized by the index's lock, and a search never sees a graph
half-way through an update.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedops.vectors.base import EF_SEARCH_GROWTH, MAX_EF_SEARCH, default_ef_search
from embedops.vectors.calibrate import CALIBRATE_MIN, RecallProbe
from embedops.vectors.storage import Codec, StorageSpec

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

EXACT_MAX = 20_000  # below this many vectors, exact search is as fast and exact
# Graph parameters by the size of the index when its graph is built (docs/scale.md has the
# measurements, bench/hnsw_tuning.py makes them). Up to HNSW_LARGE vectors M=16 with
# ef_construction 64 keeps recall@10 at or above 0.95 at the default ef_search on real and
# mixture-of-clusters embeddings, with a third of the build time of M=32/128; beyond it the
# graph gets M=32/128, which reaches the same recall with half the ef_search on hard data.
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 64
HNSW_LARGE = 2_000_000
HNSW_LARGE_CONNECTIVITY = 32
HNSW_LARGE_EXPANSION_ADD = 128
# Compaction: deletions leave tombstones in the graph (usearch marks them, searches skip
# them but still walk them). Past this share of the graph, it is rebuilt without them.
COMPACT_SHARE = 0.2
COMPACT_MIN = 1_000
_QUERY_BLOCK = 256  # queries per matrix product in exact batch search (256 x 20k scores: 20 MB)
_FETCH_ROWS = 20_000  # vectors read per step of a rebuild or catch-up: bounds the memory beside the graph

_ADDS_SQL = (
    "SELECT v.seq, e.vector FROM vectors v JOIN embeddings e"
    " ON e.space_key = v.space_key AND e.content_hash = v.content_hash"
    " WHERE v.index_id = ? AND v.seq > ? ORDER BY v.seq"
)
_VECS_BY_SEQ_SQL = (
    "SELECT v.seq, e.vector FROM vectors v JOIN embeddings e"
    " ON e.space_key = v.space_key AND e.content_hash = v.content_hash"
    " WHERE v.seq IN ({})"
)
_STAMP_SQL = (
    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM vectors WHERE index_id = ?),"
    " (SELECT COALESCE(MAX(seq), 0) FROM vector_deletions WHERE index_id = ?),"
    " (SELECT COUNT(*) FROM vectors WHERE index_id = ?)"
)


@dataclass(frozen=True)
class SizeSample:
    """An HNSW graph's size at one point of a build: what capacity projections are fitted to."""

    vectors: int
    serialized_bytes: int  # what the saved file holds: payloads, graph links, keys
    memory_bytes: int  # what usearch has allocated (arenas grow in steps of about 16 MB)


@dataclass
class Stamp:
    add_seq: int
    del_seq: int
    count: int


def usearch_index() -> Any:
    """usearch's ``Index`` class, with onnxruntime loaded first when it is installed.

    onnxruntime (1.32) crashes the process with SIGSEGV when it is imported after
    usearch's compiled extension (2.26), the other way round both work: a process
    that searches and then loads an ONNX model (a gate comparing minilm-l6 with
    minilm-l3) would die. ``tests/test_vectors.py`` holds the order.
    """
    try:
        import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        pass
    from usearch.index import Index

    return Index


class _GilHandoff:
    """Lowers Python's switch interval while a usearch call is in flight (``with GIL_HANDOFF: ...``).

    usearch 2.26 releases the GIL in its compiled calls but takes it back on its first
    worker thread for every vector it adds and every query it searches (a Ctrl-C check).
    While another thread runs Python (a sync's pipeline, a server's other requests),
    each of those waits for the interpreter's switch interval, 5 ms by default:
    measured with ``bench/gil_handoff.py``, a graph add beside a busy Python thread ran
    about 25x slower and a single search took 6.5 ms instead of 0.3. While any usearch
    call runs, the interval is GIL_HANDOFF_S; the last call to end restores the value it
    found (the interval is the process's: the lowering lasts only as long as the calls).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._saved = sys.getswitchinterval()
                if self._saved > GIL_HANDOFF_S:
                    sys.setswitchinterval(GIL_HANDOFF_S)
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                sys.setswitchinterval(self._saved)


GIL_HANDOFF_S = 1e-4
GIL_HANDOFF = _GilHandoff()


def hnsw_params(vectors: int) -> tuple[int, int]:
    """(M, ef_construction) for a graph built over ``vectors`` vectors."""
    if vectors >= HNSW_LARGE:
        return HNSW_LARGE_CONNECTIVITY, HNSW_LARGE_EXPANSION_ADD
    return HNSW_CONNECTIVITY, HNSW_EXPANSION_ADD


def compaction_due(vectors: int, tombstones: int) -> bool:
    """True when a graph's tombstones pass COMPACT_SHARE of it (and COMPACT_MIN)."""
    return tombstones >= COMPACT_MIN and tombstones > COMPACT_SHARE * (vectors + tombstones)


def _matrix(rows: list[tuple[int, bytes]], dims: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
    return keys, vecs


@contextmanager
def read_snapshot(raw: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction on ``raw`` (WAL: a consistent snapshot that never blocks writers).

    Inside a transaction the caller already opened, the caller's snapshot is used as it is.
    """
    if raw.in_transaction:
        yield raw
        return
    raw.execute("BEGIN")
    try:
        yield raw
    finally:
        raw.execute("COMMIT")  # read-only: ends the snapshot, writes nothing


def _batches(raw: sqlite3.Connection, sql: str, params: tuple[object, ...], dims: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, vectors) in steps of ``_FETCH_ROWS`` rows, so 1M vectors never sit in Python objects at once."""
    cursor = raw.execute(sql, params)
    while rows := cursor.fetchmany(_FETCH_ROWS):
        yield _matrix(rows, dims)


def read_vectors(raw: sqlite3.Connection, seqs: list[int], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the given ANN keys (for exact search over a filtered subset)."""
    rows: list[tuple[int, bytes]] = []
    for i in range(0, len(seqs), 900):
        part = seqs[i : i + 900]
        rows.extend(raw.execute(_VECS_BY_SEQ_SQL.format(",".join("?" * len(part))), part).fetchall())
    return _matrix(rows, dims)


class AnnIndex:
    """Search structure for one index; thread-safe; refreshes itself from the catalog."""

    def __init__(
        self, index_id: str, dims: int, directory: Path, *, expansion_search: int | None = None,
        codec: Codec | None = None, exact_max: int | None = None,
    ) -> None:
        self.index_id = index_id
        self.dims = dims
        # How vectors are held: the index's storage variant (f32, all dimensions, by default).
        self.codec = codec or Codec(StorageSpec(), dims)
        # None: EXACT_MAX (read at refresh time); a flat variant is searched exactly at any size.
        self.exact_max = sys.maxsize if self.codec.spec.layout == "flat" and exact_max is None else exact_max
        self.expansion_search = expansion_search  # None: grows with the index (default_ef_search)
        self.path = directory / f"{index_id}.usearch"
        self.meta_path = directory / f"{index_id}.json"
        self._lock = threading.Lock()
        self._hnsw: Any = None
        self._keys: np.ndarray | None = None  # exact mode: keys and the variant's encoded rows
        self._vecs: np.ndarray | None = None
        self._stamp = Stamp(-1, -1, -1)
        self._saved_stamp: Stamp | None = None
        self.rebuilds = 0
        self.tombstones = 0  # deleted vectors still in the graph (removed from results, not from it)
        self.compactions = 0
        self.build_seconds = 0.0  # graph inserts (rebuilds and catch-ups) in this process
        self.calibrated: tuple[int, int] | None = None  # (ef_search measured to reach the target recall, at vectors)
        # Probes fed every vector the graph took since it was built (a graph grown batch by batch by a sync):
        # its measurement at the end of the sync needs no second pass over the vectors. None after a deletion.
        self._growing_probe: RecallProbe | None = None

    # -- keeping current -------------------------------------------------
    def stamp(self, raw: sqlite3.Connection) -> Stamp:
        a, d, n = raw.execute(_STAMP_SQL, (self.index_id, self.index_id, self.index_id)).fetchone()
        return Stamp(int(a), int(d), int(n))

    def refresh(self, raw: sqlite3.Connection) -> None:
        """Bring the search structure in line with the catalog.

        The stamp is taken under the lock, in the same snapshot as the changes it
        covers: a stamp taken earlier could be older than what another thread
        already applied, and moving back would make the count check fail and
        trigger a needless full rebuild.
        """
        with self._lock, read_snapshot(raw):
            db = self.stamp(raw)
            if db == self._stamp:
                return
            if db.count < (EXACT_MAX if self.exact_max is None else self.exact_max):
                self._load_exact(raw, db)
            else:
                self._refresh_hnsw(raw, db)

    def _load_exact(self, raw: sqlite3.Connection, db: Stamp) -> None:
        self._hnsw, self._growing_probe = None, None
        rows = raw.execute(_ADDS_SQL, (self.index_id, 0)).fetchall()
        keys, vecs = _matrix(rows, self.dims)
        self._keys, self._vecs = keys, self.codec.ann_vectors(vecs)
        self._stamp = Stamp(db.add_seq, db.del_seq, len(rows))

    def _new_hnsw(self, vectors: int) -> Any:
        Index = usearch_index()

        connectivity, expansion_add = hnsw_params(vectors)
        return Index(ndim=self.codec.ndim, metric=self.codec.usearch_metric, dtype=self.codec.usearch_dtype,
                     connectivity=connectivity, expansion_add=expansion_add)

    def _refresh_hnsw(self, raw: sqlite3.Connection, db: Stamp) -> None:
        self._keys = self._vecs = None
        if self._hnsw is None:
            self._load_file(db)
        if self._hnsw is None or not self._catch_up(raw, db):
            self._rebuild(raw, db)
        self._apply_ef(self._hnsw)  # the default follows the graph's size

    def _load_file(self, db: Stamp) -> None:
        Index = usearch_index()

        try:
            meta = json.loads(self.meta_path.read_text())
            if meta["size"] != self.path.stat().st_size or meta["add_seq"] > db.add_seq:
                raise ValueError("ANN file does not match the catalog")
            if meta.get("storage", "f32") != self.codec.spec.key:
                raise ValueError(f"ANN file holds storage {meta.get('storage', 'f32')}, the index {self.codec.spec.key}")
            hnsw: Any = Index.restore(str(self.path))  # Any: usearch's setters are invisible to mypy
            if hnsw is None or hnsw.ndim != self.codec.ndim:
                raise ValueError("ANN file unreadable or of another dimension")
            # The file keeps the graph, not the search settings: restore() would search with ef=64
            # (_refresh_hnsw sets ef_search once the graph is current).
            hnsw.expansion_add = meta.get("ef_construction", HNSW_EXPANSION_ADD)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            if self.path.exists() or self.meta_path.exists():
                log.warning("rebuilding ANN index %s: %s", self.index_id, exc)
            return
        self._hnsw, self._growing_probe = hnsw, None  # a restored graph is measured by a pass when due
        self._stamp = Stamp(meta["add_seq"], meta["del_seq"], len(hnsw))
        self._saved_stamp = self._stamp
        self.tombstones = int(meta.get("tombstones", 0))
        cal = meta.get("calibrated")
        self.calibrated = (int(cal[0]), int(cal[1])) if cal else None

    def _catch_up(self, raw: sqlite3.Connection, db: Stamp) -> bool:
        """Apply changes since the last stamp; False when the result disagrees with the catalog."""
        import numpy as np
        hnsw, old = self._hnsw, self._stamp
        dels = raw.execute(
            "SELECT vector_seq FROM vector_deletions WHERE index_id = ? AND seq > ?",
            (self.index_id, old.del_seq),
        ).fetchall()
        if dels:
            keys = np.array([d[0] for d in dels], dtype=np.uint64)
            present = keys[np.asarray(hnsw.contains(keys), dtype=bool)]
            if len(present):
                hnsw.remove(present)
                self.tombstones += len(present)
                self._growing_probe = None  # its exact neighbours may be gone
        started = time.perf_counter()
        probe = self._growing_probe
        for keys, vecs in _batches(raw, _ADDS_SQL, (self.index_id, old.add_seq), self.dims):
            fresh = ~np.asarray(hnsw.contains(keys), dtype=bool)
            if fresh.any():
                encoded = self.codec.ann_vectors(vecs[fresh])
                with GIL_HANDOFF:
                    hnsw.add(keys[fresh], encoded, threads=0)
                if probe is not None:
                    probe.see(keys[fresh], self.codec.compared(encoded))
        self.build_seconds += time.perf_counter() - started
        self._stamp = Stamp(db.add_seq, db.del_seq, len(hnsw))
        return len(hnsw) == db.count

    def _build(self, raw: sqlite3.Connection, db: Stamp) -> tuple[Any, RecallProbe]:
        """A new graph of every vector in the snapshot ``raw`` reads (multi-threaded batch adds).

        A large graph also gets its ef_search from its recall on its own vectors (vectors/calibrate.py).
        """
        hnsw = self._new_hnsw(db.count)
        # Every build keeps probes (100 queries: their exact neighbours cost one small product per block), so that
        # a graph that goes on growing by catch-ups is measured at the end without a second pass over its vectors.
        probe = RecallProbe(encode=self.codec.encode, scores=self.codec.scores)
        started = time.perf_counter()
        for keys, vecs in _batches(raw, _ADDS_SQL, (self.index_id, 0), self.dims):
            encoded = self.codec.ann_vectors(vecs)
            with GIL_HANDOFF:
                hnsw.add(keys, encoded, threads=0)  # all cores; batches bound the memory beside the graph
            # exact recall is measured on what the graph holds (calibrate.py says why)
            probe.see(keys, self.codec.compared(encoded))
        self.calibrated = (probe.ef_for(hnsw), len(hnsw)) if db.count >= CALIBRATE_MIN and len(hnsw) else None
        self.build_seconds += time.perf_counter() - started
        return hnsw, probe

    def _rebuild(self, raw: sqlite3.Connection, db: Stamp) -> None:
        self.rebuilds += 1
        # Let the old graph go before the new one grows; should this fail, the
        # unmatched stamp makes the next refresh try again.
        self._hnsw, self._stamp = None, Stamp(-1, -1, -1)
        hnsw, probe = self._build(raw, db)
        self._hnsw, self.tombstones, self._growing_probe = hnsw, 0, probe
        self._stamp = Stamp(db.add_seq, db.del_seq, len(hnsw))

    def build_measured(self, raw: sqlite3.Connection, sample_at: int, threads: int = 1) -> list[SizeSample]:
        """Build the HNSW graph from the catalog (whatever its size), sampling its size after
        ``sample_at`` vectors and at the end: a scratch build for capacity analysis.

        One thread by default: usearch builds the same graph from the same rows only then, so a
        capacity report is reproducible (concurrent inserts change the graph, and recall with it)."""
        samples: list[SizeSample] = []
        with self._lock, read_snapshot(raw):
            db = self.stamp(raw)
            self._keys = self._vecs = None
            hnsw = self._new_hnsw(db.count)
            for keys, vecs in _batches(raw, _ADDS_SQL, (self.index_id, 0), self.dims):
                encoded = self.codec.ann_vectors(vecs)
                cut = sample_at - len(hnsw)
                with GIL_HANDOFF:
                    if 0 < cut < len(keys):
                        hnsw.add(keys[:cut], encoded[:cut], threads=threads)
                        samples.append(_size(hnsw))
                        keys, encoded = keys[cut:], encoded[cut:]
                    hnsw.add(keys, encoded, threads=threads)
                if len(hnsw) == sample_at:
                    samples.append(_size(hnsw))
            samples.append(_size(hnsw))
            self._hnsw = hnsw
            self._stamp = Stamp(db.add_seq, db.del_seq, len(hnsw))
            self._apply_ef(hnsw)
        return samples

    # -- measured ef_search ------------------------------------------------------
    @property
    def calibration_due(self) -> bool:
        """A graph of CALIBRATE_MIN vectors or more never measured, or grown to twice its measured size."""
        n = self._stamp.count
        return self._hnsw is not None and n >= CALIBRATE_MIN and (self.calibrated is None or n >= 2 * self.calibrated[1])

    def calibrate(self, raw: sqlite3.Connection) -> None:
        """Measure ef_search on the graph as it is (one pass over its vectors): for graphs grown by catch-ups."""
        with self._lock, read_snapshot(raw):
            if self._hnsw is None:
                return
            probe = self._growing_probe
            if probe is None or probe.seen != len(self._hnsw):  # not fed every vector since the build: one pass
                probe = RecallProbe(encode=self.codec.encode, scores=self.codec.scores)
                for keys, vecs in _batches(raw, _ADDS_SQL, (self.index_id, 0), self.dims):
                    probe.see(keys, self.codec.compared(self.codec.ann_vectors(vecs)))
            self.calibrated = (probe.ef_for(self._hnsw), len(self._hnsw))
            self._apply_ef(self._hnsw)
            self._saved_stamp = None  # the measurement is saved with the graph

    # -- compaction ------------------------------------------------------------
    @property
    def compaction_due(self) -> bool:
        return self._hnsw is not None and compaction_due(self._stamp.count, self.tombstones)

    def compact(self, raw: sqlite3.Connection) -> None:
        """Rebuild the graph without its tombstones; searches go on on the old graph meanwhile.

        The new graph is built from a snapshot outside the lock; the lock is taken
        only to bring it up to the catalog's current state and swap it in.
        """
        with read_snapshot(raw):
            snap = self.stamp(raw)
            fresh, _ = self._build(raw, snap)
        with self._lock, read_snapshot(raw):
            db = self.stamp(raw)
            self._hnsw, self._stamp, self.tombstones = fresh, Stamp(snap.add_seq, snap.del_seq, len(fresh)), 0
            self._growing_probe = None  # the compacted graph is measured by a pass over its vectors when due
            if not self._catch_up(raw, db):
                self._rebuild(raw, db)
            self._apply_ef(self._hnsw)
            self._saved_stamp = None  # the file still holds the tombstones: the next save writes the new graph
            self.compactions += 1

    def save(self) -> bool:
        """Persist the HNSW graph (atomically); exact-mode indexes have nothing to save."""
        with self._lock:
            if self._hnsw is None or self._stamp == self._saved_stamp:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".usearch.tmp")
            self._hnsw.save(str(tmp))
            meta = {"add_seq": self._stamp.add_seq, "del_seq": self._stamp.del_seq, "size": tmp.stat().st_size,
                    "storage": self.codec.spec.key, "vectors": self._stamp.count, "tombstones": self.tombstones,
                    "connectivity": self._hnsw.connectivity, "ef_construction": self._hnsw.expansion_add,
                    "calibrated": list(self.calibrated) if self.calibrated else None}
            tmp_meta = self.meta_path.with_suffix(".json.tmp")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp, self.path)
            os.replace(tmp_meta, self.meta_path)
            self._saved_stamp = self._stamp
            return True

    @property
    def loaded(self) -> bool:
        """Whether this process has read the index (a graph, or the exact-search arrays) at least once."""
        return self._stamp.count >= 0

    def saved_is_current(self, raw: sqlite3.Connection) -> dict[str, Any] | None:
        """The saved file's metadata when the file already holds the catalog's state and needs no maintenance
        (no compaction, no ef_search measurement due): then there is nothing to load or save. None otherwise."""
        meta = self.saved_meta()
        if not meta or meta.get("storage", "f32") != self.codec.spec.key:
            return None
        with read_snapshot(raw):
            db = self.stamp(raw)
        try:
            current = (meta["add_seq"], meta["del_seq"], meta.get("vectors")) == (db.add_seq, db.del_seq, db.count)
            current = current and meta["size"] == self.path.stat().st_size
        except (OSError, KeyError):
            return None
        cal = meta.get("calibrated")
        due = compaction_due(db.count, int(meta.get("tombstones", 0))) or (
            db.count >= CALIBRATE_MIN and (not cal or db.count >= 2 * int(cal[1])))
        return meta if current and not due else None

    def saved_meta(self) -> dict[str, Any]:
        """What the saved file's metadata says (vectors, tombstones, parameters); {} when there is none."""
        try:
            meta: dict[str, Any] = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return meta

    # -- searching -------------------------------------------------------
    def set_expansion_search(self, ef: int | None) -> None:
        """HNSW ef at search time: more candidates per query, slower, closer to exact (None: the default)."""
        with self._lock:
            self.expansion_search = ef
            if self._hnsw is not None:
                self._apply_ef(self._hnsw)

    @property
    def ef_search(self) -> int | None:
        """The ef_search the graph is searched with now (None in exact mode)."""
        with self._lock:
            return None if self._hnsw is None else self._ef(self._hnsw)

    def _ef(self, hnsw: Any) -> int:
        """The setting, else the measured ef_search grown with the graph since, else the size-based default."""
        if self.expansion_search:
            return self.expansion_search
        if self.calibrated is None:
            return default_ef_search(len(hnsw), MAX_EF_SEARCH)
        ef, at = self.calibrated
        grown = ef * max(1.0, len(hnsw) / max(at, 1)) ** EF_SEARCH_GROWTH
        return min(MAX_EF_SEARCH, max(ef, int(grown) // 16 * 16))

    def _apply_ef(self, hnsw: Any) -> None:
        """Set the graph's ef_search (fixed, or from its current size) when it differs; under the lock."""
        ef = self._ef(hnsw)
        if hnsw.expansion_search != ef:
            hnsw.expansion_search = ef

    def exact_bytes(self) -> int:
        """Bytes an exact-mode index holds: keys, encoded rows and norms (0 in HNSW mode)."""
        with self._lock:
            return sum(a.nbytes for a in (self._keys, self._vecs) if a is not None)

    @property
    def mode(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def __len__(self) -> int:
        return max(self._stamp.count, 0)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (keys, cosine scores) over the whole index."""
        import numpy as np
        with self._lock:
            if self._hnsw is not None:
                n = min(k, len(self._hnsw))
                if n == 0:
                    return _no_hits()
                with GIL_HANDOFF:
                    m = self._hnsw.search(self.codec.ann_vectors(query)[0], n)
                return np.asarray(m.keys, dtype=np.uint64), self.codec.scores(m.distances)
            keys, vecs = self._keys, self._vecs
        if keys is None or vecs is None or len(keys) == 0:
            return _no_hits()
        if self.codec.identity:
            return top_k_exact(keys, vecs, query, k)
        rows, scores = self.codec.exact_top_k(vecs, query.reshape(1, -1), k)[0]
        return keys[rows], scores

    def search_many(self, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Top-k (keys, cosine scores) for each row of ``queries``: one batched call, one matrix product."""
        import numpy as np
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dims)
        if len(q) == 1:  # usearch answers a single row with flat Matches: the one-query path does it
            return [self.search(q[0], k)]
        with self._lock:
            if self._hnsw is not None:
                n = min(k, len(self._hnsw))
                if n == 0 or len(q) == 0:
                    return [_no_hits() for _ in q]
                with GIL_HANDOFF:
                    found = self._hnsw.search(self.codec.ann_vectors(q), n)
                keys, dists, counts = np.asarray(found.keys), np.asarray(found.distances), np.asarray(found.counts)
                return [
                    (keys[i, : counts[i]].astype(np.uint64), self.codec.scores(dists[i, : counts[i]]))
                    for i in range(len(q))
                ]
            stored, vecs = self._keys, self._vecs
        if stored is None or vecs is None or len(stored) == 0:
            return [_no_hits() for _ in q]
        out = []
        if not self.codec.identity:
            return [(stored[rows], scores) for lo in range(0, len(q), _QUERY_BLOCK)
                    for rows, scores in self.codec.exact_top_k(vecs, q[lo : lo + _QUERY_BLOCK], k)]
        for lo in range(0, len(q), _QUERY_BLOCK):
            for scores in q[lo : lo + _QUERY_BLOCK] @ vecs.T:
                out.append(_top_k_of(stored, scores, k))
        return out


def _size(hnsw: Any) -> SizeSample:
    return SizeSample(len(hnsw), int(hnsw.serialized_length), int(hnsw.memory_usage))


def _no_hits() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    return np.empty(0, np.uint64), np.empty(0, np.float32)


def _top_k_of(keys: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    return keys[top], scores[top]


def top_k_exact(keys: np.ndarray, vecs: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return _top_k_of(keys, vecs @ query, k)
