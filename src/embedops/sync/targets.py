"""The indexes a sync keeps current, each with the chunker and embedder that fill it (a :class:`Target`).

The first sync creates the configured index and points the alias at it. After
that, embedops.toml must name an embedder and chunker that the catalog keeps
current: a sync never re-embeds in place (another model is a migration). The
catalog writes that make an index (its space with the model's fingerprint, its
chunker, its alias) are here too; migrations make their shadow index with them.

:class:`Targets` is given the workspace's settings, catalog engine, store and
embedder lookups (``Workspace`` builds one per call); it never imports the
workspace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from embedops.catalog import queries, schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.chunking.base import Chunker
from embedops.config import CONFIG_NAME, Settings
from embedops.embedding.base import Embedder, TokenCounter, TokenSource
from embedops.embedding.spend import Job, Line, Spend
from embedops.embedding.spend import record as record_spend
from embedops.errors import ConfigChanged, SpaceMismatch
from embedops.execute import Model
from embedops.sync.run import Target
from embedops.vectors.base import IndexInfo, VectorStore


@dataclass(frozen=True)
class Targets:
    """A workspace's indexes as sync targets: ``embedder`` loads a model by name, ``embedder_for`` loads an
    index's own (checked against its space)."""

    settings: Settings
    engine: sa.Engine
    store: VectorStore
    embedder: Callable[[str], Embedder]
    embedder_for: Callable[[IndexInfo], Embedder]

    def target(self, index: IndexInfo) -> Target:
        embedder = self.embedder_for(index)
        with self.engine.connect() as conn:
            ch = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
        chunker = model_chunker(ch.name, ch.params, embedder, version=ch.version)
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

    def configured(self) -> tuple[Embedder, Chunker]:
        """The embedder and chunker embedops.toml names."""
        embedder = self.embedder(self.settings.embedder)
        chunker = model_chunker(self.settings.chunker, self.settings.chunker_params, embedder)
        return embedder, chunker

    def create_index(self, conn: sa.Connection, embedder_name: str, embedder: Embedder, chunker: Chunker,
                     storage: str = "f32") -> IndexInfo:
        """Register the space and chunker if new, and a new empty index for the pair, held as ``storage``
        (a storage variant's key, vectors/storage.py)."""
        from embedops.embedding.fingerprint import take_fingerprints, to_bytes
        from embedops.embedding.verify import remember_fingerprint

        sp, ch, ix = schema.spaces, schema.chunkers, schema.indexes
        key = embedder.ref.key
        spend = Spend()
        if conn.execute(sa.select(sp.c.key).where(sp.c.key == key)).scalar() is None:
            fp = take_fingerprints(embedder, self.settings.price(embedder_name), spend)  # both sides if asymmetric
            remember_fingerprint(self.engine, key, embedder)
            conn.execute(sa.insert(sp).values(
                key=key, embedder=embedder_name, ref=embedder.ref.to_dict(), dims=embedder.ref.dims,
                fingerprint=to_bytes(fp.documents.vectors), fingerprint_digest=fp.documents.digest,
                query_fingerprint=to_bytes(fp.queries.vectors) if fp.queries is not None else None,
                created_at=time.time()))
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

    def kept(self, create: bool) -> list[Target]:
        """Indexes every sync keeps current; the first sync creates the configured one."""
        with self.engine.connect() as conn:
            active = queries.indexes(conn, "active")
            alias = conn.execute(sa.select(schema.aliases.c.index_id).where(schema.aliases.c.name == self.settings.alias)).scalar()
        if not active:
            embedder, chunker = self.configured()
            if not create:
                ghost = IndexInfo("(new)", embedder.ref.key, chunker.ref.key, "planned", embedder.ref.dims, self.settings.embedder,
                                  self.settings.first_index_storage)
                return [Target(ghost, chunker, embedder, self.settings.price(self.settings.embedder))]
            with self.engine.begin() as conn:
                index = self.create_index(conn, self.settings.embedder, embedder, chunker, self.settings.first_index_storage)
                set_alias(conn, self.settings.alias, index.id)
            return [Target(index, chunker, embedder, self.settings.price(self.settings.embedder))]
        serving = next((ix for ix in active if ix.id == alias), active[0])
        self._check_config(serving, active)
        return [self.target(ix) for ix in active]

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
        wanted = self.settings.storage
        if wanted is not None and all(ix.storage != wanted for ix in matching):
            raise ConfigChanged(
                f"{CONFIG_NAME} asks for storage {wanted!r}, but alias {self.settings.alias!r} serves index {serving.id}"
                f" held as {serving.storage!r}; a sync never rebuilds an index in place",
                hint=f"restore storage = {serving.storage!r} in {CONFIG_NAME} (or remove it), then plan the change as a"
                " migration: `embedops migrate plan --storage PRECISION [--rescore N] [--dims N]` (docs/capacity.md)",
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
        return model_chunker(self.settings.chunker, self.settings.chunker_params, embedder, version).ref.key


def model_chunker(name: str, params: dict[str, Any], tokens: TokenSource, version: str | None = None) -> Chunker:
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


def set_alias(conn: sa.Connection, name: str, index_id: str) -> str | None:
    """Point alias ``name`` at ``index_id`` (a single-row write, with its ledger row); the index it served."""
    a = schema.aliases
    old = conn.execute(sa.select(a.c.index_id).where(a.c.name == name)).scalar()
    if old is None:
        conn.execute(sa.insert(a).values(name=name, index_id=index_id, updated_at=time.time()))
    else:
        result = conn.execute(sa.update(a).where(a.c.name == name).values(index_id=index_id, updated_at=time.time()))
        assert result.rowcount == 1
    write_ledger(conn, "alias.set", alias=name, index=index_id, previous=old)
    return old


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "index"
