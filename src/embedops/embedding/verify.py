"""Refusing a silently changed model before it mixes spaces (sentinel fingerprints, per process).

:func:`verify_model` compares an embedder's vectors for the sentinel texts with
the fingerprint stored when its space was registered, before every sync and
before a process's first query (the outcome is cached per process, catalog and
space), and raises :class:`ModelChanged`. It takes the catalog engine and the
threshold, nothing else: the workspace calls it, it never calls back.
``monitor/fingerprint.py`` adds the probe measurements for ``embedops check``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.embedding.base import Embedder
from embedops.embedding.fingerprint import Fingerprint, FingerprintCheck, compare_fingerprints, from_bytes, take_fingerprint
from embedops.embedding.spend import Spend
from embedops.errors import NotFound, SpaceMismatch
from embedops.vectors.base import IndexInfo


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


def stored_fingerprint(conn: sa.Connection, space_key: str) -> Fingerprint:
    blob = conn.execute(sa.select(schema.spaces.c.fingerprint).where(schema.spaces.c.key == space_key)).scalar()
    if blob is None:
        raise NotFound(f"space {space_key} is not in the catalog", hint="`embedops status` lists spaces")
    return Fingerprint.from_vectors(from_bytes(blob))


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
        with read_tx(engine) as conn:
            stored = stored_fingerprint(conn, index.space_key)
        spend = Spend()
        check = compare_fingerprints(stored, take_fingerprint(embedder, price, spend), min_cosine)
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
    )
