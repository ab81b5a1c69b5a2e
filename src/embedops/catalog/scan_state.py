"""A source's scan fingerprint (schema version 15): what lets a sync skip the id pass of an unchanged table.

A fingerprinted source (:class:`~embedops.sources.base.FingerprintedSource`, a SQL
table with ``updated_at``) fingerprints the id set its incremental scan compares,
in the scan's own snapshot. The fingerprint is stored only by the transaction that
ends a sync of the source having left the catalog exactly in line with what that
scan saw (sync/run.py ``_finish``: the whole plan run, nothing skipped); every
other write to the source's documents clears it in its own transaction (a batch,
a deletion, a re-signing, a quarantine release, ``source remove``). So a stored
fingerprint always describes the catalog's live documents of the source as they
are, and a scan whose fingerprint equals it would find nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa

from embedops.catalog import schema


def stored_fingerprint(conn: sa.Connection, source_id: int) -> str | None:
    """The fingerprint recorded for source ``source_id`` (None: none, or cleared since)."""
    s = schema.sources
    value = conn.execute(sa.select(s.c.scan_fingerprint).where(s.c.id == source_id)).scalar()
    return None if value is None else str(value)


def record_fingerprint(conn: sa.Connection, source_id: int, value: str | None) -> None:
    """Store ``value`` for source ``source_id`` (None clears it), in the caller's transaction."""
    s = schema.sources
    result = conn.execute(sa.update(s).where(s.c.id == source_id).values(scan_fingerprint=value))
    assert result.rowcount == 1, f"source row {source_id} missing"


def forget_fingerprint(conn: sa.Connection, source_id: int) -> None:
    """Clear source ``source_id``'s fingerprint: its documents change in the caller's transaction."""
    s = schema.sources
    conn.execute(sa.update(s).where(s.c.id == source_id, s.c.scan_fingerprint.is_not(None)).values(scan_fingerprint=None))


def live_document_count(conn: sa.Connection, source_id: int) -> int:
    """How many live documents source ``source_id`` has (what an id pass that finds nothing counts unchanged)."""
    d = schema.documents
    q = sa.select(sa.func.count()).select_from(d).where(d.c.source_id == source_id, d.c.deleted_at.is_(None))
    return int(conn.execute(q).scalar_one())


__all__ = ["forget_fingerprint", "live_document_count", "record_fingerprint", "stored_fingerprint"]
