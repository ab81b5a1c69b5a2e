"""The pure diff of a source scan against the catalog: what a sync would do.

Two forms of the same diff. :func:`plan_sync` looks each scanned record up in the
catalog's view of the source, loaded whole. :func:`plan_sync_in_order` merges two
streams ascending by external id, the scan and the catalog's rows
(:class:`CatalogStream`), so that neither is held: a no-op re-sync of a million
table rows keeps a flat memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, overload

from embedops.curate.curator import Decision
from embedops.errors import MassDelete
from embedops.sources.base import Document, OutOfOrder, Skipped, SourceItem, Unchanged
from embedops.sync.spool import Spool

Changes = Callable[[], "list[Any] | Spool[Any]"]  # makes a plan's lists of documents: a list, or a spool


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


class CatalogStream:
    """A source's live documents as the catalog streams them, ascending by external id:
    ``(external_id, id, content_hash, signature)`` rows, each read once.

    Two readers walk it forward: the plan (:meth:`take`), and the source's signature
    lookups (:meth:`get`, a :class:`~embedops.sources.base.SignatureCursor`), which run
    ahead of the plan by the rows the source holds back. Only that stretch is kept.
    ``signed(prefix)`` answers whether any stored signature starts with ``prefix``
    (a query; none given: no signature does). Raises OutOfOrder when the rows descend.

    >>> stream = CatalogStream([("a", 1, "h1", "s1"), ("b", 2, "h2", None), ("c", 3, "h3", "s3")])
    >>> stream.get("a"), stream.get("b"), stream.get("bb")
    ('s1', None, None)
    >>> deleted = []
    >>> stream.take("b", deleted), deleted
    (CatalogDoc(id=2, content_hash='h2', signature=None), [(1, 'a')])
    """

    def __init__(self, rows: Iterable[Sequence[Any]], signed: Callable[[str], bool] | None = None) -> None:
        self._rows = iter(rows)
        self._signed = signed
        self._window: deque[Sequence[Any]] = deque()  # read, and not yet taken by the plan
        self._ahead = 0  # how many rows of the window the lookups have passed
        self._last_read: str | None = None
        self._last_asked = ""

    def signed(self, prefix: str) -> bool:
        return self._signed is not None and self._signed(prefix)

    def get(self, external_id: str) -> str | None:
        """The stored signature of ``external_id``; ids are asked in ascending order."""
        if external_id < self._last_asked:
            raise OutOfOrder(f"signature of {external_id!r} asked after {self._last_asked!r}")
        self._last_asked = external_id
        while True:
            row = self._window[self._ahead] if self._ahead < len(self._window) else self._read()
            if row is None or row[0] > external_id:
                return None
            if row[0] == external_id:
                return row[3]  # type: ignore[no-any-return]
            self._ahead += 1

    def take(self, external_id: str, deleted: list[tuple[int, str]]) -> CatalogDoc | None:
        """The row of ``external_id`` (None when there is none), after those before it: documents the scan
        did not yield, appended to ``deleted``. Ids are taken in ascending order."""
        row = self._advance(external_id, deleted)
        return None if row is None else CatalogDoc(row[1], row[2], row[3])

    def pass_over(self, external_id: str, deleted: list[tuple[int, str]]) -> None:
        """:meth:`take` without making the row's CatalogDoc (an unchanged document needs none)."""
        self._advance(external_id, deleted)

    def _advance(self, external_id: str, deleted: list[tuple[int, str]]) -> Sequence[Any] | None:
        window = self._window
        while (row := window[0] if window else self._read()) is not None and row[0] <= external_id:
            window.popleft()
            if self._ahead:
                self._ahead -= 1
            if row[0] == external_id:
                return row
            deleted.append((row[1], row[0]))
        return None

    def rest(self, deleted: list[tuple[int, str]]) -> None:
        """Every row not taken yet, appended to ``deleted``."""
        while (row := self._window[0] if self._window else self._read()) is not None:
            self._window.popleft()
            deleted.append((row[1], row[0]))
        self._ahead = 0

    def _read(self) -> Sequence[Any] | None:
        row = next(self._rows, None)
        if row is None:
            return None
        if self._last_read is not None and row[0] <= self._last_read:
            raise OutOfOrder(f"the catalog gave {row[0]!r} after {self._last_read!r}")
        self._last_read = row[0]
        self._window.append(row)
        return row


class Unsigned:
    """No stored signature (``sync --full``): the source reads every record. A SignatureCursor."""

    def get(self, external_id: str) -> str | None:
        return None

    def signed(self, prefix: str) -> bool:
        return False


