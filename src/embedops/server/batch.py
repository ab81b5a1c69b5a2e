"""Group commit for document pushes: the upserts that arrive while one write runs go in together.

Each ``PUT`` waits for its own outcome, but the service writes every queued
upsert in one :meth:`Workspace.upsert_documents` call per source: one plan, one
embedding batch per model, one transaction per batch of the runner. A push
then costs a share of one write instead of a whole one, so writes keep up
with many clients (and with dual-writes during a migration) instead of
queueing until they time out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from embedops.errors import BadRecord, EmbedopsError
from embedops.sources.base import Document, encodable

if TYPE_CHECKING:
    from embedops.sync.driver import SyncResult
    from embedops.workspace import Workspace

MAX_BATCH = 256  # documents per write: bounds one transaction's size and a failure's reach


@dataclass(frozen=True)
class Outcome:
    """One pushed document's result: added/updated/unchanged, and the write it went into."""

    result: str
    embedded: int  # chunks embedded by the whole write (shared by the documents in it)
    documents: int  # documents in that write
    seconds: float


@dataclass
class _Push:
    source: str
    doc: Document
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


Writer = Callable[[Callable[["Workspace"], list["Outcome | Exception"]]], Awaitable[list["Outcome | Exception"]]]


class PushBatcher:
    """Queues upserts; one drain task writes whatever has queued, batch after batch."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._queue: list[_Push] = []
        self._drainer: asyncio.Task[None] | None = None

    async def upsert(self, source: str, doc: Document) -> Outcome:
        push = _Push(source, doc)
        self._queue.append(push)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await push.future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                outcomes = await self._write(lambda ws: apply_batch(ws, [(p.source, p.doc) for p in batch]))
            except Exception as exc:  # the write as a whole failed (e.g. Busy): every push in it learns why
                outcomes = [exc] * len(batch)
            for push, outcome in zip(batch, outcomes, strict=True):
                if push.future.done():
                    continue
                if isinstance(outcome, Exception):
                    push.future.set_exception(outcome)
                else:
                    push.future.set_result(outcome)


def apply_batch(ws: Workspace, pushes: list[tuple[str, Document]]) -> list[Outcome | Exception]:
    """Upsert the pushes, one call per source; the last push of an id within the batch wins."""
    out: list[Outcome | Exception] = [BadRecord("not written")] * len(pushes)
    by_source: dict[str, list[int]] = {}
    for i, (source, _) in enumerate(pushes):
        by_source.setdefault(source, []).append(i)
    for source, positions in by_source.items():
        last = {pushes[i][1].external_id: i for i in positions}
        try:
            result = ws.upsert_documents(source, [pushes[i][1] for i in last.values()])
        except EmbedopsError as exc:  # an unknown or non-push source fails its own pushes only
            for i in positions:
                out[i] = exc
            continue
        for i in positions:
            out[i] = _outcome(result, pushes[i][1].external_id, len(last))
    return out


def _outcome(result: SyncResult, external_id: str, documents: int) -> Outcome | Exception:
    reasons = {s.external_id: s.reason for s in result.counts.skipped}
    if external_id in reasons:
        return BadRecord(reasons[external_id], hint="fix the document as the message says and send it again",
                         id=encodable(external_id))
    outcomes: dict[str, Any] = result.sources[0].get("documents", {})
    return Outcome(outcomes.get(external_id, "unchanged"), result.counts.embedded, documents, result.seconds)
