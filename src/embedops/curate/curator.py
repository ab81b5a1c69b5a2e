"""The curator: one decision per document (keep, or quarantine with reasons), incrementally.

The stored state it needs is small and read once, through
:class:`CurationState`: for every kept document its rank and MinHash
signature, for every duplicate the canonical document it is linked to.
:meth:`Curator.check` decides one new or changed document against it;
:meth:`Curator.remove` drops a deleted one; :meth:`Curator.plan` does both for
a sync's changes and follows every re-check they cause, returning the final
decisions to write.

Which copy is canonical: the one of smallest rank ``(first_seen, doc_id)``,
the earliest seen, ties (one sync) to the smallest id. A newcomer never
displaces an older canonical document; an older document that changes into a
copy of a younger canonical one takes over, and the younger one is re-checked
(it then links to the older). So the same documents seen in the same order
give the same canonical choices, whatever the batches and call order.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from embedops.curate.index import DedupIndex, Match, Rank
from embedops.curate.language import detect_language, detect_languages
from embedops.curate.rules import Finding, quality_findings
from embedops.curate.settings import DUPLICATE, NEAR_DUPLICATE, CurateSettings
from embedops.curate.signature import Signature, SignatureSpec, signature
from embedops.errors import CurationError, SignatureMismatch
from embedops.hashing import content_hash


class CurationDocument:
    """A document to check. ``first_seen`` orders copies (e.g. the catalog's first ingest time);
    a ``language`` entry in ``metadata`` is taken as declared and not detected.

    ``text`` may be given as a function that reads it (a sync's spooled document, sync/spool.py): it is
    then read when asked for and never held, so that a sync's million new documents wait for their
    decision as ids, not as texts.

    >>> CurationDocument("a", lambda: "read when asked").text
    'read when asked'
    """

    __slots__ = ("doc_id", "_text", "first_seen", "metadata")

    def __init__(self, doc_id: str, text: str | Callable[[], str], first_seen: float = 0.0,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.doc_id = doc_id
        self._text = text
        self.first_seen = first_seen
        self.metadata: Mapping[str, Any] = metadata if metadata is not None else {}

    @property
    def text(self) -> str:
        return self._text if isinstance(self._text, str) else self._text()

    @property
    def rank(self) -> Rank:
        return (self.first_seen, self.doc_id)

    def __repr__(self) -> str:
        return f"CurationDocument({self.doc_id!r}, first_seen={self.first_seen!r})"


@dataclass(frozen=True)
class StoredCuration:
    """What the store keeps per curated document, written from its :class:`Decision`.

    A kept document has no ``canonical_id`` and (when near-duplicates are
    checked) a ``signature``; a duplicate has the ``canonical_id`` it links to.
    """

    doc_id: str
    first_seen: float
    content_hash: str
    signature: bytes | None = None
    canonical_id: str | None = None


class CurationState(Protocol):
    """Read access to the stored curation state (the catalog, in a workspace)."""

    def curated_documents(self) -> Iterable[StoredCuration]:
        """Every kept document and every duplicate; documents quarantined for a quality
        reason and deleted documents are left out (they are re-checked when they change)."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one document. ``recheck`` names documents whose own decision may have
    changed because of this one (its former duplicates, or younger copies it displaced).
    A sync holds one per document it checked: no ``__dict__``, and the ``signature`` bytes
    are the object the duplicate index holds too."""

    doc_id: str
    action: Literal["keep", "quarantine"]
    language: str
    content_hash: str
    first_seen: float
    findings: tuple[Finding, ...] = ()
    canonical_id: str | None = None
    similarity: float | None = None
    # The MinHash signature to store: set on kept documents when near-duplicates are checked.
    signature: bytes | None = None
    recheck: tuple[str, ...] = ()

    @property
    def kept(self) -> bool:
        return self.action == "keep"

    @property
    def reason(self) -> str | None:
        """The first reason code (``duplicate``, ``too_short``...), None when kept."""
        return self.findings[0].reason if self.findings else None

    def stored(self) -> StoredCuration | None:
        """The row :class:`CurationState` must return for this document from now on (None: none)."""
        if self.kept or self.canonical_id is not None:
            return StoredCuration(self.doc_id, self.first_seen, self.content_hash, self.signature, self.canonical_id)
        return None


@dataclass(frozen=True)
class CurationPlan:
    """The final decision of every document checked, in the order they were decided."""

    decisions: dict[str, Decision]
    removed: tuple[str, ...]

    @property
    def kept(self) -> list[str]:
        return [d for d, decision in self.decisions.items() if decision.kept]

    @property
    def quarantined(self) -> dict[str, str]:
        """Document id → its first reason code."""
        return {d: decision.reason for d, decision in self.decisions.items() if decision.reason is not None}


Loader = Callable[[Sequence[str]], Iterable[CurationDocument]]
# Texts given to language detection at once: enough for lingua's threads, few enough not to hold a corpus.
DETECT_BATCH = 2048


class Curator:
    """Decides, document by document, what is embedded; see the module docstring for the rules.

    >>> class Empty:
    ...     def curated_documents(self): return []
    >>> curator = Curator(CurateSettings(), Empty())
    >>> text = "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the chloroplasts."
    >>> curator.check(CurationDocument("a", text)).action
    'keep'
    >>> copy = curator.check(CurationDocument("b", text))
    >>> copy.reason, copy.canonical_id
    ('duplicate', 'a')
    """

    def __init__(self, settings: CurateSettings, state: CurationState, label: Callable[[str], str] | None = None) -> None:
        """``label`` names a document in the findings' sentences (default: its id)."""
        self.settings = settings
        self._label = label or str
        self.spec = SignatureSpec(settings.shingle_size, settings.num_perm)
        self._state = state
        self._index: DedupIndex | None = None
        self._stale: list[str] = []
        # doc id -> (hash of the text, language), detected ahead by plan(); not the text: a sync's documents
        # are read back from its spool one at a time, and must not be held all at once here.
        self._detected: dict[str, tuple[int, str]] = {}

    @property
    def index(self) -> DedupIndex:
        """The duplicate index, built from the stored state on first use."""
        if self._index is None:
            self._index, self._stale = _load(self._state, self.spec, self.settings)
        return self._index

    @property
    def stale(self) -> tuple[str, ...]:
        """Stored documents to re-check: signature made with other parameters (or none), or
        linked to a canonical document that is not stored. :meth:`plan` re-checks them first."""
        _ = self.index
        return tuple(self._stale)

    def languages(self, texts: Sequence[str]) -> list[str]:
        """Language tags for chunks (or any texts), with this curator's candidates."""
        return detect_languages(texts, self.settings.language_candidates, accuracy=self.settings.language_accuracy)

    def check(self, doc: CurationDocument) -> Decision:
        """Decide one new or changed document, updating the index to match the decision."""
        index = self.index
        text = doc.text  # read once: it may come from a file
        orphans = index.forget(doc.doc_id)
        base = _Base(doc, self._language(doc, text), content_hash(text), tuple(orphans))
        exact = index.exact(base.content_hash) if self.settings.checks(DUPLICATE) else None
        if exact is not None and exact.rank < doc.rank:
            index.add_member(doc.doc_id, doc.rank, exact.doc_id)
            return base.quarantine(Finding(DUPLICATE, f"same text as {self._label(exact.doc_id)}", 1.0, 1.0), match=exact)
        findings = quality_findings(text, self.settings, base.language)
        if findings:
            return base.quarantine(*findings)
        return self._near(doc, text, base, exact)

    def _near(self, doc: CurationDocument, text: str, base: _Base, exact: Match | None) -> Decision:
        index = self.index
        near_on = self.settings.checks(NEAR_DUPLICATE)
        sig = signature(text, self.spec) if near_on else None
        matches = index.near(sig) if sig is not None else []
        older = [m for m in matches if m.rank < doc.rank]
        if older:
            index.add_member(doc.doc_id, doc.rank, older[0].doc_id)
            threshold = self.settings.jaccard_threshold
            detail = (f"estimated Jaccard similarity {older[0].similarity:.2f} with {self._label(older[0].doc_id)}"
                      f" (≥ {threshold})")
            return base.quarantine(Finding(NEAR_DUPLICATE, detail, older[0].similarity, threshold), match=older[0])
        index.add_canonical(doc.doc_id, doc.rank, base.content_hash, sig)
        displaced = [m.doc_id for m in matches] + ([exact.doc_id] if exact is not None else [])
        return base.keep(sig, displaced)

    def remove(self, doc_id: str) -> tuple[str, ...]:
        """Drop a deleted document; returns its former duplicates, to re-check (oldest first)."""
        return tuple(self.index.forget(doc_id))

    def plan(self, changed: Iterable[CurationDocument], removed: Iterable[str], load: Loader) -> CurationPlan:
        """Remove ``removed``, check ``changed`` and every document that must be re-checked
        because of them (fetched with ``load``, which may leave out ids that no longer exist),
        oldest first, until nothing is left to re-check."""
        removed = tuple(dict.fromkeys(removed))
        checked = [doc for doc in changed if doc.doc_id not in removed]
        self._detected = self._detect(checked)
        try:
            return self._settle(checked, removed, load)
        finally:
            self._detected = {}

    def _settle(self, checked: list[CurationDocument], removed: tuple[str, ...], load: Loader) -> CurationPlan:
        queue = _Queue(checked)
        owed = [*self.stale, *(orphan for doc_id in removed for orphan in self.remove(doc_id))]
        decisions: dict[str, Decision] = {}
        budget = 10 * (len(queue) + len(self.index) + len(owed)) + 100
        while owed or queue:
            self._enqueue(queue, [d for d in owed if d not in removed], load)
            if not queue:
                break
            doc = queue.pop()
            decision = self.check(doc)
            decisions.pop(doc.doc_id, None)  # re-inserted: the order says when it was last decided
            decisions[doc.doc_id] = decision
            owed = list(decision.recheck)
            budget -= 1
            if budget < 0:
                raise CurationError("curation did not settle: re-checks keep re-opening each other",
                                    hint="report this with the documents involved", last=doc.doc_id)
        return CurationPlan(decisions, removed)

    def _enqueue(self, queue: _Queue, ids: list[str], load: Loader) -> None:
        wanted = [d for d in dict.fromkeys(ids) if d not in queue]
        if not wanted:
            return
        found = {doc.doc_id: doc for doc in load(wanted)}
        for doc_id in wanted:
            if doc_id in found:
                queue.push(found[doc_id])
            else:  # gone from the store: its own duplicates are owed a re-check in turn
                self._enqueue(queue, self.index.forget(doc_id), load)

    def _detect(self, docs: Sequence[CurationDocument]) -> dict[str, tuple[int, str]]:
        """The languages of the documents that declare none, detected in batches on every core (lingua's
        threads): one document at a time, detection was most of a first sync's curation. A batch's texts
        are let go before the next is read (``DETECT_BATCH`` of them at a time)."""
        todo = [doc for doc in docs if _declared(doc) is None]
        out: dict[str, tuple[int, str]] = {}
        for lo in range(0, len(todo), DETECT_BATCH):
            part = todo[lo : lo + DETECT_BATCH]
            texts = [doc.text for doc in part]
            found = self.languages(texts)
            out.update((doc.doc_id, (hash(text), language)) for doc, text, language in zip(part, texts, found, strict=True))
        return out

    def _language(self, doc: CurationDocument, text: str) -> str:
        declared = _declared(doc)
        if declared is not None:
            return declared
        ahead = self._detected.get(doc.doc_id)
        if ahead is not None and ahead[0] == hash(text):  # the text detected ahead, not a later version of it
            return ahead[1]
        return detect_language(text, self.settings.language_candidates, accuracy=self.settings.language_accuracy)


def _declared(doc: CurationDocument) -> str | None:
    """A ``language`` given in the document's metadata, taken as it is (lower-cased)."""
    declared = doc.metadata.get("language")
    # Interned: every decision holds its tag, and a sync's documents share a few.
    return sys.intern(declared.lower()) if isinstance(declared, str) and declared else None


@dataclass(frozen=True)
class _Base:
    """What every decision about ``doc`` shares."""

    doc: CurationDocument
    language: str
    content_hash: str
    orphans: tuple[str, ...]

    def _decision(self, action: Literal["keep", "quarantine"], **fields: Any) -> Decision:
        return Decision(self.doc.doc_id, action, self.language, self.content_hash, self.doc.first_seen, **fields)

    def quarantine(self, *findings: Finding, match: Match | None = None) -> Decision:
        if match is None:
            return self._decision("quarantine", findings=findings, recheck=self.orphans)
        return self._decision("quarantine", findings=findings, canonical_id=match.doc_id,
                              similarity=match.similarity, recheck=self.orphans)

    def keep(self, sig: Signature | None, displaced: list[str]) -> Decision:
        recheck = tuple(dict.fromkeys([*self.orphans, *sorted(displaced)]))
        return self._decision("keep", signature=_bytes(sig), recheck=recheck)


def _bytes(sig: Signature | None) -> bytes | None:
    return None if sig is None else sig.to_bytes()


class _Queue:
    """Documents waiting for a decision, smallest rank first, each at most once."""

    def __init__(self, docs: Iterable[CurationDocument]) -> None:
        self._docs: dict[str, CurationDocument] = {}
        self._heap: list[tuple[Rank, str]] = []
        for doc in docs:
            self.push(doc)

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def push(self, doc: CurationDocument) -> None:
        """Queue ``doc``; a later version of a queued document replaces it (pop skips stale heap entries)."""
        queued = self._docs.get(doc.doc_id)
        if queued is None or queued.rank != doc.rank:
            heapq.heappush(self._heap, (doc.rank, doc.doc_id))
        self._docs[doc.doc_id] = doc

    def pop(self) -> CurationDocument:
        while True:
            rank, doc_id = heapq.heappop(self._heap)
            doc = self._docs.get(doc_id)
            if doc is not None and doc.rank == rank:
                del self._docs[doc_id]
                return doc


def _load(state: CurationState, spec: SignatureSpec, settings: CurateSettings) -> tuple[DedupIndex, list[str]]:
    """The index rebuilt from stored rows, and the ids of rows that cannot be used as stored."""
    index = DedupIndex(spec, settings.jaccard_threshold)
    rows = list(state.curated_documents())
    stale: list[str] = []
    need_signature = settings.checks(NEAR_DUPLICATE)
    for row in sorted((r for r in rows if r.canonical_id is None), key=lambda r: (r.first_seen, r.doc_id)):
        try:  # checked, then held as stored: to_bytes() of what from_bytes() read is that bytes object
            sig = Signature.from_bytes(row.signature, spec) if row.signature is not None else None
        except SignatureMismatch:
            sig = None
        if sig is None and need_signature:
            stale.append(row.doc_id)
        else:
            index.add_canonical(row.doc_id, (row.first_seen, row.doc_id), row.content_hash, sig)
    for row in sorted((r for r in rows if r.canonical_id is not None), key=lambda r: (r.first_seen, r.doc_id)):
        if row.canonical_id is not None and index.is_canonical(row.canonical_id):
            index.add_member(row.doc_id, (row.first_seen, row.doc_id), row.canonical_id)
        else:
            stale.append(row.doc_id)
    return index, stale
