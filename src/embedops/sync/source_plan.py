"""A source's sync plan: its scan against the catalog's view of it (the I/O around sync/plan.py).

A source that scans in external-id order (an
:class:`~embedops.sources.base.OrderedSource`: a SQL table) is merged with the
catalog's rows streamed in that same order, a page at a time, so that a no-op
re-sync of a million rows holds neither side in memory. Any other source (and an
ordered one that turns out not to keep its order) is planned against the catalog's
rows loaded whole: a folder's scan comes in the file system's order, not the ids'.

A source that can fingerprint its id set (a :class:`~embedops.sources.base.FingerprintedSource`:
a SQL table with ``updated_at``) is given the fingerprint the catalog recorded for it
(catalog/scan_state.py). When the scan's own, taken first in its snapshot, is the same,
the scan yields nothing and the plan is empty, its documents all unchanged
(``unchanged_by="fingerprint"``): neither the id pass nor the catalog's side is read.
Otherwise the plan carries the scan's fingerprint, for the run to record once it has
brought the catalog in line with what the scan saw (sync/run.py).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from itertools import chain
from typing import Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import driver_rows, read_tx
from embedops.catalog.scan_state import live_document_count, stored_fingerprint
from embedops.sources.base import (
    FingerprintedSource, OrderedSource, OutOfOrder, ScanFingerprint, SignatureCursor, Source, SourceItem,
)
from embedops.sync.plan import CatalogRows, CatalogStream, Changes, SyncPlan, Unsigned, plan_sync, plan_sync_in_order

log = logging.getLogger(__name__)
CATALOG_PAGE = 5000  # catalog rows per fetch of a streamed plan


def plan_source(engine: sa.Engine, source_id: int, source: Source, *, full: bool = False,
                hold: Changes = list) -> SyncPlan:
    """The plan that syncs ``source`` (catalog row ``source_id``): the catalog side streamed when the
    source scans in order, else loaded. ``full``: no stored signature is offered, so every record is read.
    ``hold`` makes the plan's lists of new and changed documents (a spool: sync/spool.py)."""
    if isinstance(source, OrderedSource):
        try:
            return _plan_streamed(engine, source_id, source, full, hold)
        except OutOfOrder as exc:
            log.info("source %r: %s; planning against the catalog's rows loaded whole", source.name, exc)
    return _plan_loaded(engine, source_id, source, full, hold)


def _live(source_id: int) -> sa.Select[Any]:
    d = schema.documents
    return sa.select(d.c.external_id, d.c.id, d.c.content_hash, d.c.signature).where(
        d.c.source_id == source_id, d.c.deleted_at.is_(None))


def _plan_loaded(engine: sa.Engine, source_id: int, source: Source, full: bool, hold: Changes) -> SyncPlan:
    with read_tx(engine) as conn:
        # The DBAPI's plain tuples: Row objects for 100k documents cost as much as the rest of a no-op plan.
        known = CatalogRows(conn.execute(_live(source_id)).cursor.fetchall())
    signatures = known.signatures()
    if full:  # no signature to match: the source reads every record
        signatures = dict.fromkeys(signatures)
    return plan_sync(source.name, source.scan(signatures), known, hold=hold)


def _plan_streamed(engine: sa.Engine, source_id: int, source: OrderedSource, full: bool, hold: Changes) -> SyncPlan:
    d = schema.documents
    with read_tx(engine) as conn:
        # Python compares strings by code point, as SQLite compares text (BINARY) and PostgreSQL under "C".
        key = d.c.external_id.collate("C") if conn.dialect.name == "postgresql" else d.c.external_id
        # The driver's tuples: SQLAlchemy's Row objects cost as much as the rest of the catalog's side.
        rows = driver_rows(conn, _live(source_id).order_by(key), CATALOG_PAGE)
        catalog = CatalogStream(rows, lambda prefix: _signed(conn, source_id, prefix))
        known: SignatureCursor = Unsigned() if full else catalog
        if not isinstance(source, FingerprintedSource):
            mark = None
            items = source.scan_in_order(known)
        else:  # `sync --full` trusts no fingerprint, but takes one for the next sync
            mark = ScanFingerprint(None if full else stored_fingerprint(conn, source_id))
            items = source.scan_in_order(known, mark)
        try:
            scanned = _started(items)  # the scan fingerprints before its first item
            if mark is not None and mark.unchanged:
                return SyncPlan(source.name, unchanged=live_document_count(conn, source_id), fingerprint=mark.seen,
                                unchanged_by="fingerprint")
            plan = plan_sync_in_order(source.name, scanned, catalog, hold=hold)
            plan.fingerprint = None if mark is None else mark.seen
            return plan
        finally:
            if isinstance(items, Generator):  # a scan given up (out of order) lets go of its database now
                items.close()
            rows.close()


def _started(items: Iterator[SourceItem]) -> Iterator[SourceItem]:
    """``items`` with its first item already taken (the scan has begun), then given back in its place."""
    first = next(items, None)
    return items if first is None else chain([first], items)


def _signed(conn: sa.Connection, source_id: int, prefix: str) -> bool:
    """Whether any live document of the source has a signature starting with ``prefix``."""
    d = schema.documents
    q = sa.select(d.c.id).where(d.c.source_id == source_id, d.c.deleted_at.is_(None),
                                sa.func.substr(d.c.signature, 1, len(prefix)) == prefix).limit(1)
    return conn.execute(q).first() is not None


__all__ = ["CATALOG_PAGE", "plan_source"]
