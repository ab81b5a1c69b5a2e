"""Workspace: the library's front door. Opens the catalog, the store and the embedders.

>>> ws = Workspace.init("/tmp/demo", embedder="hashing")      # doctest: +SKIP
>>> ws.add_source("docs", "/tmp/demo/docs")                    # doctest: +SKIP
>>> ws.sync().counts.added                                     # doctest: +SKIP
>>> ws.search("how do cells divide", k=5)                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from embedops.catalog import queries, schema
from embedops.catalog.db import database_url, open_catalog, read_tx
from embedops.catalog.secrets import strip_password
from embedops.catalog.ledger import actor, read_ledger, write_ledger
from embedops.catalog.lock import WriteLock
from embedops.chunking.base import Chunker
from embedops.curate.settings import CurateSettings
from embedops.config import CONFIG_NAME, DEFAULT_CHUNKER, Settings, SourceConfig, find_workspace, init_settings, load_settings
from embedops.names import checked_name
from embedops.embedding.base import Embedder, TokenCounter, TokenSource
from embedops.embedding.query import QueryEmbeddings
from embedops.monitor.references import pin_corpus_references
from embedops.monitor.settings import source_slos
from embedops.embedding.spend import (
    Guard, Job, Limits, Line, Spend, check_prices, check_recorder, check_start, cost_of, count_tokens, job_totals,
    limits_for,
)
from embedops.embedding.spend import record as record_spend
from embedops.errors import BudgetExceeded, ConfigChanged, ConfigError, NotFound, SourceError, SpaceMismatch
from embedops.execute import Executor, ExecutorOptions, Model, make_executor
from embedops.search.engine import Filters, Searcher, SearchResult
from embedops.search.params import refuse_nul
from embedops.sources.base import Document, Source
from embedops.sync.fill import fill_index, measure_gap
from embedops.sync.plan import CatalogDoc, CatalogRows, SyncPlan, mass_delete, plan_sync
from embedops.sync.curation import chunk_tagger, curate_plan
from embedops.sync.quarantine import ReleasePlan
from embedops.sync.run import SyncCounts, SyncRunner, Tagger, Target
from embedops.thresholds.registry import ThresholdRegistry
from embedops.vectors.base import IndexInfo
from embedops.vectors import make_store

log = logging.getLogger("embedops")

ProgressFactory = Callable[[str, int], Callable[[int], None]]
# How long a push (upsert/delete by id) waits for the sync lock before answering Busy.
PUSH_LOCK_WAIT_S = 30.0
# How often the query path writes what embedding queries cost (and at close).
QUERY_SPEND_FLUSH_S = 60.0
SyncListener = Callable[[sa.Engine, Sequence[IndexInfo]], None]


@dataclass(frozen=True)
class _Planned:
    """One source's plan, ready to run: its config, plan, catalog id and chunk language tagger."""

    cfg: SourceConfig
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
        }
        if self.plan_only:
            out["chunks_to_embed"] = self.chunks_to_embed
            out["estimated_tokens"] = self.estimated_tokens
            out["estimated_cost"] = self.estimated_cost
        else:
            out["job"] = self.job
            out["spend"] = self.spend
        return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "index"


