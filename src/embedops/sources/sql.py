"""A database table (or query) as a source, through SQLAlchemy: PostgreSQL, SQLite, any dialect it speaks.

Each row is a document: ``id_column`` is its id, ``text`` an SQL expression
over the row (``subject || E'\\n\\n' || body``), ``title`` an optional one
prepended to it, ``metadata`` columns kept as metadata, ``updated_at`` the
column that changes when the row does. ``where`` filters rows; ``query``
replaces ``table`` with any SELECT (its columns are then the names used).

Table and column names are identifiers and are quoted; ``text``, ``title``,
``where`` and ``query`` are SQL that the source's owner writes, run as they are
with the source's credentials (give it a read-only role).

Incremental scan. Each document's signature is its row's ``updated_at`` (keyed
by the source's options). With signatures in the catalog a scan streams the id
set, ``id, updated_at`` of every row: a row whose ``updated_at`` is the one
synced is :class:`Unchanged`; every other row is read whole, by id, in batches;
an id the catalog holds and the scan does not yield is deleted. That is a
watermark per row: a row counts as changed when its ``updated_at`` differs from
the synced value, later or earlier, so clocks that disagree and transactions
that commit late (an old ``updated_at`` appearing after newer ones) need no
safety window. A row updated without touching ``updated_at`` is found by a
full scan (``sync --full``).

A sync scans in order (:meth:`SqlSource.scan_in_order`): the id pass sorted by
the id as text, so that the catalog's side of the diff streams in that order too
instead of being loaded (sync/plan.py).

Unchanged tables. With ``updated_at``, a sync's scan first fingerprints the id
pass's ``(id, updated_at)`` pairs in one aggregate query (sources/sql_fingerprint.py),
in the snapshot the scan then reads; when that equals the fingerprint recorded by
the last sync that left the catalog in line with the table, the scan yields
nothing and the plan is empty (sync/source_plan.py): no id pass, no catalog merge.
PostgreSQL and SQLite; other dialects always run the id pass.

Without ``updated_at`` (or on ``sync --full``) every row is read and the
catalog's content hashes decide what changed. Reads stream through server-side
cursors (``yield_per``): memory holds one batch of rows, not the table.

>>> src = SqlSource("tickets", url="sqlite:///app.db", table="tickets", text="subject || ' ' || body",
...                 updated_at="updated_at")                                     # doctest: +SKIP
>>> [item for item in src.scan({})]                                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from embedops.catalog.db import driver_rows
from embedops.catalog.secrets import redact, strip_password
from embedops.errors import ConfigError, SourceError
from embedops.sources.base import Document, OutOfOrder, ScanFingerprint, SignatureCursor, Skipped, SourceItem, Unchanged
from embedops.sources.sql_fingerprint import FINGERPRINT_VERSION, FINGERPRINTS, register_sqlite
from embedops.sources.validate import document_problem

# Bump when a change below alters the Document a row yields: every signature then changes.
READER_VERSION = "1"
FETCH_BATCH = 1000  # rows per server-side fetch, and ids per "read these rows" query
HELD_MAX = 10 * FETCH_BATCH  # rows an in-order id pass holds back, at most, until the rows before them are read
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Result column labels: chosen so that no user column name can collide with them.
_ID, _TEXT, _TITLE, _UPDATED = "eo__id", "eo__text", "eo__title", "eo__updated"
_SAME: Any = object()  # a held row that is unchanged
# The dialects whose text order a scan in order can ask for: Python compares strings by code point, which
# is UTF-8 byte order; PostgreSQL does so under the "C" collation, SQLite always (BINARY).
_ID_ORDER: dict[str, Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]] = {
    "postgresql": lambda key: key.collate("C"),
    "sqlite": lambda key: key,
}


class SqlSource:
    """Rows of a table or query in a database reached through SQLAlchemy.

    ``url_env`` names an environment variable holding the database URL (with
    its password); ``url`` is a URL without a password (libpq's ``~/.pgpass``
    or ``PGPASSWORD`` may supply one), used when the variable is unset. A
    ``url`` holding a password is refused: it would be written to embedops.toml.
    """

    kind = "sql"

    def __init__(
        self,
        name: str,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        url_env: str | None = None,
        table: str | None = None,
        query: str | None = None,
        id_column: str = "id",
        text: str = "text",
        title: str | None = None,
        updated_at: str | None = None,
        where: str | None = None,
        metadata: Sequence[str] | None = None,
    ) -> None:
        # ``path`` is accepted (and ignored) so that every kind is built the same way.
        self.name = name
        self.url, self.url_env = url, url_env
        self.table, self.query = table, query
        self.id_column, self.text, self.title = id_column, text, title
        self.updated_at, self.where = updated_at, where
        self.metadata = list(metadata or [])
        self._check_options()
        self._key = self._options_digest()
        self._rel = self._relation()  # one FROM object: two equal ones would be a cross join

    # -- configuration -----------------------------------------------------------------
    def _check_options(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ConfigError(f"source {self.name!r}: a sql source needs exactly one of table and query",
                              hint="give --table NAME (a table or view) or --query 'SELECT ...'", source=self.name)
        if self.url is None and self.url_env is None:
            raise ConfigError(f"source {self.name!r}: a sql source needs url_env (or a url without password)",
                              hint="export APP_DB_URL=postgresql://USER:PASSWORD@HOST/DB and give --url-env APP_DB_URL",
                              source=self.name)
        if self.url is not None and strip_password(self.url)[1]:
            raise ConfigError(
                f"source {self.name!r}: the url {redact(self.url)} holds a password, which would be written to"
                " embedops.toml; it was not registered",
                hint="put the whole URL in an environment variable and give its name: --url-env APP_DB_URL"
                     " (or use a URL without password with ~/.pgpass)", source=self.name)
        if self.url_env is not None and not _ENV_NAME.match(self.url_env):
            raise ConfigError(f"source {self.name!r}: url_env must name an environment variable, got {self.url_env!r}",
                              hint="give the variable's name, not its value: --url-env APP_DB_URL", source=self.name)

    def _options_digest(self) -> str:
        """Key of the signatures: other columns or expressions map a row to another document."""
        options = [READER_VERSION, self.table, self.query, self.id_column, self.text, self.title, self.updated_at,
                   self.where, self.metadata]
        return hashlib.blake2b(json.dumps(options).encode(), digest_size=6).hexdigest()

    @property
    def label(self) -> str:
        """How errors name the rows' origin: ``table support_tickets`` or ``query``."""
        return f"table {self.table}" if self.table is not None else "query"

    def database_url(self) -> str:
        """The URL to connect with (from ``url_env`` first); SourceError when there is none."""
        value = os.environ.get(self.url_env) if self.url_env else None
        if not value:
            if self.url is None:
                raise SourceError(f"source {self.name!r}: ${self.url_env} is not set, so its database is unknown",
                                  hint=f"export {self.url_env}=postgresql://USER:PASSWORD@HOST/DB in the environment"
                                       " of every command that syncs", source=self.name)
            value = self.url
        # psycopg (3) is the PostgreSQL driver embedops installs; a plain URL would pick psycopg2.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix):]
        return value

    # -- reading ----------------------------------------------------------------------
    def check(self) -> None:
        """The database answers and the statement runs (no rows read); else SourceError naming the fix."""
        engine = self._engine()
        try:
            with engine.connect() as conn:
                conn.execute(self._select().limit(0)).all()
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc) from None
        finally:
            engine.dispose()

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]:
        """Every current row once, in one snapshot (the id pass and the reads by id); see the module docstring."""
        signed = any(s is not None and s.startswith(self._key + "|") for s in known.values())
        yield from self._scanning(known.get, lambda: signed, ordered=False)

    def scan_in_order(self, known: SignatureCursor, fingerprint: ScanFingerprint | None = None) -> Iterator[SourceItem]:
        """:meth:`scan` ascending by id (the id as text, in UTF-8 byte order, as Python compares strings):
        the database sorts the rows, and a row read whole is put back in its place among the unchanged ones.
        ``known`` is looked up in that order, so the catalog's side can stream too (sync/plan.py).

        ``fingerprint``: its ``seen`` is set first, in the scan's snapshot; when it is the one ``stored``,
        nothing is yielded (see the module docstring)."""
        yield from self._scanning(known.get, lambda: known.signed(self._key + "|"), ordered=True,
                                  fingerprint=fingerprint)

    def fingerprint(self) -> str | None:
        """The fingerprint of the id pass's ``(id, updated_at)`` pairs now, in a snapshot of its own
        (None: no ``updated_at``, a row without one, or a dialect without a digest)."""
        engine = self._engine()
        try:
            with engine.connect() as conn, conn.begin():
                return self._fingerprint(conn)
        except _read_errors() as exc:
            raise self._error(exc) from None
        finally:
            engine.dispose()

    def _fingerprint(self, conn: sa.Connection) -> str | None:
        digest = FINGERPRINTS.get(conn.dialect.name)
        if self.updated_at is None or digest is None:
            return None
        value = digest(conn, self._pairs())
        return None if value is None else f"{FINGERPRINT_VERSION}|{self._key}|{conn.dialect.name}|{value}"

    def _scanning(self, lookup: Callable[[str], str | None], signed: Callable[[], bool], *, ordered: bool,
                  fingerprint: ScanFingerprint | None = None) -> Iterator[SourceItem]:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                if ordered and conn.dialect.name not in _ID_ORDER:
                    raise OutOfOrder(f"source {self.name!r}: no id order known for {conn.dialect.name}")
                if conn.dialect.name == "postgresql":  # one snapshot for every query (SQLite: see _engine)
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    if fingerprint is not None:  # first: the snapshot is the one every read below sees
                        # One row, by a plain cursor: PostgreSQL runs no parallel workers for a cursor's query.
                        fingerprint.seen = self._fingerprint(conn)
                        if fingerprint.unchanged:
                            return
                    conn = conn.execution_options(yield_per=FETCH_BATCH)
                    if self.updated_at is None or not signed():  # first sync, full re-scan, or nothing to compare
                        yield from self._rows(conn, self._in_order(conn, self._select()) if ordered else self._select())
                    else:
                        yield from self._id_pass(conn, lookup, ordered)
        except _read_errors() as exc:
            raise self._error(exc) from None
        finally:
            engine.dispose()

    def _in_order(self, conn: sa.Connection, select: sa.Select[Any]) -> sa.Select[Any]:
        """``select`` sorted by the id as a document's id is text, compared byte by byte (no locale)."""
        return select.order_by(_ID_ORDER[conn.dialect.name](sa.cast(self._rel.c[self.id_column], sa.Text)))

    def _id_pass(self, conn: sa.Connection, lookup: Callable[[str], str | None], ordered: bool) -> Iterator[SourceItem]:
        """Unchanged for each row whose updated_at is the one synced; the others read whole, by id.

        In order, the rows after the first one to read are held (their ids only) until it is read, so
        that each comes out in its place; a batch is read at FETCH_BATCH rows to read or HELD_MAX held.
        """
        ids = self._pairs()
        # In order (PostgreSQL and SQLite only), the drivers' own tuples: this pass is over every row.
        rows = driver_rows(conn, self._in_order(conn, ids), FETCH_BATCH) if ordered else conn.execute(ids)
        with closing(rows):  # before the connection, also when the scan is given up half-way
            yield from self._judge(conn, rows, lookup, ordered)

    def _judge(self, conn: sa.Connection, rows: Iterable[Sequence[Any]], lookup: Callable[[str], str | None],
               ordered: bool) -> Iterator[SourceItem]:
        held: list[tuple[str, Any]] = []  # (id, the raw id to read, or _SAME)
        pending = 0
        for raw_id, updated in rows:
            ext_id = _as_id(raw_id)
            if ext_id is None:
                continue  # reported by a full read; an id pass has no text to report it with
            same = updated is not None and self._synced(lookup(ext_id), updated)
            if same and not (ordered and held):
                yield Unchanged(ext_id)
                continue
            held.append((ext_id, _SAME if same else raw_id))
            pending += not same
            if pending >= FETCH_BATCH or len(held) >= HELD_MAX:
                yield from self._read_held(conn, held, ordered)
                held, pending = [], 0
        if held:
            yield from self._read_held(conn, held, ordered)

    def _read_held(self, conn: sa.Connection, held: list[tuple[str, Any]], ordered: bool) -> Iterator[SourceItem]:
        raw_ids = [raw for _, raw in held if raw is not _SAME]
        if not ordered:
            yield from self._fetch(conn, raw_ids)
            return
        read: dict[str, list[SourceItem]] = {}
        for item in self._fetch(conn, raw_ids):
            read.setdefault(item.external_id, []).append(item)
        for ext_id, raw in held:
            if raw is _SAME:
                yield Unchanged(ext_id)
            elif read.get(ext_id):  # always, in the same snapshot
                yield read[ext_id].pop(0)

    def _fetch(self, conn: sa.Connection, raw_ids: list[Any]) -> Iterator[SourceItem]:
        rel = self._rel
        # The same connection: the id cursor stays open beside it, in the same snapshot.
        yield from self._rows(conn, self._select().where(rel.c[self.id_column].in_(raw_ids)))

    def _rows(self, conn: sa.Connection, select: sa.Select[Any]) -> Iterator[SourceItem]:
        nulls = 0
        for row in conn.execute(select).mappings():
            item = self._item(row)
            if isinstance(item, Skipped) and item.external_id == "":
                nulls += 1
                item = Skipped(f"{self.name}:row without id #{nulls}", item.reason)
            yield item

    def rows_with(self, column: str, *, sample: int | None = None) -> Iterator[tuple[SourceItem, Any]]:
        """Each row's item with the value of one more ``column`` (``embedops adopt`` reads vectors so);
        ``sample``: that many rows drawn at random. The items are those :meth:`scan` yields."""
        rel = self._relation([column])
        select = self._select(rel).add_columns(rel.c[column].label("eo__extra"))
        if sample is not None:
            select = select.order_by(sa.func.random()).limit(sample)
        engine = self._engine()
        try:
            with engine.connect() as conn:
                rows = _binary_rows(conn, select) if conn.dialect.name == "postgresql" else \
                    conn.execution_options(yield_per=FETCH_BATCH).execute(select).mappings()
                for row in rows:
                    yield self._item(row), row["eo__extra"]
        except _read_errors() as exc:
            raise self._error(exc) from None
        finally:
            engine.dispose()

    # -- statements -------------------------------------------------------------------
    def _engine(self) -> sa.Engine:
        url = self.database_url()
        try:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
            raise SourceError(f"source {self.name!r}: cannot use the database URL {redact(url)}: {exc}",
                              hint="use a SQLAlchemy URL such as postgresql://USER@HOST/DB or sqlite:////abs/path.db",
                              source=self.name) from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_connected)
            sa.event.listen(engine, "begin", _sqlite_begin)
        return engine

    def _relation(self, extra: Sequence[str] = ()) -> sa.FromClause:
        columns: list[sa.ColumnClause[Any]] = [sa.column(c) for c in dict.fromkeys([*self._columns(), *extra])]
        if self.table is not None:
            schema, _, table = self.table.rpartition(".")
            return sa.table(table, *columns, schema=schema or None)
        assert self.query is not None
        # text() reads ":name" as a parameter; the query is the owner's SQL, taken literally.
        literal = self.query.strip().rstrip(";").replace(":", r"\:")
        return sa.text(literal).columns(*columns).subquery("eo__rows")

    def _columns(self) -> list[str]:
        names = [self.id_column, *self.metadata]
        if self.updated_at is not None:
            names.append(self.updated_at)
        return list(dict.fromkeys(names))

    def _updated_col(self) -> sa.ColumnElement[Any]:
        assert self.updated_at is not None
        return self._rel.c[self.updated_at]

    def _pairs(self) -> sa.Select[Any]:
        """``id, updated_at`` of every selected row: what the id pass compares, and the fingerprint digests."""
        rel = self._rel
        pairs = sa.select(rel.c[self.id_column].label("eo__id"), self._updated_col().label("eo__up")).select_from(rel)
        return pairs if self.where is None else pairs.where(_sql(self.where, sa.Boolean))

    def _select(self, rel: sa.FromClause | None = None) -> sa.Select[Any]:
        rel = self._rel if rel is None else rel
        cols: list[sa.ColumnElement[Any]] = [rel.c[self.id_column].label(_ID), _sql(self.text).label(_TEXT)]
        if self.title is not None:
            cols.append(_sql(self.title).label(_TITLE))
        if self.updated_at is not None:
            cols.append(rel.c[self.updated_at].label(_UPDATED))
        cols += [rel.c[m].label(f"eo__m{i}") for i, m in enumerate(self.metadata)]
        select = sa.select(*cols).select_from(rel)
        if self.where is not None:
            select = select.where(_sql(self.where, sa.Boolean))
        return select

    # -- one row ----------------------------------------------------------------------
    def _item(self, row: Mapping[Any, Any]) -> SourceItem:
        ext_id = _as_id(row[_ID])
        where = f"{self.label} row"
        if ext_id is None:
            return Skipped("", f"{where} with id column {self.id_column!r} NULL or blank: skipped; give every row an id"
                               " (or filter such rows out with --where)")
        text = _as_text(row[_TEXT])
        if text is None:
            return Skipped(ext_id, f"{where} {ext_id!r}: the text expression gave bytes that are not UTF-8;"
                                   " convert the column to text")
        title = _as_text(row[_TITLE]) if self.title is not None else None
        if title and title.strip():
            text = f"{title}\n\n{text}" if text else title
        if not text.strip():
            return Skipped(ext_id, f"{where} {ext_id!r}: empty document (the text expression gave no text);"
                                   " add text or filter the row out with --where")
        raw_updated = row[_UPDATED] if self.updated_at is not None else None
        metadata = {m: _json_value(row[f"eo__m{i}"]) for i, m in enumerate(self.metadata)}
        doc = Document(ext_id, text, metadata, _as_time(raw_updated), self._signature(raw_updated))
        # E.g. a NUL in a SQLite text column, which PostgreSQL (the catalog) would refuse mid-batch.
        if (found := document_problem(doc)) is not None:
            return Skipped(ext_id, f"{where} {ext_id!r}: {found}")
        return doc

    def _signature(self, updated: Any) -> str | None:
        stamp = _stamp(updated)
        return None if stamp is None else f"{self._key}|{stamp}"

    def _synced(self, stored: str | None, updated: Any) -> bool:
        """``stored == self._signature(updated)``, a time compared as a time: parsing the stored text takes a
        tenth of formatting the value (2.3 us), and an id pass does it for every row."""
        if stored is None or not isinstance(updated, datetime):
            return stored is not None and stored == self._signature(updated)
        prefix, aware = self._key + "|d:", updated.tzinfo is not None
        if not stored.startswith(prefix) or stored.endswith("z") != aware:
            return False
        try:
            return datetime.fromisoformat(stored[len(prefix):-1 if aware else None]) == updated
        except ValueError:
            return False

    def _error(self, exc: Exception) -> SourceError:
        detail = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()[0]
        if isinstance(exc, sa.exc.OperationalError) and "connect" in detail.lower():
            hint = f"check that the database is up and ${self.url_env or 'the URL'} is right (user, password, host)"
        else:
            hint = (f"check the {self.label} and the columns and expressions the source names (id_column"
                    f" {self.id_column!r}, text {self.text!r}); `embedops source add` runs the same statement")
        return SourceError(f"source {self.name!r}: reading {self.label} failed: {detail}", hint=hint,
                           source=self.name)


