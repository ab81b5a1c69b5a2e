"""``embedops adopt``: take over vectors embedded elsewhere, after proving they are this embedder's.

1. The named embedder must be the space the workspace embeds in (else refused:
   adopting other vectors would mix spaces in one index).
2. A random sample of rows is re-embedded: each row's document is chunked by the
   index's chunker; a row that stays one chunk is compared with its stored vector.
   Every compared cosine must reach ``min_cosine`` (default 0.999), or nothing is
   adopted and the measured similarity is printed: this catches another model, a
   provider that changed its model silently, and vectors gone stale.
3. The rows become a source (a ``sql`` source over the table, a ``jsonl`` or
   ``parquet`` source over the file) and each one-chunk row's vector is stored as the embedding of
   that chunk's content hash in the space (``embeddings``), marked in
   ``adopted_embeddings``, in batches with their ledger rows.
4. An ordinary sync of the source then writes the vector rows with their
   lineage tags. It embeds only what could not be adopted (rows the chunker
   splits, bad vectors); later syncs re-embed a document only when its text changes.

Killed at any point, running the command again reaches the same state: stored
embeddings are kept (insert-or-ignore) and the sync resumes like any other.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from embedops.adopt.check import (
    DEFAULT_MIN_COSINE,
    DEFAULT_SAMPLE,
    SampleCheck,
    as_vector,
    decide,
    dims_of,
    vector_problem,
)
from embedops.catalog import schema
from embedops.catalog.ledger import write_ledger
from embedops.errors import AdoptRefused, ConfigError
from embedops.sources.base import Document, Skipped, SourceItem
from embedops.sync.run import Target, embed_texts

if TYPE_CHECKING:
    from embedops.workspace import Workspace

BATCH = 1000
PROBLEMS_SHOWN = 20  # rows not adopted whose reason a result names (the counts cover them all)
Row = tuple[SourceItem, Any]


@dataclass
class AdoptResult:
    """What adoption found (``plan``) or did."""

    source: str
    origin: str
    embedder: str
    space: str
    chunker: str
    plan: bool
    check: SampleCheck
    rows: int = 0  # rows read when applying
    adopted: int = 0  # vectors taken over
    present: int = 0  # texts this space already had an embedding for (kept as they were)
    not_adopted: dict[str, int] = field(default_factory=dict)  # reason → rows left for the sync to embed
    problems: list[str] = field(default_factory=list)  # the first rows not adopted: where, why, and the fix
    sync: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "check"}
        out["check"] = self.check.to_dict()
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass(frozen=True)
class AdoptInput:
    """Where the vectors are: a source kind, its path (files) and options, and the vector column or field."""

    kind: str  # "sql", "jsonl" or "parquet"
    vector: str
    options: dict[str, Any]
    path: Path | None = None

    def origin(self) -> str:
        """How the ledger names the rows' origin (never a URL: it may hold credentials)."""
        if self.kind == "sql":
            where = self.options.get("table") or "query"
            return f"sql {where} ({self.vector})"
        return f"{self.kind} {self.path} ({self.vector})"


def adopt(ws: Workspace, name: str, given: AdoptInput, *, embedder: str, min_cosine: float = DEFAULT_MIN_COSINE,
          sample: int = DEFAULT_SAMPLE, seed: int | None = None, plan_only: bool = False) -> AdoptResult:
    """Check a sample, then adopt every usable vector and sync the new source (see the module docstring)."""
    started = time.perf_counter()
    space = _check_space(ws, embedder)
    source = _source(ws, name, given)
    if plan_only:
        emb, chunker = ws.configured_target()
        target = None
    else:
        target = _target(ws, space)
        emb, chunker = target.embedder, target.chunker
    check = _sample_check(source, given, emb, chunker, sample, min_cosine, seed)
    result = AdoptResult(name, given.origin(), embedder, space, chunker.ref.key, plan_only, check)
    if plan_only:
        result.seconds = time.perf_counter() - started
        return result
    if not check.passed:
        raise _refusal(name, embedder, check)
    assert target is not None
    if name not in ws.settings.sources:
        ws.add_source(name, given.path, given.kind, **given.options)
    with ws.lock("sync"):
        _store(ws, target, name, given, _rows(source, given), result)
    result.sync = ws.sync(source=name).to_dict()
    result.seconds = time.perf_counter() - started
    return result


