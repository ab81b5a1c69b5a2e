"""Silent model change: does the live model still make the vectors an index holds?

An embedder name can keep its declared identity while its model changes: a
``sentence-transformers:<folder>`` whose weight files were replaced in place
(its revision is ``local``), a provider that re-deployed the same model name.
Nothing errors; new query vectors simply stop matching the stored ones. Two
measurements catch it:

* **sentinels**: the space's stored fingerprint (17 fixed texts, taken when the
  space was registered) against the live model's vectors for the same texts,
  cosine per text (>= ``fingerprint_min_cosine``, default 0.99999: float noise
  stays above 0.9999999, an int8 copy of the same weights falls to ~0.999). An
  asymmetric model is measured on both sides (the sentinels as documents and as
  queries), and the result names the side that changed (``changed``);
* **probe**: ``probe_size`` chunks of the index with the vectors stored for
  them, re-embedded live: cosine per chunk, and the agreement of each chunk's
  top-``probe_k`` neighbours in the index (live vector vs stored vector).

:func:`verify_model` runs the sentinel comparison before every sync and
before the first query of a process (cached per process and space) and raises
:class:`ModelChanged`; :func:`check_models` reports both measurements for
``embedops check``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.embedding.base import Embedder
from embedops.embedding.spend import Job, Line, Spend, embed_metered
from embedops.embedding.spend import record as record_spend
from embedops.embedding.verify import (  # noqa: F401  (re-exported: the check's public names)
    ModelChanged, forget_verifications, measure_model, model_changed, remember_check, stored_fingerprint, verify_model,
)
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.workspace import Workspace


# -- the full check (sentinels + probe) --------------------------------------------------------
@dataclass
class ModelCheck:
    """Sentinel and probe measurements of one index's live model."""

    index: str
    embedder: str
    space: str
    same: bool
    sentinel_min_cosine: float
    sentinel_mean_cosine: float
    probe: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    # The sentinel sides that changed ("documents", "queries"; the probe is document side), and the query
    # side's lowest cosine (None: a symmetric model, one side).
    changed: list[str] = field(default_factory=list)
    query_sentinel_min_cosine: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_models(ws: Workspace, *, record: bool = True, fresh: bool = False) -> list[ModelCheck]:
    """Measure every active index's live model against its stored fingerprint and probe.

    ``fresh`` loads each model from its files again instead of using the one this
    process already holds: a long-running monitor must see weights replaced on
    disk, which the next process to start would load.
    """
    with read_tx(ws.engine) as conn:
        indexes = ws.indexes(conn, "active")
    spends = {ix.id: Spend() for ix in indexes}
    out = [check_model(ws, ix, fresh=fresh, spend=spends[ix.id]) for ix in indexes]
    if record:
        with ws.engine.begin() as conn:
            ledger_id = write_ledger(conn, "monitor.fingerprint", indexes=[c.to_dict() for c in out])
            record_spend(conn, ledger_id, Job.new("fingerprint"),
                         [Line(ix.space_key, ix.embedder, spends[ix.id]) for ix in indexes])
    return out


def check_model(ws: Workspace, index: IndexInfo, *, fresh: bool = False, spend: Spend | None = None) -> ModelCheck:
    """Sentinels and probe of ``index``'s live model; what embedding them cost is added to ``spend``."""
    settings = ws.settings.monitor
    spend = spend if spend is not None else Spend()
    price = ws.settings.price(index.embedder)
    embedder = fresh_embedder(index.embedder, ws) if fresh else ws.embedder(index.embedder)
    if embedder.ref.key != index.space_key:
        why = f"embedder {index.embedder!r} now declares space {embedder.ref.key}"
        return ModelCheck(index.id, index.embedder, index.space_key, False, -1.0, -1.0, {}, why)
    sentinels = measure_model(ws.engine, index.space_key, embedder, settings.fingerprint_min_cosine, price, spend)
    if not fresh:
        remember_check(ws.engine, index.space_key, embedder, sentinels)
    probe = check_probe(ws, index, embedder, price, spend)
    probe_failed = []
    if probe and probe["min_cosine"] < settings.fingerprint_min_cosine:
        probe_failed.append(f"lowest probe cosine {probe['min_cosine']:.6f} < {settings.fingerprint_min_cosine}")
    if probe and probe["agreement"] < settings.probe_min_agreement:
        probe_failed.append(f"top-{probe['k']} neighbour agreement {probe['agreement']:.3f} < {settings.probe_min_agreement}")
    reasons = ([sentinels.reason] if not sentinels.same else []) + probe_failed
    changed: list[str] = list(sentinels.changed)
    if probe_failed and "documents" not in changed:
        changed.insert(0, "documents")  # the probe re-embeds stored chunks: the document side
    query_low = round(sentinels.query_min_cosine, 8) if sentinels.query_min_cosine is not None else None
    return ModelCheck(index.id, index.embedder, index.space_key, not reasons, round(sentinels.min_cosine, 8),
                      round(sentinels.mean_cosine, 8), probe, "; ".join(reasons), changed, query_low)


