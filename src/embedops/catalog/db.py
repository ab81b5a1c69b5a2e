"""Opening the catalog database: engine, pragmas, schema creation and upgrades."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.fts import create_fts, rebuild_fts
from embedops.catalog.ledger import actor, write_ledger
from embedops.catalog.secrets import redact
from embedops.errors import CatalogCorrupt, CatalogError, CatalogMissing, CatalogUnavailable, SchemaVersionError

# version → function that upgrades the schema from version-1 to version, run in
# one transaction together with its ledger row. Append only.
Upgrade = Callable[[sa.Connection], None]
UPGRADES: dict[int, Upgrade] = {}


def _upgrade_to_2(conn: sa.Connection) -> None:
    """Version 2: eval sets, and the chunks' full-text index (BM25 / hybrid search)."""
    tables = [schema.evalsets, schema.evalset_queries, schema.evalset_qrels]
    schema.metadata.create_all(conn, tables=tables)
    if create_fts(conn):
        rebuild_fts(conn)  # index the chunks written before the triggers existed


UPGRADES[2] = _upgrade_to_2


def _upgrade_to_3(conn: sa.Connection) -> None:
    """Version 3: migrations (alias moves between indexes)."""
    schema.metadata.create_all(conn, tables=[schema.migrations])


UPGRADES[3] = _upgrade_to_3


def _upgrade_to_4(conn: sa.Connection) -> None:
    """Version 4: similarity thresholds (registry and per-space value history)."""
    schema.metadata.create_all(conn, tables=schema.THRESHOLD_TABLES)


UPGRADES[4] = _upgrade_to_4


def _upgrade_to_5(conn: sa.Connection) -> None:
    """Version 5: monitoring (freshness marks, probes, drift references, query log, canaries)."""
    schema.metadata.create_all(conn, tables=schema.MONITOR_TABLES)


UPGRADES[5] = _upgrade_to_5


def _upgrade_to_6(conn: sa.Connection) -> None:
    """Version 6: the gate's evidence kept with each migration (cutover decides from it while it holds)."""
    # A catalog upgraded from version 2 got the migrations table (with the column) at step 3.
    if "evidence" not in {c["name"] for c in sa.inspect(conn).get_columns("migrations")}:
        conn.exec_driver_sql("ALTER TABLE migrations ADD COLUMN evidence JSON")


UPGRADES[6] = _upgrade_to_6


def _upgrade_to_7(conn: sa.Connection) -> None:
    """Version 7: writer locks (one sync, one migration step at a time, across processes and hosts)."""
    schema.metadata.create_all(conn, tables=[schema.locks])


UPGRADES[7] = _upgrade_to_7


def _upgrade_to_8(conn: sa.Connection) -> None:
    """Version 8: storage variants: each index's storage key, and fitted PCA projections."""
    if "storage" not in {c["name"] for c in sa.inspect(conn).get_columns("indexes")}:
        conn.exec_driver_sql("ALTER TABLE indexes ADD COLUMN storage VARCHAR(80) NOT NULL DEFAULT 'f32'")
    schema.metadata.create_all(conn, tables=[schema.projections])


UPGRADES[8] = _upgrade_to_8


def _upgrade_to_9(conn: sa.Connection) -> None:
    """Version 9: chunk metadata (``chunks.metadata``; NULL for chunks written before)."""
    if "metadata" not in {c["name"] for c in sa.inspect(conn).get_columns("chunks")}:
        column = schema.chunks.c.metadata
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE chunks ADD COLUMN metadata {kind}"))


UPGRADES[9] = _upgrade_to_9


def _upgrade_to_10(conn: sa.Connection) -> None:
    """Version 10: adopted embeddings (where a vector taken over by `embedops adopt` came from)."""
    schema.metadata.create_all(conn, tables=[schema.adopted_embeddings])


UPGRADES[10] = _upgrade_to_10


def _upgrade_to_11(conn: sa.Connection) -> None:
    """Version 11: curation decisions (keep / quarantine / release, language tag) per live document.

    Self-contained (one new table): it can take another number if a merge makes 11 taken."""
    schema.metadata.create_all(conn, tables=[schema.curation])


UPGRADES[11] = _upgrade_to_11


