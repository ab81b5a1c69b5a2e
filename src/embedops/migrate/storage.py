"""Storage migrations: the target variant's warnings, its PCA fit, and same-space agreement queries.

A storage change (precision, dimensions, rescoring) keeps the space and the
chunker, so everything it needs is in the catalog already: the full-precision
vectors it is built from, fitted on, and compared with.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.embedding.deferred import DeferredEmbedder
from embedops.sync.run import Target
from embedops.vectors.base import IndexInfo
from embedops.vectors.storage import StorageSpec

if TYPE_CHECKING:
    import numpy as np
    from embedops.migrate.run import MigrationHost

PCA_SAMPLE = 100_000  # vectors a PCA is fitted on, at most (evenly spaced over the index)


def unfitted(spec: StorageSpec) -> StorageSpec:
    return replace(spec, projection=None)


def storage_warnings(spec: StorageSpec, extra: dict[str, Any], dims: int) -> list[str]:
    """What a plan should say about a reduction: truncating a model not trained for it loses more."""
    if not spec.reduces or spec.reduction != "truncate":
        return []
    trained = [int(d) for d in extra.get("matryoshka_dims") or []]
    if not trained:
        return [f"truncation to {spec.dims} of {dims} dimensions: this model is not Matryoshka-trained, so its"
                " first dimensions do not carry most of the meaning; measure with `embedops capacity` first, or"
                " use --pca"]
    if spec.dims not in trained:
        return [f"truncation to {spec.dims} dimensions: this model was trained for {', '.join(map(str, trained))}"]
    return []


def fit_projection(conn: sa.Connection, source: IndexInfo, spec: StorageSpec, space_key: str) -> str:
    """Fit a PCA on (a sample of) the source index's stored vectors; store it; its id."""
    import numpy as np
    from embedops.vectors.storage import Projection

    assert spec.dims is not None
    v, e = schema.vectors, schema.embeddings
    q = (sa.select(e.c.vector).join(v, sa.and_(v.c.space_key == e.c.space_key, v.c.content_hash == e.c.content_hash))
         .where(v.c.index_id == source.id).order_by(v.c.seq))
    blobs = conn.execute(q).scalars().all()
    step = max(1, len(blobs) // PCA_SAMPLE)
    sample = np.frombuffer(b"".join(blobs[::step]), dtype=np.float32).reshape(-1, source.dims)
    fitted = Projection.fit(sample, spec.dims)
    p = schema.projections
    if conn.execute(sa.select(p.c.id).where(p.c.id == fitted.id)).first() is None:
        mean, components = fitted.to_bytes()
        conn.execute(sa.insert(p).values(id=fitted.id, space_key=space_key, dims=spec.dims, mean=mean,
                                         components=components, fitted_on=len(sample), created_at=time.time()))
        write_ledger(conn, "projection.fit", projection=fitted.id, space=space_key, dims=spec.dims, vectors=len(sample))
    return fitted.id


def sample_chunk_vectors(engine: sa.Engine, index: IndexInfo, n: int) -> np.ndarray:
    """``n`` of the index's stored chunk vectors, picked at random (seeded) among its rows."""
    import numpy as np
    v, e = schema.vectors, schema.embeddings
    with engine.connect() as conn:
        seqs = conn.execute(sa.select(v.c.seq).where(v.c.index_id == index.id).order_by(v.c.seq)).scalars().all()
        picked = sorted(random.Random(0).sample(list(seqs), min(n, len(seqs))))
        q = (sa.select(e.c.vector).join(v, sa.and_(v.c.space_key == e.c.space_key, v.c.content_hash == e.c.content_hash))
             .where(v.c.seq.in_(picked)).order_by(v.c.seq))
        blobs = conn.execute(q).scalars().all()
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, index.dims).copy()


def deferred_target(host: MigrationHost, index: IndexInfo) -> Target:
    """``index``'s target with its chunker (from the catalog, counting the space's tokens without weights) and an
    embedder that loads the model only if something has to be embedded."""
    tokens = host.token_source(index.embedder)
    with host.engine.connect() as conn:
        row = conn.execute(sa.select(schema.chunkers).where(schema.chunkers.c.key == index.chunker_key)).one()
    chunker = host.make_chunker(row.name, row.params, tokens)
    if chunker.ref.key != index.chunker_key:
        return host.target(index)  # let the workspace explain the mismatch
    return Target(index, chunker, DeferredEmbedder(tokens, lambda: host.target(index).embedder),
                  host.settings.price(index.embedder))
