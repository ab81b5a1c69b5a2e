"""Vectors in the SQLite catalog, searched through a derived ANN index per index."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import corrupt_catalog, insert_rows, is_corruption
from embedops.errors import SearchError, SpaceMismatch
from embedops.refs import EmbedderRef
from embedops.vectors.ann import AnnIndex, compaction_due, read_vectors, top_k_exact
from embedops.vectors.maintain import AnnMaintainer
from embedops.vectors.base import Capabilities, Hit, IndexInfo, VectorRow
from embedops.vectors.storage import Codec, Projection, StorageSpec, rescore

if TYPE_CHECKING:
    import numpy as np
    from embedops.vectors.scratch import ScratchVariant
from embedops.vectors.fts import bm25
from embedops.vectors.rows import CatalogReads, Filters, ResultRow, filter_sql

_IN_BATCH = 900  # stay under SQLite's bound-parameter limit
FILTER_EXACT_MAX = 5_000  # a filter that leaves fewer vectors than this is searched exactly


def _metadata_sql(key: str) -> tuple[str, list[Any]]:
    """SQL (with ``?``) comparing a metadata key as text (the chunk's when it has the key, else the document's),
    and its leading params."""
    path = '$."' + key.replace('"', '\\"') + '"'
    return "CAST(COALESCE(json_extract(c.metadata, ?), json_extract(d.metadata, ?)) AS VARCHAR) = ?", [path, path]


def check_tags(index: IndexInfo, rows: Sequence[VectorRow]) -> None:
    """Invariant 1: every row written to an index carries that index's space and chunker."""
    for row in rows:
        if row.space_key != index.space_key or row.chunker_key != index.chunker_key:
            raise SpaceMismatch(
                f"refused to write chunk {row.chunk_id} into index {index.id}: its tags are"
                f" space={row.space_key} chunker={row.chunker_key}, the index's are"
                f" space={index.space_key} chunker={index.chunker_key}",
                hint="vectors of another space belong in another index: use `embedops migrate`",
                index=index.id,
            )


