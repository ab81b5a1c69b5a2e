"""Executing migrations: start, backfill, gate, cutover, rollback, finalize, abort.

Every step that changes state is one transaction with its ledger row. The alias
swap is a single-row UPDATE, so a concurrent query resolves the old index or the
new one, never a mix (invariant 5). Until finalize, sync keeps both indexes
current (dual-write), so a rollback is never stale.
"""

from __future__ import annotations

import contextlib

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.errors import ConfigError, GateFailed, InputsRejected, MigrationStateError, NoMigration
from embedops.migrate.gate import (
    Agreement, Check, EvalEvidence, GateConfig, GateResult, completeness_check, decide, kendall_tau, overlap_at_k,
    thresholds_check,
)
from embedops.migrate.plan import MigrationPlan, PlanFacts, make_plan
from embedops.sync.fill import fill_index, measure_gap
from embedops.sync.run import Target
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.workspace import Workspace

OPEN_STATES = ("open", "cut_over", "rolled_back")
AGREEMENT_QUERIES = 50
AGREEMENT_K = 10
TOKEN_SAMPLE = 5000
SPEED_SAMPLE = 48

# Eval evidence comes from the evaluation package when eval sets are bound to the alias.
EvalHook = Callable[["Workspace", str, str, str, GateConfig], list[EvalEvidence]]
eval_evidence_hook: EvalHook | None = None


