"""The chunks' full-text index (SQLite FTS5), kept in sync by triggers.

``chunks_fts`` is an external-content FTS5 table over ``chunks(text)``: it
stores only the inverted index, the text stays in ``chunks``. Triggers on
``chunks`` keep it current inside the writer's own transaction, so the sync
code needs no change and a crash can never leave the two out of line.

Tokenizer: ``porter unicode61 remove_diacritics 2``: Unicode word splitting,
case and accent folding, English Porter stemming. Scripts written without
spaces (Chinese, Japanese) are not segmented: a run of such characters is one
token, so BM25 there matches whole runs only (see docs/evaluation.md).
"""

from __future__ import annotations

import sqlalchemy as sa

FTS_TABLE = "chunks_fts"

_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    "text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN"
    f" INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
    # External content: FTS5 must be told the old text to remove its tokens.
    f"CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN"
    f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text); END",
    f"CREATE TRIGGER IF NOT EXISTS chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN"
    f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, text) VALUES ('delete', old.id, old.text);"
    f" INSERT INTO {FTS_TABLE}(rowid, text) VALUES (new.id, new.text); END",
)


# PostgreSQL: a generated tsvector column on chunks with a GIN index; the database
# keeps it current inside every writer's transaction, like the FTS5 triggers.
_PG_DDL = (
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector"
    " GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX IF NOT EXISTS ix_chunks_tsv ON chunks USING gin (tsv)",
)


def supports_fts(conn: sa.Connection) -> bool:
    """Whether this catalog's database has a full-text index (SQLite FTS5 or PostgreSQL tsvector)."""
    return conn.dialect.name in ("sqlite", "postgresql")


def create_fts(conn: sa.Connection) -> bool:
    """Create the full-text index if missing. True when rows written before it exist
    must be indexed with :func:`rebuild_fts` (FTS5); PostgreSQL's generated column needs no rebuild."""
    if conn.dialect.name == "postgresql":
        for statement in _PG_DDL:
            conn.exec_driver_sql(statement)
        return False  # generated column: existing rows are indexed already, nothing to rebuild
    if not supports_fts(conn):
        return False
    for statement in _DDL:
        conn.exec_driver_sql(statement)
    return True


def rebuild_fts(conn: sa.Connection) -> None:
    """Re-index every chunk from ``chunks`` (after creating the table on existing data)."""
    conn.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
