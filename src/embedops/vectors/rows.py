"""The catalog rows behind search results, and search filters, as SQL both stores share.

A result row is read by column name: the SELECT list is generated from
:class:`ResultRow`'s fields (each column aliased to its field's name), so the
tuple a driver returns lines up with the fields by construction, in one place
for every store and every search mode.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from embedops.errors import SearchError
from embedops.vectors.base import IndexInfo

# A filter's metadata key ends up in a JSON path (SQLite json_extract, PostgreSQL ->>):
# letters, digits and ``_.:-`` only, so a quote or bracket can never change the path.
METADATA_KEY = r"^[A-Za-z0-9_.:-]{1,128}$"


@dataclass(frozen=True)
class Filters:
    """Metadata filters applied before ranking (exact search over the subset when it is small)."""

    source: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    updated_after: datetime | None = None

    def __post_init__(self) -> None:
        for key in self.metadata:
            if not isinstance(key, str) or not re.fullmatch(METADATA_KEY, key):
                raise SearchError(
                    f"metadata filter key {key!r} is not allowed",
                    hint="keys are 1-128 letters, digits or _.:- (the document's top-level metadata keys)",
                )

    def __bool__(self) -> bool:
        return bool(self.source or self.metadata or self.updated_after)


class ResultRow(NamedTuple):
    """One vector's row with what a search result shows: chunk, document, source, freshness inputs."""

    seq: int
    chunk_id: int
    space_key: str
    chunker_key: str
    embedded_at: float
    text: str
    start: int
    end_offset: int
    external_id: str
    source_updated_at: float | None
    metadata: Any  # a dict (PostgreSQL JSON) or its JSON text (SQLite)
    source: str
    # freshness (monitor/staleness.py): the document's mark, signature and hash, the source's scan times
    catalog_key: str | None
    signature: str | None
    content_hash: str
    last_scan_at: float | None
    checked_at: float | None


_EXPRESSIONS = {
    "seq": "v.seq", "chunk_id": "v.chunk_id", "space_key": "v.space_key", "chunker_key": "v.chunker_key",
    "embedded_at": "v.embedded_at", "text": "c.text", "start": "c.start", "end_offset": 'c."end"',
    "external_id": "d.external_id", "source_updated_at": "d.source_updated_at", "metadata": "d.metadata",
    "source": "s.name", "catalog_key": "fm.catalog_key", "signature": "d.signature", "content_hash": "d.content_hash",
    "last_scan_at": "s.last_scan_at", "checked_at": "sc.checked_at",
}
assert tuple(_EXPRESSIONS) == ResultRow._fields, "every ResultRow field needs its column, in order"

#: ``SELECT`` list of a :class:`ResultRow` (prefix it, then add ``FROM`` + :data:`RESULT_JOINS`).
RESULT_COLUMNS = ", ".join(f"{expr} AS {name}" for name, expr in _EXPRESSIONS.items())
#: Joins from ``chunks c`` and ``vectors v`` to the document, its source and its freshness inputs.
RESULT_JOINS = (
    " JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = d.source_id"
    " LEFT JOIN freshness_marks fm ON fm.document_id = d.id LEFT JOIN source_checks sc ON sc.source_id = s.id"
)
#: Rows of the given vector seqs (``{}``: the ``?`` placeholders).
ROWS_SQL = (
    f"SELECT {RESULT_COLUMNS} FROM vectors v JOIN chunks c ON c.id = v.chunk_id{RESULT_JOINS} WHERE v.seq IN ({{}})"
)
INDEX_COLUMNS = "i.id, i.space_key, i.chunker_key, i.status, sp.dims, sp.embedder, i.storage"
ALIAS_SQL = (
    f"SELECT {INDEX_COLUMNS} FROM aliases a JOIN indexes i ON i.id = a.index_id"
    " JOIN spaces sp ON sp.key = i.space_key WHERE a.name = ?"
)
INDEX_SQL = f"SELECT {INDEX_COLUMNS} FROM indexes i JOIN spaces sp ON sp.key = i.space_key WHERE i.id = ?"


def filter_sql(filters: Filters | None, metadata_sql: Callable[[str], tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    """``filters`` as `` AND ...`` SQL over ``d`` (documents) and ``s`` (sources), with ``?`` params.

    ``metadata_sql(key)`` is the store's comparison of a metadata key as text, and its leading params."""
    if not filters:
        return "", []
    where: list[str] = []
    params: list[Any] = []
    if filters.source:
        where.append("s.name = ?")
        params.append(filters.source)
    for key, value in filters.metadata.items():
        clause, leading = metadata_sql(key)
        where.append(clause)
        params.extend([*leading, str(value)])
    if filters.updated_after:
        where.append("d.source_updated_at >= ?")
        params.append(filters.updated_after.timestamp())
    return "".join(f" AND {w}" for w in where), params


class CatalogReads(ABC):
    """The hot-path catalog reads both stores share; a store supplies ``_read`` (SQL with ``?``, on its
    thread's own connection)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def lookup_index(self, *, alias: str | None = None, index_id: str | None = None) -> IndexInfo | None:
        rows = self._read(INDEX_SQL, (index_id,)) if index_id is not None else self._read(ALIAS_SQL, (alias,))
        return IndexInfo(*rows[0]) if rows else None

    def result_rows(self, seqs: Sequence[int]) -> dict[int, ResultRow]:
        if not seqs:
            return {}
        return {r[0]: ResultRow(*r) for r in self._read(ROWS_SQL.format(",".join("?" * len(seqs))), list(seqs))}