def fresh_embedder(name: str, ws: Workspace) -> Embedder:
    """Build the embedder ``name`` from its files (or its provider) now, bypassing the per-process registry cache."""
    from embedops.embedding.registry import build_embedder

    if name in ws.settings.embedders:  # a remote provider is asked anew by every call: no files to re-read
        return ws.embedder(name)
    return build_embedder(name, ws.settings.embedders)


def check_probe(ws: Workspace, index: IndexInfo, embedder: Embedder, price: float | None = 0.0,
                spend: Spend | None = None) -> dict[str, Any]:
    """Re-embed the index's probe chunks: cosine to their stored vectors and neighbour agreement."""
    hashes, texts, stored = ensure_probe(ws, index)
    if not texts:
        return {}
    k = ws.settings.monitor.probe_k
    live = np.asarray(embed_metered(embedder, texts, price, spend if spend is not None else Spend()), dtype=np.float32)
    cosines = _row_cosines(stored, live)
    agreement = []
    for old, new in zip(stored, live, strict=True):
        a = {h.seq for h in ws.store.search(index, _unit(old), k)}
        b = {h.seq for h in ws.store.search(index, _unit(new), k)}
        agreement.append(len(a & b) / max(1, len(a)))
    return {"size": len(texts), "k": k, "min_cosine": round(float(cosines.min()), 8),
            "mean_cosine": round(float(cosines.mean()), 8), "agreement": round(float(np.mean(agreement)), 4)}


def ensure_probe(ws: Workspace, index: IndexInfo) -> tuple[list[str], list[str], np.ndarray]:
    """The index's probe (content hashes, texts, stored vectors), sampled and stored on first use.

    The vectors are the ones stored at ingest, so a probe taken after a silent
    change still compares the live model with the original one.
    """
    p = schema.probes
    with read_tx(ws.engine) as conn:
        rows = conn.execute(sa.select(p.c.content_hash, p.c.text, p.c.vector).where(p.c.index_id == index.id)
                            .order_by(p.c.ordinal)).all()
    if not rows:
        rows = _take_probe(ws, index)
    vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows]) if rows else np.empty((0, index.dims), np.float32)
    return [r[0] for r in rows], [r[1] for r in rows], vectors


def _take_probe(ws: Workspace, index: IndexInfo) -> list[Any]:
    v, c, e = schema.vectors, schema.chunks, schema.embeddings
    # Content hashes are uniform: the lowest ones are a random, reproducible sample.
    picked = (sa.select(v.c.content_hash, sa.func.min(v.c.chunk_id).label("chunk_id")).where(v.c.index_id == index.id)
              .group_by(v.c.content_hash).order_by(v.c.content_hash).limit(ws.settings.monitor.probe_size).subquery())
    q = (sa.select(picked.c.content_hash, c.c.text, e.c.vector).join(c, c.c.id == picked.c.chunk_id)
         .join(e, sa.and_(e.c.space_key == index.space_key, e.c.content_hash == picked.c.content_hash))
         .order_by(picked.c.content_hash))
    now = time.time()
    with ws.engine.begin() as conn:
        if conn.execute(sa.select(sa.func.count()).where(schema.probes.c.index_id == index.id)).scalar_one():
            return list(conn.execute(sa.select(schema.probes.c.content_hash, schema.probes.c.text, schema.probes.c.vector)
                                     .where(schema.probes.c.index_id == index.id).order_by(schema.probes.c.ordinal)))
        rows = conn.execute(q).all()
        if rows:
            conn.execute(sa.insert(schema.probes), [
                {"index_id": index.id, "ordinal": i, "content_hash": h, "text": text, "vector": blob, "created_at": now}
                for i, (h, text, blob) in enumerate(rows)])
            write_ledger(conn, "monitor.probe", index=index.id, size=len(rows))
    return list(rows)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cosines: np.ndarray = np.einsum("ij,ij->i", a64, b64) / np.where(norms == 0, 1.0, norms)
    return cosines
