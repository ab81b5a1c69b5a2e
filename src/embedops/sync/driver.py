"""A workspace's sync: each source planned, gated, run on the kept indexes, then the indexes completed.

:meth:`SyncDriver.sync` is what ``Workspace.sync`` does: it plans every selected
source (``sync/plan.py``), refuses a mass delete, decides the plans' documents
when ``[curate]`` is on (``sync/curation.py``), estimates and caps what the run
may spend, runs the plans (``sync/run.py``), fills a served index that lags the
catalog (``sync/fill.py``), and tells the ``after_sync`` listeners. Pushes by id
(``sync/push.py``), a quarantine release and a source's removal run through the
same runner, under the same ``sync`` lock.

The driver also lists, validates and opens the workspace's sources. It is given
the workspace's parts (settings, catalog engine, store, target resolution, the
writer lock); it never imports the workspace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from embedops.catalog import queries, schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.config import CONFIG_NAME, Settings, SourceConfig
from embedops.curate.settings import CurateSettings
from embedops.embedding.spend import Guard, Job, Limits, check_prices, check_recorder, check_start, cost_of, count_tokens, job_totals
from embedops.errors import BudgetExceeded, ConfigError, NotFound, SourceError
from embedops.execute import Executor, ExecutorOptions, make_executor
from embedops.sources.base import Source
from embedops.sync.curation import chunk_tagger, curate_plans
from embedops.sync.fill import fill_index, measure_gap
from embedops.sync.plan import CatalogDoc, SyncPlan, mass_delete
from embedops.sync.quarantine import ReleasePlan
from embedops.sync.source_plan import plan_source
from embedops.sync.spool import Spool, spool_factory
from embedops.sync.run import SyncCounts, SyncRunner, Tagger, Target
from embedops.sync.targets import Targets
from embedops.vectors.base import IndexInfo, VectorStore

log = logging.getLogger("embedops")

ProgressFactory = Callable[[str, int], Callable[[int], None]]
# How long a push (upsert/delete by id) waits for the sync lock before answering Busy.
PUSH_LOCK_WAIT_S = 30.0
SyncListener = Callable[[sa.Engine, Sequence[IndexInfo]], None]


class Locks(Protocol):
    """The workspace's writer lock ``name``, held by a ``with`` block (``Workspace.lock``)."""

    def __call__(self, name: str, *, wait: float = 0.0) -> AbstractContextManager[object]: ...


@dataclass(frozen=True)
class _Planned:
    """One source's plan, ready to run: its plan, catalog id and chunk language tagger."""

    plan: SyncPlan
    source_id: int
    tagger: Tagger | None


@dataclass
class SyncResult:
    plan_only: bool
    counts: SyncCounts
    sources: list[dict[str, Any]]
    chunks_to_embed: int | None = None
    indexes: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    estimated_tokens: int | None = None
    estimated_cost: float | None = None  # None: an embedder has no price configured
    job: str | None = None  # the spend rows' job id (`embedops spend --by job`)
    spend: dict[str, Any] | None = None  # what this sync's embedding cost (Spend.to_dict)
    # Embedder name → its price and where it comes from (Price.to_dict): the toml, or a dated default list price.
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        c = self.counts
        out: dict[str, Any] = {
            "plan": self.plan_only,
            "added": c.added,
            "updated": c.updated,
            "deleted": c.deleted,
            "unchanged": c.unchanged,
            "embedded": c.embedded,
            "quarantined": c.quarantined,
            "rechecked": c.rechecked,
            "skipped": [s.to_dict() for s in c.skipped],
            "sources": self.sources,
            "indexes": self.indexes,
            "seconds": round(self.seconds, 3),
            "prices": self.prices,
        }
        if self.plan_only:
            out["chunks_to_embed"] = self.chunks_to_embed
            out["estimated_tokens"] = self.estimated_tokens
            out["estimated_cost"] = self.estimated_cost
        else:
            out["job"] = self.job
            out["spend"] = self.spend
        return out


