"""The pure diff of a source scan against the catalog: what a sync would do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embedops.sources.base import Document, Skipped, SourceItem, Unchanged


@dataclass(frozen=True)
class CatalogDoc:
    """What the catalog knows of one live document."""

    id: int
    content_hash: str
    signature: str | None


@dataclass
class SyncPlan:
    """Documents to add/update/delete for one source. Computed without side effects."""

    source: str
    added: list[Document] = field(default_factory=list)
    updated: list[tuple[int, Document]] = field(default_factory=list)
    deleted: list[tuple[int, str]] = field(default_factory=list)
    resigned: list[tuple[int, str | None]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> list[tuple[int | None, Document]]:
        """Every document whose content must be (re)chunked, with its row id when it has one."""
        return [(None, d) for d in self.added] + list(self.updated)

    @property
    def is_noop(self) -> bool:
        return not (self.added or self.updated or self.deleted or self.resigned)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "added": len(self.added),
            "updated": len(self.updated),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
            "skipped": [{"id": s.external_id, "reason": s.reason} for s in self.skipped],
        }


def plan_sync(source: str, items: Iterable[SourceItem], catalog: Mapping[str, CatalogDoc]) -> SyncPlan:
    """Diff a scan against the live documents the catalog holds for this source.

    A record the source reports as Skipped keeps its previous version: bad input
    never deletes good data. A live document the scan does not mention is deleted.
    """
    plan = SyncPlan(source)
    seen: set[str] = set()
    for item in items:
        ext_id = item.external_id
        if ext_id in seen:
            plan.skipped.append(Skipped(ext_id, f"duplicate id {ext_id!r} in source {source!r}; the first record was used"))
            continue
        seen.add(ext_id)
        if isinstance(item, Skipped):
            plan.skipped.append(item)
        elif isinstance(item, Unchanged):
            plan.unchanged += 1
        else:
            _classify(plan, item, catalog.get(ext_id))
    plan.deleted = [(doc.id, ext_id) for ext_id, doc in catalog.items() if ext_id not in seen]
    return plan


def _classify(plan: SyncPlan, doc: Document, known: CatalogDoc | None) -> None:
    if known is None:
        plan.added.append(doc)
    elif known.content_hash != doc.content_hash:
        plan.updated.append((known.id, doc))
    else:
        plan.unchanged += 1
        if doc.signature != known.signature:
            plan.resigned.append((known.id, doc.signature))