class Workspace:
    """A directory with ``embedops.toml`` and its catalog."""

    def __init__(self, settings: Settings, *, create: bool = False) -> None:
        """Open the workspace's catalog; ``create`` only for a new workspace (`init`): an existing
        configuration whose catalog is gone is refused, never given a new empty one."""
        self.settings = settings
        self.root = settings.root
        self.engine = open_catalog(database_url(settings.database_value, settings.root), create=create)
        self.store = make_store(self.engine, settings.state_dir, settings.ann_ef_search)
        self.searcher = Searcher(self.store, self.embedder_for, QueryEmbeddings(price_of=self.settings.price))
        self._query_spend_flushed = time.monotonic()
        self.searcher.max_lag = source_slos(settings.monitor, settings.sources)
        self._embedders: dict[str, Embedder] = {}
        # Called with (engine, indexes kept current) after every sync that read a source. The default
        # pins drift references: an index's first sync is its corpus reference.
        self.after_sync: list[SyncListener] = [pin_corpus_references]
        self._embedders_lock = threading.Lock()

    # -- opening -------------------------------------------------------------
    @classmethod
    def init(
        cls,
        root: str | Path,
        *,
        embedder: str = "minilm-l6",
        chunker: str = DEFAULT_CHUNKER,
        database: str | None = None,
        chunker_params: dict[str, Any] | None = None,
        database_env: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        curate: bool = False,
    ) -> Workspace:
        """Create ``root``'s embedops.toml and catalog. A failure leaves nothing behind.

        ``database``: a URL or a SQLite path; a password in the URL is used for this
        call and never written. ``database_env``: the name of an environment variable
        holding the catalog URL (password included), read at every open.
        ``embedder="openai:MODEL"`` (with ``base_url``, ``api_key_env``) adds an
        ``[embedders.NAME]`` section; a name already configured in an existing
        embedops.toml (holding only such sections) is used. ``curate``: write ``[curate] enabled``
        (`embedops init` passes true: new workspaces curate their corpus before it is embedded;
        the library's default stays false, so code that creates workspaces keeps its behaviour)."""
        from embedops.chunking.registry import chunker_names
        from embedops.embedding.registry import check_embedder

        root = Path(root).resolve()
        settings = init_settings(root, embedder=embedder, chunker=chunker, database=database,
                                 chunker_params=chunker_params, base_url=base_url, api_key_env=api_key_env)
        check_embedder(settings.embedder, settings.embedders)  # validates the name early, without loading weights
        if chunker not in chunker_names():
            raise ConfigError(f"unknown chunker {chunker!r}", hint=f"valid chunkers: {', '.join(chunker_names())}")
        if database:
            # The password is used now and never written: later opens read it from the environment or ~/.pgpass.
            settings.database, had_password = strip_password(database)
            settings.database_secret = database if had_password else None
        settings.database_env = database_env
        settings.curate = CurateSettings(enabled=curate)
        with _created(root) as created:
            ws = cls(settings, create=True)
            created.append(ws)
            settings.save()
            with ws.engine.begin() as conn:
                write_ledger(conn, "workspace.init", embedder=settings.embedder, chunker=chunker, curate=curate)
        return ws

    @classmethod
    def open(cls, root: str | Path | None = None) -> Workspace:
        where = find_workspace(Path(root) if root is not None else None)
        return cls(load_settings(where))

    def close(self) -> None:
        self.flush_query_spend()
        self.engine.dispose()

    def flush_query_spend(self) -> int:
        """Write the query path's spend since the last flush: one ``query.spend`` ledger row and its spend rows.

        Called by the query path once a minute and when the workspace closes. A catalog that refuses the
        write (busy, read-only) keeps the spend for the next flush; queries never fail for it."""
        self._query_spend_flushed = time.monotonic()
        return self.searcher.queries.flush(self.engine)

    def _queries_done(self) -> None:
        if time.monotonic() - self._query_spend_flushed >= QUERY_SPEND_FLUSH_S:
            self.flush_query_spend()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload_settings(self) -> None:
        """Re-read embedops.toml (a long-running process following a `source add` or cutover made elsewhere)."""
        self.settings = load_settings(self.root)
        self.searcher.max_lag = source_slos(self.settings.monitor, self.settings.sources)

    # -- sources -------------------------------------------------------------
    def add_source(self, name: str, path: str | Path | None = None, kind: str = "folder", **options: Any) -> SourceConfig:
        """Register a source; ``path`` is required except for ``kind="push"`` (documents come through the API)."""
        name = checked_name("source", name)
        if name in self.settings.sources:
            raise ConfigError(f"source {name!r} already exists", hint="choose another name")
        stored = self._checked_source_path(name, kind, path, options)
        cfg = SourceConfig(name, kind, stored, {k: v for k, v in options.items() if v is not None})
        self.settings.sources[name] = cfg
        self.settings.save()
        self.searcher.max_lag = source_slos(self.settings.monitor, self.settings.sources)
        with self.engine.begin() as conn:
            self._source_row(conn, cfg)
            write_ledger(conn, "source.add", source=name, source_kind=kind, path=stored, options=cfg.options)
        return cfg

    def list_sources(self) -> list[dict[str, Any]]:
        """Every source in embedops.toml or in the catalog: kind, path, live documents, and whether it is
        configured (a source removed from the file but not with `source remove` still serves its documents)."""
        s, d = schema.sources, schema.documents
        with read_tx(self.engine) as conn:
            live: dict[str, int] = dict(conn.execute(sa.select(s.c.name, sa.func.count(d.c.id)).select_from(s.outerjoin(
                d, sa.and_(d.c.source_id == s.c.id, d.c.deleted_at.is_(None)))).group_by(s.c.name)).all())
            kinds = dict(conn.execute(sa.select(s.c.name, s.c.kind)).all())
        # a catalog-only source without live documents was removed: it is history, not a source
        names = list(self.settings.sources) + sorted(n for n in live if n not in self.settings.sources and live[n])
        return [{"name": n, "kind": (self.settings.sources[n].kind if n in self.settings.sources else kinds[n]),
                 "path": self.settings.sources[n].path if n in self.settings.sources else None,
                 "documents": int(live.get(n, 0)), "configured": n in self.settings.sources} for n in names]

    def remove_source(self, name: str, *, plan_only: bool = False) -> dict[str, Any]:
        """Remove source ``name``: its documents are tombstoned and leave every kept index, in the ledger."""
        known = {s["name"]: s for s in self.list_sources()}
        if name not in known:
            raise NotFound(f"no source {name!r}", hint=f"sources: {', '.join(known) or 'none'}")
        with read_tx(self.engine) as conn:
            docs = _live_documents(conn, name)
        bound = self._evalsets_of(name)
        if plan_only:
            return {"source": name, "documents": len(docs), "evalsets": bound, "plan": True}
        with self.lock("sync"):
            with read_tx(self.engine) as conn:
                docs = _live_documents(conn, name)
            if docs:
                targets = self._kept_targets(create=False)
                source_id = self._catalog_source_id(name)
                SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size).run(
                    source_id, SyncPlan(name, deleted=docs))
            if name in self.settings.sources:
                del self.settings.sources[name]
                self.settings.save()
                self.searcher.max_lag = source_slos(self.settings.monitor, self.settings.sources)
            with self.engine.begin() as conn:
                write_ledger(conn, "source.remove", source=name, documents=len(docs), evalsets=bound)
        return {"source": name, "documents": len(docs), "evalsets": bound, "plan": False}

    def _catalog_source_id(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(schema.sources.c.id).where(schema.sources.c.name == name)).scalar_one())

    def _evalsets_of(self, source: str) -> list[str]:
        e, s = schema.evalsets, schema.sources
        with read_tx(self.engine) as conn:
            return sorted(set(conn.execute(sa.select(e.c.name).join(s, s.c.id == e.c.source_id)
                                           .where(s.c.name == source)).scalars()))

    def _checked_source_path(self, name: str, kind: str, path: str | Path | None, options: dict[str, Any]) -> str:
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
            return str(resolved.relative_to(self.root))
        except ValueError:
            return str(resolved)

    def _source_row(self, conn: sa.Connection, cfg: SourceConfig) -> int:
        s = schema.sources
        row = conn.execute(sa.select(s.c.id).where(s.c.name == cfg.name)).scalar()
        config = {"path": cfg.path, **cfg.options}
        if row is not None:
            conn.execute(sa.update(s).where(s.c.id == row).values(kind=cfg.kind, config=config))
            return int(row)
        result = conn.execute(sa.insert(s).values(name=cfg.name, kind=cfg.kind, config=config, created_at=time.time()))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def open_source(self, cfg: SourceConfig) -> Source:
        from embedops.sources.registry import make_source

        path = Path(cfg.path)
        return make_source(cfg.name, cfg.kind, path if path.is_absolute() else self.root / path, **cfg.options)

    # -- embedders, chunkers, indexes ------------------------------------------
    def embedder(self, name: str) -> Embedder:
        from embedops.embedding.registry import load_embedder

        embedder = self._embedders.get(name)
        if embedder is None:
            with self._embedders_lock:  # one load per model, however many threads ask at once (the service)
                embedder = self._embedders.get(name)
                if embedder is None:
                    embedder = self._embedders[name] = load_embedder(name, self.settings.embedders)
        return embedder

    def embedder_for(self, index: IndexInfo) -> Embedder:
        embedder = self.embedder(index.embedder)
        if embedder.ref.key != index.space_key:
            raise SpaceMismatch(
                f"embedder {index.embedder!r} now describes space {embedder.ref.key}, but index {index.id}"
                f" was built in {index.space_key}",
                hint="the model behind this name changed: restore it, or migrate with `embedops migrate`",
            )
        if self.settings.monitor.verify_model:  # once per process and space: a silent model change is refused
            from embedops.embedding.verify import verify_model

            verify_model(self.engine, index, embedder, self.settings.monitor.fingerprint_min_cosine,
                         price=self.settings.price(index.embedder), on_spend=check_recorder(self.engine, index.id, index.space_key, index.embedder))
        return embedder

    def token_source(self, name: str) -> TokenSource:
        """``name``'s space and tokenizer; the packaged models' without loading their weights."""
        embedder = self._embedders.get(name)
        if embedder is not None:
            return embedder
        from embedops.embedding.registry import token_source

        return token_source(name, self.settings.embedders)

    def make_chunker(
        self, name: str, params: dict[str, Any], tokens: TokenSource, version: str | None = None
    ) -> Chunker:
        """Chunker ``name`` counting ``tokens``' model tokens (an embedder, or its weightless token source);
        ``version`` rebuilds an index's older one."""
        from embedops.chunking.registry import make_chunker
        from embedops.chunking.tokens import BatchCounter

        special = tokens.count_tokens("")  # [CLS]/[SEP]: counted once per model input, not once per sentence

        def content_tokens(text: str) -> int:
            return max(0, tokens.count_tokens(text) - special)

        counter: TokenCounter = content_tokens
        many = getattr(tokens, "count_tokens_many", None)  # a tokenizer's batch encode, where the model has one
        if many is not None:
            counter = BatchCounter(content_tokens, lambda texts: [max(0, n - special) for n in many(texts)])
        return make_chunker(
            name, params, count_tokens=counter, tokenizer_name=tokens.tokenizer_name, version=version
        )

    def indexes(self, conn: sa.Connection, status: str | None = None) -> list[IndexInfo]:
        return queries.indexes(conn, status)

    def target(self, index: IndexInfo) -> Target:
        embedder = self.embedder_for(index)
        with self.engine.connect() as conn:
            ch = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
        chunker = self.make_chunker(ch.name, ch.params, embedder, version=ch.version)
        if chunker.ref.key != index.chunker_key:
            raise SpaceMismatch(f"chunker {ch.name} now has ref {chunker.ref.key}, index {index.id} uses {index.chunker_key}")
        return Target(index, chunker, embedder, self.settings.price(index.embedder))

    def executor_models(self, targets: Sequence[Target]) -> dict[str, Model]:
        """Each target's model as a remote worker loads it: registry name (with its ``[embedders.NAME]``
        section, for an HTTP provider), and the space's stored fingerprint (when ``[monitor] verify_model``
        is on) for the worker to verify its copy against."""
        sp = schema.spaces
        keys = [t.index.space_key for t in targets]
        with read_tx(self.engine) as conn:
            stored = dict(conn.execute(sa.select(sp.c.key, sp.c.fingerprint).where(sp.c.key.in_(keys))).all())
        check = self.settings.monitor.verify_model
        return {t.index.space_key: Model.of(t.embedder, t.index.embedder, stored.get(t.index.space_key) if check else None,
                                            self.settings.monitor.fingerprint_min_cosine, t.price,
                                            self.settings.embedders.get(t.index.embedder)) for t in targets}

    def configured_target(self) -> tuple[Embedder, Chunker]:
        embedder = self.embedder(self.settings.embedder)
        chunker = self.make_chunker(self.settings.chunker, self.settings.chunker_params, embedder)
        return embedder, chunker

    def create_index(self, conn: sa.Connection, embedder_name: str, embedder: Embedder, chunker: Chunker,
                     storage: str = "f32") -> IndexInfo:
        """Register the space and chunker if new, and a new empty index for the pair, held as ``storage``
        (a storage variant's key, vectors/storage.py)."""
        from embedops.embedding.fingerprint import take_fingerprint, to_bytes
        from embedops.embedding.verify import remember_fingerprint

        sp, ch, ix = schema.spaces, schema.chunkers, schema.indexes
        key = embedder.ref.key
        spend = Spend()
        if conn.execute(sa.select(sp.c.key).where(sp.c.key == key)).scalar() is None:
            fp = take_fingerprint(embedder, self.settings.price(embedder_name), spend)
            remember_fingerprint(self.engine, key, embedder)
            conn.execute(sa.insert(sp).values(
                key=key, embedder=embedder_name, ref=embedder.ref.to_dict(), dims=embedder.ref.dims,
                fingerprint=to_bytes(fp.vectors), fingerprint_digest=fp.digest, created_at=time.time()))
        ref = chunker.ref
        if conn.execute(sa.select(ch.c.key).where(ch.c.key == ref.key)).scalar() is None:
            conn.execute(sa.insert(ch).values(key=ref.key, name=ref.name, version=ref.version, params=ref.params_dict))
        n = conn.execute(sa.select(sa.func.count()).select_from(ix)).scalar_one() + 1
        index_id = f"ix{n}-{_slug(embedder_name if storage == 'f32' else f'{embedder_name}-{storage}')}"
        conn.execute(sa.insert(ix).values(id=index_id, space_key=key, chunker_key=ref.key, status="active",
                                          created_at=time.time(), storage=storage))
        ledger_id = write_ledger(conn, "index.create", index=index_id, space=key, chunker=ref.key,
                                 embedder=embedder_name, storage=storage)
        record_spend(conn, ledger_id, Job.new("fingerprint"), [Line(key, embedder_name, spend)])  # the sentinels
        info = IndexInfo(index_id, key, ref.key, "active", embedder.ref.dims, embedder_name, storage)
        self.store.ensure_index(conn, info)
        return info

    def set_alias(self, conn: sa.Connection, name: str, index_id: str) -> str | None:
        a = schema.aliases
        old = conn.execute(sa.select(a.c.index_id).where(a.c.name == name)).scalar()
        if old is None:
            conn.execute(sa.insert(a).values(name=name, index_id=index_id, updated_at=time.time()))
        else:
            result = conn.execute(sa.update(a).where(a.c.name == name).values(index_id=index_id, updated_at=time.time()))
            assert result.rowcount == 1
        write_ledger(conn, "alias.set", alias=name, index=index_id, previous=old)
        return old

    def adopt_index_config(self, index: IndexInfo) -> None:
        """Point embedops.toml at the index an alias now serves (after cutover/rollback)."""
        with self.engine.connect() as conn:
            ch = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
        tokens = self.token_source(index.embedder)  # no model load: cutover must answer at once
        params = dict(ch.params)
        if params.get("tokenizer") == (tokens.tokenizer_name or "regex"):
            params.pop("tokenizer")  # follows the embedder by default
        self.settings.embedder, self.settings.chunker, self.settings.chunker_params = index.embedder, ch.name, params
        self.settings.save()

    def kept_targets(self) -> list[Target]:
        """The indexes every sync keeps current, with their chunkers and embedders (the first call creates the
        configured index and points the alias at it)."""
        return self._kept_targets(create=True)

    def _kept_targets(self, create: bool) -> list[Target]:
        """Indexes every sync keeps current; the first sync creates the configured one."""
        with self.engine.connect() as conn:
            active = self.indexes(conn, "active")
            alias = conn.execute(sa.select(schema.aliases.c.index_id).where(schema.aliases.c.name == self.settings.alias)).scalar()
        if not active:
            embedder, chunker = self.configured_target()
            if not create:
                ghost = IndexInfo("(new)", embedder.ref.key, chunker.ref.key, "planned", embedder.ref.dims, self.settings.embedder)
                return [Target(ghost, chunker, embedder, self.settings.price(self.settings.embedder))]
            with self.engine.begin() as conn:
                index = self.create_index(conn, self.settings.embedder, embedder, chunker)
                self.set_alias(conn, self.settings.alias, index.id)
            return [Target(index, chunker, embedder, self.settings.price(self.settings.embedder))]
        serving = next((ix for ix in active if ix.id == alias), active[0])
        self._check_config(serving, active)
        return [self.target(ix) for ix in active]

    def _kept_embedders(self) -> set[str]:
        """Names of the embedders a sync would use, without loading any (the first sync: the configured one)."""
        with self.engine.connect() as conn:
            names = {ix.embedder for ix in self.indexes(conn, "active")}
        return names or {self.settings.embedder}

    def _check_config(self, serving: IndexInfo, active: list[IndexInfo]) -> None:
        """The configured embedder/chunker must be one the catalog keeps current: never re-embed in place."""
        from embedops.embedding.registry import describe_embedder

        ref = describe_embedder(self.settings.embedder, self.settings.embedders)
        matching = [ix for ix in active if ix.space_key == ref.key]
        if matching:
            embedder = self.embedder(self.settings.embedder)
            matching = [ix for ix in matching if self._configured_chunker_key(ix, embedder) == ix.chunker_key]
        if not matching:
            raise ConfigChanged(
                f"{CONFIG_NAME} asks for embedder {self.settings.embedder!r} / chunker {self.settings.chunker!r}, but alias"
                f" {self.settings.alias!r} serves index {serving.id} ({serving.embedder}, {serving.chunker_key});"
                " a sync never re-embeds in place",
                hint=f"restore embedder = {serving.embedder!r} and the chunker settings in {CONFIG_NAME}, then plan"
                f" the change as a migration: `embedops migrate plan --to {self.settings.embedder}`",
                index=serving.id,
            )

    def _configured_chunker_key(self, index: IndexInfo, embedder: Embedder) -> str:
        """The configured chunker's ref, at the version ``index`` was built with (same name only).

        embedops.toml names a chunker, not its version: an index made by an older
        version of the configured chunker keeps being synced with that version.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
        version = row.version if row.name == self.settings.chunker else None
        return self.make_chunker(self.settings.chunker, self.settings.chunker_params, embedder, version).ref.key

    # -- sync ------------------------------------------------------------------
    def sync(
        self,
        *,
        source: str | None = None,
        plan_only: bool = False,
        progress: ProgressFactory | None = None,
        allow_mass_delete: bool = False,
        full: bool = False,
        executor: ExecutorOptions | None = None,
        max_cost: float | None = None,
    ) -> SyncResult:
        """Bring every kept index in line with the sources (or compute the plan only).

        ``full`` reads every record again, ignoring the signatures that let a source skip unchanged ones
        (a table's ``updated_at``, a file's mtime); content hashes still decide what is re-embedded.
        ``executor`` says where the embedding runs (default: in this process; see
        :class:`~embedops.execute.ExecutorOptions` for a Ray cluster); the catalog is
        written from this process either way. ``max_cost`` (USD) caps this run: it stops once its spend
        reaches it, raising :class:`BudgetExceeded` with what was committed kept (the next sync resumes). A
        ``[budget] monthly_usd`` refuses a sync whose estimate exceeds what the month has left.

        One sync at a time per workspace (the ``sync`` lock; :class:`Busy` otherwise). A
        source that cannot be read (missing folder or file), or whose sync would delete more
        than ``max_delete_share`` of its documents without ``allow_mass_delete``, raises
        :class:`SourceError` after the other sources are synced; its ``details`` carry
        ``failed`` and their ``result``.
        """
        configs = self._selected_sources(source)
        options = executor or ExecutorOptions()
        limits = self.budget_limits(max_cost)
        if plan_only:
            return self._sync(configs, True, progress, allow_mass_delete, full, options, limits)
        with self.lock("sync"):
            return self._sync(configs, False, progress, allow_mass_delete, full, options, limits)

    def budget_limits(self, max_cost: float | None = None) -> Limits:
        """A job's limits: ``max_cost`` and what ``[budget] monthly_usd`` has left this (UTC) month."""
        return limits_for(self.engine, self.settings.budget.monthly_usd, max_cost)

    def lock(self, name: str, *, wait: float = 0.0) -> WriteLock:
        """The workspace's writer lock ``name`` ("sync", "migration:ALIAS"), held by a ``with`` block."""
        return WriteLock(self.engine, name, command=actor(), wait=wait)

    def _sync(self, configs: list[SourceConfig], plan_only: bool, progress: ProgressFactory | None,
              allow_mass_delete: bool, full: bool, options: ExecutorOptions, limits: Limits) -> SyncResult:
        started = time.perf_counter()
        verified_from = time.time()
        check_prices(limits, {name: self.settings.price(name) for name in self._kept_embedders()}, "embedops sync")
        targets = self._kept_targets(create=not plan_only)
        self._verify_models(targets, verified_from)
        executor = make_executor(options)
        try:
            return self._sync_sources(configs, plan_only, progress, allow_mass_delete, full, targets, executor,
                                      options.batch_size or self.settings.batch_size, started, limits)
        finally:
            executor.close()

    def _sync_sources(self, configs: list[SourceConfig], plan_only: bool, progress: ProgressFactory | None,
                      allow_mass_delete: bool, full: bool, targets: list[Target], executor: Executor,
                      batch_size: int, started: float, limits: Limits) -> SyncResult:
        total = SyncCounts()
        per_source: list[dict[str, Any]] = []
        failed: list[tuple[str, SourceError]] = []
        planned: list[_Planned] = []
        for cfg in configs:
            try:
                plan, source_id = self._plan(cfg, full)
            except SourceError as exc:  # one unreadable source must not hold back the others
                failed.append((cfg.name, exc))
                continue
            per_source.append(plan.summary())
            refused = mass_delete(plan, self.settings.max_delete_share, allowed=allow_mass_delete)
            if refused is not None:  # an emptied folder (an unmounted share) must not delete the source
                per_source[-1]["mass_delete"] = dict(refused.details)  # a copy: the error carries this result
                failed.append((cfg.name, refused))
                continue
            tagger = self._curate(plan, source_id)
            per_source[-1] = plan.summary()
            planned.append(_Planned(cfg, plan, source_id, tagger))
        result = SyncResult(plan_only, total, per_source)
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
        models = self.executor_models(targets) if executor.kind != "local" else None
        try:
            for p in planned:
                bar = progress(f"sync {p.cfg.name}", len(p.plan.changed) + len(p.plan.deleted)) if progress else None
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

    def upsert_documents(self, source: str, docs: Sequence[Document]) -> SyncResult:
        """Add or update documents of a push source by id: a sync of just those ids.

        Same plan and runner as :meth:`sync` (ledger rows, dual-write during a
        migration). A document without text is reported in ``counts.skipped``
        and keeps its previous version. Callers serialize writes (the service
        holds a lock); SQLite serializes transactions anyway.
        """
        from embedops.sync.push import plan_upsert

        return self._push(source, [d.external_id for d in docs], lambda known: plan_upsert(source, docs, known))

    def delete_documents(self, source: str, external_ids: Sequence[str], *, missing_ok: bool = False) -> SyncResult:
        """Delete documents of a push source by id (tombstoned; their vectors leave every kept index).

        Raises :class:`NotFound` naming the ids that are not live documents, before
        changing anything, unless ``missing_ok``.
        """
        from embedops.sync.push import plan_delete

        return self._push(source, external_ids,
                          lambda known: plan_delete(source, external_ids, known, missing_ok=missing_ok))

    def get_documents(self, source: str, external_ids: Sequence[str]) -> list[Document]:
        """The live documents of ``source`` among ``external_ids`` as stored (text, metadata), in the order
        asked; ids that are not live are left out."""
        with read_tx(self.engine) as conn:
            return queries.documents_by_id(conn, source, external_ids)

    def document_ids(self, source: str, *, metadata: Mapping[str, Any] | None = None) -> list[str]:
        """Ids of ``source``'s live documents, those whose metadata has the given values when ``metadata``
        is given (compared as text, as search filters compare them)."""
        with read_tx(self.engine) as conn:
            return queries.document_ids(conn, source, metadata)

    def _push(self, source: str, ids: Sequence[str], make_plan: Callable[[dict[str, CatalogDoc]], SyncPlan]) -> SyncResult:
        from embedops.sync.push import document_outcomes, live_documents, require_push

        started = time.perf_counter()
        cfg = self._selected_sources(source)[0]
        require_push(cfg)
        with self.engine.begin() as conn:
            source_id = self._source_row(conn, cfg)
        with read_tx(self.engine) as conn:
            plan = make_plan(live_documents(conn, source_id, ids))
        if plan.is_noop and not plan.skipped:  # nothing changes: no transaction, no ledger row
            counts = SyncCounts(unchanged=plan.unchanged)
        else:
            with self.lock("sync", wait=PUSH_LOCK_WAIT_S):  # a push waits for a running sync, within reason
                targets = self._kept_targets(create=True)
                tagger = self._curate(plan, source_id, unchecked=False)
                runner = SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size,
                                    tagger=tagger)
                counts = runner.run(source_id, plan)
        summary = {**plan.summary(), "documents": document_outcomes(plan, ids)}
        return SyncResult(False, counts, [summary], seconds=time.perf_counter() - started)

    def release(self, document: str, *, source: str | None = None, plan_only: bool = False) -> ReleasePlan:
        """Embed a quarantined document anyway (``embedops quarantine release``): a one-document sync that
        marks it released, with a ``curate.release`` ledger row in the same transaction as its vectors."""
        from embedops.sync.quarantine import plan_release

        with read_tx(self.engine) as conn:
            planned = plan_release(conn, document, source)
        if plan_only:
            return planned
        with self.lock("sync", wait=PUSH_LOCK_WAIT_S):
            with read_tx(self.engine) as conn:  # decided again under the lock: a sync may have changed it
                planned = plan_release(conn, document, source)
            targets = self._kept_targets(create=True)
            tagger = chunk_tagger(self.settings.curation or CurateSettings())
            SyncRunner(self.engine, self.store, targets, batch_size=self.settings.batch_size,
                       tagger=tagger).run(planned.source_id, planned.plan)
            for t in targets:
                self.store.flush(t.index)
        return planned

    def _curate(self, plan: SyncPlan, source_id: int, *, unchecked: bool = True) -> Tagger | None:
        """Decide the plan's documents when [curate] is on (sync/curation.py); the chunks' language tagger."""
        settings = self.settings.curation
        if settings is None:
            return None
        curate_plan(self.engine, source_id, plan, settings, now=time.time(), unchecked=unchecked)
        return chunk_tagger(settings)

    def _verify_models(self, targets: list[Target], since: float) -> None:
        """Before a sync writes, each index's model must still make its vectors (monitor/fingerprint.py)."""
        if not self.settings.monitor.verify_model:
            return
        from embedops.embedding.verify import verify_model

        for t in targets:
            if t.index.status != "planned":
                verify_model(self.engine, t.index, t.embedder, self.settings.monitor.fingerprint_min_cosine, since=since,
                             price=t.price, on_spend=check_recorder(self.engine, t.index.id, t.index.space_key, t.index.embedder))

    def _selected_sources(self, source: str | None) -> list[SourceConfig]:
        if source is None:
            return list(self.settings.sources.values())
        if source not in self.settings.sources:
            raise NotFound(f"no source {source!r}", hint=f"sources: {', '.join(self.settings.sources) or 'none; add one with `embedops source add`'}")
        return [self.settings.sources[source]]

    def _plan(self, cfg: SourceConfig, full: bool = False) -> tuple[SyncPlan, int]:
        with self.engine.begin() as conn:
            source_id = self._source_row(conn, cfg)
        d = schema.documents
        q = sa.select(d.c.external_id, d.c.id, d.c.content_hash, d.c.signature).where(
            d.c.source_id == source_id, d.c.deleted_at.is_(None)
        )
        with read_tx(self.engine) as conn:
            # The DBAPI's plain tuples: Row objects for 100k documents cost as much as the rest of a no-op plan.
            known = CatalogRows(conn.execute(q).cursor.fetchall())
        signatures = known.signatures()
        if full:  # no signature to match: the source reads every record
            signatures = dict.fromkeys(signatures)
        return plan_sync(cfg.name, self.open_source(cfg).scan(signatures), known), source_id

    def _estimate(self, plans: list[SyncPlan], targets: list[Target]) -> tuple[int, int, float | None]:
        """Chunks the plans would embed (their hashes new to each kept space; quarantined documents embed
        nothing), their tokens, and what they would cost (None when an embedder has no price)."""
        chunks = tokens = 0
        cost: float | None = 0.0
        with self.engine.connect() as conn:
            for t in targets:
                texts = {c.content_hash: c.text for plan in plans for _, doc in plan.changed
                         if doc.external_id not in plan.decisions or plan.decisions[doc.external_id].kept
                         for c in t.chunker.chunk(doc.text, doc.metadata)}
                missing = self.store.missing_embeddings(conn, t.index.space_key, list(texts))
                n = count_tokens(t.embedder, (texts[h] for h in missing))
                chunks, tokens = chunks + len(missing), tokens + n
                cost = None if cost is None or t.price is None else cost + cost_of(n, t.price)
        return chunks, tokens, None if cost is None else round(cost, 8)

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
                models = self.executor_models([t]) if executor.kind != "local" else None
                done = fill_index(self.engine, self.store, t, batch_size=batch_size, progress=bar, executor=executor,
                                  models=models, job=job)
                total.embedded += done["embedded"]
            out.append({"id": t.index.id, **self.store.flush(t.index)})
        return out

    # -- search ---------------------------------------------------------------
    def search(
        self,
        query: str | None = None,
        *,
        vector: np.ndarray | None = None,
        k: int = 10,
        alias: str | None = None,
        index: str | None = None,
        filters: Filters | None = None,
        mode: str = "vector",
        fresh_only: bool = False,
        recency_half_life: float | None = None,
    ) -> list[SearchResult]:
        """Top ``k`` chunks for ``query`` (or a precomputed ``vector``); ``mode``: vector, bm25 or hybrid.

        ``fresh_only`` drops stale results; ``recency_half_life`` (seconds) halves a
        result's score per half-life of its document's age. With ``[monitor]
        query_log`` on, the query is logged (monitor/serving.py).
        """
        try:
            return self._search(query, vector, k, alias, index, filters, mode, fresh_only, recency_half_life)
        finally:
            self._queries_done()

    def _search(self, query: str | None, vector: np.ndarray | None, k: int, alias: str | None, index: str | None,
                filters: Filters | None, mode: str, fresh_only: bool, recency_half_life: float | None) -> list[SearchResult]:
        from embedops.search.modes import search_mode

        self._check_search([query or ""], alias, index, filters)
        if fresh_only or recency_half_life is not None or self.settings.monitor.query_log:
            from embedops.monitor.serving import monitored_search

            return monitored_search(
                self.searcher, self._log_query if self.settings.monitor.query_log else None, query, vector=vector,
                k=k, alias=alias or self.settings.alias, index_id=index, filters=filters, mode=mode,
                fresh_only=fresh_only, recency_half_life=recency_half_life,
            )
        return search_mode(
            self.searcher, query, vector=vector, k=k, alias=alias or self.settings.alias, index_id=index,
            filters=filters, mode=mode,
        )

    def _log_query(self, index: IndexInfo, mode: str, text: str | None, vector: np.ndarray | None) -> None:
        from embedops.monitor.querylog import log_query

        log_query(self.engine, self.settings.monitor, index, mode, text, vector)

    def search_batch(
        self,
        queries: Sequence[str],
        *,
        vectors: np.ndarray | None = None,
        k: int = 10,
        alias: str | None = None,
        index: str | None = None,
        filters: Filters | None = None,
        mode: str = "vector",
    ) -> list[list[SearchResult]]:
        """Many queries against one index: resolved once, embedded in one batch (or given ``vectors``)."""
        from embedops.search.modes import search_batch

        self._check_search(queries, alias, index, filters)
        try:
            return search_batch(
                self.searcher, queries, k=k, alias=alias or self.settings.alias, index_id=index, filters=filters,
                mode=mode, vectors=vectors,
            )
        finally:
            self._queries_done()

    def _check_search(self, texts: Sequence[str], alias: str | None, index: str | None, filters: Filters | None) -> None:
        """Refuse what no search can mean: a NUL, a filter on a source that does not exist (not 0 results)."""
        refuse_nul(texts, alias, index, filters)
        if filters is None or not filters.source or filters.source in self.settings.sources:
            return
        with read_tx(self.engine) as conn:  # a source removed from the config may still hold documents
            if queries.source_exists(conn, filters.source):
                return
        names = ", ".join(self.settings.sources) or "none (add one with `embedops source add`)"
        raise NotFound(f"no source {filters.source!r}", hint=f"sources: {names}", source=filters.source)

    def filter_notes(self, filters: Filters | None) -> list[str]:
        """Why a filtered search may have found nothing: metadata keys that no live document has."""
        if filters is None or not filters.metadata:
            return []
        with read_tx(self.engine) as conn:
            absent = queries.absent_metadata_keys(conn, list(filters.metadata))
        return [f"no document has metadata key {key!r}" for key in absent]

    # -- thresholds -------------------------------------------------------------
    @property
    def thresholds(self) -> ThresholdRegistry:
        """Named similarity thresholds, read for the space the alias serves: ``ws.thresholds.get("dedup")``."""
        return ThresholdRegistry(self.engine, self.settings.alias, self.settings.embedder, self.settings.embedders)

    # -- status ---------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with read_tx(self.engine) as conn:
            counts = queries.catalog_counts(conn)
            indexes = queries.indexes(conn)
        out = {"workspace": str(self.root), "embedder": self.settings.embedder, "chunker": self.settings.chunker,
               "curate": self.settings.curation is not None, **counts}
        if self.store.capabilities.ann_file:  # derived graphs: their size, tombstones and compaction
            out["ann"] = [self.store.ann_status(ix) for ix in indexes]  # type: ignore[attr-defined]
        return out

    def history(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        with read_tx(self.engine) as conn:
            return read_ledger(conn, kind_prefix=kind, limit=limit)


def _live_documents(conn: sa.Connection, source: str) -> list[tuple[int, str]]:
    d, s = schema.documents, schema.sources
    q = sa.select(d.c.id, d.c.external_id).join(s, s.c.id == d.c.source_id).where(
        s.c.name == source, d.c.deleted_at.is_(None)).order_by(d.c.id)
    return [(int(i), str(e)) for i, e in conn.execute(q)]


@contextmanager
def _created(root: Path) -> Iterator[list[Workspace]]:
    """Remove what ``init`` created (the directory, the state folder, a SQLite catalog) when it fails."""
    existed = root.exists()
    state_existed = (root / ".embedops").exists()
    config = root / CONFIG_NAME
    original = config.read_bytes() if config.exists() else None  # [embedders.*] sections written by hand
    made: list[Workspace] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        yield made
    except BaseException:
        for ws in made:
            ws.close()
        if original is None:
            config.unlink(missing_ok=True)
        else:
            config.write_bytes(original)
        if not state_existed:
            shutil.rmtree(root / ".embedops", ignore_errors=True)
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _plan_counts(plan: SyncPlan) -> SyncCounts:
    return SyncCounts(
        added=len(plan.added), updated=len(plan.updated), deleted=len(plan.deleted),
        unchanged=plan.unchanged, skipped=list(plan.skipped), quarantined=sum(plan.quarantined().values()),
        rechecked=len(plan.rechecked) + len(plan.relinked),
    )