@dataclass(frozen=True)
class SyncDriver:
    """Syncs a workspace's sources into the indexes it keeps current.

    ``targets`` resolves the indexes kept current and ``lock`` is the workspace's
    writer lock (``Workspace`` builds one driver per call, so a reloaded
    configuration is the one used).
    """

    settings: Settings
    engine: sa.Engine
    store: VectorStore
    targets: Targets
    lock: Locks
    # Called with (engine, indexes kept current) after every sync that read a source.
    after_sync: Sequence[SyncListener] = ()

    def sync(self, configs: list[SourceConfig], plan_only: bool, progress: ProgressFactory | None,
             allow_mass_delete: bool, full: bool, options: ExecutorOptions, limits: Limits) -> SyncResult:
        """Sync ``configs`` (or plan them only), under the ``sync`` lock unless only planning."""
        if plan_only:
            return self._sync(configs, True, progress, allow_mass_delete, full, options, limits)
        with self.lock("sync"):
            return self._sync(configs, False, progress, allow_mass_delete, full, options, limits)

    def selected_sources(self, source: str | None) -> list[SourceConfig]:
        """Every configured source, or just ``source`` (:class:`NotFound` naming the others)."""
        if source is None:
            return list(self.settings.sources.values())
        if source not in self.settings.sources:
            raise NotFound(f"no source {source!r}", hint=f"sources: {', '.join(self.settings.sources) or 'none; add one with `embedops source add`'}")
        return [self.settings.sources[source]]

    def list_sources(self) -> list[dict[str, Any]]:
        """Every source in embedops.toml or in the catalog: kind, path, live documents, and whether it is
        configured (a source removed from the file but not with `source remove` still serves its documents)."""
        s, d = schema.sources, schema.documents
        with read_tx(self.engine) as conn:
            live: dict[str, int] = dict(conn.execute(sa.select(s.c.name, sa.func.count(d.c.id)).select_from(s.outerjoin(
                d, sa.and_(d.c.source_id == s.c.id, d.c.deleted_at.is_(None)))).group_by(s.c.name)).all())
            # the catalog's copy of each source's kind and path: a source deleted from the file is still named by them
            known = {n: (kind, (config or {}).get("path"))
                     for n, kind, config in conn.execute(sa.select(s.c.name, s.c.kind, s.c.config))}
        configured = {n: (c.kind, c.path) for n, c in self.settings.sources.items()}
        # a catalog-only source without live documents was removed: it is history, not a source
        names = list(configured) + sorted(n for n in live if n not in configured and live[n])
        rows = []
        for n in names:
            kind, path = configured.get(n) or known[n]
            rows.append({"name": n, "kind": kind, "path": path or None,  # push and sql sources have none
                         "documents": int(live.get(n, 0)), "configured": n in configured})
        return rows

    def checked_source_path(self, name: str, kind: str, path: str | Path | None, options: dict[str, Any]) -> str:
        """Validate kind and options; the path as stored (relative to the workspace when inside it, "" for push)."""
        from embedops.sources.registry import make_source, source_needs_path

        if not source_needs_path(kind):
            if path is not None:
                origin = "from its database" if kind == "sql" else "through the API"
                raise ConfigError(f"source {name!r}: a {kind} source has no path; its documents arrive {origin}",
                                  hint=f"drop the path: `embedops source add {name} --kind {kind} ...`", source=name)
            make_source(name, kind, None, **options).check()  # a sql source: the database answers the statement
            return ""
        resolved = Path(path).expanduser().resolve() if path is not None else None
        make_source(name, kind, resolved, **options).check()  # kind, options, and a path that exists
        assert resolved is not None
        try:
            return str(resolved.relative_to(self.settings.root))
        except ValueError:
            return str(resolved)

    def open_source(self, cfg: SourceConfig) -> Source:
        """``cfg``'s reader; a relative path is the workspace's."""
        from embedops.sources.registry import make_source

        path = Path(cfg.path)
        return make_source(cfg.name, cfg.kind, path if path.is_absolute() else self.settings.root / path, **cfg.options)

    def _sync(self, configs: list[SourceConfig], plan_only: bool, progress: ProgressFactory | None,
              allow_mass_delete: bool, full: bool, options: ExecutorOptions, limits: Limits) -> SyncResult:
        started = time.perf_counter()
        verified_from = time.time()
        check_prices(limits, {name: self.settings.price(name) for name in self._kept_embedders()}, "embedops sync")
        targets = self.targets.kept(create=not plan_only)
        self._verify_models(targets, verified_from)
        executor = make_executor(options)
        spools: list[Spool[Any]] = []  # the plans' spools, whose files go when the sync ends, however it ends
        try:
            return self._sync_sources(configs, plan_only, progress, allow_mass_delete, full, targets, executor,
                                      options.batch_size or self.settings.batch_size, started, limits, spools)
        finally:
            for spool in spools:
                spool.close()
            executor.close()

    def _sync_sources(self, configs: list[SourceConfig], plan_only: bool, progress: ProgressFactory | None,
                      allow_mass_delete: bool, full: bool, targets: list[Target], executor: Executor,
                      batch_size: int, started: float, limits: Limits, spools: list[Spool[Any]]) -> SyncResult:
        total = SyncCounts()
        per_source: list[dict[str, Any]] = []
        failed: list[tuple[str, SourceError]] = []
        planned: list[_Planned] = []
        for cfg in configs:
            try:
                plan, source_id = self._plan(cfg, full, spools)
            except SourceError as exc:  # one unreadable source must not hold back the others
                failed.append((cfg.name, exc))
                continue
            per_source.append(plan.summary())
            refused = mass_delete(plan, self.settings.max_delete_share, allowed=allow_mass_delete)
            if refused is not None:  # an emptied folder (an unmounted share) must not delete the source
                per_source[-1]["mass_delete"] = dict(refused.details)  # a copy: the error carries this result
                failed.append((cfg.name, refused))
                continue
            planned.append(_Planned(plan, source_id, None))
        planned = self._curate(planned)
        summaries = {p.plan.source: p.plan.summary() for p in planned}  # with what curation decided
        per_source = [summaries.pop(s["source"], s) for s in per_source] + list(summaries.values())
        result = SyncResult(plan_only, total, per_source,
                            prices={t.index.embedder: self.settings.pricing(t.index.embedder).to_dict() for t in targets})
        if plan_only or limits.month_left is not None:  # a monthly budget refuses by the estimate
            result.chunks_to_embed, result.estimated_tokens, result.estimated_cost = \
                self._estimate([p.plan for p in planned], targets)
        if plan_only:
            for p in planned:
                total.merge(_plan_counts(p.plan))
        else:
            self._run_plans(planned, targets, limits, result, progress, executor, batch_size)
        if not plan_only and len(failed) < len(configs):  # with nothing read, no drift reference to pin either
            result.indexes = self._complete(targets, total, progress, executor, batch_size,
                                            Job("sync", result.job) if result.job else None)
            for listener in self.after_sync:
                listener(self.engine, [t.index for t in targets])
        result.seconds = time.perf_counter() - started
        self._warn_unconfigured()
        if failed:
            self._sources_failed(failed, result, selected=len(configs))
        return result

    def _run_plans(self, planned: list[_Planned], targets: list[Target], limits: Limits, result: SyncResult,
                   progress: ProgressFactory | None, executor: Executor, batch_size: int) -> None:
        """Run each source's plan under one job (its spend rows) and one guard (the job's cap)."""
        if result.estimated_cost is not None:
            check_start(limits, result.estimated_cost, "embedops sync")
        guard = Guard(limits, "embedops sync") if limits.cap is not None else None
        job = Job.new("sync")
        result.job = job.id
        models = self.targets.executor_models(targets) if executor.kind != "local" else None
        try:
            for p in planned:
                bar = progress(f"sync {p.plan.source}", len(p.plan.changed) + len(p.plan.deleted)) if progress else None
                runner = SyncRunner(self.engine, self.store, targets, batch_size=batch_size, progress=bar,
                                    executor=executor, models=models, tagger=p.tagger, job=job, guard=guard)
                result.counts.merge(runner.run(p.source_id, p.plan))
        except BudgetExceeded as exc:
            d = exc.details
            result.counts.merge(SyncCounts(added=int(d.get("added", 0)), updated=int(d.get("updated", 0)),
                                           embedded=int(d.get("embedded", 0))))
            result.spend = job_totals(self.engine, job.id)
            exc.details["result"] = result.to_dict()
            raise
        result.spend = job_totals(self.engine, job.id)

    def _warn_unconfigured(self) -> None:
        """A source deleted from embedops.toml keeps serving its documents until `source remove`: say so."""
        for s in self.list_sources():
            if not s["configured"] and s["documents"]:
                log.warning("source %r is not in %s but %d of its documents are still searchable: remove them with"
                            " `embedops source remove %s`, or add the source back", s["name"], CONFIG_NAME,
                            s["documents"], s["name"])

    def _sources_failed(self, failed: list[tuple[str, SourceError]], result: SyncResult, selected: int) -> None:
        """Record each source that could not be read (nothing of it changed), then raise.

        The other sources have been synced by now; the error carries their result."""
        if not result.plan_only:
            with self.engine.begin() as conn:
                for name, exc in failed:
                    write_ledger(conn, "sync.source_failed", source=name, error=exc.message, hint=exc.hint)
        if selected == 1:
            failed[0][1].details.setdefault("result", result.to_dict())
            raise failed[0][1]
        names = ", ".join(name for name, _ in failed)
        others = "" if len(failed) == selected else "; the others are " + ("planned" if result.plan_only else "synced")
        raise SourceError(
            f"{len(failed)} of {selected} sources could not be read ({names}): their documents are left as they were{others}",
            hint="; ".join(f"{name}: {exc.message}" for name, exc in failed) + ". Fix them, then run `embedops sync` again",
            failed=[{"source": name, "error": exc.message, "hint": exc.hint} for name, exc in failed],
            result=result.to_dict(),
        )

    def push(self, source: str, ids: Sequence[str], make_plan: Callable[[dict[str, CatalogDoc]], SyncPlan]) -> SyncResult:
        """A sync of the pushed ``ids`` of push source ``source``: ``make_plan`` diffs them against their live rows."""
        from embedops.sync.push import document_outcomes, live_documents, require_push

        started = time.perf_counter()
        cfg = self.selected_sources(source)[0]
        require_push(cfg)
        with self.engine.begin() as conn:
            source_id = source_row(conn, cfg)
        with read_tx(self.engine) as conn:
            plan = make_plan(live_documents(conn, source_id, ids))
        if plan.is_noop and not plan.skipped:  # nothing changes: no transaction, no ledger row
            counts = SyncCounts(unchanged=plan.unchanged)
        else:
            with self.lock("sync", wait=PUSH_LOCK_WAIT_S):  # a push waits for a running sync, within reason
                targets = self.targets.kept(create=True)
                counts = SyncCounts()
                for p in self._curate([_Planned(plan, source_id, None)], unchecked=False):
                    counts.merge(SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size,
                                            tagger=p.tagger).run(p.source_id, p.plan))
        summary = {**plan.summary(), "documents": document_outcomes(plan, ids)}
        return SyncResult(False, counts, [summary], seconds=time.perf_counter() - started)

    def release(self, document: str, source: str | None, plan_only: bool) -> ReleasePlan:
        """Embed quarantined ``document`` anyway: a one-document sync that marks it released (``Workspace.release``)."""
        from embedops.sync.quarantine import plan_release

        with read_tx(self.engine) as conn:
            planned = plan_release(conn, document, source)
        if plan_only:
            return planned
        with self.lock("sync", wait=PUSH_LOCK_WAIT_S):
            with read_tx(self.engine) as conn:  # decided again under the lock: a sync may have changed it
                planned = plan_release(conn, document, source)
            targets = self.targets.kept(create=True)
            tagger = chunk_tagger(self.settings.curation or CurateSettings())
            SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size,
                       tagger=tagger).run(planned.source_id, planned.plan)
            for t in targets:
                self.store.flush(t.index)
        return planned

    def remove_documents(self, source: str) -> int:
        """Tombstone ``source``'s live documents: they leave every kept index. How many; the caller holds the
        ``sync`` lock (``Workspace.remove_source``)."""
        with read_tx(self.engine) as conn:
            docs = source_documents(conn, source)
        if docs:
            targets = self.targets.kept(create=False)
            with self.engine.connect() as conn:
                source_id = int(conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == source))
                                .scalar_one())
            SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size).run(
                source_id, SyncPlan(source, deleted=docs))
        return len(docs)

    def _curate(self, planned: list[_Planned], *, unchecked: bool = True) -> list[_Planned]:
        """Decide the plans' documents together when [curate] is on (sync/curation.py), with the chunks' language
        tagger; plus the plans of other sources whose documents' decisions change because of them."""
        settings = self.settings.curation
        if settings is None:
            return planned
        extra = curate_plans(self.engine, [(p.source_id, p.plan) for p in planned], settings, now=time.time(),
                             unchecked=unchecked)
        tagger = chunk_tagger(settings)
        return [_Planned(p.plan, p.source_id, tagger) for p in planned] + [_Planned(plan, sid, tagger) for sid, plan in extra]

    def _kept_embedders(self) -> set[str]:
        """Names of the embedders a sync would use, without loading any (the first sync: the configured one)."""
        with self.engine.connect() as conn:
            names = {ix.embedder for ix in queries.indexes(conn, "active")}
        return names or {self.settings.embedder}

    def _verify_models(self, targets: list[Target], since: float) -> None:
        """Before a sync writes, each index's model must still make its vectors (monitor/fingerprint.py)."""
        if not self.settings.monitor.verify_model:
            return
        from embedops.embedding.verify import verify_model

        for t in targets:
            if t.index.status != "planned":
                verify_model(self.engine, t.index, t.embedder, self.settings.monitor.fingerprint_min_cosine, since=since,
                             price=t.price, on_spend=check_recorder(self.engine, t.index.id, t.index.space_key, t.index.embedder))

    def _plan(self, cfg: SourceConfig, full: bool, spools: list[Spool[Any]]) -> tuple[SyncPlan, int]:
        """``cfg``'s plan, its new and changed documents past ``plan_memory_chars`` spooled to the state directory
        (each spool made is added to ``spools``, for the caller to close)."""
        with self.engine.begin() as conn:
            source_id = source_row(conn, cfg)
        hold = spool_factory(self.settings.state_dir, self.settings.plan_memory_chars, spools)
        return plan_source(self.engine, source_id, self.open_source(cfg), full=full, hold=hold), source_id

    def _estimate(self, plans: list[SyncPlan], targets: list[Target]) -> tuple[int, int, float | None]:
        """Chunks the plans would embed (their hashes new to each kept space; quarantined documents embed
        nothing), their tokens, and what they would cost (None when an embedder has no price). Read a batch
        of documents at a time (from a spool), holding the hashes seen, not the texts."""
        chunks = tokens = 0
        cost: float | None = 0.0
        with self.engine.connect() as conn:
            for t in targets:
                seen: set[str] = set()
                n = 0
                for texts in self._chunk_texts(plans, t, seen):
                    missing = self.store.missing_embeddings(conn, t.index.space_key, list(texts))
                    n += count_tokens(t.embedder, (texts[h] for h in missing))
                    chunks += len(missing)
                tokens += n
                cost = None if cost is None or t.price is None else cost + cost_of(n, t.price)
        return chunks, tokens, None if cost is None else round(cost, 8)

    def _chunk_texts(self, plans: list[SyncPlan], target: Target, seen: set[str]) -> Iterator[dict[str, str]]:
        """The chunk texts (by content hash) of the plans' kept changed documents, a batch of documents at a
        time, each hash once (``seen`` holds those given already)."""
        for plan in plans:
            changed = plan.changed
            for lo in range(0, len(changed), self.settings.batch_size):
                texts: dict[str, str] = {}
                for _, doc in changed[lo : lo + self.settings.batch_size]:
                    if doc.external_id in plan.decisions and not plan.decisions[doc.external_id].kept:
                        continue
                    for c in target.chunker.chunk(doc.text, doc.metadata):
                        if c.content_hash not in seen:
                            texts[c.content_hash] = c.text
                seen.update(texts)
                yield texts

    def _complete(self, targets: list[Target], total: SyncCounts, progress: ProgressFactory | None,
                  executor: Executor, batch_size: int, job: Job | None = None) -> list[dict[str, Any]]:
        """Repair a served index that lags the catalog (e.g. after a forced cutover), then persist ANN files.

        A shadow index is only kept current for what changes (dual-write); filling the rest is
        `migrate backfill`'s job, throttled and resumable, never a side effect of sync.
        """
        out = []
        with self.engine.connect() as conn:
            served = set(conn.execute(sa.select(schema.aliases.c.index_id)).scalars())
        for t in targets:
            gap = None
            if t.index.id in served:
                with self.engine.connect() as conn:
                    gap = measure_gap(conn, t)
            if gap is not None and gap.total:
                bar = progress(f"fill {t.index.id}", gap.missing_vectors) if progress else None
                models = self.targets.executor_models([t]) if executor.kind != "local" else None
                done = fill_index(self.engine, self.store, t, batch_size=batch_size, progress=bar, executor=executor,
                                  models=models, job=job)
                total.embedded += done["embedded"]
            out.append({"id": t.index.id, **self.store.flush(t.index)})
        return out