@dataclass
class SyncPlan:
    """Documents to add/update/delete for one source. Computed without side effects."""

    source: str
    # New and changed documents, text and all: plain lists, or spools that keep them on disk past a bound.
    added: list[Document] | Spool[Document] = field(default_factory=list)
    updated: list[tuple[int, Document]] | Spool[tuple[int, Document]] = field(default_factory=list)
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
    # A fingerprinted scan's fingerprint (sync/source_plan.py), recorded by the run that completes this plan with
    # nothing skipped; and "fingerprint" when it matched the recorded one, so that nothing was read at all.
    fingerprint: str | None = None
    unchanged_by: Literal["fingerprint"] | None = None

    @property
    def changed(self) -> Changed:
        """Every document whose content must be (re)chunked, with its row id when it has one: a view that
        reads them (from a spool) only as they are asked for."""
        return Changed(self.added, self.updated, self.rechecked)

    def close(self) -> None:
        """Let go of the spools' files, if any (a plan run or given up)."""
        for held in (self.added, self.updated):
            if isinstance(held, Spool):
                held.close()

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
        if self.unchanged_by is not None:
            out["unchanged_by"] = self.unchanged_by
        return out


class Changed(Sequence[tuple[int | None, Document]]):
    """A plan's added, updated and re-checked documents, in that order, as one sequence; a slice reads
    only its own documents back from a spool.

    >>> doc = Document("a", "text")
    >>> changed = Changed([doc], [(7, doc)], [])
    >>> len(changed), changed[1:], changed[0]
    (2, [(7, Document(external_id='a', text='text', metadata={}, updated_at=None, signature=None))], (None, Document(external_id='a', text='text', metadata={}, updated_at=None, signature=None)))
    """

    def __init__(self, added: Sequence[Document], updated: Sequence[tuple[int, Document]],
                 rechecked: Sequence[tuple[int, Document]]) -> None:
        self._parts = (added, updated, rechecked)

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)

    @overload
    def __getitem__(self, index: int) -> tuple[int | None, Document]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[int | None, Document]]: ...
    def __getitem__(self, index: int | slice) -> tuple[int | None, Document] | list[tuple[int | None, Document]]:
        if isinstance(index, int):
            i = index + len(self) if index < 0 else index
            found = self._slice(i, i + 1) if 0 <= i < len(self) else []
            if not found:
                raise IndexError("changed index out of range")
            return found[0]
        start, stop, step = index.indices(len(self))
        if step != 1:
            return [self[i] for i in range(start, stop, step)]
        return self._slice(start, stop)

    def __iter__(self) -> Iterator[tuple[int | None, Document]]:
        added, updated, rechecked = self._parts
        yield from ((None, doc) for doc in added)
        yield from updated
        yield from rechecked

    def _slice(self, start: int, stop: int) -> list[tuple[int | None, Document]]:
        added, updated, rechecked = self._parts
        out: list[tuple[int | None, Document]] = [(None, doc) for doc in added[max(start, 0) : max(stop, 0)]]
        for part, before in ((updated, len(added)), (rechecked, len(added) + len(updated))):
            lo, hi = max(start - before, 0), max(stop - before, 0)
            if lo < hi:
                out.extend(part[lo:hi])
        return out


def plan_sync(source: str, items: Iterable[SourceItem], catalog: Mapping[str, CatalogDoc], *,
              hold: Changes = list) -> SyncPlan:
    """Diff a scan against the live documents the catalog holds for this source.

    A record the source reports as Skipped keeps its previous version: bad input
    never deletes good data (unless the source says the record is not part of it:
    ``keeps_previous=False``). A live document the scan does not mention is deleted.
    ``hold`` makes the lists of added and updated documents (sync/spool.py: a spool past a bound).
    """
    plan = SyncPlan(source, hold(), hold())
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


def plan_sync_in_order(source: str, items: Iterable[SourceItem], catalog: CatalogStream, *,
                       hold: Changes = list) -> SyncPlan:
    """:func:`plan_sync` as a merge join: the scan and the catalog's rows both ascending by external id.

    Memory holds the plan's changes, not the source: duplicate ids are found next to each
    other, deletes as the catalog rows the scan steps over. A Skipped record does not
    move the merge (a row without id has no place in the order); its id is remembered,
    so that it keeps its previous version. Raises OutOfOrder when the scan descends:
    the caller then plans with :func:`plan_sync`.
    """
    plan = SyncPlan(source, hold(), hold())
    last: str | None = None
    kept: set[str] = set()  # skipped ids that keep their previous version
    dropped: set[str] = set()  # skipped ids that are not part of the source
    for item in items:
        ext_id = item.external_id
        if type(item) is Unchanged and last is not None and ext_id > last and not kept and not dropped:
            last = ext_id  # the common case, a no-op's every row: nothing to look at but the order
            catalog.pass_over(ext_id, plan.deleted)
            plan.unchanged += 1
            continue
        if ext_id == last or ext_id in kept or ext_id in dropped:
            plan.skipped.append(Skipped(ext_id, f"duplicate id {ext_id!r} in source {source!r}; the first record was used"))
        elif isinstance(item, Skipped):
            plan.skipped.append(item)
            (kept if item.keeps_previous else dropped).add(ext_id)
        elif last is not None and ext_id < last:
            raise OutOfOrder(f"source {source!r} gave {ext_id!r} after {last!r}")
        else:
            last = ext_id
            known = catalog.take(ext_id, plan.deleted)
            if isinstance(item, Unchanged):
                plan.unchanged += 1
            else:
                _classify(plan, item, known)
    catalog.rest(plan.deleted)
    if kept:
        plan.deleted = [(row, ext_id) for row, ext_id in plan.deleted if ext_id not in kept]
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
