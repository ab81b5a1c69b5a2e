"""In-process execution (the default): the model embeds one batch while the driver prepares the next."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from embedops.execute.base import EmbedJob, ExecutorKind, JobResult, Model, T, embed_job


class LocalExecutor:
    """One worker thread, one job ahead.

    While the thread embeds job *i*, the caller's loop pulls job *i+1* from
    ``jobs`` (chunking, cache lookups) and then commits job *i-1*: the model
    is kept busy and only three batches are ever in memory. The models are the
    caller's own loaded embedders (checked by the workspace before a sync).
    """

    kind: ExecutorKind = "local"

    def stream(
        self, models: Mapping[str, Model], jobs: Iterable[tuple[T, EmbedJob]], *, expected: int | None = None
    ) -> Iterator[tuple[T, JobResult]]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool:
            pending: tuple[T, Future[JobResult]] | None = None
            for item, job in jobs:
                future = pool.submit(embed_job, models, job)
                if pending is not None:
                    yield pending[0], pending[1].result()
                pending = (item, future)
            if pending is not None:
                yield pending[0], pending[1].result()

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind}

    def close(self) -> None:
        """Nothing to release: the worker thread ends with each stream."""
