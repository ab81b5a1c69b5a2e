"""Throwaway builds of an index's storage variants, for capacity analysis: nothing served changes.

Each builder reads the index's full-precision vectors from the catalog, holds
them as one variant would (same codec, same ANN, same rescoring as a served
index of that variant), answers searches, and reports the sizes it measured:
the usearch file and allocation on SQLite, ``pg_relation_size`` on PostgreSQL.
Sizes are sampled at two points of the build, so a projection has a measured
slope (bytes per vector) and intercept (fixed overhead).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embedops.vectors.ann import AnnIndex, SizeSample
from embedops.vectors.base import IndexInfo
from embedops.vectors.storage import StorageSpec

if TYPE_CHECKING:
    from embedops.vectors.pgvector import PgVectorStore
    from embedops.vectors.sqlite import SqliteVectorStore

Results = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class ScratchSizes:
    """What a scratch build measured: size samples, and the whole build's memory and file bytes."""

    samples: list[SizeSample] = field(default_factory=list)
    memory_bytes: int = 0  # the ANN's allocation (usearch) or index pages (PostgreSQL)
    file_bytes: int = 0  # the saved file (usearch) or index relation (PostgreSQL)
    table_bytes: int = 0  # PostgreSQL: the heap of reduced vectors the index points into
    build_seconds: float = 0.0
    how: str = ""
    memory_tracks_file: bool = True  # memory grows like the file (a graph); False: the samples are memory itself


class ScratchVariant(Protocol):
    spec: StorageSpec
    sizes: ScratchSizes

    def search_many(self, queries: np.ndarray, k: int) -> Results: ...

    def close(self) -> None: ...


