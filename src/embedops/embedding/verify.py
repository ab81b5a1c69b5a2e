"""Refusing a silently changed model before it mixes spaces (sentinel fingerprints, per process).

:func:`verify_model` compares an embedder's vectors for the sentinel texts with
the fingerprint stored when its space was registered, before every sync and
before a process's first query (the outcome is cached per process, catalog and
space), and raises :class:`ModelChanged`. An asymmetric space is compared on
both sides, the sentinels embedded as documents and as queries: a changed
query path (a dropped or different query prompt) leaves the stored vectors
valid and search broken, and the error says which side changed. A space
registered before the query side was measured (catalog schema 13) gets it at
its first verification whose document side matches (trust on first use, as the
probe). It takes the catalog engine and the threshold, nothing else: the
workspace calls it, it never calls back.
``monitor/fingerprint.py`` adds the probe measurements for ``embedops check``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.embedding.base import Embedder
from embedops.catalog.ledger import write_ledger
from embedops.embedding.fingerprint import (
    Fingerprint, FingerprintCheck, SpaceFingerprint, compare_spaces, from_bytes, take_fingerprints, to_bytes,
)
from embedops.embedding.spend import Spend
from embedops.errors import NotFound, SpaceMismatch
from embedops.vectors.base import IndexInfo


log = logging.getLogger(__name__)


class ModelChanged(SpaceMismatch):
    """The model behind an index's embedder no longer produces that index's vectors."""


# (catalog url, space key) → (embedder object checked, when, outcome). The
# registry keeps one model object per name and process, and a loaded model
# cannot change under the process, so one check per object is enough for search.
_VERIFIED: dict[tuple[str, str], tuple[Embedder, float, FingerprintCheck]] = {}
_LOCK = threading.Lock()


def forget_verifications() -> None:
    """Drop this process's cached model checks (the next sync or search re-checks)."""
    with _LOCK:
        _VERIFIED.clear()


def remember_fingerprint(engine: sa.Engine, space_key: str, embedder: Embedder) -> None:
    """``embedder`` was just fingerprinted to register ``space_key``: it is verified for this process."""
    remember_check(engine, space_key, embedder, FingerprintCheck(True, 1.0, 1.0))


def remember_check(engine: sa.Engine, space_key: str, embedder: Embedder, check: FingerprintCheck) -> None:
    """Cache ``check`` as this process's outcome for ``embedder`` in ``space_key``."""
    with _LOCK:
        _VERIFIED[(str(engine.url), space_key)] = (embedder, time.time(), check)


def stored_fingerprint(conn: sa.Connection, space_key: str) -> SpaceFingerprint:
    """The fingerprints stored for ``space_key``: documents, and queries for an asymmetric space (when taken)."""
    sp = schema.spaces
    row = conn.execute(sa.select(sp.c.fingerprint, sp.c.query_fingerprint).where(sp.c.key == space_key)).first()
    if row is None:
        raise NotFound(f"space {space_key} is not in the catalog", hint="`embedops status` lists spaces")
    queries = Fingerprint.from_vectors(from_bytes(row.query_fingerprint)) if row.query_fingerprint is not None else None
    return SpaceFingerprint(Fingerprint.from_vectors(from_bytes(row.fingerprint)), queries)


def measure_model(engine: sa.Engine, space_key: str, embedder: Embedder, min_cosine: float,
                  price: float | None = 0.0, spend: Spend | None = None) -> FingerprintCheck:
    """``embedder``'s sentinel vectors (both sides when asymmetric) against ``space_key``'s stored fingerprints.

    A missing query side is stored from this measurement when the document side matches."""
    with read_tx(engine) as conn:
        stored = stored_fingerprint(conn, space_key)
    live = take_fingerprints(embedder, price, spend)
    check = compare_spaces(stored, live, min_cosine)
    if check.same and stored.queries is None and live.queries is not None:
        store_query_fingerprint(engine, space_key, live.queries)
    return check


def store_query_fingerprint(engine: sa.Engine, space_key: str, queries: Fingerprint) -> None:
    """Record the query side of a space that has none yet (a ``space.query_fingerprint`` ledger row with it).

    This can run on the query path (a process's first search): a catalog refusing the write is logged, and
    the next verification tries again."""
    sp = schema.spaces
    try:
        with engine.begin() as conn:
            done = conn.execute(sa.update(sp).where(sp.c.key == space_key, sp.c.query_fingerprint.is_(None))
                                .values(query_fingerprint=to_bytes(queries.vectors))).rowcount
            if done:
                write_ledger(conn, "space.query_fingerprint", space=space_key, digest=queries.digest)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not store the query-side fingerprint of space %s yet: %s", space_key, exc)


def verify_model(
    engine: sa.Engine, index: IndexInfo, embedder: Embedder, min_cosine: float, *, since: float | None = None,
    price: float | None = 0.0, on_spend: Callable[[Spend], None] | None = None,
) -> FingerprintCheck:
    """Compare ``embedder``'s sentinel vectors with ``index``'s stored fingerprint; raise :class:`ModelChanged`.

    The outcome is cached per process, catalog and space; ``since`` (epoch
    seconds) forces a new comparison unless the cached one is at least that recent.
    ``on_spend`` gets what embedding the sentinels cost (at ``price``), when they were embedded.
    """
    key = (str(engine.url), index.space_key)
    with _LOCK:
        entry = _VERIFIED.get(key)
    if entry is not None and entry[0] is embedder and (since is None or entry[1] >= since):
        check = entry[2]
    else:
        spend = Spend()
        check = measure_model(engine, index.space_key, embedder, min_cosine, price, spend)
        with _LOCK:
            _VERIFIED[key] = (embedder, time.time(), check)
        if on_spend is not None:
            on_spend(spend)
    if not check.same:
        raise model_changed(index, check)
    return check


def model_changed(index: IndexInfo, check: FingerprintCheck) -> ModelChanged:
    return ModelChanged(
        f"the model behind embedder {index.embedder!r} changed: it no longer makes the vectors of index {index.id}"
        f" (space {index.space_key}; {check.reason}); refusing to embed with it",
        hint="restore the original model files behind this name; or give the new model a name of its own (e.g. copy"
        " it to a new folder) and move to it with `embedops migrate plan --to <new name>`. `embedops check --only"
        " fingerprint` shows the measurements",
        index=index.id,
        min_cosine=check.min_cosine,
        changed=list(check.changed),
    )
