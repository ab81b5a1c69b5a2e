"""The append-only ledger: one row per state change, in the same transaction."""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from typing import Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.secrets import redact


def actor() -> str:
    """Who/what made the change: user@host and the command line."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    argv = " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("embedops") else ""
    cmd = f"embedops {argv}".strip() if argv else os.path.basename(sys.argv[0] if sys.argv else "python")
    return redact(f"{user}@{socket.gethostname()}: {cmd}")  # a --database URL may carry a password


def write_ledger(conn: sa.Connection, kind: str, **details: Any) -> int:
    """Append one ledger row in the caller's transaction; returns its id."""
    stmt = sa.insert(schema.ledger).values(at=time.time(), kind=kind, actor=actor(), details=details)
    return int(conn.execute(stmt.returning(schema.ledger.c.id)).scalar_one())


def read_ledger(
    conn: sa.Connection, *, kind_prefix: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    q = sa.select(schema.ledger).order_by(schema.ledger.c.id.desc())
    if kind_prefix:
        q = q.where(schema.ledger.c.kind.startswith(kind_prefix))
    if limit:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]
