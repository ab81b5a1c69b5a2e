"""One exception tree for embedops.

Every error a user can see derives from :class:`EmbedopsError`. Subsystems have
their own base class, and errors carry structured attributes plus a ``hint``
naming the next command to run. Lower-level errors (sqlite, OSError, model
libraries) are translated once, at the boundary, with ``raise ... from``.
``http_status`` lets the CLI and the HTTP service map errors without ``if``
chains.
"""

from __future__ import annotations

from typing import Any


class EmbedopsError(Exception):
    """Root of every embedops error."""

    http_status: int = 500
    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in self.details.items() if _jsonable(v)},
        }


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


class Transient(EmbedopsError):
    """Marker: retrying the same operation may succeed (network, rate limit)."""


class Terminal(EmbedopsError):
    """Marker: retrying will fail the same way until the input changes."""


class ConfigError(Terminal):
    http_status = 400


class WorkspaceNotFound(ConfigError):
    http_status = 404


class CatalogError(EmbedopsError):
    pass


class SchemaVersionError(CatalogError):
    pass


class CatalogMissing(CatalogError, Terminal):
    """The catalog embedops.toml points at is gone (never silently recreated: the history is in it)."""

    http_status = 503
    exit_code = 3


class CatalogCorrupt(CatalogError, Terminal):
    """The catalog file is not a readable database."""

    http_status = 503
    exit_code = 3


class CatalogUnavailable(CatalogError, Transient):
    """The catalog database cannot be reached (server down, wrong host, bad credentials)."""

    http_status = 503
    exit_code = 3


class NotFound(Terminal):
    http_status = 404


class Busy(Transient):
    """Another writer holds the workspace lock this command needs (a sync, a migration step)."""

    http_status = 409
    exit_code = 75  # EX_TEMPFAIL: try again later


class SourceError(EmbedopsError):
    http_status = 400


class MassDelete(SourceError, Terminal):
    """A sync would delete more of a source than ``max_delete_share`` allows: refused, nothing of it changed."""

    http_status = 409


class BadRecord(SourceError, Terminal):
    """One source record cannot be used; the others proceed."""


class ChunkingError(Terminal):
    http_status = 400


class EmbeddingError(EmbedopsError):
    http_status = 502
    # What the failed call was still billed for (embedding/http.py's ``Usage``), when a provider billed any.
    usage: Any = None


class EmbedderNotFound(EmbeddingError, Terminal):
    http_status = 400


class ProviderError(EmbeddingError, Transient):
    pass


class InputsRejected(EmbeddingError, Terminal):
    """The provider refused some inputs of a call (too long, empty, ...); the others were embedded.

    ``rejected`` maps each refused input's position in the call to the provider's reason;
    ``vectors`` maps every other position to its vector, so a caller skips and reports the
    refused inputs without embedding the rest again. No refused input gets a vector.
    """

    http_status = 422

    def __init__(self, message: str, *, rejected: dict[int, str], vectors: dict[int, Any], hint: str | None = None) -> None:
        super().__init__(message, hint=hint, rejected={str(i): why for i, why in sorted(rejected.items())})
        self.rejected = dict(rejected)
        self.vectors = dict(vectors)


class ProviderUnavailable(EmbeddingError):
    """A remote provider kept failing (429, 5xx, timeouts, resets, short responses) through every retry.

    Not :class:`Transient`: the embedder has already retried with backoff; what was
    committed before stays, and running the command again later resumes.
    """

    http_status = 503


class ProviderRefused(EmbeddingError, Terminal):
    """A remote provider refuses the request itself (key, URL, model, dimensions): retrying cannot help."""

    http_status = 502


class ExecutorError(EmbedopsError):
    """Where embedding runs (``execute/``): an executor that cannot start or lost its workers."""

    http_status = 503


class ExecutorUnavailable(ExecutorError, Terminal):
    """The executor asked for is not installed or its cluster cannot be reached."""


class VectorStoreError(EmbedopsError):
    pass


class SpaceMismatch(VectorStoreError, Terminal):
    """A write or a query whose space/chunker differs from the index's (invariant 1)."""

    http_status = 409


class SyncError(EmbedopsError):
    pass


class AdoptRefused(SyncError, Terminal):
    """`embedops adopt` will not take these vectors: a sample re-embedded does not match them."""

    http_status = 409


class ConfigChanged(SyncError, Terminal):
    """The configured embedder/chunker differs from the active index: that is a migration."""

    http_status = 409


class SearchError(EmbedopsError):
    http_status = 400


class MigrationError(EmbedopsError):
    http_status = 409


class NoMigration(MigrationError, Terminal):
    http_status = 404


class MigrationStateError(MigrationError, Terminal):
    """The command does not fit the migration's current phase."""


class GateFailed(MigrationError, Terminal):
    """Cutover refused: a gating check failed."""


class CurationError(EmbedopsError):
    pass


class SignatureMismatch(CurationError, Terminal):
    """A stored near-duplicate signature was made with other shingling parameters."""

    http_status = 409


class BudgetExceeded(Terminal):
    """A budget (``--max-cost``, ``[budget] monthly_usd``) refused a job up front, or stopped it once its spend
    reached the cap. What was embedded before the stop is committed; the job resumes where it stopped."""

    http_status = 402
    exit_code = 4