def _upgrade_to_12(conn: sa.Connection) -> None:
    """Version 12: spend (tokens, requests, cost and cache savings of every embedding job)."""
    schema.metadata.create_all(conn, tables=[schema.spend])


UPGRADES[12] = _upgrade_to_12


def _upgrade_to_13(conn: sa.Connection) -> None:
    """Version 13: the query side of an asymmetric space's fingerprint (``spaces.query_fingerprint``; NULL until
    the space's next verification takes it). Self-contained (one nullable column): it can take another number
    if a merge makes 13 taken."""
    if "query_fingerprint" not in {c["name"] for c in sa.inspect(conn).get_columns("spaces")}:
        kind = schema.spaces.c.query_fingerprint.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE spaces ADD COLUMN query_fingerprint {kind}"))


UPGRADES[13] = _upgrade_to_13


def _upgrade_to_14(conn: sa.Connection) -> None:
    """Version 14: duplicates across sources: the source of a duplicate's canonical document
    (``curation.canonical_source``; NULL, the duplicate's own source, for the rows written before).
    Self-contained (one nullable column): it can take another number if a merge makes 14 taken."""
    if "canonical_source" not in {c["name"] for c in sa.inspect(conn).get_columns("curation")}:
        conn.execute(sa.text("ALTER TABLE curation ADD COLUMN canonical_source INTEGER"))


UPGRADES[14] = _upgrade_to_14


def _upgrade_to_15(conn: sa.Connection) -> None:
    """Version 15: a source's scan fingerprint (``sources.scan_fingerprint``; NULL: the next sync of the source
    reads its id set as before). Self-contained (one nullable column): it can take another number if a merge
    makes 15 taken."""
    if "scan_fingerprint" not in {c["name"] for c in sa.inspect(conn).get_columns("sources")}:
        conn.execute(sa.text("ALTER TABLE sources ADD COLUMN scan_fingerprint TEXT"))


UPGRADES[15] = _upgrade_to_15


RESTORE_HINT = (
    "restore it from a backup: `embedops restore BACKUP` (backups are made with `embedops backup FILE`);"
    " the catalog holds the history and cannot be rebuilt from the sources"
)


def open_catalog(url: str, *, create: bool) -> sa.Engine:
    """An engine on the catalog at ``url``, schema created (``create``) or checked and upgraded.

    A catalog that should exist and does not is refused, never recreated empty;
    an unreadable file and an unreachable server get errors that say what to do."""
    sqlite_path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if sqlite_path is not None and not create and not sqlite_path.is_file():
        raise CatalogMissing(f"the catalog {sqlite_path} that embedops.toml points at is gone", hint=RESTORE_HINT,
                             path=str(sqlite_path))
    engine = create_engine(url)
    try:
        if not create:
            with engine.connect() as conn:
                if current_version(conn) is None:
                    raise CatalogMissing(f"the catalog database {redact(url)} holds no embedops tables",
                                         hint=RESTORE_HINT + "; check that embedops.toml names the right database")
        ensure_schema(engine)
    except sa.exc.DatabaseError as exc:
        engine.dispose()
        raise _database_error(url, sqlite_path, exc) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _database_error(url: str, sqlite_path: Path | None, exc: sa.exc.DatabaseError) -> CatalogError:
    detail = redact(str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]
    if sqlite_path is not None:
        return corrupt_catalog(sqlite_path, detail)
    return CatalogUnavailable(f"cannot open the catalog database {redact(url)}: {detail}",
                              hint="check that the server is up and the URL, user and password are right (the"
                                   " password comes from $EMBEDOPS_DATABASE, database_env or ~/.pgpass)")


def corrupt_catalog(path: Path | str, detail: str, **details: Any) -> CatalogCorrupt:
    """The error for a SQLite catalog file that cannot be read, with the way back (restore, or salvage)."""
    return CatalogCorrupt(
        f"the catalog {path} cannot be read: {detail}",
        hint=f"{RESTORE_HINT}. To salvage what is readable: `sqlite3 {path} .recover | sqlite3"
             f" recovered.db`, then `embedops restore recovered.db`",
        path=str(path), **details)


