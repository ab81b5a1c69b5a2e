"""BM25 over SQLite's FTS5 index of the chunks (the PostgreSQL store ranks with ``ts_rank_cd``).

Ranks in FTS5 alone first (BM25 over every matching chunk is the cost; joins per
match would double it), then keeps the queried index's chunks; widened when the
top candidates hold too few of them (other chunkers, filters).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from embedops.catalog.fts import FTS_TABLE
from embedops.vectors.base import IndexInfo
from embedops.vectors.rows import RESULT_COLUMNS, RESULT_JOINS, ResultRow

_BM25_SQL = (
    f"SELECT {RESULT_COLUMNS}, top.score AS score"
    f" FROM (SELECT rowid AS chunk_id, -bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
    " ORDER BY score DESC LIMIT ?) AS top"
    " JOIN chunks c ON c.id = top.chunk_id"
    " JOIN vectors v ON v.chunk_id = c.id AND v.index_id = ?" + RESULT_JOINS +
    " WHERE c.chunker_key = ?{where}"
    " ORDER BY top.score DESC, v.seq LIMIT ?"
)
_COUNT_SQL = f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
_TOTAL_SQL = f"SELECT count(*) FROM {FTS_TABLE}_docsize"  # one row per indexed chunk, O(1) to count
_CHUNKERS_SQL = "SELECT count(DISTINCT chunker_key) FROM indexes"


def quoted(terms: Sequence[str]) -> list[str]:
    """Each term as an FTS5 string: punctuation and operators inside never error."""
    return ['"' + t.replace('"', '""') + '"' for t in terms]


def informative_terms(raw: sqlite3.Connection, terms: list[str]) -> list[str]:
    """The terms that carry BM25 weight: FTS5 floors the IDF of a term found in half
    the chunks or more to ~0, so such terms change no ranking, yet scoring every
    chunk they match costs most of a query's time. All terms if none is informative."""
    if len(terms) < 2:
        return terms
    total = raw.execute(_TOTAL_SQL).fetchone()[0]
    kept = [t for t in terms if raw.execute(_COUNT_SQL, (t,)).fetchone()[0] * 2 < total]
    return kept or terms


def bm25(raw: sqlite3.Connection, index: IndexInfo, terms: Sequence[str], k: int, where: str,
         params: Sequence[Any]) -> list[tuple[ResultRow, float]]:
    """Top ``k`` chunks of ``index`` matching any of ``terms``; ``where``/``params``: extra filters (``?``)."""
    if not terms:
        return []
    match = " OR ".join(informative_terms(raw, quoted(terms)))
    total = raw.execute(_TOTAL_SQL).fetchone()[0]
    want = k * max(1, raw.execute(_CHUNKERS_SQL).fetchone()[0])
    sql = _BM25_SQL.format(where=where)
    while True:
        rows = raw.execute(sql, [match, want, index.id, index.chunker_key, *params, k]).fetchall()
        if len(rows) >= k or want >= total:
            return [(ResultRow(*r[:-1]), float(r[-1])) for r in rows]
        want *= 4
