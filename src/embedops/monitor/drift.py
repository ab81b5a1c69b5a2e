"""Distribution drift: do recent ingests and recent queries look like the reference?

Each index keeps two reference samples (``drift_sample`` vectors each):

* **corpus**: one vector per document (its first chunk: chunks of one document
  are not independent samples), from the documents present at the end of the
  index's first sync (the sync pins that time; the sample is drawn at the first
  check); later ingests are "recent";
* **queries**: logged query vectors (``[monitor] query_log``) up to the first
  drift check that finds at least ``drift_min_samples`` of them; later queries
  are "recent".

``embedops monitor reference`` re-takes both from what exists now (after an
intended change of corpus or traffic). Recent rows are the newest
``drift_sample`` within ``drift_window``. Compared overall, per source and per
language. A document's language is the tag stored at ingest (its first chunk's
``lang``, else its curation decision's), read with the sample in the same query
and never detected again; only a document synced while curation was off (no tag)
is detected from its text. Queries are not stored: their texts are tagged with
the ingest's detector (``[curate] language_candidates``), so query and document
languages are comparable; a query logged without text is ``unknown``:

* centroid shift: ``1 - cos(mean(reference), mean(recent))``;
* mean pairwise cosine similarity within each sample (a collapse or a spread);
* MMD² (unbiased, Gaussian kernel, median-distance bandwidth) with a
  permutation p-value.

A stream drifts when ``p < drift_alpha`` **and** ``MMD² >= drift_min_mmd``:
the p-value says the difference is real, the effect floor that it is large
enough to matter (with hundreds of samples a trivial shift is "significant").

>>> rng = np.random.default_rng(0)
>>> a, b = rng.normal(size=(80, 8)), rng.normal(size=(80, 8)) + 1.5
>>> compare_samples(a, a[::-1], permutations=99, alpha=0.05).drifted, compare_samples(a, b, permutations=99, alpha=0.05).drifted
(False, True)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import sqlalchemy as sa

from embedops.catalog import schema
from embedops.catalog.curation import language_of, stored_language
from embedops.catalog.db import read_tx
from embedops.catalog.ledger import write_ledger
from embedops.curate.language import UNKNOWN, LanguageDetector
from embedops.monitor.querylog import logged_queries
from embedops.vectors.base import IndexInfo

if TYPE_CHECKING:
    from embedops.workspace import Workspace

Stream = Literal["corpus", "queries"]
STREAMS: tuple[Stream, ...] = ("corpus", "queries")


# -- statistics (pure) --------------------------------------------------------------------
@dataclass(frozen=True)
class DriftStats:
    n_reference: int
    n_recent: int
    centroid_shift: float
    reference_similarity: float
    recent_similarity: float
    mmd2: float
    p_value: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def centroid_shift(x: np.ndarray, y: np.ndarray) -> float:
    """``1 - cos`` between the two samples' mean directions (0: same direction)."""
    a, b = _unit_rows(x).mean(axis=0), _unit_rows(y).mean(axis=0)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / denom if denom > 0 else 1.0


def mean_pairwise_similarity(x: np.ndarray) -> float:
    """Mean cosine similarity over distinct pairs of rows."""
    u = _unit_rows(x)
    n = len(u)
    if n < 2:
        return 1.0
    total = float(np.square(u.sum(axis=0)).sum())  # Σ_ij cos, diagonal included (n ones)
    return (total - n) / (n * (n - 1))


