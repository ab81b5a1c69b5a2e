"""`embedops doctor`: audit every index for mixed spaces, orphans and missing vectors."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import check_integrity
from embedops.catalog.lock import current_holders

if TYPE_CHECKING:
    from embedops.workspace import Workspace


def audit(ws: Workspace) -> dict[str, Any]:
    """Counts per index; ``ok`` is False when any count that should be zero is not. A damaged SQLite
    catalog file is CatalogCorrupt first, with the way back."""
    check_integrity(ws.engine)
    v, c, d, e = schema.vectors, schema.chunks, schema.documents, schema.embeddings
    reports = []
    with ws.engine.connect() as conn:
        shadows = _shadows(conn)
        for ix in ws.indexes(conn, "active"):
            mine = v.c.index_id == ix.id

            def count(q: sa.Select[Any]) -> int:
                return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())

            mixed = count(sa.select(v.c.seq).where(mine, sa.or_(v.c.space_key != ix.space_key, v.c.chunker_key != ix.chunker_key)))
            orphans = count(
                sa.select(v.c.seq).join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id)
                .where(mine, d.c.deleted_at.is_not(None))
            )
            has = sa.select(v.c.seq).where(v.c.chunk_id == c.c.id, mine).exists()
            missing = count(
                sa.select(c.c.id).join(d, d.c.id == c.c.document_id)
                .where(d.c.deleted_at.is_(None), c.c.chunker_key == ix.chunker_key, ~has)
            )
            no_embedding = count(
                sa.select(v.c.seq).outerjoin(e, sa.and_(e.c.space_key == v.c.space_key, e.c.content_hash == v.c.content_hash))
                .where(mine, e.c.content_hash.is_(None))
            )
            stale = count(
                sa.select(v.c.seq).join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id)
                .where(mine, v.c.source_version != d.c.content_hash)
            )
            total = ws.store.count(conn, ix.id)
            problems = {"mixed_space": mixed, "orphans": orphans, "missing_vectors": missing,
                        "missing_embeddings": no_embedding, "stale_source_version": stale}
            filling = shadows.get(ix.id)  # a shadow being built lacks vectors by design until its backfill ends
            counted = {k: v for k, v in problems.items() if not (filling and k == "missing_vectors")}
            reports.append({"index": ix.id, "space": ix.space_key, "chunker": ix.chunker_key, "vectors": total,
                            **problems, "backfill": filling, "ok": not any(counted.values())})
    return {"ok": all(r["ok"] for r in reports), "indexes": reports}


def _shadows(conn: sa.Connection) -> dict[str, str]:
    """Shadow index id → what is filling it: the running backfill (its lock holder), or that one is pending."""
    m = schema.migrations
    open_ = conn.execute(sa.select(m.c.alias, m.c.to_index).where(m.c.status.in_(("open", "rolled_back")))).all()
    holders = {h.name: h for h in current_holders(conn)}
    out = {}
    for alias, index_id in open_:
        holder = holders.get(f"migration:{alias}")
        out[index_id] = (f"running: {holder.describe(time.time())}" if holder
                         else "pending: run `embedops migrate backfill`")
    return out
