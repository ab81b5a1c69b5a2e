"""Where the embedding stage runs: the executor interface and the work it is handed.

A sync or a backfill reads and writes the catalog on the driver (the catalog is
the single writer); only embedding moves to an executor. The driver hands it a
stream of *jobs*, one per transactional batch: for each space, the texts to
embed keyed by content hash. The executor gives each job back, in order, with
its vectors keyed by the same hashes, so a retried or duplicated piece of work
changes nothing (the catalog stores embeddings by content hash and ignores a
second copy). Executors pull jobs ahead of the results they return, boundedly:
the corpus is never in memory, only a window of batches.

>>> import numpy as np
>>> from embedops.embedding.registry import load_embedder
>>> model = Model.of(load_embedder("hashing:dims=8"), "hashing:dims=8")
>>> done = embed_batch(model.embedder, {"h1": "some text", "h2": "other text"})
>>> sorted(done.vectors), done.vectors["h1"].shape, done.failed
(['h1', 'h2'], (8,), {})
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from embedops.embedding.base import Embedder
from embedops.embedding.spend import Spend, embed_metered
from embedops.errors import EmbeddingError, InputsRejected, ProviderRefused, ProviderUnavailable, Transient

if TYPE_CHECKING:
    import numpy as np
    from embedops.embedding.fingerprint import FingerprintCheck
    from embedops.embedding.providers import EmbedderConfig

log = logging.getLogger(__name__)

EMBED_RETRIES = 3
ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = ("local", "ray")

T = TypeVar("T")
EmbedJob = Mapping[str, Mapping[str, str]]  # space key → content hash → text


@dataclass(frozen=True)
class Model:
    """One space's model: the loaded embedder (in-process work) and how a remote worker gets the same one.

    A worker loads ``name`` from the registry, or builds it from ``config`` (an
    ``[embedders.NAME]`` section: an HTTP provider, which the worker's registry
    does not know) and, when ``fingerprint`` is set, embeds the sentinel texts and
    compares them with it before any work: a node with another model version
    under the same name is refused, never mixed in.
    """

    space_key: str
    name: str
    embedder: Embedder
    fingerprint: bytes | None = None
    min_cosine: float = 0.999
    price: float | None = 0.0  # USD per million tokens (None: an HTTP embedder with no price configured)
    config: EmbedderConfig | None = None  # an HTTP embedder's section: how a remote worker builds the provider

    @classmethod
    def of(cls, embedder: Embedder, name: str, fingerprint: bytes | None = None, min_cosine: float = 0.999,
           price: float | None = 0.0, config: EmbedderConfig | None = None) -> Model:
        return cls(embedder.ref.key, name, embedder, fingerprint, min_cosine, price, config)

    def verify(self, embedder: Embedder) -> FingerprintCheck | None:
        """Compare ``embedder`` (a worker's copy) with this space's stored fingerprint; None without one."""
        if self.fingerprint is None:
            return None
        from embedops.embedding.fingerprint import Fingerprint, compare_fingerprints, from_bytes, take_fingerprint

        stored = Fingerprint.from_vectors(from_bytes(self.fingerprint))
        return compare_fingerprints(stored, take_fingerprint(embedder), self.min_cosine)


@dataclass
class Embedded:
    """One space's part of a job, done: vectors by content hash, the texts the provider refused, the time taken."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # content hash → reason
    characters: int = 0
    seconds: float = 0.0
    spend: Spend | None = None  # what the calls cost (None: not metered where they ran, e.g. a Ray worker)

    def timing(self) -> list[float]:
        """``[characters, seconds]`` as the ledger records it (``migrate plan`` estimates from it)."""
        return [self.characters, round(self.seconds, 4)]


JobResult = dict[str, Embedded]  # space key → its part done


def embed_texts(embedder: Embedder, texts: Sequence[str], price: float | None = 0.0,
                spend: Spend | None = None) -> np.ndarray:
    """Embed with retries on transient provider errors; what every attempt cost is added to ``spend``."""
    into = spend if spend is not None else Spend()
    for attempt in range(EMBED_RETRIES):
        try:
            return embed_metered(embedder, texts, price, into)
        except Transient:
            if attempt == EMBED_RETRIES - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def embed_batch(embedder: Embedder, texts: Mapping[str, str], price: float | None = 0.0) -> Embedded:
    """Embed ``texts`` (content hash → text) in one call; if the provider refuses the batch, one at a time.

    Texts refused on their own (or named by the provider as refused) are reported
    in ``failed`` (the sync skips their documents); the others proceed. A provider
    that stays unavailable or refuses the request itself stops the job. The same function runs in-process and on a
    Ray worker, so both executors make the same calls with the same texts.
    """
    if not texts:
        return Embedded(spend=Spend())
    hashes = list(texts)
    spend = Spend()
    started = time.perf_counter()
    try:
        vecs = embed_texts(embedder, [texts[h] for h in hashes], price, spend)
    except InputsRejected as exc:  # the provider named the inputs it refused; the rest are embedded
        return Embedded({hashes[i]: v for i, v in exc.vectors.items()},
                        {hashes[i]: why for i, why in exc.rejected.items()}, spend=spend)
    except (ProviderUnavailable, ProviderRefused):
        raise  # every other text would fail the same way: stop; committed batches stay (resumable)
    except EmbeddingError as exc:
        return _embed_one_by_one(embedder, texts, exc, price, spend)
    return Embedded(dict(zip(hashes, vecs, strict=True)), {}, sum(map(len, texts.values())),
                    time.perf_counter() - started, spend)


def _embed_one_by_one(embedder: Embedder, texts: Mapping[str, str], first: EmbeddingError, price: float | None,
                      spend: Spend) -> Embedded:
    """Isolate the record(s) the provider rejects; the rest of the batch proceeds."""
    log.warning("embedding batch failed (%s); retrying one chunk at a time", first)
    done = Embedded(spend=spend)
    for h, text in texts.items():
        try:
            done.vectors[h] = embed_texts(embedder, [text], price, spend)[0]
        except EmbeddingError as exc:
            done.failed[h] = str(exc).splitlines()[0]
    return done


def embed_job(models: Mapping[str, Model], job: EmbedJob) -> JobResult:
    """Every space's part of ``job``, with that space's model (and its price, for the spend)."""
    return {space: embed_batch(models[space].embedder, texts, models[space].price) for space, texts in job.items()}


class Executor(Protocol):
    """Runs the embedding stage of a sync or a backfill.

    ``stream`` embeds each job with the models of its spaces and yields
    ``(item, result)`` in the order of ``jobs``; it pulls at most a bounded
    window of jobs ahead of what it has yielded. ``expected`` (the number of
    jobs, when the caller knows it) lets a distributed executor size its plan;
    the results never depend on it.
    """

    kind: ExecutorKind

    def stream(
        self, models: Mapping[str, Model], jobs: Iterable[tuple[T, EmbedJob]], *, expected: int | None = None
    ) -> Iterator[tuple[T, JobResult]]: ...

    def describe(self) -> dict[str, object]:
        """What ran the work, for results and the ledger (kind, workers)."""
        ...

    def close(self) -> None:
        """Release what the executor started (a local Ray instance); nothing for in-process work."""
        ...
