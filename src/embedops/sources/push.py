"""A push source: documents arrive through the API, not from a path.

A client (the HTTP service's ``PUT /sources/{source}/documents/{id}``, or
:meth:`embedops.workspace.Workspace.upsert_documents`) hands documents in; a
full ``embedops sync`` has nothing to read, so the scan reports every live
document as :class:`Unchanged`. That is what keeps a normal sync from deleting
pushed documents: a document absent from a scan is deleted, and a push source's
scan never leaves one out.

>>> src = PushSource("events")
>>> list(src.scan({"a": None, "b": "sig"}))
[Unchanged(external_id='a'), Unchanged(external_id='b')]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from embedops.sources.base import SourceItem, Unchanged


class PushSource:
    """Documents written by clients; the catalog is their only copy."""

    kind = "push"

    def __init__(self, name: str, path: str | Path | None = None) -> None:
        # ``path`` is accepted (and ignored) so that every kind is built the same way.
        self.name = name

    def check(self) -> None:
        """Always readable: the catalog is the only copy."""

    def scan(self, known: Mapping[str, str | None]) -> Iterator[SourceItem]:
        """Every live document is unchanged: only the API adds, updates or deletes them."""
        for external_id in known:
            yield Unchanged(external_id)
