"""Embedding on a Ray cluster: Ray Data streams the driver's batches through an actor pool.

The driver (the ``embedops`` process) keeps reading and writing the catalog; Ray
only turns texts into vectors. For each run:

* a **feeder** actor holds the window of batches the driver has prepared, by slot
  number (0 CPUs; it lives while the run does);
* a Ray Dataset reads those slots (one read task per slot, deterministic: a
  retried read gets the same batch) and maps them through ``_EmbedWorker``, an
  actor class that loads each space's model once per actor, checks it against
  the space's stored fingerprint, and returns one row per text: job, space,
  content hash, vector bytes;
* a collector thread iterates the Dataset's output; the driver's loop puts the
  rows back together per job and yields jobs in order, as soon as each is complete.

Ray restarts a killed actor and retries its task (Ray Data's defaults for actor
pools); a result that arrives twice is ignored (rows are keyed by job, space
and content hash). A driver that dies leaves what it committed, like any
interrupted sync: the next run's diff or anti-join finds the rest.

An HTTP embedder (an ``[embedders.NAME]`` section) is built on each worker from
its section, with the API key read from the worker's environment, and paced by
one **limit actor** per run: the section's requests and tokens per minute, and
any ``Retry-After`` pause, hold for the whole pool, not per worker; its
``max_concurrency`` is divided among the actors.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from embedops.errors import EmbedopsError, ExecutorError, ExecutorUnavailable, SpaceMismatch
from embedops.execute.base import EmbedJob, Embedded, ExecutorKind, JobResult, Model, T, embed_batch

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from embedops.embedding.base import Embedder
    from embedops.embedding.providers import EmbedderConfig

log = logging.getLogger(__name__)

RAY_HINT = "pip install 'embedops[ray]' on the driver and on every node of the cluster"
_POLL_S = 0.5  # how often blocked driver threads look up to see whether the run was abandoned


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ExecutorUnavailable("the ray executor needs Ray Data, which is not installed", hint=RAY_HINT) from exc
    return ray


@dataclass(frozen=True)
class WorkerModel:
    """What a Ray worker needs to load and verify one space's model (picklable: no weights, no key).

    For an HTTP embedder: its section, the space's dimensions (no probe request per
    worker), the run's limit actor and the number of actors sharing ``max_concurrency``.
    """

    space_key: str
    name: str
    fingerprint: bytes | None
    min_cosine: float
    config: EmbedderConfig | None = None
    dims: int | None = None
    limit: Any = None  # the _SharedLimit actor's handle
    workers: int = 1

    @classmethod
    def of(cls, model: Model, limit: Any = None, workers: int = 1) -> WorkerModel:
        return cls(model.space_key, model.name, model.fingerprint, model.min_cosine, model.config,
                   model.embedder.ref.dims, limit, workers)

    def load(self) -> Embedder:
        """The worker's copy: from the registry, or built from the section with the shared limiter."""
        from embedops.embedding.registry import load_embedder

        if self.config is None:
            return load_embedder(self.name)
        from embedops.embedding.providers import build

        config = dataclasses.replace(self.config, max_concurrency=max(1, self.config.max_concurrency // self.workers))
        return build(config, limiter=None if self.limit is None else SharedRateLimiter(self.limit), dims=self.dims)


class _SharedLimit:
    """Ray actor (0 CPUs, one per HTTP space and run): the one RateLimiter every worker asks.

    It never sleeps: ``try_acquire`` takes the budget or says how long to wait, and the
    asking thread waits on its own side, so one waiting worker blocks nobody else.
    """

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        from embedops.embedding.ratelimit import RateLimiter

        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute)

    def try_acquire(self, tokens: int) -> float:
        return self.limiter.try_acquire(tokens)

    def settle(self, extra_tokens: int) -> None:
        self.limiter.settle(extra_tokens)

    def pause(self, seconds: float) -> None:
        self.limiter.pause(seconds)


class SharedRateLimiter:
    """A worker's side of a run's limit actor (the ``Limiter`` protocol of the HTTP embedder)."""

    def __init__(self, actor: Any, sleep: Any = time.sleep) -> None:
        self.actor, self._sleep = actor, sleep

    def acquire(self, tokens: int = 0) -> float:
        import ray

        waited = 0.0
        while (delay := float(ray.get(self.actor.try_acquire.remote(tokens)))) > 0:
            self._sleep(delay)
            waited += delay
        return waited

    def settle(self, extra_tokens: int) -> None:
        self.actor.settle.remote(extra_tokens)  # in order with this worker's later calls (Ray keeps a caller's order)

    def pause(self, seconds: float) -> None:
        self.actor.pause.remote(seconds)


def _start_limits(ray: Any, models: Mapping[str, Model]) -> dict[str, Any]:
    """One limit actor per HTTP space of the run (space key → handle)."""
    return {m.space_key: ray.remote(_SharedLimit).options(num_cpus=0).remote(
                m.config.max_requests_per_minute, m.config.max_tokens_per_minute)
            for m in models.values() if m.config is not None}


class _EmbedWorker:
    """The Ray Data actor: models loaded once per actor; each call embeds the rows of its block."""

    def __init__(self, models: list[WorkerModel]) -> None:
        self.embedders: dict[str, Any] = {}
        # Ray keeps only the text of an error raised in an actor's constructor; raised from a
        # call, the driver gets the error itself (ModelChanged, EmbedderNotFound) and its hint.
        self.refusal: EmbedopsError | None = None
        try:
            for spec in models:
                embedder = spec.load()
                _check_worker_model(spec, embedder)
                self.embedders[spec.space_key] = embedder
        except EmbedopsError as exc:
            self.refusal = exc

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        if self.refusal is not None:
            raise self.refusal

        cols = table.to_pydict()
        groups: dict[tuple[int, str], dict[str, str]] = {}
        for job, space, h, text in zip(cols["job"], cols["space"], cols["hash"], cols["text"], strict=True):
            groups.setdefault((job, space), {})[h] = text
        out: dict[str, list[Any]] = {k: [] for k in ("job", "space", "hash", "vector", "failed", "characters", "seconds")}
        for (job, space), texts in groups.items():
            # One call per (job, space): the same texts in the same call as the local executor makes.
            done = embed_batch(self.embedders[space], texts)
            for h in texts:
                vec = done.vectors.get(h)
                out["job"].append(job)
                out["space"].append(space)
                out["hash"].append(h)
                out["vector"].append(None if vec is None else np.asarray(vec, dtype=np.float32).tobytes())
                out["failed"].append(done.failed.get(h))
                out["characters"].append(done.characters)
                out["seconds"].append(done.seconds)
        return pa.table({**out, "vector": pa.array(out["vector"], pa.binary())})


def _check_worker_model(spec: WorkerModel, embedder: Any) -> None:
    """A worker's copy of the model must make the space's vectors, or it takes no part."""
    from embedops.embedding.verify import ModelChanged

    if embedder.ref.key != spec.space_key:
        raise SpaceMismatch(
            f"on Ray node {os.uname().nodename}, embedder {spec.name!r} describes space {embedder.ref.key},"
            f" not {spec.space_key}",
            hint="install the same embedops and model packages on every node of the cluster",
        )
    check = Model(spec.space_key, spec.name, embedder, spec.fingerprint, spec.min_cosine).verify(embedder)
    if check is not None and not check.same:
        raise ModelChanged(
            f"on Ray node {os.uname().nodename}, model {spec.name!r} no longer makes the vectors of space"
            f" {spec.space_key} (sentinel cosine {check.min_cosine:.4f}): {check.reason}",
            hint="install the same model package version on every node of the cluster",
        )


class _Feeder:
    """Async actor holding the driver's prepared batches by slot until the driver has committed them."""

    def __init__(self) -> None:
        import asyncio

        self._blocks: dict[int, Any] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._end: int | None = None  # slots at or past this number get an empty block

    def _event(self, slot: int) -> Any:
        import asyncio

        return self._ready.setdefault(slot, asyncio.Event())

    def put(self, slot: int, block: Any) -> None:
        self._blocks[slot] = block
        self._event(slot).set()

    def finish(self, produced: int) -> None:
        self._end = produced
        for slot, event in self._ready.items():
            if slot >= produced:
                event.set()

    async def get(self, slot: int) -> Any:
        if self._end is None or slot < self._end:
            await self._event(slot).wait()
        return self._blocks.get(slot)

    def drop(self, slot: int) -> None:
        self._blocks.pop(slot, None)
        self._ready.pop(slot, None)


def _read_slot(feeder: Any, slot: int) -> list[Any]:
    """One read task: the batch in ``slot`` (an empty block for a slot the driver did not need)."""
    import ray

    block = ray.get(feeder.get.remote(slot))
    return [block if block is not None else _rows_table([], [], [], [])]


def _rows_table(jobs: list[int], spaces: list[str], hashes: list[str], texts: list[str]) -> pa.Table:
    import pyarrow as pa

    return pa.table({"job": pa.array(jobs, pa.int64()), "space": pa.array(spaces, pa.string()),
                     "hash": pa.array(hashes, pa.string()), "text": pa.array(texts, pa.string())})


def _slots_datasource(feeder: Any, slots: int) -> Any:
    from functools import partial

    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class Slots(Datasource):
        """One read task per slot of the feeder."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # Ray leaves it unannotated

        def estimate_inmemory_data_size(self) -> int | None:
            return None  # Ray's protocol for "unknown": the slots are filled as the driver streams batches

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(partial(_read_slot, feeder, i), meta) for i in range(slots)]

    return Slots()


@dataclass
class _Pending:
    """A job the driver has handed out: what is still missing of it, and what came back."""

    item: Any
    want: dict[str, set[str]]  # space → hashes not yet back
    result: JobResult = field(default_factory=dict)
    slot: int | None = None

    @property
    def complete(self) -> bool:
        return not any(self.want.values())


class RayExecutor:
    """Embeds on a Ray cluster (or a local Ray instance) with a Ray Data actor pool.

    ``address``: ``None`` starts a local Ray instance with this machine's CPUs
    (or uses the one this process already started), ``"auto"`` joins the
    cluster this machine belongs to, ``"ray://head:10001"`` connects through Ray
    Client. ``actors`` model replicas (default: one per CPU of the cluster, or
    per GPU when ``gpus_per_actor`` is set), each reserving ``cpus_per_actor``
    CPUs and ``gpus_per_actor`` GPUs. At most ``window`` batches are in flight.
    """

    kind: ExecutorKind = "ray"

    def __init__(self, *, address: str | None = None, actors: int | None = None, gpus_per_actor: float = 0.0,
                 cpus_per_actor: float = 1.0, window: int | None = None) -> None:
        self.address = address
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.window = window
        self._started_ray = False

    # -- connection --------------------------------------------------------------
    def _ray(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is None:
                # Starting Ray's agents takes longer than Ray's own timeouts (10-30 s) on a loaded machine.
                os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
                os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False,
                         include_dashboard=False, configure_logging=False)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise ExecutorUnavailable(f"cannot start or reach Ray at {self.address or 'a new local instance'}:"
                                          f" {exc}", hint="check --address (auto, ray://HOST:10001) and"
                                          " that the cluster is up (`ray status`)") from exc
            self._started_ray = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.raise_original_map_exception = True  # a worker's ModelChanged reaches the driver as itself
        return ray

    def close(self) -> None:
        """Shut down the local Ray instance this executor started (one it joined is left running)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def pool_size(self, ray: Any) -> int:
        """``actors``, else as many as the cluster's CPUs (or GPUs) hold now."""
        resources = ray.cluster_resources()
        fits = int(resources.get("GPU", 0) // self.gpus_per_actor) if self.gpus_per_actor else \
            int(resources.get("CPU", 1) // self.cpus_per_actor)
        if self.actors and self.actors > fits:
            # An autoscaling cluster may grow to fit; a fixed one would wait forever: say so.
            log.warning("%d actors of %g CPU / %g GPU do not fit the cluster's resources now (%s): Ray waits for more",
                        self.actors, self.cpus_per_actor, self.gpus_per_actor, resources)
        return self.actors or max(1, fits)

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "address": self.address or "local", "actors": self.actors,
                "gpus_per_actor": self.gpus_per_actor}

    # -- streaming -------------------------------------------------------------------
    def stream(
        self, models: Mapping[str, Model], jobs: Iterable[tuple[T, EmbedJob]], *, expected: int | None = None
    ) -> Iterator[tuple[T, JobResult]]:
        ray = self._ray()
        actors = self.pool_size(ray)
        window = self.window or max(4, 3 * actors)
        limits = _start_limits(ray, models)
        specs = [WorkerModel.of(m, limits.get(m.space_key), actors) for m in models.values()]
        source = iter(jobs)
        first = True
        try:
            while True:
                # One Dataset (one actor pool, models loaded once) per segment of `slots` batches;
                # a right `expected` makes that a single segment.
                slots = max(window, expected or 0) if first else max(window, 8 * window)
                first = False
                run = _Run(ray, specs, actors, self.cpus_per_actor, self.gpus_per_actor, window, slots)
                yield from run.stream(source)
                if not run.more:
                    return
        finally:
            for handle in limits.values():
                ray.kill(handle)


class _Run:
    """One segment: a feeder, one Dataset over ``slots`` slots, a producer and a collector thread."""

    def __init__(self, ray: Any, specs: list[WorkerModel], actors: int, cpus: float, gpus: float,
                 window: int, slots: int) -> None:
        self.ray, self.specs, self.actors, self.cpus, self.gpus = ray, specs, actors, cpus, gpus
        self.window, self.slots = window, slots
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.room = threading.Semaphore(window)
        self.stop = threading.Event()
        self.more = False  # the source had more jobs than this segment's slots
        self.feeder: Any = None

    def stream(self, source: Iterator[tuple[T, EmbedJob]]) -> Iterator[tuple[T, JobResult]]:
        threads = [threading.Thread(target=self._produce, args=(source,), name="ray-feed", daemon=True)]
        try:
            yield from self._drain(threads)
        finally:
            self.stop.set()
            if self.feeder is not None:
                self.ray.kill(self.feeder)  # read tasks still waiting fail, so the Dataset stops too
            for t in threads:
                t.join(timeout=30)

    def _start_dataset(self, threads: list[threading.Thread]) -> None:
        """Started on the first job with texts: a sync with nothing to embed starts no actor."""
        data = self.ray.data
        # Reads run in one long-lived 0-CPU actor: a task per slot would wait for a new worker process
        # each time (tens of seconds on a loaded machine), and reading a slot is only a fetch.
        ds = data.read_datasource(_slots_datasource(self.feeder, self.slots), override_num_blocks=self.slots,
                                  num_cpus=0, compute=data.ActorPoolStrategy(size=1))
        ds = ds.map_batches(_EmbedWorker, fn_constructor_args=(self.specs,), batch_size=None,
                            batch_format="pyarrow", compute=data.ActorPoolStrategy(size=self.actors),
                            num_cpus=self.cpus, num_gpus=self.gpus or None)
        collector = threading.Thread(target=self._collect, args=(ds,), name="ray-collect", daemon=True)
        threads.append(collector)
        collector.start()

    def _drain(self, threads: list[threading.Thread]) -> Iterator[tuple[Any, JobResult]]:
        self.feeder = self.ray.remote(_Feeder).options(num_cpus=0).remote()
        threads[0].start()
        order: list[_Pending] = []
        by_slot: dict[int, _Pending] = {}
        produced: int | None = None
        yielded = 0
        while produced is None or yielded < produced:
            kind, payload = self.events.get()
            if kind == "job":
                pending = payload
                order.append(pending)
                if pending.slot is not None:
                    by_slot[pending.slot] = pending
                    if len(threads) == 1:
                        self._start_dataset(threads)
            elif kind == "rows":
                _merge_rows(by_slot, payload)
            elif kind == "produced":
                produced = payload
            elif kind == "error":
                raise _translate(payload)
            while yielded < len(order) and order[yielded].complete:
                done = order[yielded]
                yield done.item, done.result
                if done.slot is not None:
                    self.feeder.drop.remote(done.slot)
                    by_slot.pop(done.slot, None)
                self.room.release()
                yielded += 1

    def _produce(self, source: Iterator[tuple[Any, EmbedJob]]) -> None:
        produced = slot = 0
        try:
            for item, job in source:
                while not self.room.acquire(timeout=_POLL_S):
                    if self.stop.is_set():
                        return
                pending = _Pending(item, {s: set(t) for s, t in job.items() if t})
                if pending.want:
                    pending.slot = slot
                    self.ray.get(self.feeder.put.remote(slot, _job_table(slot, job)))
                    slot += 1
                self.events.put(("job", pending))
                produced += 1
                if slot == self.slots:
                    self.more = True
                    break
            self.ray.get(self.feeder.finish.remote(slot))
            self.events.put(("produced", produced))
        except BaseException as exc:  # the driver's loop re-raises it
            self.events.put(("error", exc))

    def _collect(self, ds: Any) -> None:
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
                self.events.put(("rows", table))
        except BaseException as exc:
            if not self.stop.is_set():
                self.events.put(("error", exc))


def _job_table(slot: int, job: EmbedJob) -> pa.Table:
    rows = [(space, h, text) for space, texts in job.items() for h, text in texts.items()]
    return _rows_table([slot] * len(rows), [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def _merge_rows(by_slot: dict[int, _Pending], table: pa.Table) -> None:
    """File each returned row under its job; a row for a job already complete (a retry's copy) is dropped."""
    cols = table.to_pydict()
    for i, slot in enumerate(cols["job"]):
        pending = by_slot.get(slot)
        space, h = cols["space"][i], cols["hash"][i]
        if pending is None or h not in pending.want.get(space, ()):
            continue
        pending.want[space].discard(h)
        done = pending.result.setdefault(space, Embedded(characters=cols["characters"][i], seconds=cols["seconds"][i]))
        if cols["vector"][i] is not None:
            done.vectors[h] = np.frombuffer(cols["vector"][i], dtype=np.float32)
        else:
            done.failed[h] = cols["failed"][i] or "the embedding provider returned no vector"


def _translate(exc: BaseException) -> BaseException:
    """The embedops error inside a Ray error (a worker refusing its model), else an ExecutorError."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, EmbedopsError):
            return cur
        cause = getattr(cur, "cause", None)
        cur = cause if isinstance(cause, BaseException) else (cur.__cause__ or cur.__context__)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    return ExecutorError(f"the Ray executor failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                         hint="what was committed is kept: run the same command again to resume")

