"""The opt-in query log: what users actually ask, for drift and eval-set coverage.

Enabled with ``[monitor] query_log = true``. Each query served through
``Workspace.search`` adds one row (time, index, space, mode, text or only its
hash with ``query_log_text = false``, and the query vector) in one small
transaction. Rows older than ``query_log_retention`` are deleted, at most once
an hour per process and on every check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.hashing import content_hash
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.monitor.settings import MonitorSettings

PRUNE_EVERY_S = 3600.0
_last_prune: dict[str, float] = {}
_prune_lock = threading.Lock()


@dataclass
class LoggedQueries:
    """Logged queries of one space, oldest first; ``vectors`` has one row per query."""

    ids: list[int]
    at: list[float]
    texts: list[str | None]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def log_query(
    engine: sa.Engine, settings: MonitorSettings, index: IndexInfo, mode: str, text: str | None, vector: np.ndarray | None
) -> None:
    """Append one served query (a single INSERT), pruning expired rows now and then."""
    now = time.time()
    row = {
        "at": now, "index_id": index.id, "space_key": index.space_key, "mode": mode,
        "text": text if settings.query_log_text else None, "text_hash": content_hash(text or ""),
        "vector": None if vector is None else np.asarray(vector, dtype=np.float32).tobytes(),
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(schema.query_log).values(**row))
    key = str(engine.url)
    with _prune_lock:
        due = now - _last_prune.get(key, 0.0) >= PRUNE_EVERY_S
        if due:
            _last_prune[key] = now
    if due:
        prune_query_log(engine, settings)


def prune_query_log(engine: sa.Engine, settings: MonitorSettings, *, now: float | None = None) -> int:
    """Delete logged queries older than the retention; returns how many."""
    cutoff = (now or time.time()) - settings.seconds("query_log_retention")
    with engine.begin() as conn:
        deleted = conn.execute(sa.delete(schema.query_log).where(schema.query_log.c.at < cutoff)).rowcount
    return int(deleted or 0)


def logged_queries(
    conn: sa.Connection, space_key: str, *, after: float | None = None, until: float | None = None, limit: int | None = None,
    newest: bool = True,
) -> LoggedQueries:
    """Queries of ``space_key`` with a vector, logged in ``(after, until]``: the newest ``limit`` (or oldest)."""
    q_ = schema.query_log
    q = sa.select(q_.c.id, q_.c.at, q_.c.text, q_.c.vector).where(q_.c.space_key == space_key, q_.c.vector.is_not(None))
    if after is not None:
        q = q.where(q_.c.at > after)
    if until is not None:
        q = q.where(q_.c.at <= until)
    q = q.order_by(q_.c.at.desc() if newest else q_.c.at, q_.c.id.desc() if newest else q_.c.id)
    if limit is not None:
        q = q.limit(limit)
    rows = sorted(conn.execute(q).all(), key=lambda r: (r[1], r[0]))
    if not rows:
        return LoggedQueries([], [], [], np.empty((0, 0), dtype=np.float32))
    vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
    return LoggedQueries([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors)


def count_logged(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(schema.query_log)).scalar_one())
