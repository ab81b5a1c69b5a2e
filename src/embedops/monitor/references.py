"""Drift references pinned by sync: an index's first sync fixes the time its corpus reference is taken at.

A sync listener (``Workspace.after_sync``): it takes the catalog engine and the
indexes just synced, so sync needs nothing of the drift check (monitor/drift.py)
and drift needs nothing of sync.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.vectors.base import IndexInfo


def pin_corpus_references(engine: sa.Engine, indexes: Sequence[IndexInfo]) -> None:
    """Called at the end of every sync: an index's first sync fixes its corpus reference time.

    One small read per sync; the sample itself is drawn by the first drift check.
    """
    r = schema.drift_references
    ids = [ix.id for ix in indexes]
    with read_tx(engine) as conn:
        have = set(conn.execute(sa.select(r.c.index_id).where(r.c.stream == "corpus", r.c.index_id.in_(ids))).scalars())
    missing = [i for i in ids if i not in have]
    if not missing:
        return
    now = time.time()
    with engine.begin() as conn:
        have = set(conn.execute(sa.select(r.c.index_id).where(r.c.stream == "corpus", r.c.index_id.in_(missing))).scalars())
        for index_id in (i for i in missing if i not in have):
            conn.execute(sa.insert(r).values(index_id=index_id, stream="corpus", created_at=now, cutoff=now, vectors=b"", labels=[]))
            write_ledger(conn, "monitor.reference", index=index_id, stream="corpus", rows=0, cutoff=now, pinned=True)