def source_row(conn: sa.Connection, cfg: SourceConfig) -> int:
    """Source ``cfg``'s catalog id, its row made or updated to the configured kind and options."""
    s = schema.sources
    row = conn.execute(sa.select(s.c.id).where(s.c.name == cfg.name)).scalar()
    config = {"path": cfg.path, **cfg.options}
    if row is not None:
        conn.execute(sa.update(s).where(s.c.id == row).values(kind=cfg.kind, config=config))
        return int(row)
    result = conn.execute(sa.insert(s).values(name=cfg.name, kind=cfg.kind, config=config, created_at=time.time()))
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def source_documents(conn: sa.Connection, source: str) -> list[tuple[int, str]]:
    """(catalog id, external id) of ``source``'s live documents."""
    d, s = schema.documents, schema.sources
    q = sa.select(d.c.id, d.c.external_id).join(s, s.c.id == d.c.source_id).where(
        s.c.name == source, d.c.deleted_at.is_(None)).order_by(d.c.id)
    return [(int(i), str(e)) for i, e in conn.execute(q)]


def _plan_counts(plan: SyncPlan) -> SyncCounts:
    return SyncCounts(
        added=len(plan.added), updated=len(plan.updated), deleted=len(plan.deleted),
        unchanged=plan.unchanged, skipped=list(plan.skipped), quarantined=sum(plan.quarantined().values()),
        rechecked=len(plan.rechecked) + len(plan.relinked),
    )
