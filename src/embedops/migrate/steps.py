"""The steps of a migration as data: what each does, how it is undone, and what it returns.

Like alembic's operations, each step states its effect and its reverse, apart
from the code that runs it (``migrate/run.py``). The results are what the
library returns, what ``--json`` prints (``to_dict``) and what the CLI renders.

>>> STEPS["cutover"].undone_by
'rollback'
>>> STEPS["finalize"].undone_by is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedops.migrate.gate import GateResult
from embedops.migrate.plan import MigrationPlan


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    undone_by: str | None  # the step that reverses it; None: irreversible
    state_after: str | None  # the migration's status once it ran; None: unchanged


STEPS: dict[str, Step] = {s.name: s for s in (
    Step("plan", "measures what the migration would embed, cost and store; changes nothing", None, None),
    Step("start", "creates the shadow index and records the migration; sync dual-writes to both indexes from now on",
         "abort", "open"),
    Step("backfill", "chunks and embeds what the shadow index lacks, one transaction per batch, then measures the gate",
         "abort", None),
    Step("gate", "measures the gate (completeness, bound eval sets, thresholds, agreement) and keeps the evidence",
         None, None),
    Step("cutover", "swaps the alias to the shadow index in one transaction, if the gate passes", "rollback", "cut_over"),
    Step("rollback", "swaps the alias back to the old index (kept current by dual-write until finalize)", "cutover",
         "rolled_back"),
    Step("finalize", "drops the old index; rollback is impossible afterwards", None, "finalized"),
    Step("abort", "drops the shadow index of a migration that is not cut over", None, "aborted"),
)}


def _step(name: str) -> dict[str, Any]:
    s = STEPS[name]
    return {"step": s.name, "does": s.does, "undone_by": s.undone_by}


@dataclass(frozen=True)
class StartResult:
    plan: MigrationPlan
    started: bool
    migration: str | None = None
    shadow_index: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "shadow_index": self.shadow_index, "plan": self.plan.to_dict(),
                "started": self.started, **_step("start")}


@dataclass(frozen=True)
class BackfillResult:
    migration: str
    index: str
    plan: bool
    unchunked_documents: int = 0
    missing_vectors: int = 0
    chunked_docs: int = 0
    embedded: int = 0
    vectors: int = 0
    seconds: float = 0.0
    remaining: int = 0
    ann: dict[str, Any] = field(default_factory=dict)
    gate: GateResult | None = None  # measured when the backfill completed the shadow
    estimated_cost: float | None = None  # --plan: the migration plan's estimate, scaled to what is missing

    def to_dict(self) -> dict[str, Any]:
        out = {"migration": self.migration, "index": self.index, "plan": self.plan,
               "unchunked_documents": self.unchunked_documents, "missing_vectors": self.missing_vectors}
        if self.plan:
            out["estimated_cost"] = self.estimated_cost
        if not self.plan:
            out.update({"chunked_docs": self.chunked_docs, "embedded": self.embedded, "vectors": self.vectors,
                        "seconds": self.seconds, "remaining": self.remaining, "ann": self.ann,
                        "gate": self.gate.to_dict() if self.gate else None})
        return {**out, **_step("backfill")}


@dataclass(frozen=True)
class GateReport:
    """A gate run without a cutover (``migrate gate``, ``cutover --plan``)."""

    migration: str
    gate: GateResult
    reused_evidence: bool
    seconds: float

    @property
    def passed(self) -> bool:
        return self.gate.passed

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "passed": self.gate.passed, "gate": self.gate.to_dict(),
                "reused_evidence": self.reused_evidence, "seconds": self.seconds, **_step("gate")}


@dataclass(frozen=True)
class CutoverResult:
    migration: str
    alias: str
    index: str
    gate: GateResult
    forced: bool
    plan: bool
    seconds: float = 0.0  # the swap transaction
    reason: str | None = None

    @property
    def would_cut_over(self) -> bool:
        return self.gate.passed or self.forced

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "alias": self.alias, "index": self.index, "gate": self.gate.to_dict(),
                "forced": self.forced, "reason": self.reason, "seconds": self.seconds, "plan": self.plan,
                "would_cut_over": self.would_cut_over, **_step("cutover")}


@dataclass(frozen=True)
class RollbackResult:
    migration: str
    alias: str
    index: str
    plan: bool
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "alias": self.alias, "index": self.index, "plan": self.plan,
                "seconds": self.seconds, **_step("rollback")}


@dataclass(frozen=True)
class CloseResult:
    """Finalize (drops the old index) or abort (drops the shadow)."""

    step: str
    migration: str
    status: str
    dropped_index: str
    vectors: int
    plan: bool
    vectors_deleted: int = 0
    chunks_deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "status": self.status, "dropped_index": self.dropped_index,
                "vectors": self.vectors, "vectors_deleted": self.vectors_deleted, "chunks_deleted": self.chunks_deleted,
                "plan": self.plan, **_step(self.step)}


@dataclass(frozen=True)
class MigrationStatus:
    migration: str
    alias: str
    phase: str
    status: str
    from_index: str
    to_index: str
    done: int
    total: int
    eta_seconds: float | None
    gate: dict[str, Any] | None
    evidence_current: bool | None  # None: no evidence kept yet
    created_at: float
    next_step: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