@dataclass(frozen=True)
class Migration:
    id: str
    alias: str
    from_index: str
    to_index: str
    status: str
    plan: dict[str, Any]
    config: dict[str, Any]
    gate: dict[str, Any] | None
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Migrator:
    """Migrations of one alias within a workspace."""

    def __init__(self, ws: Workspace, alias: str | None = None) -> None:
        self.ws = ws
        self.alias = alias or ws.settings.alias
        self.engine = ws.engine

    # -- lookups ---------------------------------------------------------------
    def current(self, conn: sa.Connection | None = None) -> Migration | None:
        m = schema.migrations
        q = sa.select(m).where(m.c.alias == self.alias, m.c.status.in_(OPEN_STATES)).order_by(m.c.created_at.desc())
        if conn is None:
            with self.engine.connect() as c:
                row = c.execute(q).first()
        else:
            row = conn.execute(q).first()
        return Migration(**row._mapping) if row else None

    def require(self, *states: str) -> Migration:
        mig = self.current()
        if mig is None:
            raise NoMigration(f"no migration open on alias {self.alias!r}", hint="start one with `embedops migrate start --to MODEL`")
        if states and mig.status not in states:
            raise MigrationStateError(
                f"migration {mig.id} is {mig.status}; this step needs {' or '.join(states)}",
                hint=_next_step(mig.status), migration=mig.id,
            )
        return mig

    def index(self, index_id: str) -> IndexInfo:
        return self.ws.searcher.resolve(index_id=index_id)

    def serving(self) -> IndexInfo:
        return self.ws.searcher.resolve(alias=self.alias)

    # -- plan -----------------------------------------------------------------
    def plan(
        self, to: str, *, chunker: str | None = None, chunker_params: dict[str, Any] | None = None,
        gate: GateConfig | None = None,
    ) -> MigrationPlan:
        source = self.serving()
        target_embedder = self.ws.embedder(to)
        new_chunker = self._target_chunker(source, target_embedder, chunker, chunker_params)
        if target_embedder.ref.key == source.space_key and new_chunker.ref.key == source.chunker_key:
            raise ConfigError(
                f"alias {self.alias!r} already serves {to} with chunker {new_chunker.ref.key}: nothing to migrate",
                hint="pass another --to model or --chunker",
            )
        facts = self._facts(source, to, target_embedder, new_chunker)
        return make_plan(facts, (gate or GateConfig()).to_dict())

    def _target_chunker(self, source: IndexInfo, embedder: Any, name: str | None, params: dict[str, Any] | None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == source.chunker_key)).one()
        if name is None or name == row.name:
            merged = {k: v for k, v in row.params.items() if k != "tokenizer"}
            merged.update(params or {})
            return self.ws.make_chunker(row.name, merged, embedder)
        return self.ws.make_chunker(name, dict(params or {}), embedder)

    def _facts(self, source: IndexInfo, to: str, embedder: Any, chunker: Any) -> PlanFacts:
        d, c = schema.documents, schema.chunks
        with self.engine.connect() as conn:
            n_docs = conn.execute(sa.select(sa.func.count()).where(d.c.deleted_at.is_(None))).scalar_one()
            from_vectors = self.ws.store.count(conn, source.id)
            if chunker.ref.key == source.chunker_key or self._has_chunks(conn, chunker.ref.key):
                q = sa.select(c.c.content_hash, c.c.text).join(d, d.c.id == c.c.document_id).where(
                    d.c.deleted_at.is_(None), c.c.chunker_key == chunker.ref.key)
                rows = conn.execute(q).all()
                texts = {h: t for h, t in rows}
                total = len(rows)
            else:
                docs = conn.execute(sa.select(d.c.text).where(d.c.deleted_at.is_(None))).scalars().all()
                chunks = [ch for text in docs for ch in chunker.chunk(text)]
                texts = {ch.content_hash: ch.text for ch in chunks}
                total = len(chunks)
            missing = self.ws.store.missing_embeddings(conn, embedder.ref.key, list(texts))
        todo = [texts[h] for h in missing]
        tokens = _estimate_tokens(embedder, todo)
        speed = _measure_speed(embedder, todo or list(texts.values()))
        return PlanFacts(
            alias=self.alias, from_index=source.id, from_embedder=source.embedder, from_space=source.space_key,
            from_chunker=source.chunker_key, from_dims=source.dims, from_vectors=from_vectors,
            to_embedder=to, to_space=embedder.ref.key, to_chunker=chunker.ref.key, to_dims=embedder.ref.dims,
            documents=n_docs, chunks_total=total, chunks_to_embed=len(missing), tokens_to_embed=tokens,
            tokens_per_second=round(speed, 1), throughput_source=f"measured on {min(len(todo or texts), SPEED_SAMPLE)} chunks",
            price_per_1k_tokens=getattr(embedder, "price_per_1k_tokens", None),
            thresholds=self._bound_thresholds(source, embedder.ref.key), eval_sets=self._bound_evalsets(),
        )

    def _has_chunks(self, conn: sa.Connection, chunker_key: str) -> bool:
        c = schema.chunks
        return conn.execute(sa.select(c.c.id).where(c.c.chunker_key == chunker_key).limit(1)).first() is not None

    def _bound_thresholds(self, source: IndexInfo, to_space: str) -> list[dict[str, Any]]:
        """Thresholds valued in the source's space: name, value, and the value in ``to_space`` (None if missing)."""
        from embedops.thresholds.registry import bound_thresholds

        with self.engine.connect() as conn:
            return bound_thresholds(conn, source.space_key, to_space)

    def _bound_evalsets(self) -> list[dict[str, Any]]:
        return []

    # -- start ------------------------------------------------------------------
    def start(
        self, to: str, *, chunker: str | None = None, chunker_params: dict[str, Any] | None = None,
        gate: GateConfig | None = None, plan_only: bool = False,
    ) -> dict[str, Any]:
        existing = self.current()
        if existing is not None:
            raise MigrationStateError(
                f"migration {existing.id} ({existing.status}) is already open on alias {self.alias!r}",
                hint=_next_step(existing.status), migration=existing.id,
            )
        plan = self.plan(to, chunker=chunker, chunker_params=chunker_params, gate=gate)
        if plan_only:
            return {"plan": plan.to_dict(), "started": False}
        embedder = self.ws.embedder(to)
        new_chunker = self._target_chunker(self.serving(), embedder, chunker, chunker_params)
        with self.engine.begin() as conn:
            shadow = self.ws.create_index(conn, to, embedder, new_chunker)
            n = conn.execute(sa.select(sa.func.count()).select_from(schema.migrations)).scalar_one() + 1
            mig_id = f"m{n}"
            now = time.time()
            conn.execute(sa.insert(schema.migrations).values(
                id=mig_id, alias=self.alias, from_index=plan.facts.from_index, to_index=shadow.id, status="open",
                plan=plan.to_dict(), config={"to": to, "chunker": new_chunker.ref.name,
                                             "chunker_params": new_chunker.ref.params_dict, "gate": plan.gate},
                gate=None, created_at=now, updated_at=now))
            write_ledger(conn, "migrate.start", migration=mig_id, alias=self.alias, from_index=plan.facts.from_index,
                         to_index=shadow.id, chunks_to_embed=plan.facts.chunks_to_embed,
                         estimated_seconds=plan.estimated_seconds)
        return {"migration": mig_id, "shadow_index": shadow.id, "plan": plan.to_dict(), "started": True}

    # -- backfill -----------------------------------------------------------------
    def backfill(
        self, *, batch: int | None = None, max_rate: float | None = None,
        progress: Callable[[str, int], Callable[[int], None]] | None = None, plan_only: bool = False,
    ) -> dict[str, Any]:
        mig = self.require("open", "rolled_back", "cut_over")
        target = self.ws.target(self.index(mig.to_index))
        with self.engine.connect() as conn:
            gap = measure_gap(conn, target)
        if plan_only:
            return {"migration": mig.id, "index": mig.to_index, "unchunked_documents": gap.unchunked_docs,
                    "missing_vectors": gap.missing_vectors, "plan": True}
        bar = progress(f"backfill {mig.to_index}", gap.missing_vectors or gap.unchunked_docs) if progress else None
        started = time.perf_counter()
        done = fill_index(self.engine, self.ws.store, target, batch_size=batch or self.ws.settings.batch_size,
                          progress=bar, ledger_kind="migrate.backfill", pause=_throttle(max_rate))
        seconds = time.perf_counter() - started
        ann = self.ws.store.flush(target.index)
        with self.engine.connect() as conn:
            remaining = measure_gap(conn, target)
        return {"migration": mig.id, "index": mig.to_index, **done, "seconds": round(seconds, 3),
                "remaining": remaining.total, "ann": ann, "plan": False}

    # -- status --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        mig = self.require()
        target = self.ws.target(self.index(mig.to_index))
        with self.engine.connect() as conn:
            gap = measure_gap(conn, target)
            done = self.ws.store.count(conn, mig.to_index)
            rate = _backfill_rate(conn, mig.to_index)
        avg = done / max(1, done + gap.missing_vectors)
        total = done + gap.missing_vectors + round(gap.unchunked_docs * max(avg, 1.0))
        phase = mig.status if mig.status != "open" else ("backfilling" if gap.total else "ready")
        eta = round((total - done) / rate, 1) if rate and total > done else (0.0 if total <= done else None)
        return {"migration": mig.id, "alias": self.alias, "phase": phase, "status": mig.status, "from_index": mig.from_index,
                "to_index": mig.to_index, "done": done, "total": total, "eta_seconds": eta, "gate": mig.gate,
                "created_at": mig.created_at}

    # -- gate --------------------------------------------------------------------------
    def evaluate_gate(self, mig: Migration, config: GateConfig) -> GateResult:
        target = self.ws.target(self.index(mig.to_index))
        c, d = schema.chunks, schema.documents
        with self.engine.connect() as conn:
            gap = measure_gap(conn, target)
            vectors = self.ws.store.count(conn, mig.to_index)
            live = conn.execute(sa.select(sa.func.count()).select_from(c.join(d, d.c.id == c.c.document_id)).where(
                d.c.deleted_at.is_(None), c.c.chunker_key == target.chunker.ref.key)).scalar_one()
        completeness = completeness_check(live, vectors, gap.total)
        agreement = self.agreement(mig.from_index, mig.to_index) if gap.total == 0 else None
        evidence = eval_evidence_hook(self.ws, self.alias, mig.from_index, mig.to_index, config) if eval_evidence_hook else []
        return decide(completeness, agreement, evidence, config, extra=self._threshold_checks(mig))

    def _threshold_checks(self, mig: Migration) -> list[Check]:
        """Gating when thresholds are bound to the old space: each needs a value in the new one."""
        bound = self._bound_thresholds(self.index(mig.from_index), self.index(mig.to_index).space_key)
        return [thresholds_check(bound, mig.to_index)] if bound else []

    def agreement(self, old: str, new: str) -> Agreement:
        queries = self._sample_queries()
        overlaps, taus = [], []
        for q in queries:
            a = _doc_ranking(self.ws.search(q, k=AGREEMENT_K * 3, index=old), AGREEMENT_K)
            b = _doc_ranking(self.ws.search(q, k=AGREEMENT_K * 3, index=new), AGREEMENT_K)
            overlaps.append(overlap_at_k(a, b, AGREEMENT_K))
            tau = kendall_tau(a, b)
            if tau is not None:
                taus.append(tau)
        return Agreement(len(queries), AGREEMENT_K, sum(overlaps) / len(overlaps) if overlaps else 0.0,
                         sum(taus) / len(taus) if taus else None, "queries sampled from chunk text")

    def _sample_queries(self) -> list[str]:
        c, d = schema.chunks, schema.documents
        serving = self.serving()
        with self.engine.connect() as conn:
            texts = conn.execute(sa.select(c.c.text).join(d, d.c.id == c.c.document_id).where(
                d.c.deleted_at.is_(None), c.c.chunker_key == serving.chunker_key).order_by(c.c.id)).scalars().all()
        rng = random.Random(0)
        picked = rng.sample(list(texts), min(AGREEMENT_QUERIES, len(texts)))
        return [" ".join(t.split()[:12]) for t in picked if t.strip()]

    # -- cutover / rollback ---------------------------------------------------------
    def cutover(self, *, force: bool = False, reason: str | None = None, gate: GateConfig | None = None,
                plan_only: bool = False) -> dict[str, Any]:
        mig = self.require("open", "rolled_back")
        config = gate or GateConfig(**mig.config.get("gate", {}))
        result = self.evaluate_gate(mig, config)
        if plan_only:
            return {"migration": mig.id, "gate": result.to_dict(), "would_cut_over": result.passed or force, "plan": True}
        if not result.passed and not force:
            with self.engine.begin() as conn:
                self._save_gate(conn, mig, result)
                write_ledger(conn, "migrate.gate", migration=mig.id, passed=False, gate=result.to_dict())
            failed = "; ".join(f"{c.name}: {c.detail}" for c in result.failed)
            raise GateFailed(f"cutover refused, the gate failed: {failed}",
                             hint="fix the cause, or override with --force --reason \"...\" (recorded in the ledger)",
                             migration=mig.id, gate=result.to_dict())
        if force and not result.passed and not (reason and reason.strip()):
            raise ConfigError("--force needs --reason \"...\": an override is recorded in the ledger")
        self.ws.store.flush(self.index(mig.to_index))  # the first query after the swap must not build the ANN
        seconds = self._swap(mig, mig.to_index, "cut_over", "migrate.cutover", gate=result,
                             forced=force and not result.passed, reason=reason)
        self.ws.adopt_index_config(self.index(mig.to_index))
        return {"migration": mig.id, "alias": self.alias, "index": mig.to_index, "gate": result.to_dict(),
                "forced": force and not result.passed, "seconds": seconds, "plan": False}

    def rollback(self, *, plan_only: bool = False) -> dict[str, Any]:
        mig = self.require("cut_over")
        if plan_only:
            return {"migration": mig.id, "alias": self.alias, "would_point_at": mig.from_index, "plan": True}
        seconds = self._swap(mig, mig.from_index, "rolled_back", "migrate.rollback")
        self.ws.adopt_index_config(self.index(mig.from_index))
        return {"migration": mig.id, "alias": self.alias, "index": mig.from_index, "seconds": seconds, "plan": False}

    def _swap(self, mig: Migration, index_id: str, status: str, kind: str, *, gate: GateResult | None = None,
              forced: bool = False, reason: str | None = None) -> float:
        started = time.perf_counter()
        with self.engine.begin() as conn:
            previous = self.ws.set_alias(conn, self.alias, index_id)
            values: dict[str, Any] = {"status": status, "updated_at": time.time()}
            if gate is not None:
                values["gate"] = gate.to_dict()
            m = schema.migrations
            result = conn.execute(sa.update(m).where(m.c.id == mig.id, m.c.status == mig.status).values(**values))
            if result.rowcount != 1:
                raise MigrationStateError(f"migration {mig.id} changed under us; run `embedops migrate status`")
            write_ledger(conn, kind, migration=mig.id, alias=self.alias, index=index_id, previous=previous,
                         gate=gate.to_dict() if gate else None, forced=forced, reason=reason)
        return round(time.perf_counter() - started, 4)

    def _save_gate(self, conn: sa.Connection, mig: Migration, result: GateResult) -> None:
        m = schema.migrations
        conn.execute(sa.update(m).where(m.c.id == mig.id).values(gate=result.to_dict(), updated_at=time.time()))

    # -- finalize / abort -----------------------------------------------------------
    def finalize(self, *, plan_only: bool = False) -> dict[str, Any]:
        mig = self.require("cut_over")
        return self._close(mig, drop=mig.from_index, status="finalized", kind="migrate.finalize", plan_only=plan_only)

    def abort(self, *, plan_only: bool = False) -> dict[str, Any]:
        mig = self.require("open", "rolled_back")
        return self._close(mig, drop=mig.to_index, status="aborted", kind="migrate.abort", plan_only=plan_only)

    def _close(self, mig: Migration, *, drop: str, status: str, kind: str, plan_only: bool) -> dict[str, Any]:
        with self.engine.connect() as conn:
            vectors = self.ws.store.count(conn, drop)
        if plan_only:
            return {"migration": mig.id, "would_drop_index": drop, "vectors": vectors, "plan": True}
        with self.engine.begin() as conn:
            dropped = drop_index(conn, drop)
            m = schema.migrations
            result = conn.execute(sa.update(m).where(m.c.id == mig.id, m.c.status == mig.status)
                                  .values(status=status, updated_at=time.time()))
            assert result.rowcount == 1
            write_ledger(conn, kind, migration=mig.id, dropped_index=drop, **dropped)
        self.ws.store.forget(drop)
        return {"migration": mig.id, "status": status, "dropped_index": drop, **dropped, "plan": False}


