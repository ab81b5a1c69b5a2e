"""The quarantine: documents curation held back, why, and releasing one (embedding it anyway).

A release is a one-document sync: the document goes through the
:class:`~embedops.sync.run.SyncRunner` like an update, kept, and its decision
row is written as ``released`` with a ``curate.release`` ledger row in the
same transaction as its chunks and vectors. Curation does not check it again
until its content changes (the curator never compares with a released row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from embedops.catalog.curation import (
    QUARANTINED, RELEASED, QuarantineEntry, doc_key, entries_for, quarantined, stored_documents,
)
from embedops.catalog import schema
from embedops.curate.curator import Decision
from embedops.curate.rules import Finding
from embedops.curate.settings import RULE_NAMES
from embedops.errors import ConfigError, NotFound, Terminal
from embedops.errors import CurationError
from embedops.sync.plan import SyncPlan


class NotQuarantined(CurationError, Terminal):
    """A release of a document that is not (or no longer) quarantined."""

    http_status = 409


@dataclass(frozen=True)
class ReleasePlan:
    """What ``quarantine release`` does: the document, why it was held back, and the sync plan that embeds it."""

    entry: QuarantineEntry
    plan: SyncPlan
    source_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.entry.source, "document": self.entry.document, "reason": self.entry.reason,
                "canonical": self.entry.canonical, "findings": self.entry.findings}


def list_quarantine(conn: sa.Connection, *, reason: str | None = None, source: str | None = None,
                    released: bool = False) -> list[QuarantineEntry]:
    """Quarantined documents, optionally of one reason (a reason code) or source."""
    if reason is not None and reason not in RULE_NAMES:
        raise ConfigError(f"unknown reason {reason!r}", hint=f"reasons: {', '.join(RULE_NAMES)}")
    return quarantined(conn, reason=reason, source=source, released=released)


def find_entry(conn: sa.Connection, document: str, source: str | None = None) -> QuarantineEntry:
    """The curation decision of one live document (any status), by external id (and source when ambiguous)."""
    found = entries_for(conn, document, source)
    if not found:
        where = f" in source {source!r}" if source else ""
        raise NotFound(f"no curated live document {document!r}{where}",
                       hint="list held-back documents with `embedops quarantine list`")
    if len(found) > 1:
        raise CurationError(f"{len(found)} sources hold a document {document!r}: "
                            f"{', '.join(e.source for e in found)}", hint="pass --source NAME")
    return found[0]


def plan_release(conn: sa.Connection, document: str, source: str | None = None) -> ReleasePlan:
    """The one-document sync plan that embeds a quarantined document and marks it released."""
    entry = find_entry(conn, document, source)
    if entry.status != QUARANTINED:
        raise NotQuarantined(f"document {document!r} of source {entry.source!r} is {entry.status}, not quarantined",
                             hint="nothing to release" if entry.status == RELEASED else
                             "it is embedded already; see `embedops quarantine list`")
    source_id = conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == entry.source)).scalar_one()
    stored = stored_documents(conn, source_id, [document])[0]
    cu = schema.curation
    row = conn.execute(sa.select(cu).where(cu.c.document_id == stored.row_id)).one()
    findings = tuple(Finding(f["reason"], f["detail"], f.get("value"), f.get("limit")) for f in row.findings or [])
    canonical = doc_key(row.canonical_source or source_id, row.canonical) if row.canonical is not None else None
    decision = Decision(doc_key(source_id, document), "keep", row.language, row.content_hash, float(row.first_seen),
                        findings, canonical, row.similarity)
    plan = SyncPlan(entry.source, rechecked=[(stored.row_id, stored.document)], decisions={document: decision},
                    released={document})
    return ReleasePlan(entry, plan, int(source_id))
