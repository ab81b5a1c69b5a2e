"""Vectors in PostgreSQL with pgvector: one HNSW index (cosine) per embedops index.

The catalog tables are the shared schema; the vectors themselves live in
``pg_vector_data`` (one row per ``vectors`` row, deleted with it by cascade),
with a partial expression HNSW index per embedops index, so each index is
searched by the database itself, transactionally current with every write.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from embedops.catalog import schema
from embedops.errors import ConfigError, SpaceMismatch
from embedops.vectors.base import PG_MAX_EF_SEARCH, Capabilities, Hit, IndexInfo, VectorRow, default_ef_search
from embedops.vectors.rows import RESULT_COLUMNS, RESULT_JOINS, CatalogReads, Filters, ResultRow, filter_sql
from embedops.vectors.sqlite import FILTER_EXACT_MAX, check_tags, count_vectors, delete_chunk_vectors, load_projection, rescored
from embedops.vectors.storage import Codec, StorageSpec

if TYPE_CHECKING:
    from pathlib import Path

    from embedops.vectors.scratch import ScratchVariant

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
_COUNT_TTL_S = 60.0  # how long an index's vector count (for the default ef_search) is reused

_DDL = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    "CREATE TABLE IF NOT EXISTS pg_vector_data ("
    " seq integer PRIMARY KEY REFERENCES vectors(seq) ON DELETE CASCADE,"
    " index_id varchar(64) NOT NULL, embedding vector NOT NULL)",
)


_FULL_TEXT_SQL = (
    f"SELECT {RESULT_COLUMNS}, ts_rank_cd(c.tsv, q) AS score"
    " FROM chunks c CROSS JOIN to_tsquery('english', ?) q JOIN vectors v ON v.chunk_id = c.id" + RESULT_JOINS +
    " WHERE c.tsv @@ q AND v.index_id = ? AND c.chunker_key = ?{where} ORDER BY score DESC, v.seq LIMIT ?"
)


def _metadata_sql(key: str) -> tuple[str, list[Any]]:
    """SQL (with ``?``) comparing a metadata key as text (the chunk's when it has the key, else the document's),
    and its leading params."""
    return "COALESCE(c.metadata ->> ?, d.metadata ->> ?) = ?", [key, key]


def _ident(index_id: str) -> str:
    return "hnsw_" + re.sub(r"[^a-z0-9_]", "_", index_id.lower())


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _vec_sql(dims: int) -> str:
    return f"embedding::vector({int(dims)})"


# Per precision: the indexed expression over the stored (reduced) vector, its operator class, the
# distance operator, and how the query parameter is cast. pgvector has no int8 type.
_PRECISION_SQL = {
    "f32": ("embedding::vector({d})", "vector_cosine_ops", "<=>", "%s::vector({d})"),
    "f16": ("embedding::halfvec({d})", "halfvec_cosine_ops", "<=>", "%s::halfvec({d})"),
    "b1": ("binary_quantize(embedding)::bit({d})", "bit_hamming_ops", "<~>", "binary_quantize(%s::vector({d}))"),
}
_FULL_SQL = (
    "SELECT v.seq, e.vector FROM vectors v JOIN embeddings e"
    " ON e.space_key = v.space_key AND e.content_hash = v.content_hash WHERE v.seq = ANY(%s)"
)


def _keys(rows: Sequence[Any]) -> np.ndarray:
    return np.array([int(r[0]) for r in rows], dtype=np.uint64)


def _distances(rows: Sequence[Any]) -> np.ndarray:
    return np.array([float(r[1]) for r in rows], dtype=np.float32)


def _index_sql(codec: Codec) -> tuple[str, str, str]:
    """(indexed expression, operator class, distance expression with one query parameter) of a variant."""
    expr, ops, op, param = _PRECISION_SQL[codec.spec.precision]
    d = int(codec.ndim)
    return expr.format(d=d), ops, f"{expr.format(d=d)} {op} {param.format(d=d)}"


class PgVectorStore(CatalogReads):
    capabilities = Capabilities(full_text=True, ann_file=False, precisions=tuple(_PRECISION_SQL), layouts=("hnsw",))

    def __init__(self, engine: sa.Engine, *, ef_search: int | None = None) -> None:
        if ef_search is not None and ef_search > PG_MAX_EF_SEARCH:
            raise ConfigError(f"ann_ef_search = {ef_search} is above pgvector's limit for hnsw.ef_search ({PG_MAX_EF_SEARCH})",
                              hint=f"set at most {PG_MAX_EF_SEARCH}, or remove the key for the default")
        self.engine = engine
        self.ef_search = ef_search  # None: grows with the index's size (default_ef_search)
        self._counts: dict[str, tuple[float, int]] = {}
        self._codecs: dict[str, Codec] = {}
        self._local = threading.local()
        with engine.begin() as conn:
            for statement in _DDL:
                conn.exec_driver_sql(statement)

    # -- index lifecycle --------------------------------------------------------
    def ensure_index(self, conn: sa.Connection, index: IndexInfo) -> None:
        """The partial HNSW index for one embedops index (built incrementally as rows arrive), over the
        expression its storage variant compares: ``vector``, ``halfvec`` or ``bit`` of the reduced vector."""
        expr, ops, _ = _index_sql(self.codec(index, conn))
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {_ident(index.id)} ON pg_vector_data USING hnsw"
            f" (({expr}) {ops}) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            f" WHERE index_id = {_lit(index.id)}"
        )

    def codec(self, index: IndexInfo, conn: sa.Connection | None = None) -> Codec:
        """``index``'s codec: pg_vector_data holds its reduced float32 vectors; precision lives in the index."""
        codec = self._codecs.get(index.id)
        if codec is None:
            spec = index.spec
            if spec.layout != "hnsw":
                raise ConfigError(f"storage {spec.key}: the pgvector store searches through an HNSW index only",
                                  hint="drop :flat on PostgreSQL")
            if spec.precision not in _PRECISION_SQL:
                raise ConfigError(f"storage {spec.key}: pgvector has no {spec.precision} type",
                                  hint="on PostgreSQL use f32 (vector), f16 (halfvec) or b1 (bit), with --rescore")
            projection = None
            if spec.reduction == "pca" and spec.projection:
                if conn is None:
                    with self.engine.connect() as own:
                        projection = load_projection(own, spec.projection)
                else:
                    projection = load_projection(conn, spec.projection)
            codec = self._codecs[index.id] = Codec(spec, index.dims, projection)
        return codec

    def index_bytes(self, index: IndexInfo) -> int:
        """The HNSW index's size as the database reports it (``pg_relation_size``)."""
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT pg_relation_size('{_ident(index.id)}')").scalar_one())

    # -- writes --------------------------------------------------------------------
    def put_embeddings(self, conn: sa.Connection, space_key: str, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        now = time.time()
        stmt = postgresql.insert(schema.embeddings).on_conflict_do_nothing()
        conn.execute(stmt, [
            {"space_key": space_key, "content_hash": h, "vector": np.asarray(v, np.float32).tobytes(), "embedded_at": now}
            for h, v in vectors.items()
        ])

    def missing_embeddings(self, conn: sa.Connection, space_key: str, hashes: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(hashes))
        e = schema.embeddings
        found: set[str] = set()
        for i in range(0, len(wanted), 5000):
            part = wanted[i : i + 5000]
            found.update(conn.execute(sa.select(e.c.content_hash).where(e.c.space_key == space_key, e.c.content_hash.in_(part))).scalars())
        return set(wanted) - found

    def write(self, conn: sa.Connection, index: IndexInfo, rows: Sequence[VectorRow]) -> int:
        check_tags(index, rows)
        if not rows:
            return 0
        e, v = schema.embeddings, schema.vectors
        hashes = list({r.content_hash for r in rows})
        found: dict[str, tuple[float, bytes]] = {}
        for i in range(0, len(hashes), 5000):
            q = sa.select(e.c.content_hash, e.c.embedded_at, e.c.vector).where(
                e.c.space_key == index.space_key, e.c.content_hash.in_(hashes[i : i + 5000]))
            found.update({h: (at, blob) for h, at, blob in conn.execute(q)})
        missing = [h for h in hashes if h not in found]
        if missing:
            raise SpaceMismatch(f"{len(missing)} chunk(s) have no embedding in space {index.space_key}; refusing to write index {index.id}")
        result = conn.execute(v.insert().returning(v.c.seq, sort_by_parameter_order=True), [
            {"index_id": index.id, "chunk_id": r.chunk_id, "content_hash": r.content_hash, "space_key": r.space_key,
             "chunker_key": r.chunker_key, "source_version": r.source_version, "embedded_at": found[r.content_hash][0]}
            for r in rows
        ])
        seqs = [int(s) for (s,) in result]
        assert len(seqs) == len(rows), "vector insert count mismatch"
        full = np.frombuffer(b"".join(found[r.content_hash][1] for r in rows), dtype=np.float32).reshape(len(rows), index.dims)
        self._copy_vectors(conn, seqs, index.id, self.codec(index, conn).reduce(full))
        return len(rows)

    def _copy_vectors(self, conn: sa.Connection, seqs: list[int], index_id: str, vectors: np.ndarray,
                      table: str = "pg_vector_data") -> None:
        """COPY the (reduced) vectors in binary format: PostgreSQL's fastest bulk path."""
        from pgvector.psycopg import register_vector

        raw: Any = conn.connection.driver_connection
        register_vector(raw)
        with raw.cursor() as cur, cur.copy(f"COPY {table} (seq, index_id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "varchar", "vector"])
            for seq, vec in zip(seqs, vectors, strict=True):
                copy.write_row((seq, index_id, vec))

    def delete_chunks(self, conn: sa.Connection, chunk_ids: Sequence[int]) -> int:
        return delete_chunk_vectors(conn, chunk_ids)  # pg_vector_data rows go by ON DELETE CASCADE

    def count(self, conn: sa.Connection, index_id: str) -> int:
        return count_vectors(conn, index_id)

    # -- reads ------------------------------------------------------------------------
    def raw(self) -> Any:
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self.engine.raw_connection()
            driver: Any = raw.driver_connection
            driver.autocommit = True
            # A LIMIT above ef_search (a filtered search asking for more) scans on instead of stopping short.
            driver.execute("SET hnsw.iterative_scan = strict_order")
            self._local.ef = None
            from pgvector.psycopg import register_vector

            register_vector(driver)
            self._local.raw = raw
        return raw

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A hot-path read written with ``?`` placeholders (the SQL both stores share)."""
        return list(self.raw().driver_connection.execute(sql.replace("?", "%s"), tuple(params)).fetchall())

    def full_text(self, index: IndexInfo, terms: Sequence[str], k: int, filters: Filters | None) -> list[tuple[ResultRow, float]]:
        """Chunks of ``index`` matching any of ``terms``, ranked by ``ts_rank_cd`` (PostgreSQL full-text)."""
        words = [re.sub(r"\W+", "", t) for t in terms]
        tsquery = " | ".join(w for w in words if w)
        if not tsquery:
            return []
        where, params = filter_sql(filters, _metadata_sql)
        rows = self._read(_FULL_TEXT_SQL.format(where=where), (tsquery, index.id, index.chunker_key, *params, k))
        return [(ResultRow(*r[:-1]), float(r[-1])) for r in rows]

    def _set_ef(self, conn: Any, index: IndexInfo, k: int) -> None:
        """``hnsw.ef_search`` for this connection: the setting, or the default for the index's size
        (its count read at most once a minute); never below ``k``, which pgvector would cut results to."""
        ef = self.ef_search
        if ef is None:
            checked, n = self._counts.get(index.id, (0.0, 0))
            if time.monotonic() - checked > _COUNT_TTL_S:
                n = int(conn.execute("SELECT count(*) FROM pg_vector_data WHERE index_id = %s", (index.id,)).fetchone()[0])
                self._counts[index.id] = (time.monotonic(), n)
            ef = default_ef_search(n, PG_MAX_EF_SEARCH)
        ef = min(max(ef, k), PG_MAX_EF_SEARCH)
        if self._local.ef != ef:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            self._local.ef = ef

    def search(self, index: IndexInfo, query: np.ndarray, k: int, allowed: set[int] | None = None) -> list[Hit]:
        conn = self.raw().driver_connection
        codec = self.codec(index)
        vec = codec.reduce(query)[0]
        _, _, dist = _index_sql(codec)
        fetch = index.spec.fetch(k)
        if allowed is not None and len(allowed) <= FILTER_EXACT_MAX:
            # A small subset is ranked exactly over the stored float32 vectors (full precision unless the
            # variant reduces dimensions), whatever precision the HNSW index holds.
            f32 = f"embedding::vector({codec.ndim}) <=> %s::vector({codec.ndim})"
            sql = f"SELECT seq, {f32} FROM pg_vector_data WHERE seq = ANY(%s) ORDER BY 2 LIMIT %s"
            rows = conn.execute(sql, (vec, sorted(allowed), fetch)).fetchall()
            return self._finish(index, query, _keys(rows), 1.0 - _distances(rows), k)
        want = fetch if allowed is None else max(fetch * 4, int(fetch * 1e6 / max(len(allowed), 1)))
        # The index id is inlined (our own, quoted) so the planner matches the partial HNSW index.
        sql = f"SELECT seq, {dist} FROM pg_vector_data WHERE index_id = {_lit(index.id)} ORDER BY 2 LIMIT %s"
        while True:
            self._set_ef(conn, index, want)
            rows = conn.execute(sql, (vec, want)).fetchall()
            kept = [r for r in rows if allowed is None or int(r[0]) in allowed]
            if len(kept) >= fetch or len(rows) < want:
                kept = kept[:fetch]
                return self._finish(index, query, _keys(kept), codec.scores(_distances(kept)), k)
            want *= 4

    def _finish(self, index: IndexInfo, query: np.ndarray, keys: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        """Hits, rescored at full precision from the catalog when the variant rescores."""
        if index.spec.rescore:
            keys, scores = rescored([(keys, scores)], np.asarray(query, np.float32)[None, :], k, self.full_vectors(index))[0]
        return [Hit(int(s), float(score)) for s, score in zip(keys[:k], scores[:k], strict=True)]

    def full_vectors(self, index: IndexInfo) -> Any:
        """``seqs -> (keys, full-precision vectors)`` from the catalog's embeddings (what rescoring reads)."""
        conn = self.raw().driver_connection

        def read(seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
            rows = conn.execute(_FULL_SQL, (list(seqs),)).fetchall()
            keys = np.array([int(r[0]) for r in rows], dtype=np.uint64)
            vecs = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), index.dims)
            return keys, vecs

        return read

    def search_many(self, index: IndexInfo, queries: np.ndarray, k: int) -> list[list[Hit]]:
        # One statement per query: the HNSW scan is per vector, batching buys nothing here.
        return [self.search(index, q, k) for q in queries]

    def flush(self, index: IndexInfo) -> dict[str, Any]:
        with self.engine.connect() as conn:
            n = self.count(conn, index.id)
        return {"mode": "pgvector-hnsw", "vectors": n, "saved": False, "rebuilds": 0, "storage": index.storage,
                "index_bytes": self.index_bytes(index)}

    def scratch(self, index: IndexInfo, storage: StorageSpec, directory: Path) -> ScratchVariant:
        from embedops.vectors.scratch import PgScratch

        return PgScratch(self, index, storage)

    def forget(self, index_id: str) -> None:
        self._codecs.pop(index_id, None)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {_ident(index_id)}")