def check_integrity(engine: sa.Engine) -> None:
    """SQLite's ``quick_check`` of the whole catalog file (reads every page: seconds per GB), in a read
    transaction; CatalogCorrupt naming the first problems. Damage in pages no query has reached yet is
    found here, not by the next sync that reaches them. PostgreSQL checks its own pages."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return
    with read_tx(engine) as conn:
        problems = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(20)")]
    if problems != ["ok"]:
        raise corrupt_catalog(engine.url.database, f"SQLite's integrity check: {'; '.join(problems[:3])}",
                              problems=problems)


def is_corruption(exc: BaseException) -> bool:
    """Whether ``exc`` (sqlite3's, or SQLAlchemy's wrapping it) says the file is damaged or no database at all.

    A truncated or overwritten file opens fine when its first pages are intact; SQLite finds
    the damage only when a statement reaches the missing pages, whichever statement that is."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or any(
        says in str(exc) for says in ("database disk image is malformed", "file is not a database"))


@contextmanager
def corruption_translated(path: str | None) -> Iterator[None]:
    """Around raw sqlite3 calls on the catalog at ``path`` (streamed passes; the vector store's search path
    does the same in ``vectors/sqlite.py``): a damaged file becomes :class:`CatalogCorrupt`, as the engine's
    own statements do (its ``handle_error`` event). ``path`` None: not the catalog, nothing translated."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if path and is_corruption(exc):
            raise corrupt_catalog(path, str(exc)) from exc
        raise


# ``Connection.info`` key of a catalog connection's file (raw reads translate corruption on these only,
# not on a SQLite database a source reads).
CATALOG_PATH = "embedops.catalog_path"


def _mark_catalog(path: str, _dbapi_conn: Any, record: Any) -> None:
    record.info[CATALOG_PATH] = path


def _raise_if_corrupt(path: str, context: sa.engine.ExceptionContext) -> None:
    if is_corruption(context.original_exception):
        raise corrupt_catalog(path, str(context.original_exception)) from context.original_exception


def database_url(database: str, workspace_root: Path) -> str:
    """A SQLAlchemy URL from the config value: a URL, or a SQLite path relative to the workspace."""
    if "://" in database:
        # psycopg (3) is the PostgreSQL driver embedops installs; plain URLs would pick psycopg2.
        for prefix in ("postgresql://", "postgres://"):
            if database.startswith(prefix):
                return "postgresql+psycopg://" + database[len(prefix):]
        return database
    path = Path(database)
    if not path.is_absolute():
        path = workspace_root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


_SQLITE_VARIABLES = 32_766  # bound parameters per statement (SQLite 3.32 and later)


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], *, or_ignore: bool = False) -> int:
    """SQLite: insert ``rows`` (dicts with the same keys) into ``table`` (``INSERT OR IGNORE`` with
    ``or_ignore``); the rows inserted.

    Multi-row VALUES statements of up to 32,766 parameters, not an executemany of one statement per
    row: each statement opens a savepoint, and FTS5 (the chunks' insert trigger) flushes its pending
    terms into a new segment at every one (one row per statement cost 2x the CPU:
    ``bench/first_sync_parts.py --parts fts``). The SQL is written here: SQLAlchemy's compilation of a
    statement of thousands of rows cost more than it saved. Values go through each column type's bind
    processor (JSON columns), as SQLAlchemy sends them, but for binary columns.
    """
    assert conn.dialect.name == "sqlite", "multi-row inserts are the SQLite writers'"
    if not rows:
        return 0
    names = list(rows[0])
    # sqlite3 binds bytes as BLOBs itself; SQLAlchemy's binary processor would only wrap each in a memoryview.
    processors = [None if isinstance(table.c[name].type, sa.LargeBinary) else table.c[name].type.bind_processor(conn.dialect)
                  for name in names]
    quote = conn.dialect.identifier_preparer.quote
    head = (f"INSERT {'OR IGNORE ' if or_ignore else ''}INTO {quote(table.name)} ({', '.join(map(quote, names))})"
            " VALUES ")
    per_row = "(" + ",".join("?" * len(names)) + ")"
    step = max(1, _SQLITE_VARIABLES // len(names))
    inserted = 0
    for lo in range(0, len(rows), step):
        part = rows[lo : lo + step]
        params: list[Any] = []
        for row in part:
            params.extend(row[name] if proc is None else proc(row[name]) for name, proc in zip(names, processors, strict=True))
        inserted += conn.exec_driver_sql(head + ",".join([per_row] * len(part)), tuple(params)).rowcount
    return inserted


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def create_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take it over so that
        # a write transaction starts with BEGIN IMMEDIATE and never deadlocks.
        sa.event.listen(engine, "connect", _disable_pysqlite_begin)
        sa.event.listen(engine, "begin", _begin_immediate)
        if engine.url.database:
            sa.event.listen(engine, "handle_error", partial(_raise_if_corrupt, engine.url.database))
            sa.event.listen(engine, "connect", partial(_mark_catalog, engine.url.database))
        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        sa.event.listen(engine, "begin", _serialize_pg_writes)
    return engine


def _disable_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _begin_immediate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write", True) else "BEGIN")


# pg_advisory_xact_lock key of "an embedops catalog write transaction" (per database).
PG_WRITE_LOCK = 0x656D6264  # "embd"


def _serialize_pg_writes(conn: sa.Connection) -> None:
    """One write transaction at a time, as SQLite's BEGIN IMMEDIATE gives: a check made in a
    transaction (a chunk still lacks a vector) stays true until it commits, even when a sync and a
    backfill write at once. Batches are short; searches read outside transactions and never wait."""
    if conn.info.get("write", True):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


def current_version(conn: sa.Connection) -> int | None:
    if not sa.inspect(conn).has_table("meta"):
        return None
    value = conn.execute(
        sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
    ).scalar()
    return int(value) if value is not None else None


def ensure_schema(engine: sa.Engine) -> int:
    """Create the schema on a new database or upgrade an older one. Returns the version."""
    with engine.begin() as conn:
        version = current_version(conn)
        if version is None:
            schema.metadata.create_all(conn)
            create_fts(conn)
            conn.execute(sa.insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION)))
            write_ledger(conn, "catalog.create", schema_version=schema.SCHEMA_VERSION)
            return schema.SCHEMA_VERSION
        if version > schema.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the catalog has schema version {version}, newer than this embedops ({schema.SCHEMA_VERSION})",
                hint="upgrade embedops (pip install -U embedops)",
            )
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            _upgrade(conn, target)
        return schema.SCHEMA_VERSION


def _upgrade(conn: sa.Connection, target: int) -> None:
    step = UPGRADES.get(target)
    if step is None:
        raise CatalogError(f"no upgrade step to catalog schema version {target}")
    step(conn)
    result = conn.execute(
        sa.update(schema.meta).where(schema.meta.c.key == "schema_version").values(value=str(target))
    )
    assert result.rowcount == 1, "schema_version row missing"
    write_ledger(conn, "catalog.upgrade", schema_version=target)


@contextmanager
def read_tx(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read transaction (plain BEGIN on SQLite, so it does not block writers)."""
    with engine.connect() as conn:
        conn.info["write"] = False
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info["write"] = True


def driver_rows(conn: sa.Connection, select: sa.Select[Any], page: int) -> Generator[Sequence[Any], None, None]:
    """The rows of ``select`` as the driver's plain tuples, ``page`` at a time, on ``conn``'s transaction.

    On PostgreSQL through a server-side cursor in binary format, elsewhere through the
    driver's own ``fetchmany``. For passes over a million rows, where SQLAlchemy's Row
    objects and buffering cost as much as the work done with them.
    """
    import uuid

    compiled = select.compile(dialect=conn.dialect)
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        cursor, params = raw.cursor(name=f"eo_{uuid.uuid4().hex[:12]}", binary=True), compiled.params
    elif compiled.positional:
        cursor, params = raw.cursor(), [compiled.params[name] for name in compiled.positiontup or ()]
    else:
        cursor, params = raw.cursor(), compiled.params
    try:
        with corruption_translated(conn.info.get(CATALOG_PATH)):  # a catalog's rows, not a source's
            cursor.execute(str(compiled), params)
            while rows := cursor.fetchmany(page):
                yield from rows
    finally:
        cursor.close()


def now() -> float:
    return time.time()


__all__ = ["UPGRADES", "actor", "create_engine", "database_url", "driver_rows", "ensure_schema", "insert_rows", "read_tx",
           "now"]
