"""Where embedding runs: in-process (the default) or on a Ray Data actor pool.

>>> make_executor(ExecutorOptions()).kind
'local'
"""

from __future__ import annotations

from dataclasses import dataclass

from embedops.errors import ConfigError
from embedops.execute.base import (
    EXECUTOR_KINDS, EmbedJob, Embedded, Executor, ExecutorKind, JobResult, Model, embed_batch, embed_job, embed_texts,
)
from embedops.execute.local import LocalExecutor


@dataclass(frozen=True)
class ExecutorOptions:
    """How a sync or a backfill runs its embedding stage (the CLI's ``--executor`` options).

    ``batch_size``: documents (sync) or chunks (backfill) per batch, each one
    transaction and, with Ray, one block sent to an actor; None keeps the
    workspace's ``batch_size``.
    """

    kind: ExecutorKind = "local"
    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTOR_KINDS:
            raise ConfigError(f"unknown executor {self.kind!r}; valid: {', '.join(EXECUTOR_KINDS)}")
        if self.kind == "local" and (self.address or self.actors or self.gpus_per_actor):
            raise ConfigError("--address, --actors and --gpus-per-actor need --executor ray",
                              hint="add `--executor ray`, or drop those options to embed in this process")
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"--actors must be at least 1, not {self.actors}")
        if self.gpus_per_actor < 0:
            raise ConfigError(f"--gpus-per-actor cannot be negative ({self.gpus_per_actor})")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {self.batch_size}")


def make_executor(options: ExecutorOptions) -> Executor:
    """The executor ``options`` name; Ray is imported only when it is used."""
    if options.kind == "ray":
        from embedops.execute.raydata import RayExecutor

        return RayExecutor(address=options.address, actors=options.actors, gpus_per_actor=options.gpus_per_actor)
    return LocalExecutor()


__all__ = [
    "EXECUTOR_KINDS", "EmbedJob", "Embedded", "Executor", "ExecutorKind", "ExecutorOptions", "JobResult",
    "LocalExecutor", "Model", "embed_batch", "embed_job", "embed_texts", "make_executor",
]
