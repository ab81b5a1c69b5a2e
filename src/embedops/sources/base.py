"""What sources yield, and the protocol they implement."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from embedops.hashing import content_hash


@dataclass(frozen=True)
class Document:
    """One source record. ``signature`` is a cheap change key (e.g. mtime+size)."""

    external_id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    signature: str | None = None

    @cached_property  # a sync asks several times per document (plan, batch, chunk rows): computed once
    def content_hash(self) -> str:
        """Hash of text and metadata: a metadata-only change updates the doc, not its vectors."""
        import json

        meta = json.dumps(dict(self.metadata), sort_keys=True, default=str)
        return content_hash(self.text + "\x00" + meta)


@dataclass(frozen=True)
class Unchanged:
    """The source checked this record cheaply (signature matched) and did not read it."""

    external_id: str


@dataclass(frozen=True)
class Skipped:
    """A record that cannot be used, with a reason naming the file/record and the fix.

    A skipped record keeps its previous version (bad input never deletes good data),
    unless ``keeps_previous`` is false: the record is not part of the source at all
    (e.g. a link out of a folder), so a version indexed before is deleted.
    """

    external_id: str
    reason: str
    keeps_previous: bool = True

    def to_dict(self) -> dict[str, str]:
        """As reports and ledger rows hold it: a bad id must not make the report unstorable too."""
        return {"id": encodable(self.external_id), "reason": encodable(self.reason)}


def encodable(value: str) -> str:
    """``value`` with what UTF-8 or PostgreSQL cannot hold written as backslash escapes.

    Lone surrogates (also undecodable file-name bytes) and NUL characters; for ids and
    text that go into a reason, a message or a ledger row, which must themselves be storable.

    >>> encodable("caf\\xe9 \\udcff \\x00")
    'caf\\xe9 \\\\udcff \\\\x00'
    """
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\x00", "\\x00") if "\x00" in value else value


SourceItem = Document | Unchanged | Skipped


class Source(Protocol):
    """A place documents come from. ``scan`` yields every current record once.

    ``known`` maps external ids to the signature stored at the last sync, so a
    source can answer :class:`Unchanged` without reading the record. Records
    absent from the scan are deleted (unless the scan reported them Skipped).
    """

    name: str
    kind: str

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]: ...

    def check(self) -> None:
        """Raise :class:`~embedops.errors.SourceError` when the source cannot be read now."""
        ...


class OutOfOrder(Exception):
    """A scan (or the catalog) that was to come in external-id order did not.

    Not an :class:`~embedops.errors.EmbedopsError`: the planner catches it and plans
    from the catalog loaded whole instead, so no user ever sees it.
    """


class SignatureCursor(Protocol):
    """The signatures the catalog stored for a source, read forward in external-id order.

    ``get`` is asked for ascending ids (Python's string order, which is UTF-8 byte
    order); an id the catalog does not hold, or holds without a signature, gives None.
    ``signed(prefix)``: whether any stored signature starts with ``prefix``.
    """

    def get(self, external_id: str, /) -> str | None: ...

    def signed(self, prefix: str, /) -> bool: ...


@runtime_checkable
class OrderedSource(Source, Protocol):
    """A source that can scan in external-id order, so that a sync merges its scan with the
    catalog's rows as two streams instead of loading the catalog's view of the source.

    ``scan_in_order`` yields what :meth:`Source.scan` yields, ascending by external id
    (equal ids adjacent; a Skipped record whose id is not a real one, such as a row without
    id, may come anywhere). It raises :class:`OutOfOrder` when it cannot keep that order.
    """

    def scan_in_order(self, known: SignatureCursor) -> Iterator[SourceItem]: ...


@dataclass
class ScanFingerprint:
    """The fingerprint of what a source's incremental scan compares, taken in the scan's own snapshot.

    ``stored``: the one recorded when a sync last left the catalog in line with the source
    (catalog/scan_state.py; None: none to trust, e.g. ``sync --full``). The scan sets ``seen``
    before its first item (None: it cannot fingerprint this time) and, when that equals
    ``stored``, yields nothing at all: every record is as the catalog holds it, none deleted.
    """

    stored: str | None = None
    seen: str | None = None

    @property
    def unchanged(self) -> bool:
        return self.seen is not None and self.seen == self.stored


@runtime_checkable
class FingerprintedSource(OrderedSource, Protocol):
    """An ordered source that can fingerprint its id set: an order-independent digest of every
    ``(external id, signature)`` its incremental scan would compare with the catalog, computed
    where the records are (one aggregate query), so that a sync of an unchanged source reads none.

    Two fingerprints are equal only when that scan would find the same ids with the same
    signatures: the fingerprint is exactly as blind as the scan (a change that does not touch
    the signature is invisible to both), never blinder. ``fingerprint()`` takes one in its own
    snapshot; ``scan_in_order(known, fingerprint)`` takes it in the scan's (:class:`ScanFingerprint`).
    """

    def fingerprint(self) -> str | None: ...

    def scan_in_order(self, known: SignatureCursor, fingerprint: ScanFingerprint | None = None) -> Iterator[SourceItem]: ...
