"""Workspace: the library's front door. Opens the catalog, the store and the embedders.

>>> ws = Workspace.init("/tmp/demo", embedder="hashing")      # doctest: +SKIP
>>> ws.add_source("docs", "/tmp/demo/docs")                    # doctest: +SKIP
>>> ws.sync().counts.added                                     # doctest: +SKIP
>>> ws.search("how do cells divide", k=5)                      # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from embedops.catalog import queries, schema
from embedops.catalog.db import database_url, open_catalog, read_tx
from embedops.catalog.secrets import strip_password
from embedops.catalog.ledger import actor, read_ledger, write_ledger
from embedops.catalog.lock import WriteLock
from embedops.chunking.base import Chunker
from embedops.curate.settings import CurateSettings
from embedops.config import (
    CONFIG_NAME, DEFAULT_CHUNKER, Settings, SourceConfig, find_workspace, first_index_storage, init_settings, load_settings,
)
from embedops.names import checked_name
from embedops.embedding.base import Embedder, TokenSource
from embedops.embedding.query import QueryEmbeddings
from embedops.monitor.references import pin_corpus_references
from embedops.monitor.settings import source_slos
from embedops.embedding.spend import Limits, check_recorder, limits_for
from embedops.errors import ConfigError, NotFound, SpaceMismatch
from embedops.execute import ExecutorOptions, Model
from embedops.search.engine import Filters, Searcher, SearchResult
from embedops.search.front import SearchFront
from embedops.sources.base import Document, Source
from embedops.sync.driver import ProgressFactory, SyncDriver, SyncListener, SyncResult, source_documents, source_row
from embedops.sync.quarantine import ReleasePlan
from embedops.sync.run import Target
from embedops.sync.targets import Targets, model_chunker, set_alias
from embedops.thresholds.registry import ThresholdRegistry
from embedops.vectors.base import IndexInfo
from embedops.vectors.storage import StorageSpec
from embedops.vectors import make_store

if TYPE_CHECKING:
    import numpy as np

# Re-exported: sync results and progress callbacks were first defined here.
__all__ = ["ProgressFactory", "SyncResult", "Workspace"]

# How often the query path writes what embedding queries cost (and at close).
QUERY_SPEND_FLUSH_S = 60.0


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
        storage: str | None = None,
    ) -> Workspace:
        """Create ``root``'s embedops.toml and catalog. A failure leaves nothing behind.

        ``database``: a URL or a SQLite path; a password in the URL is used for this
        call and never written. ``database_env``: the name of an environment variable
        holding the catalog URL (password included), read at every open.
        ``embedder="openai:MODEL"`` (with ``base_url``, ``api_key_env``) adds an
        ``[embedders.NAME]`` section; a name already configured in an existing
        embedops.toml (holding only such sections) is used. ``curate``: write ``[curate] enabled``
        (`embedops init` passes true: new workspaces curate their corpus before it is embedded;
        the library's default stays false, so code that creates workspaces keeps its behaviour). ``storage``: the
        storage variant of the index the first sync creates (``[embedops] storage``; default f32), e.g. ``i8+r4``."""
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
        if storage is not None:
            settings.storage = first_index_storage(storage, "--storage")
        with _created(root) as created:
            ws = cls(settings, create=True)
            created.append(ws)
            if settings.storage is not None:
                ws.store.capabilities.check_holds(StorageSpec.parse(settings.storage))
            settings.save()
            with ws.engine.begin() as conn:
                write_ledger(conn, "workspace.init", embedder=settings.embedder, chunker=chunker, curate=curate,
                             **({"storage": settings.storage} if settings.storage else {}))
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
        stored = self._syncs().checked_source_path(name, kind, path, options)
        cfg = SourceConfig(name, kind, stored, {k: v for k, v in options.items() if v is not None})
        self.settings.sources[name] = cfg
        self.settings.save()
        self.searcher.max_lag = source_slos(self.settings.monitor, self.settings.sources)
        with self.engine.begin() as conn:
            source_row(conn, cfg)
            write_ledger(conn, "source.add", source=name, source_kind=kind, path=stored, options=cfg.options)
        return cfg

    def list_sources(self) -> list[dict[str, Any]]:
        """Every source in embedops.toml or in the catalog: kind, path, live documents, and whether it is
        configured (a source removed from the file but not with `source remove` still serves its documents)."""
        return self._syncs().list_sources()

    def remove_source(self, name: str, *, plan_only: bool = False) -> dict[str, Any]:
        """Remove source ``name``: its documents are tombstoned and leave every kept index, in the ledger."""
        known = {s["name"]: s for s in self.list_sources()}
        if name not in known:
            raise NotFound(f"no source {name!r}", hint=f"sources: {', '.join(known) or 'none'}")
        bound = self._evalsets_of(name)
        if plan_only:
            with read_tx(self.engine) as conn:
                planned = len(source_documents(conn, name))
            return {"source": name, "documents": planned, "evalsets": bound, "plan": True}
        with self.lock("sync"):
            removed = self._syncs().remove_documents(name)
            if name in self.settings.sources:
                del self.settings.sources[name]
                self.settings.save()
                self.searcher.max_lag = source_slos(self.settings.monitor, self.settings.sources)
            with self.engine.begin() as conn:
                write_ledger(conn, "source.remove", source=name, documents=removed, evalsets=bound)
        return {"source": name, "documents": removed, "evalsets": bound, "plan": False}

    def _evalsets_of(self, source: str) -> list[str]:
        e, s = schema.evalsets, schema.sources
        with read_tx(self.engine) as conn:
            return sorted(set(conn.execute(sa.select(e.c.name).join(s, s.c.id == e.c.source_id)
                                           .where(s.c.name == source)).scalars()))

    def open_source(self, cfg: SourceConfig) -> Source:
        return self._syncs().open_source(cfg)

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
        return model_chunker(name, params, tokens, version)

    def indexes(self, conn: sa.Connection, status: str | None = None) -> list[IndexInfo]:
        return queries.indexes(conn, status)

    def target(self, index: IndexInfo) -> Target:
        return self._targets().target(index)

    def executor_models(self, targets: Sequence[Target]) -> dict[str, Model]:
        """Each target's model as a remote worker loads it: registry name (with its ``[embedders.NAME]``
        section, for an HTTP provider), and the space's stored fingerprint (when ``[monitor] verify_model``
        is on) for the worker to verify its copy against."""
        return self._targets().executor_models(targets)

    def configured_target(self) -> tuple[Embedder, Chunker]:
        return self._targets().configured()

    def create_index(self, conn: sa.Connection, embedder_name: str, embedder: Embedder, chunker: Chunker,
                     storage: str = "f32") -> IndexInfo:
        """Register the space and chunker if new, and a new empty index for the pair, held as ``storage``
        (a storage variant's key, vectors/storage.py)."""
        return self._targets().create_index(conn, embedder_name, embedder, chunker, storage)

    def set_alias(self, conn: sa.Connection, name: str, index_id: str) -> str | None:
        return set_alias(conn, name, index_id)

    def adopt_index_config(self, index: IndexInfo) -> None:
        """Point embedops.toml at the index an alias now serves (after cutover/rollback)."""
        with self.engine.connect() as conn:
            ch = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
        tokens = self.token_source(index.embedder)  # no model load: cutover must answer at once
        params = dict(ch.params)
        if params.get("tokenizer") == (tokens.tokenizer_name or "regex"):
            params.pop("tokenizer")  # follows the embedder by default
        self.settings.embedder, self.settings.chunker, self.settings.chunker_params = index.embedder, ch.name, params
        if self.settings.storage is not None or not index.spec.is_default:
            self.settings.storage = index.storage  # the file keeps describing the index the alias serves
        self.settings.save()

    def kept_targets(self) -> list[Target]:
        """The indexes every sync keeps current, with their chunkers and embedders (the first call creates the
        configured index and points the alias at it)."""
        return self._targets().kept(create=True)

    def _targets(self) -> Targets:
        """The indexes as sync targets, made per call: they see a reloaded configuration."""
        return Targets(self.settings, self.engine, self.store, self.embedder, self.embedder_for)

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
        syncs = self._syncs()
        configs = syncs.selected_sources(source)
        options = executor or ExecutorOptions()
        return syncs.sync(configs, plan_only, progress, allow_mass_delete, full, options, self.budget_limits(max_cost))

    def budget_limits(self, max_cost: float | None = None) -> Limits:
        """A job's limits: ``max_cost`` and what ``[budget] monthly_usd`` has left this (UTC) month."""
        return limits_for(self.engine, self.settings.budget.monthly_usd, max_cost)

    def lock(self, name: str, *, wait: float = 0.0) -> WriteLock:
        """The workspace's writer lock ``name`` ("sync", "migration:ALIAS"), held by a ``with`` block."""
        return WriteLock(self.engine, name, command=actor(), wait=wait)

    def upsert_documents(self, source: str, docs: Sequence[Document]) -> SyncResult:
        """Add or update documents of a push source by id: a sync of just those ids.

        Same plan and runner as :meth:`sync` (ledger rows, dual-write during a
        migration). A document without text is reported in ``counts.skipped``
        and keeps its previous version. Callers serialize writes (the service
        holds a lock); SQLite serializes transactions anyway.
        """
        from embedops.sync.push import plan_upsert

        return self._syncs().push(source, [d.external_id for d in docs], lambda known: plan_upsert(source, docs, known))

    def delete_documents(self, source: str, external_ids: Sequence[str], *, missing_ok: bool = False) -> SyncResult:
        """Delete documents of a push source by id (tombstoned; their vectors leave every kept index).

        Raises :class:`NotFound` naming the ids that are not live documents, before
        changing anything, unless ``missing_ok``.
        """
        from embedops.sync.push import plan_delete

        return self._syncs().push(source, external_ids,
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

    def release(self, document: str, *, source: str | None = None, plan_only: bool = False) -> ReleasePlan:
        """Embed a quarantined document anyway (``embedops quarantine release``): a one-document sync that
        marks it released, with a ``curate.release`` ledger row in the same transaction as its vectors."""
        return self._syncs().release(document, source, plan_only)

    def _syncs(self) -> SyncDriver:
        """The sync driver over this workspace's parts, made per call: it sees a reloaded configuration."""
        return SyncDriver(self.settings, self.engine, self.store, self._targets(), self.lock, self.after_sync)

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
            return self._searches().search(query, vector, k, alias, index, filters, mode, fresh_only, recency_half_life)
        finally:
            self._queries_done()

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
        searches = self._searches()
        searches.check(queries, alias, index, filters)
        try:
            return searches.search_batch(queries, vectors, k, alias, index, filters, mode)
        finally:
            self._queries_done()

    def filter_notes(self, filters: Filters | None) -> list[str]:
        """Why a filtered search may have found nothing: metadata keys that no live document has."""
        return self._searches().filter_notes(filters)

    def _searches(self) -> SearchFront:
        """This workspace's searches, made per call: they see a reloaded configuration."""
        return SearchFront(self.searcher, self.engine, self.settings)

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
