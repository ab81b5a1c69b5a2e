"""The service's own settings: auth and request limits.

They come from ``embedops serve`` options (or :class:`ServerConfig` in code),
never from the catalog: the token itself is only ever read from the
environment variable named here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_TOKEN_ENV = "EMBEDOPS_TOKEN"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_QUERY_CHARS = 2_000
MAX_K = 1_000


@dataclass(frozen=True)
class ServerConfig:
    """Auth and limits of one service instance.

    >>> ServerConfig().max_k
    1000
    """

    token_env: str = DEFAULT_TOKEN_ENV  # name of the env var holding the bearer token
    auth_reads: bool = False  # reads need the token too (writes always do)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
    max_k: int = MAX_K
    write_wait_seconds: float = 30.0  # how long a write waits for another one before answering 503
    # Threads answering reads at once. Each keeps one SQLite connection (the search hot path's
    # per-thread connection) and may borrow a second; the catalog's pool holds 15 (5 + 10 overflow).
    read_threads: int = 6
    # ``serve --watch``: sync the sources inside the service, polling tables and files this often (seconds).
    watch_every: float | None = None

    def __post_init__(self) -> None:
        from embedops.errors import ConfigError

        if not isinstance(self.token_env, str) or not self.token_env.strip():
            raise ConfigError(f"the token environment variable's name must be a non-empty string (got {self.token_env!r})",
                              hint="use e.g. --token-env EMBEDOPS_TOKEN")
        if not isinstance(self.auth_reads, bool):
            raise ConfigError(f"auth_reads must be true or false (got {self.auth_reads!r})")
        for name in ("max_body_bytes", "max_query_chars", "read_threads", "max_k"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name} must be an integer of at least 1 (got {value!r})")
        if self.max_k > MAX_K:
            raise ConfigError(f"max_k must be between 1 and {MAX_K} (got {self.max_k})")
        wait = self.write_wait_seconds
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait < float("inf"):
            raise ConfigError(f"write_wait_seconds must be a number of seconds, 0 or more (got {wait!r})")

    def token(self) -> str | None:
        """The configured token, read now (so a rotated secret applies without a restart)."""
        return os.environ.get(self.token_env) or None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
