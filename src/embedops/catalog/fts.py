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


def supports_fts(conn: sa.Connection) -> bool:
    """Whether this catalog's database has the FTS5 index (SQLite only, for now)."""
    return conn.dialect.name == "sqlite"


def create_fts(conn: sa.Connection) -> bool:
    """Create the FTS table and its triggers if missing; False on a database without FTS5."""
    if not supports_fts(conn):
        return False
    for statement in _DDL:
        conn.exec_driver_sql(statement)
    return True


def rebuild_fts(conn: sa.Connection) -> None:
    """Re-index every chunk from ``chunks`` (after creating the table on existing data)."""
    conn.exec_driver_sql(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