# -- checks --------------------------------------------------------------------------------
def _check_space(ws: Workspace, embedder: str) -> str:
    from embedops.embedding.registry import describe_embedder

    wanted, configured = describe_embedder(embedder), describe_embedder(ws.settings.embedder)
    if wanted.key != configured.key:
        raise AdoptRefused(
            f"the workspace embeds with {ws.settings.embedder!r} (space {configured.key}); vectors made by"
            f" {embedder!r} (space {wanted.key}) would be another space in its index",
            hint=f"adopt them into a workspace of that model: `embedops init DIR --embedder {embedder} --chunker whole`",
            embedder=embedder, space=wanted.key)
    return wanted.key


def _source(ws: Workspace, name: str, given: AdoptInput) -> Any:
    """The source that will keep the rows synced (checked now; registered only when adoption is applied)."""
    from embedops.sources.registry import make_source

    existing = ws.settings.sources.get(name)
    if existing is not None and (existing.kind != given.kind or existing.options != given.options):
        raise ConfigError(f"source {name!r} already exists with other settings ({existing.kind}, {existing.options})",
                          hint="choose another name, or give the same options to resume an adoption", source=name)
    source = make_source(name, given.kind, given.path, **given.options)
    source.check()
    return source


def _target(ws: Workspace, space: str) -> Target:
    """The kept index of the adopted space (the first sync's index is created here)."""
    for target in ws.kept_targets():
        if target.index.space_key == space:
            return target
    raise AdoptRefused(f"no index of space {space} is kept current in this workspace",
                       hint="`embedops status` lists the indexes; adopt into the workspace whose alias serves it")


def _sample_rows(source: Any, given: AdoptInput, n: int, seed: int | None) -> list[Row]:
    if given.kind == "sql":
        return list(source.rows_with(given.vector, sample=n))  # ORDER BY random() in the database
    rng = random.Random(seed)
    kept: list[Row] = []
    for i, row in enumerate(_rows(source, given)):  # reservoir sampling: one pass, n rows held
        if i < n:
            kept.append(row)
        elif (j := rng.randrange(i + 1)) < n:
            kept[j] = row
    return kept


def _rows(source: Any, given: AdoptInput) -> Iterator[Row]:
    rows: Iterator[Row] = source.rows_with(given.vector) if given.kind == "sql" else source.records_with(given.vector)
    return rows


def _sample_check(source: Any, given: AdoptInput, emb: Any, chunker: Any, n: int, threshold: float,
                  seed: int | None) -> SampleCheck:
    dims = emb.ref.dims
    split = unusable = 0
    pairs: list[tuple[str, str, np.ndarray]] = []
    other_dims: set[int] = set()
    for item, value in _sample_rows(source, given, n, seed):
        if not isinstance(item, Document):
            unusable += 1
            continue
        chunks = chunker.chunk(item.text, item.metadata)
        vec = as_vector(value, dims)
        if vec is None:
            unusable += 1
            other_dims.update({d for d in [dims_of(value)] if d is not None and d != dims})
        elif len(chunks) != 1:
            split += 1
        else:
            pairs.append((item.external_id, chunks[0].text, vec))
    if not pairs and other_dims:
        raise AdoptRefused(f"the sampled vectors have {sorted(other_dims)} dimensions; {emb.ref.model!r} makes {dims}",
                           hint="these vectors were made by another model: name the embedder that made them",
                           dims=sorted(other_dims))
    if not pairs:
        return decide({}, split=split, unusable=unusable, threshold=threshold)
    fresh = embed_texts(emb, [text for _, text, _ in pairs])
    fresh = fresh / np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
    cosines = {ext_id: float(np.dot(vec, fresh[i])) for i, (ext_id, _, vec) in enumerate(pairs)}
    return decide(cosines, split=split, unusable=unusable, threshold=threshold)