class ReadConnection:
    """One thread's own catalog connection for the search hot path, outside the engine's pool.

    Detached from the pool so that any number of searching threads never exhaust
    it (a pooled connection held per thread did, at 16 threads). It closes when
    its thread ends, or at :meth:`SqliteVectorStore.close`. ``driver_connection``
    is the sqlite3 connection, the attribute name of SQLAlchemy's pooled
    connections; it is only read from, so its ``PRAGMA data_version`` changes
    exactly when another connection commits.
    """

    def __init__(self, pooled: Any) -> None:
        pooled.detach()
        self._pooled = pooled
        self.driver_connection: sqlite3.Connection = pooled.dbapi_connection
        self.closed = False
        # index id → (the ANN object, data_version) when this connection last found them in line
        self.checked: dict[str, tuple[AnnIndex, int]] = {}

    def data_version(self) -> int:
        return int(self.driver_connection.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.closed = True
        self._pooled.close()


def delete_chunk_vectors(conn: sa.Connection, chunk_ids: Sequence[int]) -> int:
    """Delete every index's vector rows of these chunks, logging each deletion for derived ANN indexes."""
    v = schema.vectors
    deleted = 0
    for i in range(0, len(chunk_ids), _IN_BATCH):
        part = list(chunk_ids[i : i + _IN_BATCH])
        gone = conn.execute(sa.select(v.c.seq, v.c.index_id).where(v.c.chunk_id.in_(part))).all()
        if not gone:
            continue
        conn.execute(sa.insert(schema.vector_deletions), [{"index_id": idx, "vector_seq": seq} for seq, idx in gone])
        result = conn.execute(sa.delete(v).where(v.c.chunk_id.in_(part)))
        assert result.rowcount == len(gone)
        deleted += len(gone)
    return deleted


def space_ref(conn: sa.Connection, space_key: str) -> EmbedderRef | None:
    """The declared identity the catalog registered ``space_key`` with (``None``: not registered)."""
    data = conn.execute(sa.select(schema.spaces.c.ref).where(schema.spaces.c.key == space_key)).scalar()
    return EmbedderRef.from_dict(dict(data)) if data is not None else None


def stored_embeddings(conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    """``content hash → vector`` of the texts the catalog already holds a vector for in this space."""
    import numpy as np
    e = schema.embeddings
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        q = sa.select(e.c.content_hash, e.c.vector).where(e.c.space_key == space_key,
                                                          e.c.content_hash.in_(wanted[i : i + _IN_BATCH]))
        out.update((h, np.frombuffer(v, dtype=np.float32)) for h, v in conn.execute(q))
    return out


def load_projection(conn: sa.Connection, projection_id: str) -> Projection:
    """A fitted PCA projection from the catalog (an index whose storage names it cannot be searched without it)."""
    p = schema.projections
    row = conn.execute(sa.select(p.c.mean, p.c.components, p.c.dims).where(p.c.id == projection_id)).first()
    if row is None:
        raise SearchError(f"PCA projection {projection_id} is not in the catalog",
                          hint="the catalog lost it: migrate the alias to a variant without --pca, or fit a new one")
    return Projection.from_bytes(projection_id, row.mean, row.components, row.dims)


def make_codec(engine: sa.Engine, index: IndexInfo, conn: sa.Connection | None = None) -> Codec:
    """The codec of ``index``'s storage variant, with its PCA projection read from the catalog when it has one.

    ``conn``: read it there (a caller inside a write transaction: on SQLite a second connection would wait
    for that transaction's own lock)."""
    spec = index.spec
    projection = None
    if spec.reduction == "pca" and spec.projection:
        if conn is not None:
            projection = load_projection(conn, spec.projection)
        else:
            with engine.connect() as own:
                projection = load_projection(own, spec.projection)
    return Codec(spec, index.dims, projection)


def rescored(hits: list[tuple[np.ndarray, np.ndarray]], queries: np.ndarray, k: int,
             full: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each query's candidates re-ranked by their full-precision vectors (``full(seqs) -> (keys, vectors)``),
    read once for every query together."""
    import numpy as np
    wanted = sorted({int(key) for keys, _ in hits for key in keys})
    if not wanted:
        return [(keys[:0], scores[:0]) for keys, scores in hits]
    keys, vecs = full(wanted)
    row_of = {int(key): i for i, key in enumerate(keys)}
    out = []
    for (cand, _), query in zip(hits, queries, strict=True):
        present = [int(c) for c in cand if int(c) in row_of]  # a candidate deleted meanwhile is dropped
        rows = vecs[[row_of[c] for c in present]] if present else vecs[:0]
        out.append(rescore(np.asarray(present, dtype=np.uint64), rows, query, k))
    return out


def count_vectors(conn: sa.Connection, index_id: str) -> int:
    v = schema.vectors
    return int(conn.execute(sa.select(sa.func.count()).where(v.c.index_id == index_id)).scalar_one())


P = ParamSpec("P")
R = TypeVar("R")


def _raw_reads(method: Callable[Concatenate[SqliteVectorStore, P], R]) -> Callable[Concatenate[SqliteVectorStore, P], R]:
    """A method that reads the catalog through a raw sqlite3 connection (outside the engine, whose own
    statements translate a damaged file already): a damaged file is CatalogCorrupt here too."""

    @functools.wraps(method)
    def reading(self: SqliteVectorStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:  # a plain try, free when nothing is raised: this wraps every search
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise corrupt_catalog(self.engine.url.database or "the catalog file", str(exc)) from exc
            raise

    return reading


class SqliteVectorStore(CatalogReads):
    capabilities = Capabilities(full_text=True, ann_file=True)

    def __init__(self, engine: sa.Engine, ann_dir: Path, *, ef_search: int | None = None) -> None:
        self.engine = engine
        self.ann_dir = ann_dir
        self.ef_search = ef_search
        self._ann: dict[str, AnnIndex] = {}
        self._local = threading.local()
        self._ann_lock = threading.Lock()
        self._readers: weakref.WeakSet[ReadConnection] = weakref.WeakSet()
        # Graphs grow in the background while batches are written, and are compacted there.
        self.maintainer = AnnMaintainer(lambda: ReadConnection(self.engine.raw_connection()))
        self._written: dict[str, int] = {}  # index id → vectors in it, counted once, then added up

    def ensure_index(self, conn: sa.Connection, index: IndexInfo) -> None:
        """Nothing to create up front: the ANN file is derived state, built on first use."""

    # -- writes (inside the caller's transaction) --------------------------
    def put_embeddings(self, conn: sa.Connection, space_key: str, vectors: Mapping[str, np.ndarray]) -> None:
        import numpy as np
        if not vectors:
            return
        now = time.time()
        insert_rows(conn, schema.embeddings, [
            {"space_key": space_key, "content_hash": h, "vector": np.asarray(v, np.float32).tobytes(), "embedded_at": now}
            for h, v in vectors.items()
        ], or_ignore=True)

    def missing_embeddings(self, conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        e = schema.embeddings
        for i in range(0, len(wanted), _IN_BATCH):
            part = wanted[i : i + _IN_BATCH]
            q = sa.select(e.c.content_hash).where(e.c.space_key == space_key, e.c.content_hash.in_(part))
            found.update(conn.execute(q).scalars())
        return set(wanted) - found

    def write(self, conn: sa.Connection, index: IndexInfo, rows: Sequence[VectorRow]) -> int:
        check_tags(index, rows)
        if not rows:
            return 0
        e = schema.embeddings
        stamps = {}
        hashes = list({r.content_hash for r in rows})
        for i in range(0, len(hashes), _IN_BATCH):
            q = sa.select(e.c.content_hash, e.c.embedded_at).where(
                e.c.space_key == index.space_key, e.c.content_hash.in_(hashes[i : i + _IN_BATCH])
            )
            stamps.update(dict(conn.execute(q).all()))
        missing = [h for h in hashes if h not in stamps]
        if missing:
            raise SpaceMismatch(
                f"{len(missing)} chunk(s) have no embedding in space {index.space_key}; refusing to write index {index.id}",
                index=index.id,
            )
        inserted = insert_rows(conn, schema.vectors, [
            {
                "index_id": index.id,
                "chunk_id": r.chunk_id,
                "content_hash": r.content_hash,
                "space_key": r.space_key,
                "chunker_key": r.chunker_key,
                "source_version": r.source_version,
                "embedded_at": stamps[r.content_hash],
            }
            for r in rows
        ])
        assert inserted == len(rows), "vector insert count mismatch"
        if index.id not in self._written:
            self._written[index.id] = count_vectors(conn, index.id)
        else:
            self._written[index.id] += len(rows)
        self.maintainer.written(self.ann(index, conn), self._written[index.id])
        return len(rows)

    def delete_chunks(self, conn: sa.Connection, chunk_ids: Sequence[int]) -> int:
        return delete_chunk_vectors(conn, chunk_ids)

    def count(self, conn: sa.Connection, index_id: str) -> int:
        return count_vectors(conn, index_id)

    # -- reads -------------------------------------------------------------
    def raw(self) -> ReadConnection:
        """This thread's read connection for the search hot path (no ORM/Core overhead)."""
        reader: ReadConnection | None = getattr(self._local, "raw", None)
        if reader is None or reader.closed:
            reader = ReadConnection(self.engine.raw_connection())
            self._local.raw = reader
            with self._ann_lock:
                self._readers.add(reader)
        return reader

    def close(self) -> None:
        """Close every thread's read connection; a later search opens a new one."""
        with self._ann_lock:
            readers = list(self._readers)
        for reader in readers:
            reader.close()

    @_raw_reads
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.raw().driver_connection.execute(sql, params).fetchall())

    @_raw_reads
    def full_text(self, index: IndexInfo, terms: Sequence[str], k: int, filters: Filters | None) -> list[tuple[ResultRow, float]]:
        """FTS5 BM25 (score = −bm25(), higher is better) over the chunks of ``index``."""
        where, params = filter_sql(filters, _metadata_sql)
        try:
            return bm25(self.raw().driver_connection, index, terms, k, where, params)
        except sqlite3.OperationalError as exc:
            raise SearchError(
                f"full-text search failed on index {index.id}: {exc}",
                hint="an older catalog may lack the FTS index: open it with this embedops to upgrade it",
            ) from exc

    def ann(self, index: IndexInfo, conn: sa.Connection | None = None) -> AnnIndex:
        """The index's ANN object (loaded lazily); ``conn``: the caller's open transaction, if any."""
        with self._ann_lock:
            ann = self._ann.get(index.id)
            if ann is None:
                ann = self._ann[index.id] = AnnIndex(index.id, index.dims, self.ann_dir, expansion_search=self.ef_search,
                                                     codec=make_codec(self.engine, index, conn))
            return ann

    @_raw_reads
    def refresh(self, index: IndexInfo) -> AnnIndex:
        """The index's ANN, in line with the catalog as this thread's connection sees it.

        The catalog check (MAX and COUNT over the index's rows: milliseconds at
        100k vectors, tens of them at 1M) runs only when ``PRAGMA data_version``
        says another connection committed since this connection last checked;
        otherwise nothing can have changed. The version is read before the check,
        so a commit racing with it is checked again on the next query.
        """
        ann = self.ann(index)
        reader = self.raw()
        version = reader.data_version()
        last = reader.checked.get(index.id)
        if last is None or last[0] is not ann or last[1] != version:
            ann.refresh(reader.driver_connection)
            reader.checked[index.id] = (ann, version)
            self.maintainer.maybe_compact(ann)
        return ann

    def full_vectors(self, index: IndexInfo) -> Any:
        """``seqs -> (keys, full-precision vectors)`` on this thread's read connection (rescoring reads these)."""
        raw = self.raw().driver_connection
        return lambda seqs: read_vectors(raw, list(seqs), index.dims)

    @_raw_reads
    def search(self, index: IndexInfo, query: np.ndarray, k: int, allowed: set[int] | None = None) -> list[Hit]:
        import numpy as np
        ann = self.refresh(index)
        spec = index.spec
        if allowed is None:
            keys, scores = ann.search(query, spec.fetch(k))
        elif len(allowed) <= FILTER_EXACT_MAX or ann.mode == "exact":
            # A small subset is searched exactly over the full-precision vectors: nothing to rescore.
            keys, vecs = read_vectors(self.raw().driver_connection, sorted(allowed), index.dims)
            keys, scores = top_k_exact(keys, vecs, query, k) if len(keys) else (keys, np.empty(0))
            return _hits(keys, scores)
        else:
            keys, scores = self._filtered_ann(ann, query, spec.fetch(k), allowed)
        if spec.rescore:
            keys, scores = rescored([(keys, scores)], query[None, :], k, self.full_vectors(index))[0]
        return _hits(keys, scores)

    @_raw_reads
    def search_many(self, index: IndexInfo, queries: np.ndarray, k: int) -> list[list[Hit]]:
        ann = self.refresh(index)
        spec = index.spec
        found = ann.search_many(queries, spec.fetch(k))
        if spec.rescore:
            found = rescored(found, queries, k, self.full_vectors(index))
        return [_hits(keys, scores) for keys, scores in found]

    def _filtered_ann(self, ann: AnnIndex, query: np.ndarray, k: int, allowed: set[int]) -> tuple[np.ndarray, np.ndarray]:
        # Oversample in proportion to how much the filter removes, widening until k survive.
        import numpy as np
        want = max(k * 4, int(k * len(ann) / max(len(allowed), 1)) * 2)
        while True:
            keys, scores = ann.search(query, want)
            keep = np.fromiter((int(x) in allowed for x in keys), dtype=bool, count=len(keys))
            if keep.sum() >= k or want >= len(ann):
                return keys[keep][:k], scores[keep][:k]
            want *= 4

    @_raw_reads
    def flush(self, index: IndexInfo) -> dict[str, Any]:
        """Bring the ANN in line (after its background work), compact it when due, save it.

        A graph this process never loaded nor wrote to, whose saved file already holds the catalog's state, is
        left on disk: a no-op sync does not read a graph of millions of vectors into memory only to find it current.
        """
        untouched = self.ann(index)
        if index.id not in self._written and not untouched.loaded:
            meta = untouched.saved_is_current(self.raw().driver_connection)
            if meta is not None:
                return {"mode": "hnsw", "vectors": int(meta["vectors"]), "saved": False, "rebuilds": 0,
                        "storage": index.storage, "tombstones": int(meta.get("tombstones", 0)), "compactions": 0,
                        "build_seconds": 0.0}
        self.maintainer.settle(untouched)
        ann = self.refresh(index)
        self.maintainer.settle(ann)  # a compaction the refresh started
        if ann.compaction_due:
            ann.compact(self.raw().driver_connection)
        if ann.calibration_due:  # a graph grown batch by batch during this sync is measured once, here
            ann.calibrate(self.raw().driver_connection)
        saved = ann.save()
        self._written.pop(index.id, None)
        return {"mode": ann.mode, "vectors": len(ann), "saved": saved, "rebuilds": ann.rebuilds, "storage": index.storage,
                "tombstones": ann.tombstones, "compactions": ann.compactions,
                "build_seconds": round(ann.build_seconds, 3)}

    def scratch(self, index: IndexInfo, storage: StorageSpec, directory: Path) -> ScratchVariant:
        from embedops.vectors.scratch import UsearchScratch

        return UsearchScratch(self, index, storage, directory)

    def ann_status(self, index: IndexInfo) -> dict[str, Any]:
        """The index's ANN as this process has it, else as its saved file says (loads nothing)."""
        ann = self.ann(index)
        if ann.mode == "hnsw":
            vectors, tombstones = len(ann), ann.tombstones
        else:
            saved = ann.saved_meta()
            vectors, tombstones = int(saved.get("vectors", 0)), int(saved.get("tombstones", 0))
        graph = vectors + tombstones
        due = compaction_due(vectors, tombstones)
        compaction = "running" if self.maintainer.compacting(index.id) else ("due" if due else "not needed")
        return {"index": index.id, "graph": ann.mode if ann.mode == "hnsw" else ("saved" if graph else "none"),
                "vectors": vectors, "tombstones": tombstones,
                "tombstone_share": round(tombstones / graph, 4) if graph else 0.0, "compaction": compaction}

    def forget(self, index_id: str) -> None:
        with self._ann_lock:
            ann = self._ann.pop(index_id, None)
        if ann is not None:
            for p in (ann.path, ann.meta_path):
                p.unlink(missing_ok=True)


def _hits(keys: np.ndarray, scores: np.ndarray) -> list[Hit]:
    return [Hit(int(key), float(s)) for key, s in zip(keys, scores, strict=True)]
