"""A Parquet file as a source: one row per document, read a record batch at a time.

The columns are named as a JSONL source's fields are (``id_field``, ``text_field``,
``title_field``, ``metadata_fields``, ``updated_field``), and a row is judged as a
JSONL record is: the same skips, naming the file, the row (``legacy.parquet row 12``)
and the fix, while the other rows proceed. Without ``metadata_fields`` every other
column of a scalar type (string, number, boolean, time) is metadata; list and
binary columns (a vector) are not read at all by a scan.

Reading goes through ``pyarrow.parquet.ParquetFile.iter_batches``, ``BATCH`` rows
and only the columns used at a time: memory holds one batch, not the file. Times
are read as ISO 8601 text. A row's signature is a keyed hash of the values it is
made of, so a row whose signature the catalog holds is :class:`Unchanged`.

>>> src = ParquetSource("legacy", "legacy.parquet", id_field="doc_id", text_field="content")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedops.errors import SourceError
from embedops.sources.base import SourceItem, Unchanged, encodable
from embedops.sources.jsonl import JsonlSource

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

BATCH = 1000  # rows per record batch


class ParquetSource(JsonlSource):
    """Rows of a ``.parquet`` file (options as :class:`~embedops.sources.jsonl.JsonlSource`'s)."""

    kind = "parquet"
    record_unit = "row"

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]:
        """One item per row, in file order; a row whose signature is its id's stored one is Unchanged."""
        label = encodable(self.path.name)
        seen: dict[str, int] = {}
        key = self._signature_key
        for rowno, row, _ in self._rows(None):
            signature = hashlib.blake2b(json.dumps(row, default=str).encode(), digest_size=16, key=key).hexdigest()
            ext_id = row.get(self.id_field)
            ext_id = str(ext_id) if type(ext_id) in (str, int) else None
            if ext_id is not None and known.get(ext_id) == signature and ext_id not in seen:
                seen[ext_id] = rowno
                yield Unchanged(ext_id)
                continue
            yield self._record(label, rowno, row, seen, signature)

    def records_with(self, field: str) -> Iterator[tuple[SourceItem, Any]]:
        """Each row's item (as :meth:`scan` reads it, without signatures) with the value of one more column
        (``embedops adopt`` reads vectors so: a list column as a numpy array, None where the row's is null)."""
        label = encodable(self.path.name)
        seen: dict[str, int] = {}
        for rowno, row, extra in self._rows(field):
            yield self._record(label, rowno, row, seen, ""), extra

    def check(self) -> None:
        """The file exists and is a Parquet file (else SourceError naming the fix)."""
        self._open()

    def _rows(self, extra: str | None) -> Iterator[tuple[int, dict[str, Any], Any]]:
        """(row number from 1, the row's values as JSON holds them, its ``extra`` column's value)."""
        import pyarrow as pa

        parquet = self._open()
        schema = parquet.schema_arrow
        columns = self._read_columns(schema)
        wanted = columns + ([extra] if extra is not None and extra in schema.names and extra not in columns else [])
        rowno = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH, columns=wanted):
                values = {name: [_plain(v) for v in batch.column(name).to_pylist()] for name in columns}
                extras = _vectors(batch.column(extra)) if extra in wanted else [None] * batch.num_rows
                for i in range(batch.num_rows):
                    rowno += 1
                    yield rowno, {name: values[name][i] for name in columns}, extras[i]
        except (OSError, pa.ArrowException) as exc:  # a corrupt page: ArrowIOError (an OSError) or ArrowInvalid
            raise self._read_error(self.path, exc) from exc

    def _read_columns(self, schema: pa.Schema) -> list[str]:
        """The columns a record is made of: those named, and every scalar one without ``metadata_fields``."""
        import pyarrow as pa

        named = [self.id_field, self.text_field, self.title_field, self.updated_field, *(self.metadata_fields or [])]
        columns = [c for c in dict.fromkeys(n for n in named if n is not None) if c in schema.names]
        if self.metadata_fields is None:
            scalar = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_floating,
                      pa.types.is_boolean, pa.types.is_temporal, pa.types.is_decimal)
            columns += [f.name for f in schema if f.name not in columns and any(t(f.type) for t in scalar)]
        return columns

    def _records_path(self) -> Path:
        if not self.path.is_file():
            what = "is a folder, not a Parquet file" if self.path.is_dir() else "does not exist"
            raise SourceError(f"source {self.name!r}: {self.path} {what}",
                              hint="point the source at the .parquet file (check the path in its configuration)",
                              source=self.name, path=str(self.path))
        return self.path

    def _open(self) -> Any:
        path = self._records_path()
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise SourceError(f"source {self.name!r}: reading {path} needs pyarrow, which is not installed",
                              hint="pip install 'embedops[parquet]'", source=self.name, path=str(path)) from None
        try:
            return pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"source {self.name!r}: {path} is not a readable Parquet file: {exc}",
                              hint="check the path, or re-write the file (pyarrow.parquet.write_table)",
                              source=self.name, path=str(path)) from exc


def _plain(value: Any) -> Any:
    """A column value as a JSON record holds it: times as ISO 8601 text, decimals as numbers."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _vectors(column: pa.Array) -> list[Any]:
    """A list column's rows as numpy arrays (None where null); any other column's values as they are."""
    import pyarrow as pa

    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        return [_plain(v) for v in column.to_pylist()]
    return [None if not scalar.is_valid else scalar.values.to_numpy(zero_copy_only=False) for scalar in column]


__all__ = ["BATCH", "ParquetSource"]