def _refusal(name: str, embedder: str, check: SampleCheck) -> AdoptRefused:
    if check.compared == 0:
        reason = (f"none of the {check.split + check.unusable} sampled rows could be compared ({check.split} are cut"
                  f" into several chunks by the index's chunker, {check.unusable} hold no usable vector or text)")
        hint = ("one stored vector per document needs a chunker that keeps each document whole:"
                " `embedops init DIR --chunker whole`")
    else:
        worst = ", ".join(f"{i} {c:.4f}" for i, c in check.worst)
        reason = (f"the stored vectors do not match {embedder!r}: cosine of {check.compared} sampled rows re-embedded"
                  f" is min {check.min_cosine:.4f}, median {check.median_cosine:.4f} (needed >= {check.threshold});"
                  f" lowest: {worst}")
        hint = ("nothing was adopted. If they were made by another model (or the provider changed its model), name"
                " that model; if a few texts were edited after they were embedded, fix those rows; --min-cosine"
                " lowers the bar")
    return AdoptRefused(f"adopt {name}: {reason}", hint=hint, check=check.to_dict())


# -- storing -------------------------------------------------------------------------------
def _store(ws: Workspace, target: Target, name: str, given: AdoptInput, rows: Iterator[Row],
           result: AdoptResult) -> None:
    """Each usable one-chunk row's vector as its chunk's embedding, a batch and its ledger row per transaction."""
    batch: dict[str, np.ndarray] = {}
    dims = target.index.dims
    for item, value in rows:
        result.rows += 1
        reason = _take(item, value, target, dims, batch)
        if reason is not None:
            result.not_adopted[reason] = result.not_adopted.get(reason, 0) + 1
            if reason != "split" and len(result.problems) < PROBLEMS_SHOWN:
                result.problems.append(_problem(item, value, dims, result.origin))
        if len(batch) >= BATCH:
            _commit(ws, target, name, given, batch, result)
            batch = {}
    _commit(ws, target, name, given, batch, result)
    with ws.engine.begin() as conn:
        write_ledger(conn, "adopt", source=name, origin=result.origin, embedder=result.embedder, space=result.space,
                     chunker=result.chunker, rows=result.rows, adopted=result.adopted, present=result.present,
                     not_adopted=result.not_adopted, check=result.check.to_dict())


def _take(item: SourceItem, value: Any, target: Target, dims: int, batch: dict[str, np.ndarray]) -> str | None:
    """Add the row's vector to ``batch``; else why it is left for the sync to embed."""
    if not isinstance(item, Document):
        return "skipped"
    vec = as_vector(value, dims)
    if vec is None:
        return "bad_vector"
    chunks = target.chunker.chunk(item.text, item.metadata)
    if len(chunks) != 1:
        return "split"
    batch[chunks[0].content_hash] = vec
    return None


def _problem(item: SourceItem, value: Any, dims: int, origin: str) -> str:
    """A row not adopted, as its report reads: the source's own reason (it names the file and row), or its
    vector's problem; either way the row is left to the sync (a skipped one keeps its previous version)."""
    if isinstance(item, Skipped):
        return item.reason
    if not isinstance(item, Document):
        return f"{origin}, id {item.external_id!r}: not read"
    problem = vector_problem(value, dims)
    return (f"{origin}, id {item.external_id!r}: {problem}; the sync embeds this row's text instead (store this"
            " embedder's vector in the row to adopt it)")


def _commit(ws: Workspace, target: Target, name: str, given: AdoptInput, batch: dict[str, np.ndarray],
            result: AdoptResult) -> None:
    if not batch:
        return
    space = target.index.space_key
    with ws.engine.begin() as conn:
        missing = ws.store.missing_embeddings(conn, space, list(batch))
        new = {h: batch[h] for h in batch if h in missing}
        ws.store.put_embeddings(conn, space, new)
        if new:
            now = time.time()
            conn.execute(sa.insert(schema.adopted_embeddings), [
                {"space_key": space, "content_hash": h, "source": name, "origin": result.origin, "adopted_at": now}
                for h in new])
        write_ledger(conn, "adopt.batch", source=name, adopted=len(new), present=len(batch) - len(new))
    result.adopted += len(new)
    result.present += len(batch) - len(new)