def drop_index(conn: sa.Connection, index_id: str) -> dict[str, int]:
    """Delete an index's vectors (and chunks no kept index uses); mark it dropped."""
    v, i, c, vd = schema.vectors, schema.indexes, schema.chunks, schema.vector_deletions
    result = conn.execute(sa.update(i).where(i.c.id == index_id, i.c.status == "active").values(status="dropped"))
    assert result.rowcount == 1, f"index {index_id} is not active"
    vectors = conn.execute(sa.delete(v).where(v.c.index_id == index_id)).rowcount
    conn.execute(sa.delete(vd).where(vd.c.index_id == index_id))
    kept = sa.select(i.c.chunker_key).where(i.c.status == "active")
    chunks = conn.execute(sa.delete(c).where(c.c.chunker_key.not_in(kept))).rowcount
    return {"vectors_deleted": vectors, "chunks_deleted": chunks}


def _doc_ranking(results: list[Any], k: int) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r.document_id not in seen:
            seen.append(r.document_id)
    return seen[:k]


def _estimate_tokens(embedder: Any, texts: list[str]) -> int:
    if not texts:
        return 0
    sample = texts if len(texts) <= TOKEN_SAMPLE else random.Random(0).sample(texts, TOKEN_SAMPLE)
    counted = sum(embedder.count_tokens(t) for t in sample)
    return round(int(counted) * len(texts) / len(sample))


