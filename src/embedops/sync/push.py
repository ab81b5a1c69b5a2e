"""Plans for documents pushed by id into a push source.

A push (``PUT``/``DELETE`` of one document, or a batch) is a sync restricted
to the pushed ids: the same pure diff decides added / updated / unchanged, and
the same :class:`~embedops.sync.run.SyncRunner` executes it (batched
transactions, ledger rows, dual-write to a shadow index during a migration).

>>> from embedops.sources.base import Document
>>> known = {"a": CatalogDoc(1, Document("a", "old").content_hash, None)}
>>> plan = plan_upsert("events", [Document("a", "new"), Document("b", "hello"), Document("c", "  ")], known)
>>> plan.summary()["added"], plan.summary()["updated"], [s.external_id for s in plan.skipped]
(1, 1, ['c'])
>>> document_outcomes(plan, ["a", "b", "c"])
{'a': 'updated', 'b': 'added', 'c': 'skipped'}
>>> plan_delete("events", ["a", "zz"], known, missing_ok=True).deleted
[(1, 'a')]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.config import SourceConfig
from embedops.errors import NotFound, SourceError, Terminal
from embedops.sources.base import Document, Skipped, SourceItem, encodable
from embedops.sources.validate import document_problem, id_problem
from embedops.sync.plan import CatalogDoc, SyncPlan, plan_sync

_IN_BATCH = 900  # SQLite's bound-parameter limit


class NotPushSource(SourceError, Terminal):
    """Documents were pushed to a source that reads its own path: they would vanish at the next sync."""

    http_status = 409


def require_push(cfg: SourceConfig) -> None:
    """Refuse pushes into a source whose documents come from its path."""
    if cfg.kind != "push":
        raise NotPushSource(
            f"source {cfg.name!r} is a {cfg.kind} source: its documents come from {cfg.path!r}",
            hint="edit them there and run `embedops sync`; only push sources accept documents by id"
            " (`embedops source add NAME --kind push`)", source=cfg.name,
        )


def plan_upsert(source: str, docs: Sequence[Document], catalog: Mapping[str, CatalogDoc]) -> SyncPlan:
    """What upserting ``docs`` changes; ``catalog`` holds the live documents among their ids.

    Only the pushed ids are diffed, so no other document is ever deleted. A
    document without text is reported as skipped and keeps its previous version.
    """
    items: list[SourceItem] = [_checked(source, doc) for doc in docs]
    pushed = {doc.external_id for doc in docs}
    return plan_sync(source, items, {ext: doc for ext, doc in catalog.items() if ext in pushed})


def plan_delete(
    source: str, external_ids: Sequence[str], catalog: Mapping[str, CatalogDoc], *, missing_ok: bool = False
) -> SyncPlan:
    """Tombstone the given ids. Raises :class:`NotFound` for ids that are not live, unless ``missing_ok``."""
    wanted = list(dict.fromkeys(external_ids))
    missing = [ext for ext in wanted if ext not in catalog]
    if missing and not missing_ok:
        shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise NotFound(
            f"source {source!r} has no live document {shown}",
            hint="nothing was deleted; list what is there with `embedops status`, or delete with missing_ok",
            source=source, missing=missing[:100],
        )
    return SyncPlan(source, deleted=[(catalog[ext].id, ext) for ext in wanted if ext in catalog])


def document_outcomes(plan: SyncPlan, external_ids: Sequence[str]) -> dict[str, str]:
    """What the plan does to each pushed id: added, updated, unchanged, deleted, skipped, or quarantined
    (stored, not embedded: curation held it back)."""
    out = dict.fromkeys(external_ids, "unchanged")
    out.update({s.external_id: "skipped" for s in plan.skipped})  # first: a duplicate's first copy is still used
    out.update({doc.external_id: "added" for doc in plan.added})
    out.update({doc.external_id: "updated" for _, doc in plan.updated})
    out.update({ext: "deleted" for _, ext in plan.deleted})
    # Curation (when on): a pushed document held back is stored but not embedded.
    out.update({ext: "quarantined" for ext, decision in plan.decisions.items() if ext in out and not decision.kept})
    return out


def live_documents(conn: sa.Connection, source_id: int, external_ids: Sequence[str]) -> dict[str, CatalogDoc]:
    """The catalog's live documents of one source among ``external_ids``."""
    d = schema.documents
    # An id that could not be stored is in no catalog, and PostgreSQL refuses even to compare a NUL.
    wanted = [ext for ext in dict.fromkeys(external_ids) if id_problem(ext) is None]
    found: dict[str, CatalogDoc] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        q = sa.select(d.c.external_id, d.c.id, d.c.content_hash, d.c.signature).where(
            d.c.source_id == source_id, d.c.deleted_at.is_(None), d.c.external_id.in_(wanted[i : i + _IN_BATCH])
        )
        found.update({r[0]: CatalogDoc(r[1], r[2], r[3]) for r in conn.execute(q)})
    return found


def _checked(source: str, doc: Document) -> SourceItem:
    shown = f"document {encodable(repr(doc.external_id))} of push source {source!r}"
    if not doc.text.strip():
        return Skipped(doc.external_id, f"{shown} has no text; send a non-empty `text`")
    if (found := document_problem(doc)) is not None:
        return Skipped(doc.external_id, f"{shown}: {found}")
    return doc
