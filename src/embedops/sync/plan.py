"""The pure diff of a source scan against the catalog: what a sync would do."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from embedops.curate.curator import Decision
from embedops.errors import MassDelete
from embedops.sources.base import Document, Skipped, SourceItem, Unchanged


class CatalogDoc(NamedTuple):
    """What the catalog knows of one live document.

    A named tuple rather than a frozen dataclass: the plan builds one for each
    document it looks at, and tuples are built several times faster.
    """

    id: int
    content_hash: str
    signature: str | None


class CatalogRows(Mapping[str, CatalogDoc]):
    """A source's live documents as loaded: ``(external_id, id, content_hash, signature)`` rows.

    A :class:`CatalogDoc` is made only for a document the plan looks at; a
    re-sync of 100k unchanged records looks at none.
    """

    def __init__(self, rows: Iterable[Sequence[Any]]) -> None:
        self._rows = {row[0]: row for row in rows}

    def __getitem__(self, external_id: str) -> CatalogDoc:
        row = self._rows[external_id]
        return CatalogDoc(row[1], row[2], row[3])

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def signatures(self) -> dict[str, str | None]:
        """``external_id -> signature``: what the source's scan is given."""
        return {ext_id: row[3] for ext_id, row in self._rows.items()}


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
    # Set by curation (sync/curation.py), when [curate] is on: the decision per external id of every
    # document decided (the changed ones and those re-checked because of them), the unchanged documents
    # whose decision flips between keep and quarantine (re-chunked, or emptied, like an update), and
    # those whose decision changes only in what it links to (a row to rewrite, nothing to embed).
    decisions: dict[str, Decision] = field(default_factory=dict)
    rechecked: list[tuple[int, Document]] = field(default_factory=list)
    relinked: list[tuple[int, Decision]] = field(default_factory=list)
    # Quarantined documents embedded anyway (`embedops quarantine release`): their rows say "released".
    released: set[str] = field(default_factory=set)

    @property
    def changed(self) -> list[tuple[int | None, Document]]:
        """Every document whose content must be (re)chunked, with its row id when it has one."""
        out: list[tuple[int | None, Document]] = [(None, d) for d in self.added]
        return out + list(self.updated) + list(self.rechecked)

    @property
    def is_noop(self) -> bool:
        return not (self.added or self.updated or self.deleted or self.resigned or self.rechecked or self.relinked)

    @property
    def curated(self) -> bool:
        return bool(self.decisions)

    def quarantined(self) -> dict[str, int]:
        """Documents this plan quarantines, by reason."""
        out: dict[str, int] = {}
        for decision in self.decisions.values():
            if not decision.kept and decision.reason is not None:
                out[decision.reason] = out.get(decision.reason, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "added": len(self.added),
            "updated": len(self.updated),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
            "skipped": [s.to_dict() for s in self.skipped],
        }
        if self.curated:
            out.update(quarantined=self.quarantined(), rechecked=len(self.rechecked) + len(self.relinked))
        return out


def plan_sync(source: str, items: Iterable[SourceItem], catalog: Mapping[str, CatalogDoc]) -> SyncPlan:
    """Diff a scan against the live documents the catalog holds for this source.

    A record the source reports as Skipped keeps its previous version: bad input
    never deletes good data (unless the source says the record is not part of it:
    ``keeps_previous=False``). A live document the scan does not mention is deleted.
    """
    plan = SyncPlan(source)
    seen: set[str] = set()
    dropped: set[str] = set()
    for item in items:
        ext_id = item.external_id
        if ext_id in seen:
            plan.skipped.append(Skipped(ext_id, f"duplicate id {ext_id!r} in source {source!r}; the first record was used"))
            continue
        seen.add(ext_id)
        if isinstance(item, Skipped):
            plan.skipped.append(item)
            if not item.keeps_previous:
                dropped.add(ext_id)
        elif isinstance(item, Unchanged):
            plan.unchanged += 1
        else:
            _classify(plan, item, catalog.get(ext_id))
    plan.deleted = [(catalog[ext_id].id, ext_id) for ext_id in catalog if ext_id not in seen or ext_id in dropped]
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


def mass_delete(plan: SyncPlan, max_share: float, *, allowed: bool = False) -> MassDelete | None:
    """The refusal of a plan that deletes more than ``max_share`` of its source's live documents.

    An unmounted share leaves an empty mount point, and a sync would read that as
    "every document was deleted". None when the share is within bounds or ``allowed``.

    >>> plan = SyncPlan("docs", [], [], [(1, "a"), (2, "b")], unchanged=1)
    >>> mass_delete(plan, 0.5).details["share"]
    0.667
    >>> mass_delete(plan, 0.5, allowed=True) is None
    True
    """
    live = len(plan.updated) + len(plan.deleted) + plan.unchanged
    if allowed or not plan.deleted or len(plan.deleted) <= max_share * live:
        return None
    share = len(plan.deleted) / live
    return MassDelete(
        f"source {plan.source!r}: this sync would delete {len(plan.deleted)} of its {live} documents ({share:.0%},"
        f" above max_delete_share {max_share:g}); nothing of it was changed",
        hint="if the source is really emptied, run `embedops sync --allow-mass-delete`; if a share is unmounted or a"
             " path moved, fix that first (raise [embedops] max_delete_share to change the limit)",
        source=plan.source, deleting=len(plan.deleted), live=live, share=round(share, 3), max_share=max_share,
    )