def _measure_speed(embedder: Any, texts: list[str]) -> float:
    """Tokens per second of this embedder on this machine, from a small real sample."""
    if not texts:
        return 0.0
    sample = texts[:SPEED_SAMPLE]
    # A provider refusing a chunk of the sample still answered for the rest (the backfill reports that chunk).
    with contextlib.suppress(InputsRejected):
        embedder.embed(sample[:2])  # warm-up: first call pays for lazy initialisation
    started = time.perf_counter()
    with contextlib.suppress(InputsRejected):
        embedder.embed(sample)
    seconds = max(time.perf_counter() - started, 1e-6)
    max_tokens = embedder.ref.max_tokens or 10**9
    return float(sum(min(embedder.count_tokens(t), max_tokens) for t in sample)) / seconds


def _throttle(max_rate: float | None) -> Callable[[int], None] | None:
    if not max_rate:
        return None
    started = time.perf_counter()
    done = 0

    def pause(n: int) -> None:
        nonlocal done
        done += n
        ahead = done / max_rate - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)

    return pause


def _backfill_rate(conn: sa.Connection, index_id: str) -> float | None:
    lg = schema.ledger
    rows = conn.execute(sa.select(lg.c.at, lg.c.details).where(lg.c.kind == "migrate.backfill").order_by(lg.c.id.desc()).limit(50)).all()
    rows = [r for r in rows if r.details.get("index") == index_id and "vectors" in r.details]
    if len(rows) < 2:
        return None
    span = rows[0].at - rows[-1].at
    return sum(r.details["vectors"] for r in rows[:-1]) / span if span > 0 else None


def _next_step(status: str) -> str:
    return {
        "open": "run `embedops migrate backfill`, then `embedops migrate cutover`",
        "cut_over": "run `embedops migrate finalize` to drop the old index, or `embedops migrate rollback`",
        "rolled_back": "run `embedops migrate cutover` again, or `embedops migrate abort`",
    }.get(status, "run `embedops migrate status`")


__all__ = ["Migration", "Migrator", "Target", "drop_index"]