class UsearchScratch:
    """A variant as the SQLite store holds it: a usearch HNSW graph (always, whatever the size) in a temp dir."""

    def __init__(self, store: SqliteVectorStore, index: IndexInfo, spec: StorageSpec, directory: Path) -> None:
        from embedops.vectors.sqlite import make_codec

        self.spec = spec
        self.store, self.index = store, index
        self._dir = tempfile.TemporaryDirectory(dir=directory, prefix="capacity-")
        codec = make_codec(store.engine, _as(index, spec))
        flat = spec.layout == "flat"
        self.ann = AnnIndex(index.id, index.dims, Path(self._dir.name), expansion_search=store.ef_search, codec=codec,
                            exact_max=None if flat else 0)
        raw = store.raw().driver_connection
        started = time.perf_counter()
        if flat:  # the encoded rows in memory, no file: rebuilt from the catalog when a process starts
            self.ann.refresh(raw)
            held = self.ann.exact_bytes()
            samples = [SizeSample(len(self.ann), 0, held)]
            self.sizes = ScratchSizes(samples, held, 0, 0, time.perf_counter() - started,
                                      "flat: the encoded rows, keys and norms in memory (array bytes); no file",
                                      memory_tracks_file=False)
            return
        samples = self.ann.build_measured(raw, sample_at=max(1, self.ann.stamp(raw).count // 2))
        seconds = time.perf_counter() - started
        self.ann.save()
        self.sizes = ScratchSizes(samples, samples[-1].memory_bytes, self.ann.path.stat().st_size, 0, seconds,
                                  "usearch HNSW: file = saved graph, memory = usearch's allocation")

    def search_many(self, queries: np.ndarray, k: int) -> Results:
        from embedops.vectors.sqlite import rescored

        found = self.ann.search_many(queries, self.spec.fetch(k))
        if self.spec.rescore:
            found = rescored(found, queries, k, self.store.full_vectors(self.index))
        return found

    def close(self) -> None:
        self._dir.cleanup()


class PgScratch:
    """A variant as the pgvector store holds it, in a temporary table of one session (dropped with it)."""

    def __init__(self, store: PgVectorStore, index: IndexInfo, spec: StorageSpec) -> None:
        from embedops.vectors.pgvector import HNSW_EF_CONSTRUCTION, HNSW_M, _index_sql

        self.spec, self.store, self.index = spec, store, index
        variant = _as(index, spec)
        self.codec = store.codec(variant)
        self._conn = store.engine.connect()
        expr, ops, self._dist = _index_sql(self.codec)
        started = time.perf_counter()
        n = self._fill()
        samples = []
        for upto in (max(1, n // 2), n):  # two builds: the slope and the intercept of the index's size
            self._exec("DROP INDEX IF EXISTS capacity_hnsw")
            self._exec(f"CREATE INDEX capacity_hnsw ON capacity_scratch USING hnsw (({expr}) {ops})"
                       f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE rn <= {int(upto)}")
            size = int(self._exec("SELECT pg_relation_size('capacity_hnsw')").scalar_one())
            samples.append(SizeSample(upto, size, size))
        seconds = time.perf_counter() - started
        table = int(self._exec("SELECT pg_relation_size('capacity_scratch')").scalar_one())
        self.sizes = ScratchSizes(samples, samples[-1].memory_bytes, samples[-1].serialized_bytes, table, seconds,
                                  "pgvector HNSW: pg_relation_size of the index (pages in shared buffers when hot)")
        self._n = n

    def _exec(self, sql: str, params: Any = None) -> Any:
        return self._conn.exec_driver_sql(sql, params) if params is not None else self._conn.exec_driver_sql(sql)

    def _fill(self) -> int:
        self._exec("CREATE TEMP TABLE capacity_scratch (seq integer PRIMARY KEY, index_id varchar(64), rn integer,"
                   " embedding vector NOT NULL)")
        read = self.store.full_vectors(self.index)
        seqs = [int(s) for s in self._exec(
            "SELECT seq FROM vectors WHERE index_id = %(i)s ORDER BY seq", {"i": self.index.id}).scalars()]
        for lo in range(0, len(seqs), 20_000):
            keys, vecs = read(seqs[lo : lo + 20_000])
            self.store._copy_vectors(self._conn, [int(k) for k in keys], self.index.id, self.codec.reduce(vecs),
                                     table="capacity_scratch")
        self._exec("UPDATE capacity_scratch s SET rn = o.rn FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn"
                   " FROM capacity_scratch) o WHERE o.seq = s.seq")
        self._conn.commit()
        return len(seqs)

    def search_many(self, queries: np.ndarray, k: int) -> Results:
        from embedops.vectors.base import PG_MAX_EF_SEARCH, default_ef_search
        from embedops.vectors.sqlite import rescored

        fetch = self.spec.fetch(k)
        ef = min(max(self.store.ef_search or default_ef_search(self._n, PG_MAX_EF_SEARCH), fetch), PG_MAX_EF_SEARCH)
        self._exec(f"SET hnsw.ef_search = {int(ef)}")
        sql = f"SELECT seq, {self._dist.replace('%s', '%(q)s')} FROM capacity_scratch ORDER BY 2 LIMIT %(n)s"
        found: Results = []
        for q in queries:
            rows = self._exec(sql, {"q": self.codec.reduce(q)[0], "n": fetch}).all()
            keys = np.array([int(r[0]) for r in rows], dtype=np.uint64)
            found.append((keys, self.codec.scores(np.array([float(r[1]) for r in rows], dtype=np.float32))))
        if self.spec.rescore:
            found = rescored(found, queries, k, self.store.full_vectors(self.index))
        return found

    def close(self) -> None:
        self._conn.rollback()
        self._exec("DROP TABLE IF EXISTS capacity_scratch")  # the pooled session lives on: drop it now
        self._conn.commit()
        self._conn.close()


def _as(index: IndexInfo, spec: StorageSpec) -> IndexInfo:
    """``index`` as if it were held as ``spec`` (a scratch id, so no served codec cache is touched)."""
    return IndexInfo(f"{index.id}~{spec.key}", index.space_key, index.chunker_key, "scratch", index.dims,
                     index.embedder, spec.key)