def _binary_rows(conn: sa.Connection, select: sa.Select[Any]) -> Iterator[dict[str, Any]]:
    """PostgreSQL rows in binary format through a server-side cursor: a pgvector column arrives as packed
    floats (2 us a vector) instead of text that Python parses (1.5 ms for 384 floats on a busy machine)."""
    import uuid

    import psycopg
    from pgvector.psycopg import register_vector

    raw: Any = conn.connection.driver_connection
    try:
        register_vector(raw)
    except psycopg.ProgrammingError:
        pass  # no vector type in this database: vectors are text or bytes, loaded as such
    compiled = select.compile(dialect=conn.dialect)
    with raw.cursor(name=f"eo_{uuid.uuid4().hex[:12]}", binary=True) as cur:
        cur.itersize = FETCH_BATCH
        cur.execute(str(compiled), compiled.params)
        names = [d.name for d in cur.description or []]
        for record in cur:
            yield dict(zip(names, record, strict=True))


def _sqlite_connected(dbapi_conn: Any, _record: Any) -> None:
    """The fingerprint's aggregate; and no implicit transactions, so that :func:`_sqlite_begin` opens one."""
    dbapi_conn.isolation_level = None
    register_sqlite(dbapi_conn, _as_id, _stamp)


def _sqlite_begin(conn: sa.Connection) -> None:
    """A real (deferred) transaction: sqlite3 opens none for reads, so the fingerprint, the id pass and the
    reads by id would each see the file as it is when they start, not one snapshot."""
    conn.exec_driver_sql("BEGIN")