def mmd_test(x: np.ndarray, y: np.ndarray, *, permutations: int = 500, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² between samples ``x`` and ``y`` and its permutation p-value.

    Gaussian kernel ``exp(-d² / median(d²))`` over the pooled sample. Every
    permutation is scored from one matrix product, so 500 permutations of 1,000
    rows take well under a second.
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("each sample needs at least 2 rows")
    pooled = np.vstack([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    sq = np.square(pooled).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    off = d2[np.triu_indices(n + m, k=1)]
    scale = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    kernel = np.exp(-d2 / scale)
    rng = np.random.default_rng(seed)
    labels = np.zeros((n + m, permutations + 1))
    labels[:n, 0] = 1.0
    for j in range(1, permutations + 1):
        labels[rng.permutation(n + m)[:n], j] = 1.0
    stats = _mmd_columns(kernel, labels, n, m)
    observed = float(stats[0])
    p = (1.0 + float(np.sum(stats[1:] >= observed - 1e-12))) / (permutations + 1.0)
    return observed, p


def _mmd_columns(kernel: np.ndarray, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD² for each labelling column (1 = first sample); kernel diagonal is 1."""
    row_sums = kernel.sum(axis=1)
    total = float(row_sums.sum())
    kl = kernel @ labels
    xx = np.einsum("ij,ij->j", labels, kl)  # Σ_{x,x'} k, diagonal included
    xr = labels.T @ row_sums  # Σ_x Σ_all k
    xy = xr - xx
    yy = total - 2.0 * xr + xx
    stats: np.ndarray = (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)
    return stats


def compare_samples(
    reference: np.ndarray, recent: np.ndarray, *, permutations: int = 500, alpha: float = 0.01, min_mmd: float = 0.02,
    seed: int = 0,
) -> DriftStats:
    """Every drift statistic of ``recent`` against ``reference`` (rows are vectors)."""
    mmd2, p = mmd_test(reference, recent, permutations=permutations, seed=seed)
    return DriftStats(
        n_reference=len(reference), n_recent=len(recent),
        centroid_shift=round(centroid_shift(reference, recent), 6),
        reference_similarity=round(mean_pairwise_similarity(reference), 6),
        recent_similarity=round(mean_pairwise_similarity(recent), 6),
        mmd2=round(mmd2, 6), p_value=round(p, 6), drifted=bool(p < alpha and mmd2 >= min_mmd),
    )


# -- samples from the catalog ------------------------------------------------------------------
@dataclass
class Sample:
    vectors: np.ndarray
    labels: list[tuple[str, str]]  # (source, language) per row

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, axis: int, value: str) -> Sample:
        keep = [i for i, label in enumerate(self.labels) if label[axis] == value]
        return Sample(self.vectors[keep], [self.labels[i] for i in keep])


@dataclass
class Reference:
    index_id: str
    stream: Stream
    created_at: float
    cutoff: float
    sample: Sample


@dataclass
class StreamDrift:
    """One index's corpus or query stream against its reference."""

    index: str
    stream: Stream
    status: Literal["ok", "drift", "insufficient", "no reference"]
    reference: dict[str, Any] = field(default_factory=dict)
    overall: DriftStats | None = None
    segments: dict[str, DriftStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "stream": self.stream, "status": self.status, "reference": self.reference,
                "overall": self.overall.to_dict() if self.overall else None,
                "segments": {k: v.to_dict() for k, v in self.segments.items()},
                "drifted_segments": sorted(k for k, v in self.segments.items() if v.drifted)}


def _corpus_query(index: IndexInfo) -> sa.Select[Any]:
    v, c, d, s, e = schema.vectors, schema.chunks, schema.documents, schema.sources, schema.embeddings
    return (
        sa.select(e.c.vector, s.c.name, c.c.text, c.c.metadata.label("chunk_metadata"), language_of().label("tag"))
        .select_from(v).join(c, c.c.id == v.c.chunk_id).join(d, d.c.id == c.c.document_id)
        .join(s, s.c.id == d.c.source_id)
        .join(e, sa.and_(e.c.space_key == v.c.space_key, e.c.content_hash == v.c.content_hash))
        .where(v.c.index_id == index.id, c.c.ordinal == 0, d.c.deleted_at.is_(None))
    )


def _vectors(rows: Sequence[Any], dims: int) -> np.ndarray:
    if not rows:
        return np.empty((0, dims), np.float32)
    return np.stack([np.frombuffer(r[0], dtype=np.float32) for r in rows])


def _corpus_sample(rows: Sequence[Any], dims: int, detector: LanguageDetector) -> Sample:
    """Rows of :func:`_corpus_query` with their stored language tags; only untagged documents are detected."""
    labels = [stored_language(_json(r.chunk_metadata), r.tag) for r in rows]
    untagged = [i for i, label in enumerate(labels) if label is None]
    for i, found in zip(untagged, detector.documents([rows[i].text for i in untagged]) if untagged else [], strict=True):
        labels[i] = found
    return Sample(_vectors(rows, dims), [(str(r.name), str(label)) for r, label in zip(rows, labels, strict=True)])


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else (value or {})


def corpus_reference_rows(conn: sa.Connection, index: IndexInfo, cutoff: float, n: int,
                          detector: LanguageDetector) -> Sample:
    # Content hashes are uniform: ordering by them is a reproducible random sample.
    q = _corpus_query(index).where(schema.vectors.c.embedded_at <= cutoff).order_by(schema.vectors.c.content_hash).limit(n)
    return _corpus_sample(conn.execute(q).all(), index.dims, detector)


def corpus_recent_rows(conn: sa.Connection, index: IndexInfo, after: float, since: float, n: int,
                       detector: LanguageDetector) -> Sample:
    v = schema.vectors
    q = _corpus_query(index).where(v.c.embedded_at > after, v.c.embedded_at >= since).order_by(v.c.embedded_at.desc(), v.c.seq.desc()).limit(n)
    return _corpus_sample(conn.execute(q).all(), index.dims, detector)


def query_rows(conn: sa.Connection, index: IndexInfo, *, after: float | None, until: float | None, n: int,
               detector: LanguageDetector) -> Sample:
    """Logged queries, their texts tagged together (a set) by the ingest's detector."""
    logged = logged_queries(conn, index.space_key, after=after, until=until, limit=n)
    texts = [t for t in logged.texts if t and t.strip()]
    found = iter(detector.queries(texts) if texts else [])
    labels = [next(found) if t and t.strip() else UNKNOWN for t in logged.texts]
    return Sample(np.asarray(logged.vectors, np.float32).reshape(-1, index.dims), [("queries", x) for x in labels])


def first_sync_end(conn: sa.Connection, index_created_at: float) -> float | None:
    """When the first sync after the index's creation finished (its first ``sync.source`` row)."""
    lg = schema.ledger
    q = sa.select(sa.func.min(lg.c.at)).where(lg.c.kind == "sync.source", lg.c.at >= index_created_at)
    value = conn.execute(q).scalar()
    return float(value) if value is not None else None


# -- references --------------------------------------------------------------------------------
def _pinned_cutoff(conn: sa.Connection, index: IndexInfo) -> float | None:
    r = schema.drift_references
    return conn.execute(sa.select(r.c.cutoff).where(r.c.index_id == index.id, r.c.stream == "corpus")).scalar()


def load_reference(conn: sa.Connection, index: IndexInfo, stream: Stream) -> Reference | None:
    """The stored reference; None when there is none or only a pinned time (no sample yet)."""
    r = schema.drift_references
    row = conn.execute(sa.select(r).where(r.c.index_id == index.id, r.c.stream == stream)).first()
    if row is None or not row.vectors:
        return None
    vectors = np.frombuffer(row.vectors, dtype=np.float32).reshape(-1, index.dims)
    return Reference(index.id, stream, row.created_at, row.cutoff, Sample(vectors, [tuple(x) for x in row.labels]))


def take_reference(ws: Workspace, index: IndexInfo, stream: Stream, *, now: float | None = None, replace: bool = False) -> Reference | None:
    """Store ``stream``'s reference sample for ``index`` (None when there is too little data yet).

    Without ``replace`` the corpus reference is what the first sync ingested and
    the query reference is every query logged so far; ``replace`` re-takes both
    from everything present now.
    """
    settings = ws.settings.monitor
    now = now or time.time()
    with read_tx(ws.engine) as conn:
        cutoff = now if replace else _default_cutoff(conn, index, stream, now)
        detector = LanguageDetector.of(ws.settings.curate)
        sample = _reference_rows(conn, index, stream, cutoff, settings.drift_sample, detector)
        if len(sample) < settings.drift_min_samples and cutoff < now:
            # e.g. a shadow index filled by a backfill after its first sync: take what exists now
            cutoff = now
            sample = _reference_rows(conn, index, stream, cutoff, settings.drift_sample, detector)
    if len(sample) < settings.drift_min_samples:
        return None
    _store_reference(ws, index, stream, now, cutoff, sample, replace)
    return Reference(index.id, stream, now, cutoff, sample)


def _reference_rows(conn: sa.Connection, index: IndexInfo, stream: Stream, cutoff: float, n: int,
                    detector: LanguageDetector) -> Sample:
    if stream == "corpus":
        return corpus_reference_rows(conn, index, cutoff, n, detector)
    return query_rows(conn, index, after=None, until=cutoff, n=n, detector=detector)


def _default_cutoff(conn: sa.Connection, index: IndexInfo, stream: Stream, now: float) -> float:
    if stream == "queries":
        return now
    pinned = _pinned_cutoff(conn, index)
    if pinned is not None:
        return float(pinned)
    created = conn.execute(sa.select(schema.indexes.c.created_at).where(schema.indexes.c.id == index.id)).scalar_one()
    return first_sync_end(conn, float(created)) or now


def _store_reference(ws: Workspace, index: IndexInfo, stream: Stream, now: float, cutoff: float, sample: Sample, replace: bool) -> None:
    r = schema.drift_references
    values = {"created_at": now, "cutoff": cutoff, "vectors": np.ascontiguousarray(sample.vectors, np.float32).tobytes(),
              "labels": [list(x) for x in sample.labels]}
    with ws.engine.begin() as conn:
        exists = conn.execute(sa.select(r.c.vectors).where(r.c.index_id == index.id, r.c.stream == stream)).first()
        if exists is not None and exists[0] and not replace:
            return  # another process took it first
        if exists is not None:
            assert conn.execute(sa.update(r).where(r.c.index_id == index.id, r.c.stream == stream).values(**values)).rowcount == 1
        else:
            conn.execute(sa.insert(r).values(index_id=index.id, stream=stream, **values))
        write_ledger(conn, "monitor.reference", index=index.id, stream=stream, rows=len(sample), cutoff=cutoff,
                     replaced=bool(exists is not None and exists[0]))


def retake_references(ws: Workspace, index: str | None = None) -> list[dict[str, Any]]:
    """Re-take every reference (or one index's) from what exists now: `embedops monitor reference`."""
    with read_tx(ws.engine) as conn:
        indexes = [ix for ix in ws.indexes(conn, "active") if index is None or ix.id == index]
    if index is not None and not indexes:
        from embedops.errors import NotFound

        raise NotFound(f"no active index {index!r}", hint="`embedops status` lists indexes")
    out = []
    now = time.time()
    for ix in indexes:
        for stream in STREAMS:
            ref = take_reference(ws, ix, stream, now=now, replace=True)
            out.append({"index": ix.id, "stream": stream, "rows": len(ref.sample) if ref else 0,
                        "taken": ref is not None})
    return out


# -- the check -----------------------------------------------------------------------------------
def check_drift(ws: Workspace, *, record: bool = True, now: float | None = None) -> list[StreamDrift]:
    """Compare each active index's recent ingests and queries with their references."""
    now = now or time.time()
    with read_tx(ws.engine) as conn:
        indexes = ws.indexes(conn, "active")
    out = [stream_drift(ws, ix, stream, now) for ix in indexes for stream in STREAMS]
    if record:
        with ws.engine.begin() as conn:
            write_ledger(conn, "monitor.drift", streams=[d.to_dict() for d in out])
    return out


def stream_drift(ws: Workspace, index: IndexInfo, stream: Stream, now: float) -> StreamDrift:
    settings = ws.settings.monitor
    with read_tx(ws.engine) as conn:
        reference = load_reference(conn, index, stream)
    if reference is None:
        reference = take_reference(ws, index, stream, now=now)
        if reference is None:
            return StreamDrift(index.id, stream, "no reference")
    since = now - settings.seconds("drift_window")
    detector = LanguageDetector.of(ws.settings.curate)
    with read_tx(ws.engine) as conn:
        if stream == "corpus":
            recent = corpus_recent_rows(conn, index, reference.cutoff, since, settings.drift_sample, detector)
        else:
            recent = query_rows(conn, index, after=max(reference.cutoff, since), until=None, n=settings.drift_sample,
                                detector=detector)
    info = {"created_at": reference.created_at, "cutoff": reference.cutoff, "rows": len(reference.sample)}
    if len(recent) < settings.drift_min_samples:
        return StreamDrift(index.id, stream, "insufficient", info)
    result = StreamDrift(index.id, stream, "ok", info, _compare(ws, reference.sample, recent))
    result.segments = _segments(ws, reference.sample, recent, stream)
    drifted = (result.overall is not None and result.overall.drifted) or any(s.drifted for s in result.segments.values())
    result.status = "drift" if drifted else "ok"
    return result


def _compare(ws: Workspace, reference: Sample, recent: Sample) -> DriftStats:
    s = ws.settings.monitor
    return compare_samples(reference.vectors, recent.vectors, permutations=s.drift_permutations, alpha=s.drift_alpha,
                           min_mmd=s.drift_min_mmd)


def _segments(ws: Workspace, reference: Sample, recent: Sample, stream: Stream) -> dict[str, DriftStats]:
    """Per source (corpus only) and per language: each recent segment against the reference's
    same segment when it has enough rows, else against the whole reference (a new source or language)."""
    minimum = ws.settings.monitor.drift_min_samples
    out: dict[str, DriftStats] = {}
    axes = [(0, "source"), (1, "language")] if stream == "corpus" else [(1, "language")]
    for axis, name in axes:
        values = sorted({label[axis] for label in recent.labels})
        if len(values) < 2 and values and sum(1 for x in reference.labels if x[axis] == values[0]) == len(reference):
            continue  # one segment, the same as the reference's only one: that is the overall test
        for value in values:
            part = recent.where(axis, value)
            if len(part) < minimum:
                continue
            base = reference.where(axis, value)
            out[f"{name}={value}"] = _compare(ws, base if len(base) >= minimum else reference, part)
    return out
