"""A SQL source's fingerprint: its id pass's ``(id, updated_at)`` pairs digested by the database, in one query.

The id pass (sources/sql.py) calls a row unchanged when its id and ``updated_at``
are the ones synced, and a catalog document deleted when its id is gone. So the
multiset of ``(id, updated_at)`` pairs is all it looks at; these aggregates digest
that multiset, order-independently (a sum of 64-bit hashes, and the row count), so
that two equal fingerprints mean the id pass would find the same ids with the same
signatures. Each dialect's digest is at least as fine as the signature: two values
that render alike are values the signature calls equal.

* PostgreSQL: ``hashtextextended`` (bytes, under ``COLLATE "C"``) of each row's
  ``length(id) : id updated_at`` as text, summed as ``numeric``. Text output depends on
  a few settings (DateStyle, TimeZone, ...) and on the column types: both are part of
  the fingerprint, so a changed setting or an altered column only misses. Floats print
  exactly from PostgreSQL 12 with ``extra_float_digits`` >= 1 (the default): older
  servers, or that setting lowered, get no fingerprint.
* SQLite: an aggregate registered on the connection, given the very values the
  id pass gets from the driver, digests the id and stamp the id pass compares
  (``_as_id`` and ``_stamp``, passed in), so it cannot disagree with it.

A row whose ``updated_at`` is NULL is read whole at every id pass, its text compared:
no digest of ``updated_at`` stands for that, so such a row means no fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

# Bump when a digest below changes: a fingerprint recorded before then only misses once.
FINGERPRINT_VERSION = "fp1"
# The settings PostgreSQL's text output of a column depends on (dates, times, intervals, floats, bytes, money).
PG_SETTINGS = ("DateStyle", "IntervalStyle", "TimeZone", "extra_float_digits", "bytea_output", "lc_monetary")
_MASK = (1 << 64) - 1
Digest = Callable[[sa.Connection, sa.Select[Any]], str | None]


def pg_fingerprint(conn: sa.Connection, pairs: sa.Select[Any]) -> str | None:
    """The digest of ``pairs`` (columns ``eo__id``, ``eo__up``) on PostgreSQL; None when it would not be exact."""
    if conn.dialect.server_version_info is None or conn.dialect.server_version_info < (12,):
        return None  # floats print exactly from 12 on
    probe = conn.execute(pairs.limit(0))
    types = ",".join(str(column[1]) for column in probe.cursor.description)  # type OIDs (PEP 249)
    probe.close()
    rows = pairs.subquery("eo__fp")
    id_text, up_text = sa.cast(rows.c.eo__id, sa.Text), sa.cast(rows.c.eo__up, sa.Text)
    pair = sa.collate((sa.cast(sa.func.length(id_text), sa.Text) + ":" + id_text + up_text).self_group(), "C")
    query = sa.select(sa.func.count(), sa.func.count().filter(rows.c.eo__up.is_(None)),
                      sa.func.coalesce(sa.func.sum(sa.func.hashtextextended(pair, 0)), 0),
                      *[sa.func.current_setting(name) for name in PG_SETTINGS]).select_from(rows)
    count, nulls, total, *settings = conn.execute(query).one()
    if nulls or int(settings[PG_SETTINGS.index("extra_float_digits")]) < 1:
        return None
    return f"{types}|{'|'.join(settings)}|{count}|{total}"


def sqlite_fingerprint(conn: sa.Connection, pairs: sa.Select[Any]) -> str | None:
    """The digest of ``pairs`` on SQLite, by the aggregate :func:`register_sqlite` put on the connection."""
    rows = pairs.subquery("eo__fp")
    value = str(conn.execute(sa.select(sa.func.eo_fingerprint(rows.c.eo__id, rows.c.eo__up))).scalar_one())
    count, nulls, total = value.split(":")
    return None if int(nulls) else f"{count}|{total}"


FINGERPRINTS: dict[str, Digest] = {"postgresql": pg_fingerprint, "sqlite": sqlite_fingerprint}


def register_sqlite(dbapi_conn: Any, id_of: Callable[[Any], str | None], stamp_of: Callable[[Any], str | None]) -> None:
    """Put ``eo_fingerprint(id, updated_at)`` on a sqlite3 connection: ``count:nulls:sum`` over the rows whose
    id the id pass keeps (``id_of``), each row's hash that of its id and stamp (``stamp_of``)."""

    class Fingerprint:
        def __init__(self) -> None:
            self.count = self.nulls = self.total = 0

        def step(self, raw_id: Any, updated: Any) -> None:
            ext_id = id_of(raw_id)
            if ext_id is None:
                return  # the id pass skips such a row too
            stamp = stamp_of(updated)
            if stamp is None:
                self.nulls += 1
                return
            self.count += 1
            digest = hashlib.blake2b(f"{len(ext_id)}:{ext_id}{stamp}".encode("utf-8", "surrogatepass"), digest_size=8)
            self.total += int.from_bytes(digest.digest(), "little")

        def finalize(self) -> str:
            return f"{self.count}:{self.nulls}:{self.total & _MASK:016x}"

    dbapi_conn.create_aggregate("eo_fingerprint", 2, Fingerprint)


__all__ = ["FINGERPRINTS", "FINGERPRINT_VERSION", "pg_fingerprint", "register_sqlite", "sqlite_fingerprint"]