def _read_errors() -> tuple[type[Exception], ...]:
    """SQLAlchemy's errors and the drivers' own (the binary path and the in-order id pass bypass SQLAlchemy's
    wrapping); looked up only when an error is raised."""
    import sqlite3

    try:
        import psycopg
    except ImportError:
        return sa.exc.SQLAlchemyError, sqlite3.Error
    return sa.exc.SQLAlchemyError, sqlite3.Error, psycopg.Error


def _sql(expression: str, type_: Any = None) -> sa.ColumnElement[Any]:
    """The owner's SQL as one parenthesized term, so that ``a OR b`` stays one condition."""
    return sa.literal_column(f"({expression})", type_)


# -- values -----------------------------------------------------------------------------
def _as_id(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text if text.strip() else None


def _as_text(value: Any) -> str | None:
    """The text a column gave; None for bytes that are not UTF-8. NULL is the empty text."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else str(value)


def _json_value(value: Any) -> Any:
    """A metadata value as JSON can hold it (times as ISO 8601, decimals as numbers)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _as_time(value: Any) -> datetime | None:
    """A row's updated_at as an aware UTC time (naive times are UTC; numbers are epoch seconds)."""
    try:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _stamp(value: Any) -> str | None:
    """updated_at as a typed string: ``d:`` UTC time, ``n:`` number, ``s:`` text; the same value, the same stamp."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value.tzinfo is not None
        at = value.astimezone(UTC) if aware else value
        return "d:" + at.isoformat(timespec="microseconds") + ("z" if aware else "")
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return f"n:{value}"
    return f"s:{value}"
